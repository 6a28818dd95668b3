"""Decoding-time tuning, no weight update: proxy-tuning (PAPERS.md §5) and CoT-decoding (§6).

- :func:`proxy_tune`: ``logits_t = base_t + alpha * (expert_t - antiexpert_t)`` (Liu et al. 2024)
  over three models that share a vocabulary, each with its own key-value cache, decoded in
  lockstep (one forward pass per model per step). Every generated token is logged: the base
  model's own argmax, the proxy's, whether the offset changed the choice, and the offset's size.
- :func:`cot_decode`: branch over the top-``k`` first tokens, continue each branch greedily and
  rank the branches by answer confidence, the mean over the answer tokens of
  ``p(top1) - p(top2)`` (Wang & Zhou 2024). The answer span is found by a pluggable
  ``answer_span(tokens) -> (start, end) | None``; :func:`organism_answer_span` is the organism's.

Both batch over prompts of equal length (:func:`interp.generation.length_batches`, no padding),
so ``alpha = 0`` reproduces the base model's own greedy decoding exactly.
"""

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn
from tqdm.auto import tqdm

from interp.generation import IncrementalDecoder, length_batches, sample_next, trim_at_stop
from interp.models import Model, as_model, portable_spec
from interp.results import format_table, save_figure, save_json

log = logging.getLogger(__name__)

AnswerSpan = Callable[[list[int]], "tuple[int, int] | None"]


