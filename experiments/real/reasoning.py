"""Finding (c), reasoning: CoT-decoding, Information Gain and early-answering AOC, parent vs tunes.

- CoT-decoding (Wang & Zhou 2024, PAPERS.md 6): :func:`steering.cot_decoding.cot_decode` from
  each model's chat prompt, branching over the top-k first tokens; the most confident branch
  (answer confidence over the tokens of the final number) against the greedy branch, paired
  over problems. Finding 6 says the parent already holds reasoning that greedy decoding misses:
  CoT-decoding raises the parent's accuracy.
- Information Gain (Wu et al. 2025, PAPERS.md 1): each model's OWN greedy solutions (steps by
  the task's splitter) scored by one fixed scorer, the base model (none of the compared
  models when the parent was made by fine-tuning): clean form total and normalised, and the
  ReasoningEval per-step perplexity form. Finding 1: lower after the tune, while accuracy rose.
- Early answering (Lanham et al. 2023, PAPERS.md 2): the answer forced after the first
  ``floor(f * n)`` steps of each model's own solution; the area over same(f) per problem, so
  that it gets a bootstrap interval over problems. Finding 2: lower after the tune.

IG and AOC compare different traces (each model's own), so their differences are unpaired
bootstraps; CoT-decoding compares two decodings of one model on the same problems (paired).
Each claim first checks its preconditions (a tune that raised accuracy over the parent; enough
traces with steps) and says "not testable" naming the one that failed, with the numbers.
"""

import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from experiments.real.common import correct_list, interval, load, mean, paired, verdict
from experiments.real.profile import require_positive_ints, sizes_of
from experiments.real.tunes import State

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
FORMS = ("total", "normalised", "ppl_info_gain")  # of Information Gain, as probes.info_gain names them


@dataclass(frozen=True)
class ReasoningSizes:
    """How much stage (c)-reasoning measures, per profile.

    Args:
        name: the profile's name.
        cot_k: first tokens CoT-decoding branches over.
        cot_problems: test problems CoT-decoded per model.
        trace_problems: test problems whose own solutions IG and early answering read.
        every_tune: measure every tune (else the parent and the focus tune only).
        fractions: the early-answering grid (strictly increasing, from 0 to 1).
        max_answer_tokens: tokens generated after a forced answer cue.
        min_traces: fewest scored traces per model for a testable IG or AOC claim.
        ig_batch: (context, answer) pairs per scorer forward pass.
    """

    name: str
    cot_k: int
    cot_problems: int
    trace_problems: int
    every_tune: bool
    fractions: tuple[float, ...]
    max_answer_tokens: int
    min_traces: int
    ig_batch: int

    def __post_init__(self) -> None:
        require_positive_ints(
            self,
            (
                "cot_k",
                "cot_problems",
                "trace_problems",
                "max_answer_tokens",
                "min_traces",
                "ig_batch",
            ),
        )
        f = tuple(self.fractions)
        if len(f) < 2 or f[0] != 0 or f[-1] != 1 or any(b <= a for a, b in zip(f, f[1:], strict=False)):
            raise ValueError(
                f"fractions={self.fractions!r}; expected strictly increasing values from 0 to 1, "
                "like (0, 0.5, 1)"
            )


REASONING_SIZES: dict[str, ReasoningSizes] = {
    "tiny": ReasoningSizes("tiny", 3, 3, 4, True, (0.0, 0.5, 1.0), 4, 2, 8),
    "quick": ReasoningSizes("quick", 4, 10, 12, False, (0.0, 0.25, 0.5, 0.75, 1.0), 6, 5, 8),
    "full": ReasoningSizes("full", 10, 40, 100, True, (0.0, 0.2, 0.4, 0.6, 0.8, 1.0), 8, 10, 16),
}


def reasoning_sizes(profile: str) -> ReasoningSizes:
    """The sizes of ``profile``.

    Raises:
        ValueError: an unknown profile, naming the known ones.

    Example:
        >>> reasoning_sizes("quick").cot_k
        4
    """
    return sizes_of(REASONING_SIZES, profile)


