"""Verdicts with preconditions and intervals, shared by every finding's ``claim()``.

A claim first states what had to hold for its comparison to mean anything (:class:`Precondition`:
a tune raised accuracy, knowledge was lost, RL moved the model beyond noise); the first that failed
makes the claim **not testable** (:func:`check_preconditions`), never "not reproduced". Then each
comparison is a seeded bootstrap 95% interval over problems (:func:`paired_interval` where both
sides answered the same problems, :func:`diff_interval` where they did not), and it counts in the
paper's direction only when its interval excludes zero on that side (:func:`interval_verdict`).
The intervals are :mod:`probes.stats`'s, stored as :func:`experiments.real.common.interval`'s dicts
and printed as ``-0.12 [-0.20, -0.04]``.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from experiments.claims import Claim
from experiments.real.common import fmt_iv, interval, paired

MIN_N = 10
"""Fewest observations a comparison needs: below it a percentile bootstrap is too narrow to carry a
verdict (all of 5 problems going one way gives the interval [1, 1])."""

Interval = dict[str, Any]  # experiments.real.common.interval's form: estimate, low, high, n, ...
Values = Sequence[float | int | None]  # one outcome per problem; None: not measured on it
Outcome = Literal["reproduced", "not reproduced"]


class ClaimHead(NamedTuple):
    """The fixed part of a finding's claims-table row."""

    finding: int
    title: str
    paper: str

    def claim(self, organism: str, verdict: str, why: str, pre: Sequence["Precondition"] = ()) -> Claim:
        return Claim(self.finding, self.title, self.paper, organism, verdict, why, describe(pre))


@dataclass(frozen=True)
class Precondition:
    """Something that had to hold before a comparison can be read, whether it did, and the numbers.

    Example:
        >>> str(Precondition("sft-answer raised accuracy", False, "0.01 [-0.03, 0.05] over 90 problems"))
        'sft-answer raised accuracy: failed (0.01 [-0.03, 0.05] over 90 problems)'
    """

    name: str
    held: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.name}: {'held' if self.held else 'failed'} ({self.detail})"


def describe(pre: Sequence[Precondition]) -> str:
    """The claims table's precondition cell: every precondition, held or not."""
    return "; ".join(str(p) for p in pre) if pre else "none"


def check_preconditions(head: ClaimHead, organism: str, *pre: Precondition) -> Claim | None:
    """A **not testable** claim naming the first precondition that failed, or ``None`` if all held.

    Example:
        >>> head = ClaimHead(4, "markers", "paper")
        >>> ok, bad = Precondition("a", True, "1"), Precondition("base solves OOD", False, "0 of 90")
        >>> check_preconditions(head, "o", ok) is None
        True
        >>> c = check_preconditions(head, "o", ok, bad)
        >>> c.verdict, c.explanation
        ('not testable', 'not testable: base solves OOD failed (0 of 90)')
    """
    failed = next((p for p in pre if not p.held), None)
    if failed is None:
        return None
    return head.claim(organism, "not testable", f"not testable: {failed.name} failed ({failed.detail})", pre)


def interval_verdict(iv: Interval, direction: int) -> Outcome:
    """``reproduced`` when the 95% interval excludes zero on the paper's side, else ``not reproduced``.

    Args:
        iv: an interval (:func:`experiments.real.common.interval`'s dict, or a
            :class:`probes.stats.Interval`).
        direction: ``+1`` (the paper says the quantity rises) or ``-1`` (it falls).

    Raises:
        ValueError: a direction other than +1 or -1.

    Example:
        >>> iv = {"estimate": -0.12, "low": -0.2, "high": -0.04}
        >>> interval_verdict(iv, -1), interval_verdict(iv, +1)
        ('reproduced', 'not reproduced')
    """
    if direction not in (1, -1):
        raise ValueError(f"direction={direction!r}; expected +1 (the paper's quantity rises) or -1 (falls)")
    d = _as_dict(iv)
    beyond = d["low"] > 0 if direction == 1 else d["high"] < 0
    return "reproduced" if beyond else "not reproduced"


def holds(name: str, iv: Interval | None, direction: int, unit: str = "problems") -> Precondition:
    """A precondition that a difference is nonzero on one side: its interval excludes zero there,
    over at least :data:`MIN_N` observations (``None``: not measured).

    Example:
        >>> str(holds("x raised accuracy", {"estimate": 0.1, "low": 0.05, "high": 0.15, "n": 40}, +1))
        'x raised accuracy: held (0.10 [0.05, 0.15] over 40 problems)'
    """
    if iv is None:
        return Precondition(name, False, "not measured")
    return Precondition(name, beyond_zero(iv, direction), counted(iv, unit))


def beyond_zero(iv: Interval | None, direction: int) -> bool:
    """Whether an interval exists, rests on at least :data:`MIN_N` observations and excludes zero
    on the ``direction`` side."""
    return enough(iv) and interval_verdict(iv, direction) == "reproduced"


def enough(iv: Interval | None) -> bool:
    """Whether an interval rests on at least :data:`MIN_N` observations."""
    return iv is not None and int(iv["n"]) >= MIN_N


