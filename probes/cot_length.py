"""Accuracy as a function of chain-of-thought length, natural and forced (PAPERS.md §9).

Natural: bin generated responses by their length (steps or tokens) and report accuracy per bin
(Wu et al. 2025 find an inverted U). Forced: whenever the model starts its answer (emits the
stop word, ``A`` for the organism), replace it by a forcing string (``WAIT CHECK``, the
organism's analogue of appending "Wait", Ghosal et al. 2025) and let it continue; after ``k``
such extensions let it answer, and report accuracy per ``k``.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from interp.models import Model, as_model
from interp.results import format_table, save_figure, save_json
from probes.passk import generate_continuations

log = logging.getLogger(__name__)

IsCorrect = Callable[[int, list[int]], bool]


@dataclass(frozen=True)
class LengthAccuracy:
    """Accuracy per length bin (bins are ``[lo, hi)``, the last one closed).

    Attributes:
        edges: bin edges, one more than bins.
        counts: responses per bin.
        accuracy: share correct per bin (NaN for an empty bin).
        meta: what the length counts, the model.
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    accuracy: tuple[float, ...]
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "edges": list(self.edges),
            "counts": list(self.counts),
            "accuracy": list(self.accuracy),
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def __str__(self) -> str:
        rows = [
            [f"[{lo:g}, {hi:g})", n, a]
            for lo, hi, n, a in zip(self.edges, self.edges[1:], self.counts, self.accuracy, strict=False)
        ]
        return format_table(["length", "responses", "accuracy"], rows)

    def plot(self, path_or_ax=None):
        """Accuracy against bin centre, marker size by count."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        mids = [(lo + hi) / 2 for lo, hi in zip(self.edges, self.edges[1:], strict=False)]
        ax.plot(mids, self.accuracy, marker="o")
        ax.set_xlabel(f"CoT length ({self.meta.get('unit', 'steps')})")
        ax.set_ylabel("accuracy")
        if path_or_ax is not None:
            return save_figure(fig, path_or_ax)
        return fig


def accuracy_by_length(
    lengths: Sequence[int | float], correct: Sequence[bool], bins: int | Sequence[int | float] | None = None
) -> LengthAccuracy:
    """Accuracy of responses binned by their length.

    Args:
        lengths: length of each response (steps or tokens).
        correct: whether each response is correct.
        bins: ``None`` for one bin per distinct length, an int for that many equal-width bins
            over the range, or explicit increasing edges.

    Returns:
        :class:`LengthAccuracy`.

    Raises:
        ValueError: mismatched or empty inputs, or bad bins.

    Example:
        >>> r = accuracy_by_length([1, 1, 2, 3], [True, False, True, False])
        >>> r.edges, r.counts, r.accuracy
        ((1.0, 2.0, 3.0, 4.0), (2, 1, 1), (0.5, 1.0, 0.0))
    """
    if len(lengths) != len(correct) or not lengths:
        raise ValueError(
            f"{len(lengths)} lengths and {len(correct)} verdicts; expected equal, non-zero counts"
        )
    x = [float(v) for v in lengths]
    if bins is None:
        vals = sorted(set(x))
        edges = [*vals, vals[-1] + 1.0]
    elif isinstance(bins, int):
        if bins < 1:
            raise ValueError(f"bins={bins!r}; expected >= 1")
        lo, hi = min(x), max(x)
        hi = hi if hi > lo else lo + 1.0
        edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    else:
        edges = [float(e) for e in bins]
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise ValueError(f"bins={list(bins)!r}; expected at least two increasing edges")
    counts, acc = [], []
    for j, (lo, hi) in enumerate(zip(edges, edges[1:], strict=False)):
        last = j == len(edges) - 2 and bins is not None
        inside = [c for v, c in zip(x, correct, strict=True) if lo <= v < hi or (last and v == hi)]
        counts.append(len(inside))
        acc.append(sum(map(bool, inside)) / len(inside) if inside else float("nan"))
    return LengthAccuracy(tuple(edges), tuple(counts), tuple(acc))


@dataclass(frozen=True)
class ForceConfig:
    """How thinking is extended.

    Args:
        ks: numbers of forced extensions to measure.
        force: the words put in place of the stop word (or ``force(round) -> str``).
        stop_word: the word that is intercepted ``k`` times (by default ``A``, the start of the
            answer; ``;``, the end of a step, forces work inside the trace instead).
        intercept: ``intercept(ids_so_far) -> bool`` over the prompt and the response generated
            so far (the stop word excluded): only where it is true is the stop word replaced;
            elsewhere it is kept and generation goes on in the same round. ``None``: every
            occurrence.
            It keeps a forced extension inside the trained format (e.g. only a step that
            closed a move without a check gets one).
        end_word: the word that ends a response.
        max_new_tokens: generation budget of each segment.
        temperature: 0 for greedy.
        seed: sampling seed.
    """

    ks: tuple[int, ...] = (0, 1, 2, 4)
    force: str | Callable[[int], str] = "WAIT CHECK"
    stop_word: str = "A"
    end_word: str = "E"
    max_new_tokens: int = 60
    temperature: float = 0.0
    seed: int = 0
    intercept: Callable[[list[int]], bool] | None = None

    def __post_init__(self) -> None:
        if not self.ks or any(k < 0 for k in self.ks):
            raise ValueError(f"ks={self.ks!r}; expected a non-empty tuple of counts >= 0")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens!r}; expected >= 1")
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature!r}; expected >= 0")


@dataclass(frozen=True)
class ForcedResult:
    """Accuracy and mean response length per number of forced extensions."""

    ks: tuple[int, ...]
    accuracy: tuple[float, ...]
    mean_length: tuple[float, ...]
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "ks": list(self.ks),
            "accuracy": list(self.accuracy),
            "mean_length": list(self.mean_length),
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def __str__(self) -> str:
        rows = [list(r) for r in zip(self.ks, self.mean_length, self.accuracy, strict=True)]
        return format_table(["forced k", "mean tokens", "accuracy"], rows)

    def plot(self, path_or_ax=None):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(self.ks, self.accuracy, marker="o")
        ax.set_xlabel("forced extensions k")
        ax.set_ylabel("accuracy")
        if path_or_ax is not None:
            return save_figure(fig, path_or_ax)
        return fig


def force_thinking(model: Model, prompts: list[list[int]], k: int, config: ForceConfig) -> list[list[int]]:
    """The continuation of each prompt with the stop word replaced ``k`` times by the forcing
    words (where ``config.intercept`` allows it); at most ``(k + 1) * max_new_tokens`` tokens."""
    stop, end = model.encode_plain(config.stop_word)[-1], model.encode_plain(config.end_word)[-1]
    gen = torch.Generator().manual_seed(config.seed)
    cur = [list(p) for p in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    budget = (k + 1) * config.max_new_tokens
    active = list(range(len(prompts)))
    for r in range(k + 1):
        final = r == k
        pending, still = active, []
        while pending:
            outs = generate_continuations(
                model,
                [cur[i] for i in pending],
                config.max_new_tokens,
                config.temperature,
                end if final else stop,
                None,
                gen,
            )
            again = []
            for i, o in zip(pending, outs, strict=True):
                if end in o:  # a response that ended inside a round keeps nothing after its end
                    o = o[: o.index(end) + 1]
                stopped = not final and o and o[-1] == stop and end not in o
                if stopped and (config.intercept is None or config.intercept(cur[i] + o[:-1])):
                    text = config.force(r) if callable(config.force) else config.force
                    forced = model.encode(text)
                    if len(cur[i]) + len(o) + len(forced) < model.n_ctx:
                        o = o[:-1] + forced
                        still.append(i)
                    stopped = False
                cur[i] += o
                out[i] += o
                # a stop word the intercept let pass: keep generating in this round
                if stopped and len(cur[i]) < model.n_ctx - 1 and len(out[i]) < budget:
                    again.append(i)
            pending = again
        active = still
    return out


def forced_accuracy(
    model: "Model | nn.Module",
    prompts: Sequence[str | Sequence[int]],
    is_correct: IsCorrect,
    config: ForceConfig = ForceConfig(),
) -> ForcedResult:
    """Accuracy after ``k`` forced extensions of thinking, for each ``k`` in ``config.ks``.

    Args:
        model: the model (a HookedTransformer unless ``interp.generation`` is installed).
        prompts: token ids or texts.
        is_correct: ``is_correct(prompt_index, continuation_ids) -> bool``
            (the organism's: :func:`interp.organism.probing.organism_is_correct`).
        config: forcing string, stop and end words, budgets.

    Returns:
        :class:`ForcedResult`.

    Raises:
        ValueError: no prompts.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from interp.organism.tokenizer import WordTokenizer, organism_vocab
        >>> cfg = HookedTransformerConfig(
        ...     n_layers=1, d_model=8, n_ctx=32, d_head=4, d_vocab=35, act_fn="relu"
        ... )
        >>> m = Model(HookedTransformer(cfg), WordTokenizer(organism_vocab(4)), "tiny")
        >>> never = lambda i, ids: False
        >>> r = forced_accuracy(m, ["Q n0 n2 T"], never, ForceConfig(ks=(0, 1), max_new_tokens=4))
        >>> r.accuracy
        (0.0, 0.0)
    """
    if not prompts:
        raise ValueError("no prompts given; expected at least one")
    model = as_model(model)
    ids = [model.encode(p) if isinstance(p, str) else [int(t) for t in p] for p in prompts]
    acc, length = [], []
    for k in config.ks:
        outs = force_thinking(model, ids, k, config)
        acc.append(sum(bool(is_correct(i, o)) for i, o in enumerate(outs)) / len(outs))
        length.append(sum(map(len, outs)) / len(outs))
        log.info("forced k=%d: accuracy %.3f, mean length %.1f", k, acc[-1], length[-1])
    force = config.force if isinstance(config.force, str) else getattr(config.force, "__name__", "callable")
    meta = {
        "model": model.spec,
        "force": force,
        "stop_word": config.stop_word,
        "intercept": None if config.intercept is None else getattr(config.intercept, "__name__", "callable"),
    }
    return ForcedResult(tuple(config.ks), tuple(acc), tuple(length), meta)


def organism_steps(words: Sequence[str]) -> int:
    """Committed steps of an organism response (its ``;`` words).

    Example:
        >>> organism_steps("n0 : n1 > n1 ; n1 : n2 > n2 ; A n0 n1 n2 E".split())
        2
    """
    return sum(w == ";" for w in words)