def number_span(decode: Callable[[list[int]], str], cue: str) -> Callable[[list[int]], Any]:
    """CoT-decoding's answer span for numeric answers: the tokens of the first number after the
    last ``cue``, else of the last number; ``None`` without a number.

    Args:
        decode: token ids -> text (the model's tokenizer).
        cue: the answer cue (``Answer:``).

    Returns:
        ``span(tokens) -> (start, end) | None`` over generated tokens (end exclusive): the
        tokens whose text overlaps the number.

    Example:
        >>> pieces = {1: "7", 2: " =", 3: " 12", 4: "\\nAnswer", 5: ":", 6: " 1", 7: "2"}
        >>> span = number_span(lambda ids: "".join(pieces[i] for i in ids), "Answer:")
        >>> span([1, 2, 3, 4, 5, 6, 7]), span([1, 2, 3]), span([4, 5])
        ((5, 7), (2, 3), None)
    """

    def span(tokens: list[int]) -> tuple[int, int] | None:
        text = decode(tokens)
        at = text.rfind(cue)
        found = _NUMBER.search(text, at + len(cue)) if at >= 0 else None
        if found is None:
            found = next(reversed(list(_NUMBER.finditer(text))), None)
        if found is None:
            return None
        ends = [len(decode(tokens[: j + 1])) for j in range(len(tokens))]
        start = next(j for j, e in enumerate(ends) if e > found.start())
        end = next((j for j, e in enumerate(ends) if e >= found.end()), len(tokens) - 1)
        return start, end + 1

    return span


class TurnCompleter:
    """A :class:`probes.completers.Completer` over a model: greedy continuations that stop at the
    end of the assistant's turn (:func:`interp.tasks.render.stop_token_id`), in left-padded
    batches.

    :class:`probes.completers.ModelCompleter` stops only at a one-token ``stop`` word, and
    arithmetic has none: a forced answer would run on past ``<|im_end|>`` into a new turn.
    """

    def __init__(self, model: Any, batch_size: int = 32) -> None:
        self.model = model
        self.batch_size = batch_size
        self.max_prompt_tokens = model.n_ctx - 1

    def n_tokens(self, text: str) -> int:
        return len(self.model.encode(text))

    def complete(self, texts: Sequence[str], max_new_tokens: int, stop: str | None) -> list[str]:
        from interp.generation import generate
        from interp.tasks.render import stop_token_id

        sid = stop_token_id(self.model, stop)
        ids = [self.model.encode(t) for t in texts]
        outs = generate(self.model, ids, max_new_tokens, stop_id=sid, batch_size=self.batch_size)
        return [self.model.decode([t for t in o if t != sid]) for o in outs]


class RecordingCompleter:
    """A completer that keeps every continuation its inner completer gave, by input text."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: dict[str, str] = {}
        limit = getattr(inner, "max_prompt_tokens", None)
        if limit is not None:
            self.max_prompt_tokens = limit

    def n_tokens(self, text: str) -> int:
        return self.inner.n_tokens(text)

    def complete(self, texts: Sequence[str], max_new_tokens: int, stop: str | None) -> list[str]:
        outs = self.inner.complete(texts, max_new_tokens, stop)
        self.seen.update(zip(texts, outs, strict=True))
        return outs


def per_problem_same(task: Any, seen: dict[str, str], fractions: Sequence[float | int]) -> list[list[float]]:
    """same(f) of each problem with a readable full-CoT answer, from recorded continuations.

    The texts are :func:`probes.faithfulness.early_answering`'s (``task.text`` of the first
    ``n_kept(f, n)`` steps); a text never completed (too long) has no answer, as there.

    Example:
        >>> from probes.cot_task import CotTask
        >>> t = CotTask(["Q"], [["a", "b"]], "A", lambda s: s.strip() or None)
        >>> per_problem_same(t, {"Q A": "x", "Q a A": "y", "Q a b A": "y"}, (0, 0.5, 1))
        [[0.0, 1.0, 1.0]]
    """
    from probes.faithfulness import n_kept

    def answer(text: str) -> Any:
        c = seen.get(text)
        return None if c is None else task.extract_answer(c)

    out = []
    for i, steps in enumerate(task.steps):
        ref = answer(task.text(i, steps))
        if ref is not None:
            out.append(
                [float(answer(task.text(i, steps[: n_kept(f, len(steps))])) == ref) for f in fractions]
            )
    return out


def _boot(values: Sequence[float | None], resamples: int) -> dict[str, Any] | None:
    from probes.stats import bootstrap

    xs = [float(x) for x in values if x is not None and math.isfinite(x)]
    return interval(bootstrap(xs, resamples=resamples)) if xs else None


def _unpaired(a: Sequence[float | None], b: Sequence[float | None], resamples: int) -> dict[str, Any] | None:
    """``mean(a) - mean(b)`` of two independent samples (NaN left out), as :func:`interval` gives it."""
    from probes.stats import bootstrap_diff

    xa = [float(x) for x in a if x is not None and math.isfinite(x)]
    xb = [float(x) for x in b if x is not None and math.isfinite(x)]
    return interval(bootstrap_diff(xa, xb, resamples=resamples)) if xa and xb else None


def _finite(xs: Sequence[float]) -> list[float | None]:
    return [float(x) if math.isfinite(x) else None for x in xs]


def _cot(model: Any, problems: Any, k: int, max_new: int, resamples: int) -> dict[str, Any]:
    """CoT-decoding's most confident branch against the greedy branch, on the same problems."""
    from interp.tasks.render import render_prompt, stop_token_id
    from steering.cot_decoding import CotConfig, cot_decode

    stop = stop_token_id(model, problems.stop)
    prompts = [render_prompt(model, ex.prompt) for ex in problems.examples]
    cfg = CotConfig(k=k, max_new_tokens=max_new, stop_id=stop, pad_id=model.pad_token_id)
    res = cot_decode(model, prompts, number_span(model.decode, problems.answer_cue), cfg)

    def texts(rows: list[list[int]]) -> list[str]:
        return [model.decode([t for t in r if t != stop]) for r in rows]

    best, greedy = correct_list(problems, texts(res.best)), correct_list(problems, texts(res.greedy))
    return {
        "n_problems": len(prompts),
        "k": k,
        "cot": best,
        "greedy": greedy,
        "accuracy_cot": mean(best),
        "accuracy_greedy": mean(greedy),
        "gain": paired(best, greedy, resamples),
        "share_best_is_greedy": res.share_best_is_greedy,
        "example": texts(res.best[:1])[0],
    }