def measured(name: str, iv: Interval | None, unit: str = "problems") -> Precondition:
    """A precondition that a comparison rests on at least :data:`MIN_N` observations."""
    if iv is None:
        return Precondition(name, False, "not measured")
    return Precondition(name, enough(iv), counted(iv, unit))


def counted(iv: Interval, unit: str = "problems") -> str:
    """``0.10 [0.05, 0.15] over 40 problems``, noting when that is fewer than :data:`MIN_N`."""
    few = f", fewer than {MIN_N}" if int(iv["n"]) < MIN_N else ""
    return f"{fmt_interval(iv)} over {iv['n']} {unit}{few}"


def fmt_interval(iv: Interval | None, digits: int = 2) -> str:
    """``-0.12 [-0.20, -0.04]``; ``n/a`` for none.

    Example:
        >>> fmt_interval({"estimate": -0.12, "low": -0.2, "high": -0.04})
        '-0.12 [-0.20, -0.04]'
    """
    return "n/a" if iv is None else fmt_iv(_as_dict(iv), digits)


def paired_interval(a: Values, b: Values) -> Interval | None:
    """Paired bootstrap 95% interval of ``mean(a - b)`` over the problems both sides answered
    (``None`` or NaN on either side drops the pair); ``None`` when no pair is left.

    Raises:
        ValueError: ``a`` and ``b`` of different lengths (they must list the same problems).

    Example:
        >>> paired_interval([1, 1, None, 0], [0, 1, 1, 0])["n"]
        3
    """
    if len(a) != len(b):
        raise ValueError(f"paired lists differ in length ({len(a)} vs {len(b)}); list the same problems")
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if _ok(x) and _ok(y)]
    if not pairs:
        return None
    from probes.stats import DEFAULT_RESAMPLES

    return paired([x for x, _ in pairs], [y for _, y in pairs], DEFAULT_RESAMPLES)


def diff_interval(a: Values, b: Values) -> Interval | None:
    """Bootstrap 95% interval of ``mean(a) - mean(b)`` for independent samples (each resampled on
    its own); ``None`` when either has no value."""
    from probes.stats import bootstrap_diff

    xa, xb = _values(a), _values(b)
    return interval(bootstrap_diff(xa, xb)) if xa and xb else None


def mean_interval(values: Values) -> Interval | None:
    """Bootstrap 95% interval of a mean (``None`` and NaN left out); ``None`` when nothing is left."""
    from probes.stats import bootstrap

    xs = _values(values)
    return interval(bootstrap(xs)) if xs else None


def proportion_interval(values: Values) -> Interval | None:
    """Wilson 95% interval of the share of true values in a 0/1 list; ``None`` for an empty one."""
    from probes.stats import wilson

    xs = _values(values)
    return interval(wilson(int(sum(x > 0 for x in xs)), len(xs))) if xs else None


def per_problem_mean(values: Sequence[float | int], per: int) -> list[float]:
    """Means of consecutive groups of ``per`` entries (``per`` samples of each problem, in order).

    Raises:
        ValueError: a length that is not a multiple of ``per``.
    """
    if per < 1 or len(values) % per:
        raise ValueError(f"{len(values)} values do not split into groups of {per}; expected a multiple")
    return [sum(values[i : i + per]) / per for i in range(0, len(values), per)]


def combine(parts: Sequence[str]) -> str:
    """One verdict from the verdicts of a finding's parts (each ``reproduced``, ``not reproduced``
    or ``not testable``): every part reproduced -> ``reproduced``; some -> ``partly``; none
    tested -> ``not testable``; else ``not reproduced``.

    Example:
        >>> combine(["reproduced", "not testable"]), combine(["not reproduced", "not testable"])
        ('partly', 'not reproduced')
    """
    tested = [p for p in parts if p != "not testable"]
    if not tested:
        return "not testable"
    if all(p == "reproduced" for p in parts):
        return "reproduced"
    return "partly" if "reproduced" in tested or "partly" in tested else "not reproduced"


def over_models(
    head: ClaimHead,
    organism: str,
    parts: dict[str, str],
    pre: Sequence[Precondition],
    found: str,
    none: str,
) -> Claim:
    """One claim from per-model verdicts (``parts``: model -> ``reproduced``, ``partly``,
    ``not reproduced`` or ``not testable``): **not testable**, naming the first failed
    precondition, when no model passed its preconditions; else :func:`combine`'s verdict, the why
    naming the models where ``found`` held (or saying ``none``), in part, and not testable.

    Example:
        >>> pre = [Precondition("a raised accuracy", False, "0.00 [-0.1, 0.1]")]
        >>> over_models(ClaimHead(1, "t", "p"), "o", {"a": "not testable"}, pre, "x", "y").explanation
        'not testable: a raised accuracy failed (0.00 [-0.1, 0.1])'
    """
    if all(p == "not testable" for p in parts.values()):
        return check_preconditions(head, organism, *pre) or head.claim(
            organism, "not testable", "not testable: no model to compare", pre
        )
    held = [n for n, p in parts.items() if p == "reproduced"]
    partial = [n for n, p in parts.items() if p == "partly"]
    untested = [n for n, p in parts.items() if p == "not testable"]
    why = f"{found} for {', '.join(held)}" if held else none
    if partial:
        why += f"; only in part for {', '.join(partial)}"
    if untested:
        why += f"; not testable for {', '.join(untested)} (a precondition failed)"
    return head.claim(organism, combine(list(parts.values())), why, pre)


