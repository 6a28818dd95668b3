"""Fine-tuned checkpoints on disk: one Hugging Face folder per dose, with a ``finetune_card.json``.

Layout of an output directory::

    step-00025/  config.json generation_config.json model.safetensors tokenizer files
                 chat_template.jinja finetune_card.json
    step-00050/  ...

A dose folder is written under a temporary name and renamed when complete, so a killed run
leaves no folder that looks finished. Its card records the run's settings, the parent's and its
own fingerprint (the hash :func:`interp.models.load_model` gives the folder), the sha256 of every
file, the training loss curve, a hash of the data and the relative weight change. A rerun reuses
a folder only when its card says the same run (same settings, same parent) and every file still
has the recorded hash.
"""

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interp.atomic import atomic_write_json, fsync_dir
from interp.finetune.config import FinetuneConfig, FinetuneError
from interp.fingerprint import sha256_file

log = logging.getLogger(__name__)

CARD = "finetune_card.json"
CARD_VERSION = 1
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def dose_dir(out: Path, step: int) -> Path:
    """``out/step-00025``: the folder of the checkpoint after ``step`` optimizer steps."""
    return Path(out) / f"step-{step:05d}"


def read_card(folder: Path) -> dict[str, Any] | None:
    """The card of a dose folder, or ``None`` when it has none or it is not a JSON object."""
    try:
        card = json.loads((Path(folder) / CARD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return card if isinstance(card, dict) else None


def reusable(
    folder: Path, config: FinetuneConfig, parent_fingerprint: str, step: int
) -> dict[str, Any] | None:
    """The card of a finished checkpoint of this very run at ``step``, or ``None`` to redo it.

    A folder whose files no longer match their recorded sha256 is redone (with a warning).

    Raises:
        FinetuneError: the folder holds a checkpoint of another run (other settings or another
            parent): it is never overwritten.
    """
    card = read_card(folder)
    if card is None or not isinstance(card.get("config"), dict):
        return None
    try:
        theirs = FinetuneConfig.from_dict(card["config"]).run_key()
    except (FinetuneError, TypeError):
        return None
    parent = (card.get("parent") or {}).get("fingerprint")
    if theirs != config.run_key() or parent != parent_fingerprint or card.get("step") != step:
        diff = _first_difference(theirs, config.run_key())
        why = diff or f"parent {parent} != {parent_fingerprint}"
        raise FinetuneError(
            f"{str(folder)!r} holds a checkpoint of another run ({why}); "
            "give another --out or delete that folder"
        )
    files = card.get("files")
    if not isinstance(files, dict) or not files:
        return None
    for name, digest in files.items():
        path = folder / name
        if Path(name).name != name or not path.is_file() or sha256_file(path) != digest:
            log.warning("%s: %s does not match its recorded sha256; training that dose again", folder, name)
            return None
    return card


def _first_difference(theirs: dict[str, Any], ours: dict[str, Any]) -> str:
    for key in sorted(set(theirs) | set(ours)):
        if theirs.get(key) != ours.get(key):
            return f"{key} {theirs.get(key)!r} there, {ours.get(key)!r} here"
    return ""


def write_checkpoint(model: nn.Module, tokenizer: Any, folder: Path, card: dict[str, Any]) -> dict[str, Any]:
    """Save ``model`` and ``tokenizer`` as a Hugging Face folder with its card, atomically.

    The fingerprint is that of the saved folder loaded back through
    :func:`interp.models.load_model`, so it is the one caches and SAEs of this checkpoint cite.

    Returns:
        The card as written (``card`` plus ``fingerprint`` and ``files``).
    """
    from interp.models import load_model

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        loaded = load_model(f"hf:{tmp}", device="cpu", dtype=next(model.parameters()).dtype)
        card = {**card, "fingerprint": loaded.fingerprint}
        del loaded
        card["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_json(tmp / CARD, card)
        _replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return card


def _replace_dir(tmp: Path, folder: Path) -> None:
    """Rename ``tmp`` to ``folder``; an unfinished ``folder`` left by a killed run is removed."""
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    if folder.exists():
        os.replace(folder, old)
    try:
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(folder.parent)


def parent_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """The parent checkpoint's weights, read from its safetensors files (float32, CPU)."""
    from safetensors import safe_open

    from interp.checkpoints import _safetensors_files

    out: dict[str, torch.Tensor] = {}
    for f in _safetensors_files(Path(folder), f"hf:{folder}"):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                out[k] = st.get_tensor(k).float()
    return out


def relative_change(model: nn.Module, parent: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``||W - W_parent|| / ||W_parent||`` over all weights and per transformer layer.

    Weights are grouped by the layer index in their name (``model.layers.{L}.``): ``per_layer[L]``
    is the change of layer ``L``'s weights; the rest (embeddings, final norm, an untied
    unembedding) form ``other``. Tied weights count once.

    Raises:
        FinetuneError: a weight of the model is missing from the parent or has another shape.
    """
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for name, p in model.named_parameters():  # tied parameters are listed once
        ref = parent.get(name)
        if ref is None or tuple(ref.shape) != tuple(p.shape):
            raise FinetuneError(
                f"weight {name!r} is not in the parent checkpoint with shape {tuple(p.shape)}"
            )
        m = _LAYER.search(name)
        group = m.group(1) if m else "other"
        w = p.detach().float().cpu()
        num[group] = num.get(group, 0.0) + float((w - ref).pow(2).sum())
        den[group] = den.get(group, 0.0) + float(ref.pow(2).sum())
    n_layers = 1 + max((int(g) for g in num if g != "other"), default=-1)
    per_layer = [_ratio(num.get(str(i), 0.0), den.get(str(i), 0.0)) for i in range(n_layers)]
    return {
        "overall": _ratio(sum(num.values()), sum(den.values())),
        "per_layer": per_layer,
        "other": _ratio(num.get("other", 0.0), den.get("other", 0.0)),
    }


def _ratio(num: float, den: float) -> float:
    return (num**0.5) / (den**0.5) if den > 0 else 0.0
