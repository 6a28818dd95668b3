"""Tiny random HookedTransformers that several test modules build (2 layers, d_model 32, 4 heads)."""

from transformer_lens import HookedTransformer, HookedTransformerConfig


def tiny_hooked(d_vocab: int, *, kind: str = "ln", seed: int = 0, **overrides) -> HookedTransformer:
    """A tiny model in eval mode: ``kind`` ``"ln"`` (GPT-2-like: LayerNorm, GELU, learned positions)
    or ``"rotary"`` (Llama-like: RMS norm, SiLU, rotary positions); ``overrides`` replace any
    config value (e.g. ``n_layers=3``, ``gated_mlp=True``)."""
    shapes = {
        "ln": {"act_fn": "gelu", "normalization_type": "LN"},
        "rotary": {
            "act_fn": "silu",
            "normalization_type": "RMS",
            "positional_embedding_type": "rotary",
            "rotary_dim": 8,
        },
    }
    if kind not in shapes:
        raise ValueError(f"kind={kind!r}; expected one of {sorted(shapes)}")
    values = {"n_layers": 2, "d_model": 32, "n_ctx": 32, "d_head": 8, "n_heads": 4, "d_mlp": 64}
    values.update(shapes[kind], d_vocab=d_vocab, seed=seed, device="cpu", **overrides)
    return HookedTransformer(HookedTransformerConfig(**values)).eval()