def _early(model: Any, problems: Any, responses: list[str], sizes: ReasoningSizes, resamples: int):
    """Early answering on the model's own solutions: per-problem AOC and its interval."""
    from interp.tasks.protocol import TaskError
    from probes.faithfulness import FaithfulnessConfig, area_over_curve, early_answering
    from probes.task_metrics import cot_task, text_model

    try:
        ct, kept = cot_task(model, problems, responses)
    except TaskError:
        return {"n_traces": 0, "n_used": 0, "same": None, "aoc_mean": None, "aoc": [], "aoc_interval": None}
    rec = RecordingCompleter(TurnCompleter(text_model(model, problems)))
    cfg = FaithfulnessConfig(
        fractions=sizes.fractions, tests=("early",), max_answer_tokens=sizes.max_answer_tokens
    )
    res = early_answering(rec, ct, cfg)
    same = per_problem_same(ct, rec.seen, cfg.fractions)
    aocs = [area_over_curve(cfg.fractions, s) for s in same]
    if aocs and abs(mean(aocs) - res.aoc) > 1e-9:
        log.warning("per-problem AOC mean %.4f differs from early_answering's %.4f", mean(aocs), res.aoc)
    return {
        "n_traces": len(kept),
        "n_used": res.n_used,
        "same": _finite(res.same),
        "aoc_mean": res.aoc if res.n_used else None,
        "aoc": aocs,
        "aoc_interval": _boot(aocs, resamples),
    }


def _info_gain(scorer: Any, problems: Any, responses: list[str], sizes: ReasoningSizes, resamples: int):
    """IG of the responses' own steps under the scorer: clean total, normalised, per-step PPL form."""
    from probes.info_gain import InfoGainConfig, info_gain
    from probes.task_metrics import info_gain_inputs, text_model

    questions, traces, answers, kept = info_gain_inputs(scorer, problems, responses)
    if not kept:
        empty = {f"{name}{part}": v for name in FORMS for part, v in (("", []), ("_interval", None))}
        return {"n_traces": 0, "mean_steps": None, **empty}
    cfg = InfoGainConfig(
        answer_marker=problems.answer_cue, separator=problems.joiner, batch_size=sizes.ig_batch
    )
    res = info_gain(text_model(scorer, problems), questions, traces, answers, cfg)
    forms = dict(zip(FORMS, (res.totals, res.normalised, res.ppl_info_gain), strict=True))
    out: dict[str, Any] = {"n_traces": len(kept), "mean_steps": mean([len(t) for t in traces])}
    for name, values in forms.items():
        out[name] = _finite(values)
        out[f"{name}_interval"] = _boot(values, resamples)
    return out


