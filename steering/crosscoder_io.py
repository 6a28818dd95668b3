"""A crosscoder on disk: a directory of ``model.safetensors`` and ``cfg.json``, written atomically.

``model.safetensors`` holds ``W_enc`` ``[n_models, d_model, n_latents]``, ``b_enc``
``[n_latents]``, ``W_dec`` ``[n_models, n_latents, d_model]``, ``b_dec`` ``[n_models, d_model]`` and
``fire_count`` ``[n_latents]`` (positions each latent fired on from ``threshold_start`` on).
``cfg.json`` holds ``format`` (:data:`FORMAT`), the sizes, ``hook``, ``labels`` in model order,
``models`` (per label its ``spec``, ``fingerprint``, ``cache_id`` and ``architecture``),
``threshold``, ``config``, ``training`` statistics and ``weights_sha256``.

:func:`write_crosscoder` writes both into a temporary directory that is renamed into place, so a
reader never sees half a crosscoder; :func:`read_crosscoder` checks ``cfg.json`` field by field,
the weights against their sha256 and their shapes (from the file header, before anything is
allocated) against ``cfg.json``. :meth:`steering.crosscoder.Crosscoder.save` and ``load`` use them.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import Tensor

from interp.atomic import atomic_write_bytes, atomic_write_json, fsync_dir
from interp.errors import CrosscoderError
from interp.fingerprint import sha256_file
from steering.sae_io import _one_line

FORMAT = "interp.crosscoder/1"
WEIGHTS_FILE = "model.safetensors"
CFG_FILE = "cfg.json"


def write_crosscoder(path: str | Path, tensors: dict[str, Tensor], cfg: dict[str, Any]) -> Path:
    """Write the tensors and ``cfg`` (plus ``weights_sha256``) into ``path``, atomically.

    An existing crosscoder directory at ``path`` is replaced; anything else there is refused.

    Raises:
        CrosscoderError: ``path`` holds something else, or cannot be written.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.exists() and not _replaceable(path):
        raise CrosscoderError(f"cannot save the crosscoder in {str(path)!r}: it holds something else")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.saving-"))
    except OSError as exc:
        raise _cannot_save(path, exc) from None
    try:
        atomic_write_bytes(tmp / WEIGHTS_FILE, save(tensors))
        atomic_write_json(tmp / CFG_FILE, {**cfg, "weights_sha256": sha256_file(tmp / WEIGHTS_FILE)})
        if not path.exists():
            os.replace(tmp, path)
        else:  # move the old one aside, put the new one in, and only then delete the old one
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            os.replace(path, old / "cc")
            try:
                os.replace(tmp, path)
            except OSError:
                os.replace(old / "cc", path)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        fsync_dir(path.parent)
    except OSError as exc:
        raise _cannot_save(path, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _cannot_save(path: Path, exc: OSError) -> CrosscoderError:
    return CrosscoderError(f"cannot save the crosscoder in {str(path)!r}: {exc.strerror or exc}")


def _replaceable(path: Path) -> bool:
    """An empty directory, or one holding a crosscoder (and nothing else)."""
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    return names <= {CFG_FILE, WEIGHTS_FILE}


def read_crosscoder(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``cfg.json`` and the weights of a directory written by :func:`write_crosscoder`, checked.

    Returns:
        ``(cfg, tensors)``: the checked ``cfg.json`` fields and the five weight tensors.

    Raises:
        CrosscoderError: a missing directory or file, unreadable or ill-formed ``cfg.json``,
            weights whose sha256 or shapes differ from ``cfg.json``.

    Example:
        >>> read_crosscoder("/no")
        Traceback (most recent call last):
        ...
        interp.errors.CrosscoderError: '/no' is not a crosscoder directory: cfg.json is missing
    """
    from safetensors import safe_open

    path = Path(path)
    for name in (CFG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise CrosscoderError(f"{str(path)!r} is not a crosscoder directory: {name} is missing")
    where = f"cannot load the crosscoder in {str(path)!r}:"
    try:
        cfg = json.loads((path / CFG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CrosscoderError(f"{where} {CFG_FILE} is not readable JSON ({_one_line(exc)})") from None
    problem = _cfg_problem(cfg)
    if problem:
        raise CrosscoderError(f"{where} {CFG_FILE} {problem}")
    if sha256_file(path / WEIGHTS_FILE) != cfg["weights_sha256"]:
        raise CrosscoderError(
            f"{where} {WEIGHTS_FILE} does not match the sha256 in {CFG_FILE} (corrupt or replaced)"
        )
    m, d, n = cfg["n_models"], cfg["d_model"], cfg["n_latents"]
    want = {"W_enc": [m, d, n], "b_enc": [n], "W_dec": [m, n, d], "b_dec": [m, d], "fire_count": [n]}
    try:
        with safe_open(str(path / WEIGHTS_FILE), framework="pt") as fh:
            shapes = {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}  # header only
            if shapes != want:
                raise CrosscoderError(f"{where} {WEIGHTS_FILE} holds {shapes}; {CFG_FILE} needs {want}")
            tensors = {k: fh.get_tensor(k) for k in want}
    except CrosscoderError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise CrosscoderError(
            f"{where} {WEIGHTS_FILE} is not readable safetensors ({_one_line(exc)})"
        ) from None
    return cfg, tensors


def _cfg_problem(cfg: Any) -> str | None:
    """What is wrong with a ``cfg.json``'s fields, or None."""
    if not isinstance(cfg, dict):
        return f"holds a {type(cfg).__name__}, not an object"
    if cfg.get("format") != FORMAT:
        return f"has format {cfg.get('format')!r}, not {FORMAT!r}"
    for key in ("n_models", "d_model", "n_latents", "k"):
        v = cfg.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            return f"has {key}={v!r}; expected a positive int"
    labels = cfg.get("labels")
    if (
        not isinstance(labels, list)
        or len(labels) != cfg["n_models"]
        or not all(isinstance(x, str) for x in labels)
    ):
        return f"has labels={labels!r}; expected {cfg['n_models']} names"
    checks = (
        ("hook", str | None),
        ("models", dict),
        ("threshold", int | float | None),
        ("config", dict | None),
        ("training", dict),
        ("weights_sha256", str),
    )
    for key, kind in checks:
        if key not in cfg or not isinstance(cfg[key], kind) or isinstance(cfg[key], bool):
            return f"has {key}={cfg.get(key)!r}, which is not a valid value"
    return None
