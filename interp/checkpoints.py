"""Checks on a Hugging Face checkpoint folder before anything in it is loaded or run.

A folder is read as data: its JSON configs are searched for code it would import
(``auto_map``, ``trust_remote_code``), its ``model_type`` must be a decoder-only causal LM of
:data:`CAUSAL_LM_FAMILIES`, its weights must be safetensors (never unpickled) whose headers
account for every parameter the config describes, all before a weight is allocated. Every
refusal is one line (:class:`~interp.errors.CheckpointError` or
:class:`~interp.errors.RemoteCodeError`).
"""

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interp.errors import CheckpointError, RemoteCodeError

log = logging.getLogger(__name__)

TRUST_REMOTE_CODE_ENV = "INTERP_TRUST_REMOTE_CODE"

# model_type -> (family, the causal-LM class of that family). Each is booted as a tiny random
# model and compared with plain ``transformers`` in tests/interp/test_models.py.
CAUSAL_LM_FAMILIES: dict[str, tuple[str, str]] = {
    "gpt2": ("GPT-2", "GPT2LMHeadModel"),
    "gpt_neox": ("GPT-NeoX/Pythia", "GPTNeoXForCausalLM"),
    "llama": ("Llama", "LlamaForCausalLM"),
    "mistral": ("Mistral", "MistralForCausalLM"),
    "qwen2": ("Qwen2", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3", "Qwen3ForCausalLM"),
    "gemma": ("Gemma", "GemmaForCausalLM"),
    "gemma2": ("Gemma 2", "Gemma2ForCausalLM"),
    "phi3": ("Phi-3", "Phi3ForCausalLM"),
    "olmo2": ("OLMo 2", "Olmo2ForCausalLM"),
    "stablelm": ("StableLM", "StableLmForCausalLM"),
}
# The JSON files of a Hugging Face folder that can name code to import.
HF_CONFIG_FILES = (
    "config.json",
    "tokenizer_config.json",
    "generation_config.json",
    "processor_config.json",
    "preprocessor_config.json",
)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def _oneline(exc: BaseException, limit: int = 200) -> str:
    """A library error's message on one line (whitespace collapsed), cut at ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_hf_configs(folder: Path, spec: str) -> dict[str, dict[str, Any]]:
    out = {}
    for name in HF_CONFIG_FILES:
        f = folder / name
        if not f.is_file():
            continue
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{spec!r}: {name} is not readable JSON ({_oneline(exc)})") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{spec!r}: {name} holds a {type(data).__name__}; expected a JSON object")
        out[name] = data
    return out


def _remote_code_keys(obj: Any, where: str = "") -> list[str]:
    """Paths of ``auto_map`` entries and true ``trust_remote_code`` values, at any depth."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            here = f"{where}.{k}" if where else str(k)
            if k == "auto_map" or (k == "trust_remote_code" and v):
                found.append(here)
            else:
                found += _remote_code_keys(v, here)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _remote_code_keys(v, f"{where}[{i}]")
    return found


def _check_remote_code(configs: dict[str, dict[str, Any]], folder: Path, spec: str, trust: bool) -> None:
    for name, data in configs.items():
        keys = _remote_code_keys(data)
        if not keys:
            continue
        if not trust:
            raise RemoteCodeError(
                f"{spec!r}: {name} asks to run code from the model folder ({', '.join(keys)}); "
                f"refused. Allow it only for a folder you trust: --trust-remote-code "
                f"(or trust_remote_code=True, or {TRUST_REMOTE_CODE_ENV}=1)"
            )
        log.warning("%s: running code from %s (%s in %s): remote code was allowed", spec, folder, keys, name)


def _check_causal_lm(cfg: dict[str, Any], spec: str) -> None:
    # Decided by model_type and architectures: ``is_decoder`` marks an encoder (BERT) used as a
    # decoder and is false in every causal LM's config, so it says nothing here.
    model_type = cfg.get("model_type")
    archs = cfg.get("architectures") or []
    archs = [str(a) for a in archs] if isinstance(archs, list) else [str(archs)]
    supported = ", ".join(f"{fam} ({mt})" for mt, (fam, _) in CAUSAL_LM_FAMILIES.items())
    known = isinstance(model_type, str) and model_type in CAUSAL_LM_FAMILIES
    if not known or cfg.get("is_encoder_decoder"):
        raise CheckpointError(
            f"{spec!r}: model_type {model_type!r} (architectures {archs}) is not a decoder-only "
            f"causal LM family this toolkit supports; supported: {supported}"
        )
    expected = CAUSAL_LM_FAMILIES[model_type][1]
    other = [a for a in archs if a != expected]
    if other:
        raise CheckpointError(
            f"{spec!r}: architecture {other[0]!r} is not the causal LM of model_type "
            f"{model_type!r}; expected {expected!r}"
        )


def _safetensors_files(folder: Path, spec: str) -> list[Path]:
    """The checkpoint's safetensors files, each with a complete header and body."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(
                f"{spec!r}: {index.name} is not a safetensors index with a weight_map ({_oneline(exc)})"
            ) from None
        bad = [n for n in names if not isinstance(n, str) or Path(n).name != n]
        if bad:
            raise CheckpointError(f"{spec!r}: {index.name} names a shard outside the folder: {bad[0]!r}")
        files = [folder / n for n in names]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise CheckpointError(f"{spec!r}: {index.name} names a shard that is not there: {absent[0]}")
    else:
        pickles = sorted(f.name for f in folder.iterdir() if f.suffix in _PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(
                f"{spec!r}: the weights are pickled ({', '.join(pickles[:3])}) and were not opened: only "
                "safetensors checkpoints load; re-save them with save_pretrained(safe_serialization=True)"
            )
        raise CheckpointError(
            f"{spec!r}: no weights in {str(folder)!r}: expected model.safetensors "
            "(or model.safetensors.index.json and its shards)"
        )
    from safetensors import safe_open

    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                st.keys()
        except Exception as exc:  # safetensors raises its own error type, OSError or ValueError
            raise CheckpointError(
                f"{spec!r}: {f.name} is not a complete safetensors file (truncated or corrupt: "
                f"{_oneline(exc)})"
            ) from None
    return files


def _stored_numel(files: list[Path]) -> int:
    from safetensors import safe_open

    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                n = 1
                for d in st.get_slice(k).get_shape():
                    n *= int(d)
                total += n
    return total


def _hf_config(folder: Path, spec: str, trust: bool) -> Any:
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, StrictDataclassError) as exc:
        raise CheckpointError(
            f"{spec!r}: config.json does not describe a model ({_oneline(exc)})"
        ) from None


def _load_hf_tokenizer(folder: Path, spec: str, trust: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{spec!r}: no usable tokenizer in {str(folder)!r} ({_oneline(exc)})"
        ) from None


def _load_hf_weights(
    folder: Path, spec: str, config: Any, files: list[Path], dtype: torch.dtype, trust: bool
) -> nn.Module:
    """The Hugging Face model, from safetensors only, refusing a config the weights do not fill."""
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):  # sizes from the config, checked before anything is allocated
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust)
    except (ValueError, TypeError, KeyError, AttributeError, ZeroDivisionError) as exc:
        raise CheckpointError(
            f"{spec!r}: config.json does not describe a model ({_oneline(exc)})"
        ) from None
    wanted, stored = sum(p.numel() for p in skeleton.parameters()), _stored_numel(files)
    del skeleton
    if wanted > stored:
        raise CheckpointError(
            f"{spec!r}: config.json describes {wanted:,} parameters but the safetensors files hold "
            f"{stored:,} values; the config does not belong to these weights"
        )
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            str(folder),
            config=config,
            dtype=dtype,
            attn_implementation="eager",  # hooks see attention patterns only in eager mode
            use_safetensors=True,
            local_files_only=True,
            trust_remote_code=trust,
            output_loading_info=True,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{spec!r}: the weights do not load ({_oneline(exc)})") from None
    for what in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(map(str, info.get(what) or ()))
        if keys:
            raise CheckpointError(
                f"{spec!r}: the weights do not fit config.json: {len(keys)} {what.replace('_', ' ')} "
                f"(e.g. {keys[0]})"
            )
    return model.eval()


# --- organism: ------------------------------------------------------------------------------