class VocabularyMismatchError(ValueError):
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
        steering.decoding.VocabularyMismatchError: d_vocab differs: base has 5, expert has 6; ...
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
        pad_id: fed to rows that stopped.
        forbid: ids never generated.
        batch_size: most prompts decoded together.
    """

    alpha: float = 1.0
    max_new_tokens: int = 64
    temperature: float = 0.0
    stop_id: int | None = None
    pad_id: int = 0
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
    decs = {role: IncrementalDecoder(m, prompts, pad_id=cfg.pad_id) for role, m in models.items()}
    base, exp, anti = decs["base"], decs["expert"], decs["antiexpert"]
    steps = min([cfg.max_new_tokens] + [d.remaining for d in decs.values()])
    done = torch.zeros(len(prompts), dtype=torch.bool, device=base.logits.device)
    toks, b_arg, p_arg, norms = [], [], [], []
    for t in range(steps):
        offset = cfg.alpha * (exp.logits.to(base.logits.device) - anti.logits.to(base.logits.device))
        combined = base.logits + offset
        nxt = sample_next(combined, cfg.temperature, forbid, generator)
        nxt = torch.where(done, torch.full_like(nxt, cfg.pad_id), nxt)
        toks.append(nxt)
        b_arg.append(sample_next(base.logits, 0.0, forbid))
        p_arg.append(sample_next(combined, 0.0, forbid))
        norms.append((offset - offset.mean(-1, keepdim=True)).norm(dim=-1))
        if cfg.stop_id is not None:
            done |= nxt == cfg.stop_id
        if bool(done.all()) or t == steps - 1:
            break
        for d in decs.values():
            d.advance(nxt)
    if not toks:
        empty = [[] for _ in prompts]
        return {"tokens": empty, "base": empty, "proxy": empty, "norm": empty}
    tokens = trim_at_stop(torch.stack(toks, 1).tolist(), cfg.stop_id)
    lens = [len(r) for r in tokens]

    def cut(xs: list[Tensor]) -> list[list]:
        return [row[:k] for row, k in zip(torch.stack(xs, 1).tolist(), lens, strict=True)]

    return {"tokens": tokens, "base": cut(b_arg), "proxy": cut(p_arg), "norm": cut(norms)}


# --------------------------------------------------------------------------- CoT-decoding


def top2_margin(probs: Float[Tensor, "... d_vocab"]) -> Float[Tensor, "..."]:
    """``p(top1) - p(top2)`` of each distribution.

    Example:
        >>> top2_margin(torch.tensor([[0.5, 0.25, 0.25]])).tolist()
        [0.25]
    """
    top = probs.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


def answer_confidence(probs: Float[Tensor, "pos d_vocab"], span: tuple[int, int] | None) -> float:
    """Mean over the span's positions of ``p(top1) - p(top2)`` (Wang & Zhou 2024, eq. 1).

    Args:
        probs: next-token probabilities at each generated position.
        span: ``(start, end)`` positions of the answer (end exclusive), or ``None``.

    Returns:
        The confidence, or ``nan`` when there is no span or it is empty.

    Example:
        >>> p = torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.4, 0.4, 0.2]])
        >>> round(answer_confidence(p, (1, 3)), 3)
        0.425
    """
    return _span_mean(top2_margin(probs), span)


def _span_mean(margins: Tensor, span: tuple[int, int] | None) -> float:
    if span is None or span[1] <= span[0] or span[1] > margins.shape[0] or span[0] < 0:
        return float("nan")
    return float(margins[span[0] : span[1]].mean())


def marker_answer_span(open_id: int | None, close_id: int) -> AnswerSpan:
    """An answer span between marker tokens: after the last ``open_id`` up to the next ``close_id``.

    Args:
        open_id: the token that opens the answer, or ``None`` when the answer starts at the first
            generated token (the prompt already opened it).
        close_id: the token that closes it (not part of the span).

    Returns:
        ``answer_span(tokens) -> (start, end) | None`` over generated tokens; ``None`` when no
        answer is opened and closed, or it is empty.

    Example:
        >>> marker_answer_span(7, 9)([1, 7, 3, 4, 9]), marker_answer_span(None, 9)([3, 9])
        ((2, 4), (0, 1))
    """

    def span(tokens: list[int]) -> tuple[int, int] | None:
        if open_id is None:
            start = 0
        elif open_id in tokens:
            start = len(tokens) - tokens[::-1].index(open_id)
        else:
            return None
        if close_id not in tokens[start:]:
            return None
        end = tokens.index(close_id, start)
        return (start, end) if end > start else None

    return span


def organism_answer_span(tok: Any, answer_in_prompt: bool = False) -> AnswerSpan:
    """The organism's answer span: the tokens after the last ``A`` up to (not including) ``E``.

    Args:
        tok: the organism's word tokenizer.
        answer_in_prompt: the prompt already ends in ``A`` (answer-only prompts ``Q s g A``),
            so the span starts at the first generated token.

    Returns:
        ``answer_span(tokens) -> (start, end) | None`` (see :func:`marker_answer_span`).

    Example:
        >>> from interp.organism.tokenizer import WordTokenizer, organism_vocab
        >>> tok = WordTokenizer(organism_vocab(4))
        >>> organism_answer_span(tok)(tok.encode("n0 : n1 > n1 ; A 1 n0 n1 E"))
        (7, 10)
    """
    a_id, e_id = tok.encode("A")[0], tok.encode("E")[0]
    return marker_answer_span(None if answer_in_prompt else a_id, e_id)


@dataclass(frozen=True)
class CotConfig:
    """How :func:`cot_decode` branches.

    Args:
        k: first tokens branched over (the top-``k`` of the first step).
        max_new_tokens: most tokens per branch, the first one included.
        stop_id: a token that ends a branch (kept).
        pad_id: fed to branches that stopped.
        forbid: ids never generated (nor branched on).
        batch_size: most problems decoded together (``batch_size * k`` branches a batch).
    """

    k: int = 10
    max_new_tokens: int = 64
    stop_id: int | None = None
    pad_id: int = 0
    forbid: tuple[int, ...] = ()
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k={self.k!r}; expected >= 1")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens!r}; expected >= 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}; expected >= 1")


@dataclass(frozen=True)
class CotResult:
    """Branches of each problem, best first (by answer confidence; ``nan`` ranks last).

    ``branches[i][j]`` are the tokens of problem i's j-th ranked branch, ``first_rank[i][j]``
    the rank of its first token among the first step's top-k (0: the greedy branch), and
    ``confidence[i][j]`` its answer confidence.
    """

    prompts: list[list[int]]
    branches: list[list[list[int]]]
    first_rank: list[list[int]]
    confidence: list[list[float]]
    k: int
    spec: str = ""

    @property
    def best(self) -> list[list[int]]:
        """The most confident branch of each problem (CoT-decoding's answer)."""
        return [b[0] for b in self.branches]

    @property
    def greedy(self) -> list[list[int]]:
        """The branch that starts with the top-1 token: plain greedy decoding."""
        return [b[r.index(0)] for b, r in zip(self.branches, self.first_rank, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "spec": self.spec,
            "share_best_is_greedy": self.share_best_is_greedy,
            "prompts": self.prompts,
            "branches": self.branches,
            "first_rank": self.first_rank,
            "confidence": [[None if math.isnan(c) else c for c in row] for row in self.confidence],
        }

    @property
    def share_best_is_greedy(self) -> float:
        return (
            sum(r[0] == 0 for r in self.first_rank) / len(self.first_rank)
            if self.first_rank
            else float("nan")
        )

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically); returns the path."""
        return save_json(self, path)

    def __str__(self) -> str:
        rows = []
        for j in range(self.k):
            ranks = [r[j] for r in self.first_rank if len(r) > j]
            conf = [c[j] for c in self.confidence if len(c) > j and not math.isnan(c[j])]
            rows.append(
                [
                    j,
                    sum(ranks) / len(ranks) if ranks else None,
                    sum(conf) / len(conf) if conf else None,
                    len(conf),
                ]
            )
        return format_table(["rank", "mean first-token rank", "mean confidence", "with answer"], rows)

    def plot(self, path_or_ax: Any) -> Any:
        """How often the best branch starts with each first-token rank (PNG path or axes)."""
        import matplotlib.pyplot as plt

        ax = path_or_ax if hasattr(path_or_ax, "bar") else plt.subplots(figsize=(6, 3))[1]
        counts = [sum(r[0] == j for r in self.first_rank) for j in range(self.k)]
        ax.bar(range(self.k), counts)
        ax.set_xlabel("first-token rank of the most confident branch")
        ax.set_ylabel("problems")
        ax.set_title(f"CoT-decoding, k={self.k}")
        return ax if ax is path_or_ax else save_figure(ax.figure, path_or_ax)


def cot_decode(
    model: "Model | nn.Module",
    prompts: Sequence[Sequence[int]],
    answer_span: AnswerSpan,
    config: CotConfig | None = None,
    progress: bool = False,
) -> CotResult:
    """CoT-decoding: top-``k`` first tokens, greedy continuations, ranked by answer confidence.

    Each batch runs the prompts once for the first step's distribution, then decodes all
    ``problems x k`` branches together with one key-value cache (the branches' prompt pass is
    run again, with the branch token appended, rather than copying caches between backends).

    Args:
        model: a :class:`interp.models.Model`, ``HookedTransformer`` or ``TransformerBridge``.
        prompts: token ids of each problem.
        answer_span: ``answer_span(generated_tokens) -> (start, end) | None``.
        config: ``k`` and decoding settings.
        progress: show a progress bar over batches.

    Returns:
        A :class:`CotResult`, in the order of ``prompts``.

    Raises:
        ValueError: ``k`` exceeds the vocabulary left after ``forbid``, or a bad prompt.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> span = lambda tokens: (0, len(tokens))
        >>> res = cot_decode(HookedTransformer(cfg), [[1, 2]], span, CotConfig(k=3, max_new_tokens=2))
        >>> len(res.branches[0]), sorted(res.first_rank[0])
        (3, [0, 1, 2])
    """
    cfg = config or CotConfig()
    m = as_model(model)
    if cfg.k > m.d_vocab - len(set(cfg.forbid)):
        raise ValueError(
            f"k={cfg.k} exceeds the {m.d_vocab - len(set(cfg.forbid))} tokens that may be generated"
        )
    n = len(prompts)
    branches: list = [None] * n
    ranks: list = [None] * n
    confs: list = [None] * n
    batches = list(length_batches(prompts, cfg.batch_size))
    for chunk in tqdm(batches, desc="CoT-decoding", unit="batch", disable=not progress):
        rows = _cot_batch(m, [list(prompts[i]) for i in chunk], answer_span, cfg)
        for i, (b, r, c) in zip(chunk, rows, strict=True):
            branches[i], ranks[i], confs[i] = b, r, c
    return CotResult([list(p) for p in prompts], branches, ranks, confs, cfg.k, portable_spec(m.spec))


def _cot_batch(
    model: Model, prompts: list[list[int]], answer_span: AnswerSpan, cfg: CotConfig
) -> list[tuple[list, list, list]]:
    k, forbid = cfg.k, list(cfg.forbid) or None
    first = _forbidden(IncrementalDecoder(model, prompts, pad_id=cfg.pad_id).logits, forbid)
    first_probs = torch.softmax(first, -1)
    top = first.topk(k, dim=-1).indices  # [problem, k]
    starts = top.reshape(-1)
    branch_prompts = [prompts[i // k] + [int(t)] for i, t in enumerate(starts)]
    margins = [top2_margin(first_probs).repeat_interleave(k, 0)]
    toks = [starts]
    done = torch.zeros(len(branch_prompts), dtype=torch.bool, device=starts.device)
    if cfg.stop_id is not None:
        done |= starts == cfg.stop_id
    fits = len(prompts[0]) < model.n_ctx
    if cfg.max_new_tokens > 1 and fits and not bool(done.all()):
        dec = IncrementalDecoder(model, branch_prompts, pad_id=cfg.pad_id)
        steps = min(cfg.max_new_tokens - 1, dec.remaining)
        for t in range(steps):
            logits = _forbidden(dec.logits, forbid)
            nxt = torch.where(done, torch.full_like(starts, cfg.pad_id), logits.argmax(-1).to(starts.device))
            margins.append(top2_margin(torch.softmax(logits, -1)).to(starts.device))
            toks.append(nxt)
            if cfg.stop_id is not None:
                done |= nxt == cfg.stop_id
            if bool(done.all()) or t == steps - 1:
                break
            dec.advance(nxt)
    rows = trim_at_stop(torch.stack(toks, 1).tolist(), cfg.stop_id)
    margin_t = torch.stack(margins, 1).cpu()  # [branch, step]
    out = []
    for i in range(len(prompts)):
        items = []
        for r in range(k):
            b = i * k + r
            conf = _span_mean(margin_t[b, : len(rows[b])], answer_span(rows[b]))
            items.append((rows[b], r, conf))
        items.sort(key=lambda x: (math.isnan(x[2]), -x[2] if not math.isnan(x[2]) else 0.0, x[1]))
        out.append(([x[0] for x in items], [x[1] for x in items], [x[2] for x in items]))
    return out


def _forbidden(logits: Tensor, forbid: list[int] | None) -> Tensor:
    if not forbid:
        return logits
    logits = logits.clone()
    logits[:, forbid] = float("-inf")
    return logits
