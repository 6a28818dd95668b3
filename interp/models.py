"""One loader for every model source, and the :class:`Model` handle the toolkit passes around.

A :class:`Model` holds a TransformerLens module (``HookedTransformer`` or
``TransformerBridge``: the rest of the toolkit does not care which), its tokenizer, the spec it
was loaded from, and a fingerprint of its weights.
"""

import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp.errors import SpecError
from interp.fingerprint import fingerprint_module
from interp.tokenizers import HFTokenizer, Tokenizer, hash_tokenizer, pad_id

log = logging.getLogger(__name__)

SPEC_KINDS = ("hf:PATH", "tl:NAME", "organism:NAME")


class Model:
    """A loaded model: TransformerLens module, tokenizer, spec and weight fingerprint.

    Args:
        module: a ``HookedTransformer`` or ``TransformerBridge`` (anything with ``hook_dict``).
        tokenizer: turns text into token ids; ``None`` for models fed token tensors only.
        spec: where it came from (``hf:PATH``, ``tl:NAME``, ``organism:NAME`` or a label).

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=4, d_head=4, d_vocab=5, act_fn="relu")
        >>> m = Model(HookedTransformer(cfg), tokenizer=None, spec="tiny")
        >>> m.n_layers, m.fingerprint.startswith("sha256:")
        (1, True)
    """

    def __init__(self, module: nn.Module, tokenizer: Tokenizer | None, spec: str) -> None:
        if not hasattr(module, "hook_dict"):
            raise TypeError(
                f"expected a TransformerLens model (HookedTransformer or TransformerBridge), "
                f"got {type(module).__name__}"
            )
        self.module = module.eval()
        self.tokenizer = tokenizer
        self.spec = spec

    def __repr__(self) -> str:
        return f"Model(spec={self.spec!r}, layers={self.n_layers}, d_model={self.d_model})"

    @cached_property
    def fingerprint(self) -> str:
        """``sha256:`` of the weights' names, shapes, dtypes and bytes (computed once)."""
        return fingerprint_module(self.module)

    def refresh_fingerprint(self) -> str:
        """Recompute the fingerprint after the weights changed in place."""
        self.__dict__.pop("fingerprint", None)
        return self.fingerprint

    @property
    def cfg(self) -> Any:
        return self.module.cfg

    @property
    def n_layers(self) -> int:
        return int(self.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.cfg.d_model)

    @property
    def d_vocab(self) -> int:
        return int(self.cfg.d_vocab)

    @property
    def n_ctx(self) -> int:
        return int(self.cfg.n_ctx)

    @property
    def device(self) -> torch.device:
        p = next(self.module.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def hook_points(self) -> dict[str, nn.Module]:
        """Every TransformerLens hook name (aliases included) and its hook point."""
        return dict(self.module.hook_dict)

    @property
    def hook_names(self) -> list[str]:
        return sorted(self.module.hook_dict)

    @property
    def pad_token_id(self) -> int:
        return pad_id(self.tokenizer)

    def tokenizer_hash(self) -> str | None:
        return hash_tokenizer(self.tokenizer) if self.tokenizer is not None else None

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise SpecError(f"model {self.spec!r} has no tokenizer: pass token ids instead of text")
        return list(self.tokenizer.encode(text))

    def decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            raise SpecError(f"model {self.spec!r} has no tokenizer to decode with")
        return self.tokenizer.decode(list(ids))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab"]:
        return self.module(tokens.to(self.device))

    __call__ = forward

    def describe(self) -> dict[str, Any]:
        """Identity and architecture, as recorded in cache manifests."""
        return {
            "spec": portable_spec(self.spec),
            "fingerprint": self.fingerprint,
            "class": type(self.module).__name__,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "d_vocab": self.d_vocab,
            "n_ctx": self.n_ctx,
            "dtype": str(next(self.module.parameters()).dtype).removeprefix("torch."),
        }


def portable_spec(spec: str) -> str:
    """The spec without host paths: ``hf:/home/me/ckpt/gpt2`` becomes ``hf:gpt2``.

    Example:
        >>> portable_spec("hf:/data/models/gpt2"), portable_spec("organism:base")
        ('hf:gpt2', 'organism:base')
    """
    kind, sep, rest = spec.partition(":")
    if sep and kind == "hf":
        return f"hf:{Path(rest.rstrip('/')).name}"
    return spec


def as_model(model: "Model | nn.Module", spec: str | None = None) -> Model:
    """Wrap an already-built TransformerLens model (or return a :class:`Model` unchanged)."""
    if isinstance(model, Model):
        return model
    tok = getattr(model, "tokenizer", None)
    if tok is not None and not isinstance(tok, Tokenizer):
        prepend = bool(getattr(getattr(model, "cfg", None), "default_prepend_bos", False))
        tok = HFTokenizer(tok, prepend_bos=prepend and _is_hooked_transformer(model))
    return Model(model, tok, spec or f"module:{type(model).__name__}")


def _is_hooked_transformer(module: nn.Module) -> bool:
    from transformer_lens import HookedTransformer

    return isinstance(module, HookedTransformer)


def _default_device(device: str | torch.device | None) -> str:
    if device is not None:
        return str(device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    allowed = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in allowed:
        raise SpecError(f"unknown dtype {dtype!r}; expected one of {sorted(allowed)}")
    return allowed[dtype]


def load_model(
    spec: "str | Model | nn.Module",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> Model:
    """Load a model by spec string, or wrap one already built.

    Args:
        spec: ``hf:PATH`` (a local Hugging Face directory, loaded offline), ``tl:NAME`` (a
            TransformerLens pretrained name; downloads from the hub), ``organism:NAME`` (the
            built-in zoo), or a ``HookedTransformer`` / ``TransformerBridge`` / :class:`Model`.
        device: defaults to CUDA when available, else CPU.
        dtype: ``float32`` (default), ``bfloat16`` or ``float16``.

    Returns:
        A :class:`Model`.

    Raises:
        SpecError: the spec has no known prefix, or its path or name does not exist.
    """
    if not isinstance(spec, str):
        return as_model(spec)
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise SpecError(f"model spec {spec!r} has no source prefix; expected one of {SPEC_KINDS}")
    dev, dt = _default_device(device), _dtype(dtype)
    if kind == "hf":
        return _load_hf(rest, spec, dev, dt)
    if kind == "tl":
        from transformer_lens import HookedTransformer

        module = HookedTransformer.from_pretrained(rest, device=dev, dtype=dt)
        return as_model(module, spec=spec)
    if kind == "organism":
        return _load_organism(rest, spec, dev, dt)
    raise SpecError(f"unknown model source {kind!r} in {spec!r}; expected one of {SPEC_KINDS}")


def _load_hf(path: str, spec: str, device: str, dtype: torch.dtype) -> Model:
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise SpecError(
            f"{spec!r}: {str(p)!r} is not a Hugging Face model directory (no config.json there)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory must never reach the hub
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(p), device=device, dtype=dtype)
    return Model(bridge, HFTokenizer(bridge.tokenizer), spec)


def _load_organism(name: str, spec: str, device: str, dtype: torch.dtype) -> Model:
    try:
        from interp.organism import load_organism
    except ImportError as exc:
        raise SpecError(
            f"{spec!r}: the built-in model organism is not available in this install ({exc})"
        ) from None
    module, tokenizer = load_organism(name)
    # HookedTransformer.to takes one target at a time and prints unless told not to.
    module = module.to(device, print_details=False)
    if dtype != torch.float32:
        module = module.to(dtype, print_details=False)
    return Model(module, tokenizer, spec)
