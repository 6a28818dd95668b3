"""``torch.distributed`` for caches: which rank this is, and small JSON messages between ranks.

Only metadata crosses ranks: the build's settings, shard entries and verification findings, a
few kilobytes of JSON at a handful of sync points. Activations go from each rank straight to
the output directory, which every rank must see (one machine, or a shared file system), so
the backend never carries bulk data: gloo is enough on CPUs and GPUs alike, and a process group
the caller initialised with NCCL works too (the messages then travel as CUDA tensors).

Under ``torchrun`` a build or verification initialises the default process group itself
(:func:`init_from_env`); from Python, call ``torch.distributed.init_process_group`` first.
"""

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from interp.errors import CacheError

log = logging.getLogger(__name__)

# Set by torchrun (and torch.distributed.run); a process group is initialised from them.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class RankError(CacheError):
    """Another rank of a distributed build or verification failed; its message is quoted."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks: ``World()`` is a plain single-process run.

    Example:
        >>> w = World(rank=1, size=3, distributed=True)
        >>> [i for i in range(7) if w.mine(i)]
        [1, 4]
    """

    rank: int = 0
    size: int = 1
    distributed: bool = False

    @property
    def lead(self) -> bool:
        """Rank 0: holds the lock, writes the manifest."""
        return self.rank == 0

    def mine(self, index: int) -> bool:
        """Whether shard (or batch) ``index`` is this rank's to compute: round robin."""
        return index % self.size == self.rank


def _available() -> bool:
    return torch.distributed.is_available()


def init_from_env() -> bool:
    """Initialise the default process group (gloo) when launched by ``torchrun`` and none is.

    Also makes ``cuda`` mean this rank's GPU (``LOCAL_RANK``) for anything loaded afterwards.
    Does nothing outside ``torchrun``, with one process, or when a group already exists.

    Returns:
        Whether it initialised a process group.

    Raises:
        CacheError: ``WORLD_SIZE`` or ``RANK`` is not a whole number.
    """
    env = os.environ
    if not _available() or torch.distributed.is_initialized() or not all(k in env for k in TORCHRUN_ENV):
        return False
    values = {}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        raw = env.get(key, "0")
        if not raw.isdigit():
            raise CacheError(f"{key}={raw!r} in the environment is not a whole number (set by torchrun)")
        values[key] = int(raw)
    if values["WORLD_SIZE"] < 2:
        return False
    if torch.cuda.is_available() and values["LOCAL_RANK"] < torch.cuda.device_count():
        torch.cuda.set_device(values["LOCAL_RANK"])
    torch.distributed.init_process_group("gloo")
    log.info("rank %d of %d: process group initialised from torchrun's environment",
             values["RANK"], values["WORLD_SIZE"])
    return True


def current_world() -> World:
    """The ranks of the default process group (initialised from torchrun's environment if need be)."""
    init_from_env()
    if not _available() or not torch.distributed.is_initialized():
        return World()
    return World(torch.distributed.get_rank(), torch.distributed.get_world_size(), distributed=True)


def rank_device(device: str | None, world: World) -> str | None:
    """The device a rank loads its model on: plain ``cuda`` means this rank's GPU under torchrun.

    Example:
        >>> rank_device("cpu", World(1, 2, True)), rank_device("cuda:1", World(0, 2, True))
        ('cpu', 'cuda:1')
    """
    if world.distributed and device == "cuda" and torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()}"
    return device


def _device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_json(world: World, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (JSON-serialisable), in rank order, on every rank."""
    if not world.distributed:
        return [obj]
    data = json.dumps(obj, sort_keys=True).encode()
    device = _device()
    n = torch.tensor([len(data)], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(n) for _ in range(world.size)]
    torch.distributed.all_gather(sizes, n)
    longest = max(int(s) for s in sizes)
    buf = torch.zeros(longest, dtype=torch.uint8)
    buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    buf = buf.to(device)
    bufs = [torch.empty_like(buf) for _ in range(world.size)]
    torch.distributed.all_gather(bufs, buf)
    return [json.loads(b[: int(s)].cpu().numpy().tobytes()) for b, s in zip(bufs, sizes, strict=True)]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def settle(world: World, work: Callable[[], Any] | None) -> list[Any]:
    """Run ``work`` on this rank (``None``: nothing to do here), then share every rank's result.

    Every rank calls it at the same point of the same code, so no rank waits forever on one
    that failed: if any rank's work raised, every rank raises, the failed one its own
    exception and the others a :class:`RankError` quoting it. In a single process, ``work``
    just runs.

    Returns:
        Each rank's result (JSON round-tripped), in rank order.
    """
    if not world.distributed:
        return [work() if work is not None else None]
    error, result = None, None
    if work is not None:
        try:
            result = work()
        except Exception as exc:  # shared with the other ranks, then re-raised below
            error = exc
    outcomes = all_gather_json(world, {"error": _one_line(error)} if error else {"ok": result})
    if error is not None:
        raise error
    for rank, outcome in enumerate(outcomes):
        if "error" in outcome:
            raise RankError(f"rank {rank} of {world.size} failed: {outcome['error']}")
    return [outcome["ok"] for outcome in outcomes]
