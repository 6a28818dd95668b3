"""Proxy-tuning (PAPERS.md §5): decoding-time tuning of a model, no weight update.

:func:`proxy_tune` decodes with ``logits_t = base_t + alpha * (expert_t - antiexpert_t)`` (Liu et
al. 2024) over three models that share a vocabulary, each with its own key-value cache, decoded in
lockstep (one forward pass per model per step). Every generated token is logged: the base model's
own argmax, the proxy's, whether the offset changed the choice, and the offset's size.

Prompts are batched by equal length (:func:`interp.generation.length_batches`, no padding), so
``alpha = 0`` reproduces the base model's own greedy decoding exactly.

:func:`amplify_difference` is model-diff amplification, ``tuned + alpha * (tuned - base)``: proxy-
tuning with the tuned model as both base and expert and its parent as antiexpert (a role played
by the same model object runs one decoder, so it costs two forward passes per step, not three).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn
from tqdm.auto import tqdm

from interp.errors import InterpError
from interp.generation import IncrementalDecoder, length_batches, resolve_pad_id, sample_next, trim_at_stop
from interp.models import Model, as_model, portable_spec
from interp.results import format_table, save_figure, save_json


class VocabularyMismatchError(InterpError, ValueError):
    """Models combined token by token do not share a vocabulary."""


def check_same_vocab(models: dict[str, Model]) -> None:
    """Raise unless every model has the same ``d_vocab`` and (where known) tokenizer hash.

    Args:
        models: the models by role (``base``, ``expert``, ...).

    Raises:
        VocabularyMismatchError: names the two roles and their differing values.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> def tiny(v):
        ...     return HookedTransformer(HookedTransformerConfig(
        ...         n_layers=1, d_model=8, n_ctx=4, d_head=4, d_vocab=v, act_fn="relu"))
        >>> check_same_vocab({"base": as_model(tiny(5)), "expert": as_model(tiny(6))})
        Traceback (most recent call last):
        ...
        steering.proxy_tuning.VocabularyMismatchError: d_vocab differs: base has 5, expert has 6; ...
    """
    (first, ref), *rest = models.items()
    for role, m in rest:
        if m.d_vocab != ref.d_vocab:
            raise VocabularyMismatchError(
                f"d_vocab differs: {first} has {ref.d_vocab}, {role} has {m.d_vocab}; proxy-tuning "
                "adds logits token by token, so every model needs the same vocabulary"
            )
        h_ref, h = ref.tokenizer_hash(), m.tokenizer_hash()
        if h_ref is not None and h is not None and h_ref != h:
            raise VocabularyMismatchError(
                f"tokenizers differ: {first} ({ref.spec}) has {h_ref}, {role} ({m.spec}) has {h}; "
                "proxy-tuning needs models that share one tokenizer"
            )


def proxy_logits(
    base: Float[Tensor, "batch d_vocab"],
    expert: Float[Tensor, "batch d_vocab"],
    antiexpert: Float[Tensor, "batch d_vocab"],
    alpha: float = 1.0,
) -> Float[Tensor, "batch d_vocab"]:
    """``base + alpha * (expert - antiexpert)`` (Liu et al. 2024, eq. 1).

    Example:
        >>> proxy_logits(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 0.0]]), torch.zeros(1, 2)).tolist()
        [[4.0, 2.0]]
    """
    return base + alpha * (expert.to(base.device) - antiexpert.to(base.device))


@dataclass(frozen=True)
class ProxyConfig:
    """How :func:`proxy_tune` decodes.

    Args:
        alpha: weight of the offset ``expert - antiexpert``; negative undoes a fine-tune.
        max_new_tokens: most tokens per prompt.
        temperature: 0 for greedy, else sample from ``softmax(logits / T)``.
        stop_id: a token that ends a continuation (kept).
        pad_id: the left padding and the token fed to rows that stopped; ``None`` takes the
            base model's tokenizer's (:func:`interp.generation.default_pad_id`), else ``stop_id``.
        forbid: ids never generated.
        batch_size: most prompts decoded together.
    """

    alpha: float = 1.0
    max_new_tokens: int = 64
    temperature: float = 0.0
    stop_id: int | None = None
    pad_id: int | None = None
    forbid: tuple[int, ...] = ()
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not math.isfinite(self.alpha):
            raise ValueError(f"alpha={self.alpha!r}; expected a finite number")
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={self.max_new_tokens!r}; expected >= 0")
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature!r}; expected >= 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}; expected >= 1")
        if self.pad_id is not None and (
            isinstance(self.pad_id, bool) or not isinstance(self.pad_id, int) or self.pad_id < 0
        ):
            raise ValueError(f"pad_id={self.pad_id!r}; expected a token id >= 0, or None for the tokenizer's")


@dataclass(frozen=True)
class ProxyResult:
    """Proxy-tuned continuations and, per generated token, which model drove it.

    ``tokens[i][t]`` is the t-th generated token of prompt i; at that step ``base_argmax`` is
    the base model's own choice, ``proxy_argmax`` the proxy's (``forbid`` applied to both),
    ``changed`` whether they differ, and ``offset_norm`` the L2 norm of the centred offset
    ``alpha * (expert - antiexpert)`` over the vocabulary (centred: a constant shift of the
    logits changes nothing).
    """

    prompts: list[list[int]]
    tokens: list[list[int]]
    base_argmax: list[list[int]]
    proxy_argmax: list[list[int]]
    offset_norm: list[list[float]]
    alpha: float
    models: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> list[list[bool]]:
        return [
            [b != p for b, p in zip(br, pr, strict=True)]
            for br, pr in zip(self.base_argmax, self.proxy_argmax, strict=True)
        ]

    @property
    def changed_share(self) -> float:
        """Share of generated tokens where the offset changed the base model's choice."""
        flat = [c for row in self.changed for c in row]
        return sum(flat) / len(flat) if flat else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "models": dict(self.models),
            "changed_share": self.changed_share,
            "prompts": self.prompts,
            "tokens": self.tokens,
            "base_argmax": self.base_argmax,
            "proxy_argmax": self.proxy_argmax,
            "changed": self.changed,
            "offset_norm": self.offset_norm,
        }

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically); returns the path."""
        return save_json(self, path)

    def __str__(self) -> str:
        norms = [x for row in self.offset_norm for x in row]
        rows = [
            ["prompts", len(self.prompts)],
            ["tokens generated", len(norms)],
            ["alpha", float(self.alpha)],
            ["offset changed the choice", self.changed_share],
            ["mean offset norm", sum(norms) / len(norms) if norms else None],
        ]
        return format_table(["proxy-tuning", "value"], rows)

    def plot(self, path_or_ax: Any) -> Any:
        """Share of tokens changed by the offset, per generated position (PNG path or axes)."""
        import matplotlib.pyplot as plt

        ax = path_or_ax if hasattr(path_or_ax, "plot") else plt.subplots(figsize=(6, 3))[1]
        width = max((len(r) for r in self.tokens), default=0)
        share = []
        for t in range(width):
            col = [row[t] for row in self.changed if len(row) > t]
            share.append(sum(col) / len(col))
        ax.plot(range(width), share, marker="o")
        ax.set_xlabel("generated position")
        ax.set_ylabel("share changed by offset")
        ax.set_ylim(0, 1)
        ax.set_title(f"proxy-tuning, alpha={self.alpha:g}")
        return ax if ax is path_or_ax else save_figure(ax.figure, path_or_ax)


def proxy_tune(
    base: "Model | nn.Module",
    expert: "Model | nn.Module",
    antiexpert: "Model | nn.Module",
    prompts: Sequence[Sequence[int]],
    config: ProxyConfig | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> ProxyResult:
    """Decode with ``base + alpha * (expert - antiexpert)``, three key-value caches in lockstep.

    Args:
        base: the model to steer (usually the large one).
        expert: the small model after tuning.
        antiexpert: the same small model before tuning.
        prompts: token ids of each prompt (the shared vocabulary).
        config: alpha and decoding settings (defaults: alpha 1, greedy, 64 tokens).
        generator: random generator for sampling.
        progress: show a progress bar over batches.

    Returns:
        A :class:`ProxyResult`, in the order of ``prompts``.

    Raises:
        VocabularyMismatchError: the models' ``d_vocab`` or tokenizers differ.
        ValueError: an empty prompt or one longer than a model's context.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> m = HookedTransformer(cfg)
        >>> res = proxy_tune(m, m, m, [[1, 2]], ProxyConfig(max_new_tokens=3))
        >>> res.tokens == res.base_argmax, res.changed_share
        (True, 0.0)
    """
    cfg = config or ProxyConfig()
    models = {"base": as_model(base), "expert": as_model(expert), "antiexpert": as_model(antiexpert)}
    check_same_vocab(models)
    forbid = list(cfg.forbid) or None
    n = len(prompts)
    out: dict[str, list] = {k: [[] for _ in range(n)] for k in ("tokens", "base", "proxy", "norm")}
    batches = list(length_batches(prompts, cfg.batch_size))
    for chunk in tqdm(batches, desc="proxy-tuning", unit="batch", disable=not progress):
        rows = _proxy_batch(models, [list(prompts[i]) for i in chunk], cfg, forbid, generator)
        for key in out:
            for i, r in zip(chunk, rows[key], strict=True):
                out[key][i] = r
    return ProxyResult(
        prompts=[list(p) for p in prompts],
        tokens=out["tokens"],
        base_argmax=out["base"],
        proxy_argmax=out["proxy"],
        offset_norm=out["norm"],
        alpha=cfg.alpha,
        models={role: portable_spec(m.spec) for role, m in models.items()},
    )


def _proxy_batch(
    models: dict[str, Model],
    prompts: list[list[int]],
    cfg: ProxyConfig,
    forbid: list[int] | None,
    generator: torch.Generator | None,
) -> dict[str, list[list]]:
    pad = resolve_pad_id(models["base"], cfg.pad_id, cfg.stop_id)
    by_module: dict[int, IncrementalDecoder] = {}  # a model in two roles decodes once
    decs = {}
    for role, m in models.items():
        if id(m.module) not in by_module:
            by_module[id(m.module)] = IncrementalDecoder(m, prompts, pad_id=pad)
        decs[role] = by_module[id(m.module)]
    base, exp, anti = decs["base"], decs["expert"], decs["antiexpert"]
    steps = min([cfg.max_new_tokens] + [d.remaining for d in by_module.values()])
    done = torch.zeros(len(prompts), dtype=torch.bool, device=base.logits.device)
    toks, b_arg, p_arg, norms = [], [], [], []
    for t in range(steps):
        offset = cfg.alpha * (exp.logits.to(base.logits.device) - anti.logits.to(base.logits.device))
        combined = base.logits + offset
        nxt = sample_next(combined, cfg.temperature, forbid, generator)
        if pad is not None:
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        toks.append(nxt)
        b_arg.append(sample_next(base.logits, 0.0, forbid))
        p_arg.append(sample_next(combined, 0.0, forbid))
        norms.append((offset - offset.mean(-1, keepdim=True)).norm(dim=-1))
        if cfg.stop_id is not None:
            done |= nxt == cfg.stop_id
        if bool(done.all()) or t == steps - 1:
            break
        for d in by_module.values():
            d.advance(nxt)
    if not toks:
        empty = [[] for _ in prompts]
        return {"tokens": empty, "base": empty, "proxy": empty, "norm": empty}
    tokens = trim_at_stop(torch.stack(toks, 1).tolist(), cfg.stop_id)
    lens = [len(r) for r in tokens]

    def cut(xs: list[Tensor]) -> list[list]:
        return [row[:k] for row, k in zip(torch.stack(xs, 1).tolist(), lens, strict=True)]

    return {"tokens": tokens, "base": cut(b_arg), "proxy": cut(p_arg), "norm": cut(norms)}


def amplify_difference(
    tuned: "Model | nn.Module",
    base: "Model | nn.Module",
    prompts: Sequence[Sequence[int]],
    config: ProxyConfig | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> ProxyResult:
    """Model-diff amplification: decode with ``tuned + alpha * (tuned - base)``.

    What a fine-tune changed, exaggerated at decoding time (``alpha > 0``) so that rare
    behaviours it introduced show up in samples; ``alpha = 0`` is the tuned model itself and
    ``alpha = -1`` is the base model. It is :func:`proxy_tune` with ``base = expert = tuned`` and
    ``antiexpert = base``; the result's ``base_argmax`` is the tuned model's own choice.

    Args:
        tuned: the fine-tuned model.
        base: the model it was tuned from (same vocabulary).
        prompts: token ids of each prompt.
        config: ``alpha`` (the amplification) and decoding settings.
        generator: random generator for sampling.
        progress: show a progress bar over batches.

    Raises:
        VocabularyMismatchError: the two models' ``d_vocab`` or tokenizers differ.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> a, b = HookedTransformer(cfg), HookedTransformer(cfg)
        >>> res = amplify_difference(a, b, [[1, 2]], ProxyConfig(alpha=0.0, max_new_tokens=3))
        >>> res.tokens == res.base_argmax
        True
    """
    t = as_model(tuned)
    return proxy_tune(t, t, as_model(base), prompts, config, generator, progress)
