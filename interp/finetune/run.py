"""``finetune``: load a parent checkpoint, build the data, train, and save a checkpoint per dose."""

import gc
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interp.errors import SpecError
from interp.finetune.checkpoints import (
    CARD_VERSION,
    dose_dir,
    parent_tensors,
    read_card,
    relative_change,
    reusable,
    write_checkpoint,
)
from interp.finetune.config import FinetuneConfig, FinetuneError
from interp.finetune.data import TrainingData, build_data
from interp.finetune.sft import TrainState, train

log = logging.getLogger(__name__)

LOSS_WINDOW = 10  # the "loss" of a dose is the mean of its last steps' losses


def resolve_parent(parent: "str | Path") -> tuple[str, Path]:
    """The spec to load a parent by and its Hugging Face folder.

    Accepts ``hf:DIR``, ``gguf:PATH[#FILE]``, a named real model (``smollm2``) or a plain folder.

    Raises:
        FinetuneError: another kind of spec (an organism, a TransformerLens name).
        SpecError: the folder or GGUF file does not exist, or the named model is not installed.
    """
    from interp import real_model

    text = str(parent)
    kind, sep, rest = text.partition(":")
    if isinstance(parent, Path) or (not sep and text not in real_model.NAMED_MODELS):
        return f"hf:{text}", Path(text).expanduser()
    if not sep:
        return text, real_model.checkpoint_for_gguf(real_model.named_gguf(text))
    if kind == "gguf":
        return text, real_model.checkpoint_for_gguf(real_model.parse_gguf_spec(rest))
    if kind == "hf" and rest:
        return text, Path(rest).expanduser()
    raise FinetuneError(
        f"model {text!r} cannot be fine-tuned here; expected a Hugging Face checkpoint: hf:DIR, "
        f"gguf:PATH[#FILE] or a named model ({', '.join(sorted(real_model.NAMED_MODELS))}) "
        "(organism models are trained by `interp organism build`)"
    )


def finetune(
    parent: "str | Path",
    config: FinetuneConfig,
    out_dir: "str | Path",
    *,
    device: str | None = None,
    progress: bool = True,
    task: Any = None,
    facts: Any = None,
) -> list[Path]:
    """Fine-tune a Hugging Face causal LM and save a checkpoint at every dose.

    A dose folder that holds a finished checkpoint of this very run (same settings, same
    parent, files unchanged) is reused as it is; when every dose is there nothing is trained.

    Args:
        parent: ``hf:DIR``, ``gguf:PATH[#FILE]``, a named model (``smollm2``) or a folder.
        config: the run's settings.
        out_dir: where the dose folders ``step-NNNNN`` go (made if needed; one run at a time).
        device: where to train (default ``cpu``; off the CPU, runs are not bit-reproducible).
        progress: progress bars.
        task: the task whose ``train`` split is trained on (default: the built-in arithmetic
            task, ``config.n_train`` problems drawn with ``config.seed``).
        facts: the known facts to rehearse from, a task with splits ``rehearsed`` and
            ``heldout`` (default: :func:`interp.tasks.facts.known_facts` of the parent); used
            only when ``config.rehearse_facts > 0``.

    Returns:
        The dose folders, one per step of ``config.all_doses``, ascending; each loads with
        ``load_model(f"hf:{path}")`` and holds ``finetune_card.json``.

    Raises:
        FinetuneError: a bad setting or parent, data with no usable example, held-out facts in
            the data, or a dose folder that holds another run's checkpoint.
        SpecError: the parent cannot be loaded.
        CacheError: another run holds ``out_dir``'s lock.

    Example:
        >>> finetune("organism:base", FinetuneConfig(steps=1), "/tmp/never-made")
        Traceback (most recent call last):
        ...
        interp.finetune.config.FinetuneError: model 'organism:base' cannot be fine-tuned here; ...
    """
    from interp.cache.lock import build_lock
    from interp.models import load_model

    if not isinstance(config, FinetuneConfig):
        raise FinetuneError(f"config is a {type(config).__name__}; expected a FinetuneConfig")
    device = device or "cpu"
    spec, folder = resolve_parent(parent)
    out = _output_dir(out_dir)
    parent_model = load_model(spec, device=device, dtype=config.dtype, trust_remote_code=False)
    parent_fp = parent_model.fingerprint
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with build_lock(out):
            todo = [s for s in config.all_doses if reusable(dose_dir(out, s), config, parent_fp, s) is None]
            if not todo:
                log.info("%s: every dose of this run is there; nothing to train", out)
                return [dose_dir(out, s) for s in config.all_doses]
            data = build_data(parent_model, config, task=task, facts=facts, progress=progress)
            tokenizer = parent_model.tokenizer.tok
            pad_id = parent_model.pad_token_id
            base = _parent_record(spec, folder, parent_fp)
            del parent_model  # the bridge's copy of the weights is not needed for training
            gc.collect()
            model = _load_trainable(folder, spec, config.dtype, device)
            reference = parent_tensors(folder)
            started = time.perf_counter()

            def save(state: TrainState) -> None:
                if state.step not in todo:
                    return
                card = _card(config, base, data, state, relative_change(model, reference), device)
                card["wall_seconds"] = round(time.perf_counter() - started, 2)
                written = write_checkpoint(model, tokenizer, dose_dir(out, state.step), card)
                log.info(
                    "saved %s (loss %s, relative change %.2e)",
                    dose_dir(out, state.step).name,
                    written["loss"],
                    written["relative_change"]["overall"],
                )

            train(model, data, config, pad_id, save, until=max(todo), progress=progress, device=device)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)
        raise
    return [dose_dir(out, s) for s in config.all_doses]


