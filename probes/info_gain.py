"""Step-wise information gain of chain-of-thought traces under a fixed scorer model (PAPERS.md §1).

Clean form (Wu et al. 2025): with ``NLL_i = NLL(a | q, s_1..s_i)`` the summed negative
log-likelihood of the reference answer's tokens after the answer marker,

    IG_i = NLL_{i-1} - NLL_i   (i = 1..n),   total = NLL_0 - NLL_n,   normalised = total / NLL_0.

Paper variant (ReasoningEval's ``InformationGainScorer``): ``PPL_i = exp(mean token NLL of the
whole string q + s_1..s_i + marker + a)`` and ``InfoGain = (1/(n+1)) * sum_i (PPL_{i-1} - PPL_i)``
(which telescopes to ``(PPL_0 - PPL_n) / (n + 1)``). Where this differs from the paper's
``InformationGainScorer.forward`` (read from a public copy of ReasoningEval ``metrics.py``): it
joins steps with ``"\n"`` and scores each step's LLM-extracted ``knowledge`` field, not the step
text (here: the step text, joined by ``InfoGainConfig.separator``); it returns zeros for traces
of two steps or fewer (its check compares the step list with an int), where every trace with a
step is scored here; it tokenises the whole string in one call, where here the answer's tokens
are those of the whole string but the prefix is tokenised alone (identical for word-level
tokenizers, see :func:`probes.scoring.encode_pair`). Its ``Mean`` field is not reproduced.

Every prefix of every trace is scored in as few forward passes as the batch size allows, and
each pair's forward pass gives both forms. When every prefix's tokens are a prefix of the whole
trace's tokens (always for the organism's word tokenizer), :func:`probes.scoring.score_shared_prefixes`
runs each trace once with one marker-and-answer copy per step (about one trace-length pass per
trace); otherwise all ``sum_j (n_j + 1)`` (context, answer) pairs go through
:func:`probes.scoring.score_continuations`.
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from interp.models import Model
from interp.results import format_table, save_figure, save_json
from probes.scoring import encode_pair, score_continuations, score_shared_prefixes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InfoGainConfig:
    """How traces are turned into strings for the scorer.

    The scored string for step ``i`` is ``q + sep + s_1 + sep + ... + s_i + sep + marker`` and
    the answer continuation is ``sep + a``.

    Args:
        answer_marker: the words put before the answer: ``"A"`` for the organism,
            ``"Answer:"`` for the paper's format.
        separator: joins question, steps, marker and answer (the paper's code uses ``"\\n"``
            between steps and ``" "`` around ``Answer:``).
        batch_size: (context, answer) pairs per forward pass.
    """

    answer_marker: str = "A"
    separator: str = " "
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not self.answer_marker.strip():
            raise ValueError(f"answer_marker={self.answer_marker!r}; expected a non-blank string such as 'A'")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}; expected an int >= 1")


@dataclass(frozen=True)
class InfoGainResult:
    """Answer NLL and whole-string perplexity after each prefix of each trace.

    Attributes:
        nll: per trace, ``NLL_0 .. NLL_n`` (nats, summed over answer tokens).
        ppl: per trace, ``PPL_0 .. PPL_n`` of the paper's variant.
        meta: scorer spec and fingerprint, config.
    """

    nll: tuple[tuple[float, ...], ...]
    ppl: tuple[tuple[float, ...], ...]
    meta: dict = field(default_factory=dict)

    @property
    def step_gains(self) -> tuple[tuple[float, ...], ...]:
        """``IG_1 .. IG_n`` of each trace."""
        return tuple(tuple(a - b for a, b in zip(c, c[1:], strict=False)) for c in self.nll)

    @property
    def totals(self) -> tuple[float, ...]:
        """``NLL(a | q) - NLL(a | q, s_1..s_n)`` of each trace."""
        return tuple(c[0] - c[-1] for c in self.nll)

    @property
    def normalised(self) -> tuple[float, ...]:
        """Totals divided by ``NLL(a | q)`` (NaN where that is 0)."""
        return tuple((c[0] - c[-1]) / c[0] if c[0] > 0 else math.nan for c in self.nll)

    @property
    def ppl_info_gain(self) -> tuple[float, ...]:
        """The paper variant ``(1/(n+1)) * sum_i (PPL_{i-1} - PPL_i)`` of each trace."""
        return tuple(sum(a - b for a, b in zip(c, c[1:], strict=False)) / len(c) for c in self.ppl)

    def means(self) -> dict[str, float]:
        def mean(xs: Sequence[float]) -> float:
            xs = [x for x in xs if not math.isnan(x)]
            return sum(xs) / len(xs) if xs else math.nan

        return {
            "nll_question_only": mean([c[0] for c in self.nll]),
            "nll_full_trace": mean([c[-1] for c in self.nll]),
            "info_gain": mean(self.totals),
            "info_gain_normalised": mean(self.normalised),
            "ppl_info_gain": mean(self.ppl_info_gain),
            "steps": mean([float(len(c) - 1) for c in self.nll]),
        }

    def to_dict(self) -> dict:
        return {
            "nll": [list(c) for c in self.nll],
            "ppl": [list(c) for c in self.ppl],
            "step_gains": [list(c) for c in self.step_gains],
            "totals": list(self.totals),
            "normalised": list(self.normalised),
            "ppl_info_gain": list(self.ppl_info_gain),
            "mean": self.means(),
            "n_traces": len(self.nll),
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def __str__(self) -> str:
        return format_table(["statistic", "mean"], [[k, v] for k, v in self.means().items()])

    def plot(self, path_or_ax=None):
        """Answer NLL after each step, relative to ``NLL(a | q)``: thin lines per trace, mean bold."""
        import matplotlib.pyplot as plt

        ax = path_or_ax if path_or_ax is not None and not isinstance(path_or_ax, str | Path) else None
        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 3.5))
        curves = [[v / c[0] for v in c] for c in self.nll if c[0] > 0]
        for c in curves[:200]:
            ax.plot(range(len(c)), c, color="tab:blue", alpha=0.15, lw=0.8)
        longest = max((len(c) for c in curves), default=0)
        mean = [
            sum(c[i] for c in curves if len(c) > i) / max(1, sum(len(c) > i for c in curves))
            for i in range(longest)
        ]
        ax.plot(range(longest), mean, color="tab:red", lw=2, label="mean")
        ax.set_xlabel("steps of the trace in context")
        ax.set_ylabel("NLL(answer) / NLL(answer | question)")
        ax.set_title(f"information gain, mean normalised {self.means()['info_gain_normalised']:.3f}")
        ax.legend()
        if fig is not None and path_or_ax is not None:
            return save_figure(fig, path_or_ax)
        return ax


def info_gain(
    scorer: "Model | nn.Module",
    questions: Sequence[str],
    traces: Sequence[Sequence[str]],
    answers: Sequence[str],
    config: InfoGainConfig = InfoGainConfig(),
    progress: bool = False,
) -> InfoGainResult:
    """Information gain of each trace's steps about its reference answer, under ``scorer``.

    Args:
        scorer: the fixed model that scores every trace (a :class:`~interp.models.Model` with a
            tokenizer, or a TransformerLens module with one).
        questions: the question (prompt) of each trace.
        traces: the steps of each trace, as strings (see :func:`split_organism_trace`).
        answers: the reference answer of each trace (the text after the answer marker).
        config: answer marker, separator and batch size.
        progress: show a progress bar.

    Returns:
        :class:`InfoGainResult` with both forms.

    Raises:
        ValueError: lengths differ, a trace has no steps, or an answer is missing or blank.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from interp.organism.tokenizer import WordTokenizer, organism_vocab
        >>> cfg = HookedTransformerConfig(
        ...     n_layers=1, d_model=8, n_ctx=32, d_head=4, d_vocab=35, act_fn="relu"
        ... )
        >>> m = Model(HookedTransformer(cfg), WordTokenizer(organism_vocab(4)), "tiny")
        >>> r = info_gain(m, ["Q n0 n2 T"], [["n0 : n1 > n1 ;", "n1 : n2 > n2 ;"]], ["2 n0 n1 n2 E"])
        >>> len(r.step_gains[0]), abs(sum(r.step_gains[0]) - r.totals[0]) < 1e-9
        (2, True)
    """
    if not (len(questions) == len(traces) == len(answers)):
        raise ValueError(
            f"got {len(questions)} questions, {len(traces)} traces and {len(answers)} answers; "
            "expected one of each per trace"
        )
    if not questions:
        raise ValueError("no traces given; expected at least one (question, trace, answer)")
    for i, (steps, ans) in enumerate(zip(traces, answers, strict=True)):
        if isinstance(steps, str):
            raise ValueError(f"trace {i} is a string; expected a list of step strings")
        if not steps:
            raise ValueError(f"trace {i} has no steps; expected at least one step string")
        if ans is None or not str(ans).strip():
            raise ValueError(f"answer {i} is missing ({ans!r}); expected the reference answer text")
    model = (
        scorer if isinstance(scorer, Model) else Model(scorer, getattr(scorer, "tokenizer", None), "scorer")
    )
    sep, marker = config.separator, config.answer_marker
    pairs, owner, shared = [], [], []
    for j, (q, steps, ans) in enumerate(zip(questions, traces, answers, strict=True)):
        ctx, trace_pairs = q, []
        for i in range(len(steps) + 1):
            if i:
                ctx = ctx + sep + steps[i - 1]
            trace_pairs.append(encode_pair(model, ctx + sep + marker, sep + ans))
            owner.append(j)
        pairs += trace_pairs
        shared.append(_as_shared(model.encode(ctx), trace_pairs))
    log.info("info gain: %d traces, %d scored prefixes", len(questions), len(pairs))
    if all(x is not None for x in shared):  # every prefix is a prefix of its trace: share contexts
        ctxs, cuts, tails, n_sc = zip(*shared, strict=True)
        s = score_shared_prefixes(model, ctxs, cuts, tails, n_sc, config.batch_size, progress)
    else:
        pre, cont = zip(*pairs, strict=True)
        s = score_continuations(model, pre, cont, config.batch_size, progress)
    nll: list[list[float]] = [[] for _ in questions]
    ppl: list[list[float]] = [[] for _ in questions]
    for k, j in enumerate(owner):
        nll[j].append(float(s.nll[k]))
        ppl[j].append(math.exp(float(s.sequence_nll[k]) / int(s.sequence_tokens[k])))
    meta = {
        "scorer": model.spec,
        "scorer_fingerprint": model.fingerprint,
        "answer_marker": marker,
        "separator": sep,
    }
    return InfoGainResult(tuple(map(tuple, nll)), tuple(map(tuple, ppl)), meta)


def _as_shared(full: list[int], pairs: list[tuple[list[int], list[int]]]):
    """``(context, cuts, tail, n_scored)`` when every pair is ``full[:cut] + marker + answer``, else None."""
    last_pre, answer = pairs[-1]
    if last_pre[: len(full)] != full or any(c != answer for _, c in pairs):
        return None
    marker = last_pre[len(full) :]
    cuts = [len(p) - len(marker) for p, _ in pairs]
    if any(k < 1 or p != full[:k] + marker for k, (p, _) in zip(cuts, pairs, strict=True)):
        return None
    return full, cuts, marker + answer, len(answer)


def split_organism_trace(response: str | Sequence[str]) -> tuple[list[str], str | None]:
    """Split an organism response into its steps and the text after its last ``A``.

    A step ends with ``;`` (self-checks and retracted mistakes stay inside their step); words
    after the last ``;`` and before ``A`` form a last, unterminated step.

    Args:
        response: the generated words after ``Q s g T`` (a string or a list of words).

    Returns:
        ``(steps, answer)``; ``answer`` is ``None`` when the response has no ``A``.

    Example:
        >>> split_organism_trace("n5 : n9 n17 > n17 ; n17 : n4 n22 > n22 ; A n5 n17 n22 E")
        (['n5 : n9 n17 > n17 ;', 'n17 : n4 n22 > n22 ;'], 'n5 n17 n22 E')
    """
    words = response.split() if isinstance(response, str) else list(response)
    answer = None
    if "A" in words:
        k = len(words) - 1 - words[::-1].index("A")
        answer = " ".join(words[k + 1 :]) or None
        words = words[:k]
    steps, cur = [], []
    for w in words:
        cur.append(w)
        if w == ";":
            steps.append(" ".join(cur))
            cur = []
    if cur:
        steps.append(" ".join(cur))
    return steps, answer
