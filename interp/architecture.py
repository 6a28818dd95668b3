"""What kind of network a model is, beyond its weights: the identity artifacts are checked against.

A weight fingerprint says *which* model; :func:`architecture_of` says *what kind*: the
underlying architecture (the Hugging Face ``model_type`` behind a ``TransformerBridge``, or
``"hooked_transformer"`` with the config fields that shape its computation), the sizes, and a
hash of the tokenizer's vocabulary. Two models with equal architectures but other weights (a
base model and its fine-tune) can share steering vectors and SAEs; two architectures cannot,
even when every size agrees (a GPT-2 and a Llama of the same width).
"""

import weakref
from typing import Any

from interp.fingerprint import tokenizer_hash

HOOKED_TRANSFORMER = "hooked_transformer"
# What a cache manifest's model description (Model.describe) shares with an architecture, and
# all that steering vectors saved before the full check recorded.
SUMMARY_KEYS = ("class", "n_layers", "d_model", "d_vocab")
# Fields of a HookedTransformerConfig that change what the residual stream means at equal sizes.
_HOOKED_FIELDS = ("act_fn", "normalization_type", "positional_embedding_type")


def architecture_of(model) -> dict[str, Any]:
    """The architecture of a model: family, class, sizes and vocabulary hash.

    Args:
        model: a :class:`interp.models.Model`, ``TransformerBridge`` or ``HookedTransformer``.

    Returns:
        A JSON-able dict: ``model_type`` (the Hugging Face config's ``model_type`` for a
        bridge, ``"hooked_transformer"`` for a HookedTransformer), ``class`` (the module class),
        ``n_layers``, ``d_model``, ``n_heads``, ``d_vocab``, ``vocab`` (``sha256:`` of the
        tokenizer's vocabulary; ``None`` without a tokenizer) and, for a HookedTransformer,
        ``act_fn``, ``normalization_type`` and ``positional_embedding_type``.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=4, d_head=4, d_vocab=5, act_fn="relu")
        >>> arch = architecture_of(HookedTransformer(cfg))
        >>> arch["model_type"], arch["n_layers"], arch["act_fn"], arch["vocab"]
        ('hooked_transformer', 1, 'relu', None)
    """
    from interp.models import as_model

    m = as_model(model)
    module, cfg = m.module, m.cfg
    arch: dict[str, Any] = {
        "model_type": _model_type(module),
        "class": type(module).__name__,
        "n_layers": m.n_layers,
        "d_model": m.d_model,
        "n_heads": int(cfg.n_heads),
        "d_vocab": m.d_vocab,
        "vocab": _vocab_hash(m.tokenizer) if m.tokenizer is not None else None,
    }
    if arch["model_type"] == HOOKED_TRANSFORMER:
        arch.update({k: _plain(getattr(cfg, k, None)) for k in _HOOKED_FIELDS})
    return arch


def architecture_of_cache(cache, model=None) -> dict[str, Any]:
    """The architecture of the model an activation cache was built from.

    The manifest's own record (``model.architecture``) if it has one; else that of ``model``,
    checked to be the cache's model; else the sizes every manifest records (``class``,
    ``n_layers``, ``d_model``, ``d_vocab``: :data:`SUMMARY_KEYS`).

    Args:
        cache: an opened :class:`interp.cache.Cache`.
        model: the cache's own model, if loaded.

    Raises:
        ModelMismatchError: ``model`` is not the model the cache was built from.
    """
    described = cache.manifest["model"]
    if model is not None:
        cache.check_model(model)
    recorded = described.get("architecture")
    if isinstance(recorded, dict):
        return recorded
    if model is not None:
        return architecture_of(model)
    return {k: described[k] for k in SUMMARY_KEYS if k in described}


def _model_type(module) -> str:
    from transformer_lens import HookedTransformer

    if isinstance(module, HookedTransformer):
        return HOOKED_TRANSFORMER
    # A TransformerBridge keeps the Hugging Face model it wraps, config included.
    config = getattr(getattr(module, "original_model", None), "config", None)
    model_type = getattr(config, "model_type", None)
    if isinstance(model_type, str) and model_type:
        return model_type
    return str(getattr(module.cfg, "architecture", None) or type(module).__name__)


# A sweep checks the model before every steered pass; a 150k vocabulary takes 0.25 s to hash.
_VOCAB_HASHES: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def _vocab_hash(tok) -> str:
    key = getattr(tok, "tok", tok)  # an HFTokenizer is a fresh wrapper around the same tokenizer
    try:
        return _VOCAB_HASHES[key]
    except (KeyError, TypeError):
        pass
    digest = tokenizer_hash(tok.get_vocab())
    try:
        _VOCAB_HASHES[key] = digest
    except TypeError:  # not weak-referenceable: hashed again next time
        pass
    return digest


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def compare_architectures(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The differences between two architectures, over the keys both record.

    A key one side lacks (an older, shorter record) or records as ``None`` (no tokenizer) is
    not compared.

    Args:
        a: an architecture from :func:`architecture_of` (or an older record of one).
        b: another.

    Returns:
        One ``"key: a-value vs b-value"`` string per differing key, in key order; empty when the
        two agree.

    Example:
        >>> gpt2, llama = {"model_type": "gpt2", "d_model": 32}, {"model_type": "llama", "d_model": 32}
        >>> compare_architectures(gpt2, llama)
        ["model_type: 'gpt2' vs 'llama'"]
    """
    return [
        f"{key}: {a[key]!r} vs {b[key]!r}"
        for key in sorted(set(a) & set(b))
        if a[key] is not None and b[key] is not None and a[key] != b[key]
    ]


def architecture_summary(arch: dict[str, Any]) -> str:
    """A few words for messages: ``"gpt2, 2 layers, d_model 32"``.

    Example:
        >>> architecture_summary({"model_type": "llama", "n_layers": 2, "d_model": 32})
        'llama, 2 layers, d_model 32'
    """
    kind = arch.get("model_type") or arch.get("class") or "unknown architecture"
    return f"{kind}, {arch.get('n_layers')} layers, d_model {arch.get('d_model')}"