# Per-problem material from the zoo: what the intervals above are computed over.


def model_details(ctx: Any, name: str) -> dict[str, list]:
    """Per-problem outcomes of zoo model ``name`` (:func:`interp.organism.evaluate.evaluate_model`'s
    greedy ``details``: ``solved_id``, ``answer_correct_id``, ``markers_ood``, ...) on ``ctx``'s
    problems with ``ctx.evaluate``'s budget, so they average to its card metrics; measured once per
    weights and settings. Nothing is sampled (the greedy lists do not depend on it) and only the
    splits the verdicts compare are decoded."""
    from dataclasses import astuple

    from interp.organism.evaluate import EvalConfig, evaluate_model

    b = ctx.budget
    splits = ("test_id", "test_ood", "test_comp", "test_start")
    cfg = EvalConfig(b.problems, b.max_new_tokens, samples=0, splits=splits)
    model = ctx.model(name)
    fmt = ctx.card(name).get("format", "cot")
    key = (model.fingerprint, str(ctx.zoo.resolve()), fmt, astuple(cfg))
    if key not in _DETAILS:
        stored = _stored_details(ctx, name, model.fingerprint, cfg)
        if stored is not None:
            _DETAILS[key] = stored
    if key not in _DETAILS:
        world, tok = ctx.world
        det: dict[str, list] = {}
        evaluate_model(model.module, tok, world, fmt, cfg, details=det)
        _DETAILS[key] = det
    return _DETAILS[key]


_DETAILS: dict[tuple, dict[str, list]] = {}


def _stored_details(ctx: Any, name: str, fingerprint: str, cfg: Any) -> dict[str, list] | None:
    """The per-problem lists the zoo stored with the card, when they are those of ``cfg`` on
    exactly these weights and problems (greedy lists do not depend on sampling settings)."""
    card = ctx.card(name)
    det = card.get("per_problem")
    ev = card.get("recipe", {}).get("eval") or {}
    if not det or card.get("fingerprint") != fingerprint or ev.get("max_new_tokens") != cfg.max_new_tokens:
        return None
    world, _ = ctx.world
    for split, tag in (("test_id", "id"), ("test_ood", "ood")):
        want = [list(p) for p in world.split(split)[: cfg.max_problems]]
        if det.get(f"problems_{tag}") != want:
            return None
    return det


def parent_comparison(ctx: Any, name: str) -> dict[str, Any]:
    """Per-problem answer correctness on ``test_id`` of zoo model ``name`` and of its parent, both
    in ``name``'s own format (``answer``: ``Q s g A``; ``cot``: the answer after a trace), for the
    precondition "the tune raised accuracy over its parent" (:func:`raised`)."""
    card = ctx.card(name)
    parent, fmt = card.get("parent") or "base", card.get("format", "cot")
    mine = model_details(ctx, name)["answer_correct_id"]
    theirs = model_details(ctx, parent)
    parent_fmt = ctx.card(parent).get("format", "cot")
    if fmt == "answer":
        key = "answer_only_correct_id"
    else:  # an answer-format parent has no per-problem accuracy after a trace
        key = "answer_correct_id" if parent_fmt == "cot" else None
    return {"parent": parent, "format": fmt, "correct": mine, "parent_correct": theirs[key] if key else None}


def gain_interval(comparison: dict[str, Any] | None) -> Interval | None:
    """The paired interval of accuracy minus the parent's, from :func:`parent_comparison`'s lists."""
    if not comparison or comparison.get("parent_correct") is None:
        return None
    return paired_interval(comparison["correct"], comparison["parent_correct"])


def raised(name: str, comparison: dict[str, Any] | None) -> Precondition:
    """``name`` raised accuracy over its parent in its own format: a paired interval over problems
    (:func:`parent_comparison`'s lists) that excludes zero upward.

    Example:
        >>> c = {"parent": "base", "format": "cot", "correct": [1] * 30, "parent_correct": [0] * 30}
        >>> raised("sft-clean", c).held, raised("sft-clean", None).detail
        (True, 'not measured')
    """
    if not comparison:
        return Precondition(f"{name} raised accuracy over its parent", False, "not measured")
    what = f"{name} raised accuracy over {comparison['parent']} ({comparison['format']} format)"
    return holds(what, gain_interval(comparison), +1)


def in_zoo(ctx: Any, names: Sequence[str]) -> list[str]:
    """Those of ``names`` that ``ctx``'s zoo holds (models a newer zoo adds, absent from older ones)."""
    from interp.organism import available_organisms

    have = set(available_organisms(ctx.zoo, doses=False))
    return [n for n in names if n in have]


def _ok(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _values(xs: Values) -> list[float]:
    return [float(x) for x in xs if _ok(x)]


def _as_dict(iv: Any) -> Interval:
    return iv if isinstance(iv, dict) else interval(iv)