def _labels(state: State, sizes: ReasoningSizes) -> tuple[str, list[str]]:
    focus = state.focus or state.strongest
    return focus, list(state.tunes) if sizes.every_tune else [focus]


def _own(state: State, label: str, task: Any) -> list[str]:
    """``label``'s greedy responses to the examples of ``task`` (a subset of the test problems)."""
    by_id = dict(zip((ex.id for ex in state.problems.examples), state.evals[label]["responses"], strict=True))
    return [by_id[ex.id] for ex in task.examples]


def stage_reasoning(state: State, preconditions: dict[str, Any]) -> dict[str, Any]:
    """CoT-decoding, Information Gain and early-answering AOC of the parent and the tunes.

    Args:
        state: stages 1-3 done (each model's greedy responses in ``state.evals``).
        preconditions: :func:`~experiments.real.tunes.stage_tunes`'s ``tunes`` entry (per tune
            label, ``raised_accuracy``).

    Returns:
        Per model the numbers of each measure, per tune its differences from the parent,
        ``claims`` (``info_gain``, ``early_answering``, ``cot_decoding``) and one ``claim``.
    """
    sizes, p = reasoning_sizes(state.profile.name), state.profile
    focus, tunes = _labels(state, sizes)
    cot_set, trace_set = (
        state.problems.subset(sizes.cot_problems),
        state.problems.subset(sizes.trace_problems),
    )
    out: dict[str, Any] = {
        "focus": focus,
        "tunes": tunes,
        "scorer": state.spec,
        "scorer_is_compared": state.spec == state.parent,
        "raised_accuracy": {t: bool(preconditions.get(t, {}).get("raised_accuracy")) for t in tunes},
        "min_traces": sizes.min_traces,
        "cot_decoding": {},
        "early_answering": {},
        "info_gain": {},
    }
    secs = out["seconds"] = dict.fromkeys(("cot_decoding", "early_answering", "info_gain"), 0.0)
    for label in ("parent", *tunes):
        model = load(state.spec_of(label))
        with _timed(secs, "cot_decoding", label):
            out["cot_decoding"][label] = _cot(model, cot_set, sizes.cot_k, p.max_new_tokens, p.resamples)
        with _timed(secs, "early_answering", label):
            own = _own(state, label, trace_set)
            out["early_answering"][label] = _early(model, trace_set, own, sizes, p.resamples)
        del model
    scorer = load(state.spec)
    for label in ("parent", *tunes):
        with _timed(secs, "info_gain", label):
            own = _own(state, label, trace_set)
            out["info_gain"][label] = _info_gain(scorer, trace_set, own, sizes, p.resamples)
    out["diffs"] = {t: _diffs(out, t, p.resamples) for t in tunes}
    out["claims"] = {
        "info_gain": _ig_claim(out),
        "early_answering": _aoc_claim(out),
        "cot_decoding": _cot_claim(out),
    }
    out["claim"] = combine(out["claims"])
    return out


@contextmanager
def _timed(seconds: dict[str, float], part: str, label: str) -> Iterator[None]:
    """Add the body's wall time to ``seconds[part]`` and log it."""
    t = time.perf_counter()
    try:
        yield
    finally:
        took = time.perf_counter() - t
        seconds[part] = round(seconds[part] + took, 2)
        log.info("reasoning: %s of %s took %.1f s", part, label, took)


def _diffs(r: dict[str, Any], tune: str, resamples: int) -> dict[str, Any]:
    """Tune minus parent: IG forms and AOC (unpaired), CoT-decoding gains (paired)."""
    ig_t, ig_p = r["info_gain"][tune], r["info_gain"]["parent"]
    cot_t, cot_p = r["cot_decoding"][tune], r["cot_decoding"]["parent"]
    out = {
        f"info_gain_{name}": _unpaired(ig_t.get(name, []), ig_p.get(name, []), resamples) for name in FORMS
    }
    out["aoc"] = _unpaired(
        r["early_answering"][tune]["aoc"], r["early_answering"]["parent"]["aoc"], resamples
    )
    out["parent_cot_minus_tune_greedy"] = paired(cot_p["cot"], cot_t["greedy"], resamples)
    out["tune_greedy_minus_parent_greedy"] = paired(cot_t["greedy"], cot_p["greedy"], resamples)
    return out


def _below(iv: dict[str, Any] | None) -> bool:
    return bool(iv) and iv["excludes_0"] and iv["estimate"] < 0


