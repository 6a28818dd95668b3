"""One writer per cache directory: a lock file naming its holder, for a build's lifetime.

The lock is ``build.lock`` in the cache directory, created with ``O_CREAT | O_EXCL`` (atomic on
local file systems) and holding ``{"pid": ..., "host": ...}``. It is not part of the manifest or
the ID. A lock left by a build that died (same host, no such process) is taken over with a
warning; any other holder makes a second build fail at once, naming it.
"""

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from interp.errors import CacheError

log = logging.getLogger(__name__)

LOCK = "build.lock"


def read_lock(root: Path) -> dict[str, Any] | None:
    """The holder recorded in ``root``'s lock file (``{}`` if unreadable), or ``None`` if none."""
    try:
        raw = (root / LOCK).read_bytes()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(raw[:4096])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """Whether the lock's holder still runs: ``None`` when this host cannot tell."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def describe(holder: dict[str, Any]) -> str:
    return f"PID {holder.get('pid', '?')} on host {holder.get('host', '?')!r}"


def _create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


@contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """Hold ``root/build.lock`` for the body; remove it on exit, exceptions included.

    Raises:
        CacheError: another build holds the lock (naming its PID and host), or the lock file
            cannot be read and its holder cannot be told.
    """
    path = root / LOCK
    if not _create(path):
        holder = read_lock(root)
        alive = holder_alive(holder) if holder is not None else False
        if alive is not False:
            who = describe(holder) if holder else "an unreadable holder"
            raise CacheError(
                f"another build ({who}) is writing {str(root)!r}; wait for it to finish, or "
                f"delete {str(path)!r} if no build is running"
            )
        log.warning("taking over the lock of a build that died (%s) in %s", describe(holder or {}), root)
        # Remove only the stale lock we read: if another build took it over first, keep theirs.
        if read_lock(root) == holder:
            path.unlink(missing_ok=True)
        if not _create(path):
            raise CacheError(
                f"another build ({describe(read_lock(root) or {})}) took over {str(root)!r} first; "
                "wait for it to finish"
            )
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
