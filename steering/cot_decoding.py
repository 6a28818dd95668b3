"""CoT-decoding (PAPERS.md §6): branch over the first token, rank the branches by answer confidence.

:func:`cot_decode` branches over the top-``k`` first tokens, continues each branch greedily and
ranks the branches by answer confidence, the mean over the answer tokens of ``p(top1) - p(top2)``
(Wang & Zhou 2024). The answer span is found by a pluggable ``answer_span(tokens) -> (start, end)
| None``; :func:`organism_answer_span` is the organism's.

Prompts of different lengths share a left-padded batch (:func:`interp.batching.padded_batches`,
masked, positions from the mask), so the top-1 branch is the model's own greedy decoding up to
float rounding of padded attention; without any pad id they are batched by equal length.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn
from tqdm.auto import tqdm

from interp.batching import length_batches, padded_batches, trim_at_stop
from interp.generation import IncrementalDecoder, resolve_pad_id
from interp.models import Model, as_model, portable_spec
from interp.results import format_table, save_figure, save_json

AnswerSpan = Callable[[list[int]], "tuple[int, int] | None"]


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
        >>> organism_answer_span(tok)(tok.encode("n0 : n1 > n1 ; A n0 n1 E"))
        (7, 9)
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
        pad_id: the left padding and the token fed to branches that stopped; ``None`` takes the
            model's tokenizer's (:func:`interp.generation.default_pad_id`), else ``stop_id``.
        forbid: ids never generated (nor branched on).
        batch_size: most problems decoded together (``batch_size * k`` branches a batch).
    """

    k: int = 10
    max_new_tokens: int = 64
    stop_id: int | None = None
    pad_id: int | None = None
    forbid: tuple[int, ...] = ()
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k={self.k!r}; expected >= 1")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens!r}; expected >= 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}; expected >= 1")
        if self.pad_id is not None and (
            isinstance(self.pad_id, bool) or not isinstance(self.pad_id, int) or self.pad_id < 0
        ):
            raise ValueError(f"pad_id={self.pad_id!r}; expected a token id >= 0, or None for the tokenizer's")


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
    if resolve_pad_id(m, cfg.pad_id, cfg.stop_id) is None:  # nothing to pad with: equal lengths only
        batches = list(length_batches(prompts, cfg.batch_size))
    else:  # left-padded; a row never loses context to a wider batch
        batches = list(padded_batches(prompts, cfg.batch_size, [cfg.max_new_tokens] * n, m.n_ctx))
    for chunk in tqdm(batches, desc="CoT-decoding", unit="batch", disable=not progress):
        rows = _cot_batch(m, [list(prompts[i]) for i in chunk], answer_span, cfg)
        for i, (b, r, c) in zip(chunk, rows, strict=True):
            branches[i], ranks[i], confs[i] = b, r, c
    return CotResult([list(p) for p in prompts], branches, ranks, confs, cfg.k, portable_spec(m.spec))


def _cot_batch(
    model: Model, prompts: list[list[int]], answer_span: AnswerSpan, cfg: CotConfig
) -> list[tuple[list, list, list]]:
    k, forbid = cfg.k, list(cfg.forbid) or None
    pad = resolve_pad_id(model, cfg.pad_id, cfg.stop_id)
    first = _forbidden(IncrementalDecoder(model, prompts, pad_id=pad).logits, forbid)
    first_probs = torch.softmax(first, -1)
    top = first.topk(k, dim=-1).indices  # [problem, k]
    starts = top.reshape(-1)
    branch_prompts = [prompts[i // k] + [int(t)] for i, t in enumerate(starts)]
    margins = [top2_margin(first_probs).repeat_interleave(k, 0)]
    toks = [starts]
    done = torch.zeros(len(branch_prompts), dtype=torch.bool, device=starts.device)
    if cfg.stop_id is not None:
        done |= starts == cfg.stop_id
    fits = max(map(len, prompts)) < model.n_ctx
    if cfg.max_new_tokens > 1 and fits and not bool(done.all()):
        dec = IncrementalDecoder(model, branch_prompts, pad_id=pad)
        steps = min(cfg.max_new_tokens - 1, dec.remaining)
        for t in range(steps):
            logits = _forbidden(dec.logits, forbid)
            nxt = logits.argmax(-1).to(starts.device)
            if pad is not None:
                nxt = torch.where(done, torch.full_like(starts, pad), nxt)
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