def _output_dir(out_dir: "str | Path") -> Path:
    from interp.commands import output_dir
    from interp.errors import CommandLineError

    try:
        return output_dir(out_dir, flag="out_dir")
    except CommandLineError as exc:
        raise FinetuneError(str(exc)) from None


def _parent_record(spec: str, folder: Path, fingerprint: str) -> dict[str, Any]:
    from interp import real_model
    from interp.models import portable_spec

    parent_card = read_card(folder)
    name = (parent_card or {}).get("name") or real_model.checkpoint_name(folder) or _config_name(folder)
    record = {"spec": portable_spec(spec), "name": name, "fingerprint": fingerprint}
    if parent_card is not None:  # a fine-tune of a fine-tune: keep the lineage
        record["method"] = parent_card.get("method")
        record["parent"] = parent_card.get("parent")
    return record


def _config_name(folder: Path) -> str:
    import json

    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        name = cfg.get("_name_or_path") or cfg.get("_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        name = None
    return str(name) if name else folder.name


def _load_trainable(folder: Path, spec: str, dtype: str, device: str) -> nn.Module:
    """The parent as a plain ``transformers`` model (its folder was checked by ``load_model``)."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder),
            dtype=getattr(torch, dtype),
            use_safetensors=True,
            local_files_only=True,
            trust_remote_code=False,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise SpecError(f"{spec!r}: the weights do not load for training ({exc})") from None
    return model.to(device).eval()


def _card(
    config: FinetuneConfig,
    parent: dict[str, Any],
    data: TrainingData,
    state: TrainState,
    change: dict[str, Any],
    device: str,
) -> dict[str, Any]:
    from interp import __version__

    window = state.losses[-LOSS_WINDOW:]
    return {
        "card_version": CARD_VERSION,
        "name": f"{parent['name']}+{config.method}@{state.step}",
        "method": config.method,
        "config": config.to_dict(),
        "parent": parent,
        "step": state.step,
        "seconds": round(state.seconds, 2),
        "loss": round(sum(window) / len(window), 4) if window else None,
        "loss_curve": [round(x, 4) for x in state.losses],
        "step_seconds": [round(x, 3) for x in state.step_seconds],
        "data": data.describe(),
        "relative_change": change,
        "device": device,
        "package_version": __version__,
    }