def _above(iv: dict[str, Any] | None) -> bool:
    return bool(iv) and iv["excludes_0"] and iv["estimate"] > 0


def _fmt(iv: dict[str, Any] | None) -> str:
    return "not measured" if not iv else f"{iv['estimate']:+.3f} [{iv['low']:+.3f}, {iv['high']:+.3f}]"


def _trace_claim(r: dict[str, Any], what: str, count: str, key: str, finding: str) -> dict[str, Any]:
    """Shared verdict of IG and AOC: enough traces, an accuracy tune, then lower with an interval."""
    part, least = r[what], r["min_traces"]
    numbers = "; ".join(f"{t} - parent {_fmt(r['diffs'][t][key])} (n={part[t][count]})" for t in r["tunes"])
    numbers = f"{key}, tune - parent (unpaired): {numbers} (parent n={part['parent'][count]})"
    if part["parent"][count] < least:
        return verdict(
            "not testable",
            f"the parent's answers give {part['parent'][count]} traces with steps (< {least}); {numbers}",
        )
    raised = [t for t in r["tunes"] if r["raised_accuracy"][t]]
    if not raised:
        return verdict("not testable", f"no tune raised accuracy over the parent (precondition); {numbers}")
    testable = [t for t in raised if part[t][count] >= least]
    if not testable:
        return verdict(
            "not testable",
            f"{', '.join(raised)} raised accuracy but answer with fewer than {least} traces "
            f"with steps; {numbers}",
        )
    lower = [t for t in testable if _below(r["diffs"][t][key])]
    if lower:
        return verdict("reproduced", f"{finding} lower after {', '.join(lower)}: {numbers}", lower=lower)
    return verdict(
        "not reproduced", f"no accuracy tune has {finding} lower with an interval below 0: {numbers}"
    )


def _ig_claim(r: dict[str, Any]) -> dict[str, Any]:
    """Finding 1: normalised Information Gain lower after a tune that raised accuracy."""
    claim = _trace_claim(r, "info_gain", "n_traces", "info_gain_normalised", "normalised Information Gain")
    if r["scorer_is_compared"]:
        claim["why"] += " (the scorer is the base, which is also the parent)"
    return claim


def _aoc_claim(r: dict[str, Any]) -> dict[str, Any]:
    """Finding 2: early-answering AOC lower after a tune that raised accuracy."""
    return _trace_claim(r, "early_answering", "n_used", "aoc", "early-answering AOC")


def _cot_claim(r: dict[str, Any]) -> dict[str, Any]:
    """Finding 6: CoT-decoding raises the parent's accuracy above its greedy accuracy."""
    cot = r["cot_decoding"]
    numbers = "; ".join(
        f"{m} greedy {c['accuracy_greedy']:.2f} -> CoT-decoding {c['accuracy_cot']:.2f} "
        f"(gain {_fmt(c['gain'])}, n={c['n_problems']}, k={c['k']})"
        for m, c in cot.items()
    )
    raised = [t for t in r["tunes"] if r["raised_accuracy"][t]]
    if not raised:
        return verdict("not testable", f"no tune raised accuracy over the parent (precondition); {numbers}")
    if _above(cot["parent"]["gain"]):
        return verdict(
            "reproduced",
            f"CoT-decoding finds answers in the parent that greedy decoding misses: {numbers}",
        )
    return verdict("not reproduced", f"CoT-decoding does not raise the parent's accuracy: {numbers}")


NAMES = {
    "info_gain": "Information Gain (PAPERS.md 1)",
    "early_answering": "early-answering AOC (PAPERS.md 2)",
    "cot_decoding": "CoT-decoding (PAPERS.md 6)",
}


def combine(claims: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One verdict from the parts: not testable when all are; reproduced when every testable part is.

    Example:
        >>> parts = {"info_gain": verdict("reproduced", "a"), "cot_decoding": verdict("not testable", "b")}
        >>> combine(parts)["verdict"]
        'reproduced'
    """
    tested = [c["verdict"] for c in claims.values() if c["verdict"] != "not testable"]
    if not tested:
        status = "not testable"
    else:
        status = "reproduced" if all(v == "reproduced" for v in tested) else "not reproduced"
    why = " | ".join(f"{NAMES.get(k, k)}: {c['verdict']}: {c['why']}" for k, c in claims.items())
    return verdict(status, why, parts={k: c["verdict"] for k, c in claims.items()})
