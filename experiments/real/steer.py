"""Stage 7, finding (d): does a self-check direction from the parent bring self-checks back in the tune?

The vector: difference of means of the parent's residual stream at a middle layer, between the
positions just before a self-check phrase and every other response position, over the
parent's own greedy answers to the test problems (Venhoff et al.; Ward et al.: the token before
the behaviour). It is added to the tune that lost the most self-check phrases
(:func:`steering_target`) at a few multiples of its own length, three ways (:class:`Method`):

- ``always``: at every position, prompt included;
- ``targeted``: only at the tokens that end a step (:data:`STEP_ENDS`), where the parent decides
  whether a self-check follows;
- ``conditional``: only where a linear gate on the tune's own activation along the vector's
  direction exceeds a threshold halfway between the parent's mean score before a phrase and
  elsewhere (:func:`steering.conditional.steer_when`), with the share of steered positions;
- ``sae_clamp``: the parent's best self-check SAE feature (the features stage's top-ranked one,
  :mod:`experiments.real.features`) clamped in the tune to multiples of its mean activation before
  a phrase in the parent (:data:`CLAMP_MULTIPLES`) at the step-end tokens
  (:func:`steering.sae_steering.clamp_feature`): the transfer of the parent's feature.

Beside them, not part of the verdict (nothing is brought back into the tune): Galichin et al.'s
setting, ``sae_amplify (parent)``, the same feature multiplied by :data:`AMPLIFY` in the parent
itself at every position (:func:`steering.sae_steering.amplify_feature`), paired against the
unsteered parent. Without the features stage's SAE both are recorded as not run, with why.

Each method's control is a random direction of the same norm at the same multiples and the same
positions (the same selector, the same gate). For ``sae_clamp`` the norm is that of the vector the
clamp adds where the feature is silent (clamp value x decoder row); for the amplification, that of
``(factor - 1) x`` its mean activation before a phrase ``x`` decoder row, added where the feature
fires (a :class:`steering.conditional.FeatureGate`). Measured against the unsteered tune on the same
problems (paired): self-check phrases per response and accuracy; the cost is the KL divergence
of the next-token distribution from the unsteered tune's on neutral text. Success is judged by
function too: recovery after a hand-written wrong step (:mod:`experiments.real.wrong_steps`) at
each method's chosen scale (:func:`chosen_scale`), against the unsteered tune and the random
control.
"""

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from experiments.real.common import interval, load, mean, paired, respond, self_checks, verdict
from experiments.real.profile import SELF_CHECK
from experiments.real.tunes import State

log = logging.getLogger(__name__)

DEGENERATE = 3.0
"""A steered response with more than this many times the parent's self-check phrases per
response repeats them: degenerate text, not self-checking (measured: "check check check ...",
72 per response at 1x on SmolLM2 against the parent's 2.6)."""

ACCURACY_COST = 0.05
"""Largest accuracy loss against the unsteered tune (the estimate) that still counts as within costs."""

STEP_ENDS = (".", "\n", ".\n")
"""Text that ends a step in the models' answers (``16 - 6 = 10. Let me check: 16 - 6 = 10.
Correct.\\n``): the full stop, the line break, and both together, each kept only when
``model.encode(text, add_special_tokens=False)`` gives it as one token (a tokenizer that prepends
an empty word-start token, like a Metaspace BPE, has it dropped first). SmolLM2: ``.`` is 30 and
``\\n`` is 198 (``.\\n`` is those two). ``targeted`` steers at these tokens themselves: after a
step ends, the model decides what the next step is, a check (``Let me check``, ``Wait``) or the
next calculation. This is not where the vector was measured: the position just before a phrase
is mostly `` me`` of ``Let me check`` (on SmolLM2's parent, 3 of 104 such positions hold a step
end; ``n_before_phrase_at_step_end`` records it per run)."""

METHODS = ("always", "targeted", "conditional")

CLAMP = "sae_clamp"
AMPLIFY_LABEL = "sae_amplify (parent)"

CLAMP_MULTIPLES = (1.0, 2.0)
"""``sae_clamp`` sets its feature to these multiples of the feature's mean activation before a
phrase in the parent (SmolLM2: feature 1009 at 34.8, against 0.29 elsewhere). Set for the runtime
budget (each multiple costs two steered generations), not from any result."""

AMPLIFY = 2.0
"""The one factor of ``sae_amplify (parent)`` (Galichin et al. amplify a feature a few times);
set for the runtime budget, not from any result."""

POSITIONED_SCALES = 2
"""``targeted`` and ``conditional`` run at the largest this-many of the profile's scales (always-on
at all of them): each extra scale costs two steered generations, and a vector added at a few
positions needs at least the multiple that changes anything at every position. Set for the
runtime budget (about 3 minutes added on 2 CPU cores), not from any result."""

NEUTRAL = (
    "The river runs through the old town and under three stone bridges.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "She opened the window, and the smell of rain filled the small kitchen.",
    "The museum is open every day except Monday, from nine until five.",
    "A balanced diet includes vegetables, fruit, grains and some protein.",
    "The train to the coast leaves at half past seven in the morning.",
    "Mountains in the north are covered with snow for most of the year.",
    "He wrote a short letter to his grandmother and posted it on Friday.",
)
_PHRASE = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, SELF_CHECK)) + r")(?!\w)", re.I)


def phrase_positions(model: Any, prompt_ids: list[int], response: str) -> tuple[list[int], list[int]]:
    """Token rows ``prompt + response`` and the index of the token just before each self-check phrase.

    A phrase starting at character ``c`` of the response begins in the first token whose
    decoded prefix of the response reaches past ``c``; the position before it is the one whose
    residual stream predicts the phrase.
    """
    ids = model.encode(response, add_special_tokens=False)
    starts = [m.start() for m in _PHRASE.finditer(response)]
    before = []
    for c in starts:
        for j in range(len(ids)):
            if len(model.decode(ids[: j + 1])) > c:
                before.append(len(prompt_ids) + j - 1)
                break
    return prompt_ids + ids, sorted(set(before))


def step_end_ids(model: Any) -> tuple[int, ...]:
    """The ids of :data:`STEP_ENDS` that the tokenizer encodes as one token each (no special tokens)."""
    out = set()
    for text in STEP_ENDS:
        ids = [i for i in model.encode(text, add_special_tokens=False) if model.decode([i])]
        if len(ids) == 1 and model.decode(ids) == text:
            out.add(ids[0])
    return tuple(sorted(out))


@dataclass(frozen=True)
class Method:
    """Where a vector is added: ``always`` (every position), ``targeted`` (where ``selector`` picks)
    or ``conditional`` (where ``gate`` fires on the steered model's own activation)."""

    name: str
    selector: Any = None
    gate: Any = None

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise ValueError(f"method={self.name!r}; expected one of {METHODS}")
        if (self.name == "targeted") != (self.selector is not None) or (self.name == "conditional") != (
            self.gate is not None
        ):
            raise ValueError(
                f"method={self.name!r} takes a selector only when targeted, a gate only when conditional"
            )

    @contextmanager
    def apply(self, model: Any, vec: Any, scale: float) -> Iterator[Any]:
        """Steer ``model`` with ``scale * vec`` in the body; yields the gate's counts when conditional."""
        if self.gate is not None:
            from steering.conditional import steer_when

            with steer_when(model, vec, self.gate, scale=scale) as stats:
                yield stats
        else:
            with vec.apply(model, scale=scale, positions=self.selector):
                yield None


@dataclass(frozen=True)
class FeatureEdit:
    """An SAE feature rewritten at its hook, with ``apply`` shaped like :meth:`Method.apply`.

    ``sae_clamp`` sets the feature to ``scale * typical`` where ``selector`` picks;
    ``sae_amplify`` multiplies it by ``scale`` at every position and yields, through a
    :class:`~steering.conditional.FeatureGate` that adds nothing, the share of positions where the
    feature fires (the only ones the amplification changes).
    """

    name: str
    sae: Any
    feature: int
    typical: float
    hook: str
    selector: Any = None
    gate: Any = None  # the edit is not gated; the share comes from the selector or the yielded counts

    def __post_init__(self) -> None:
        if self.name not in ("sae_clamp", "sae_amplify"):
            raise ValueError(f"name={self.name!r}; expected 'sae_clamp' or 'sae_amplify'")
        if (self.name == "sae_clamp") != (self.selector is not None):
            raise ValueError(f"name={self.name!r} takes a selector only when it is sae_clamp")

    def firing(self) -> Any:
        """A gate that fires where the feature is active."""
        from steering.conditional import FeatureGate

        return FeatureGate(self.hook, self.sae, self.feature, threshold=0.0)

    def vector(self, multiple: float = 1.0) -> Any:
        """``multiple * typical * W_dec[feature]`` as a steering vector at the edit's hook."""
        from steering.sae_steering import from_sae_feature

        v = from_sae_feature(self.sae, self.feature, hook_name=self.hook)
        return type(v)({self.hook: multiple * self.typical * v.directions[self.hook]}, v.meta)

    @contextmanager
    def apply(self, model: Any, vec: Any, scale: float) -> Iterator[Any]:
        """The edit at ``scale`` in the body; ``vec`` is not used (it is the random control's norm)."""
        from steering.sae_steering import amplify_feature, clamp_feature

        if self.name == "sae_clamp":
            value = scale * self.typical
            with clamp_feature(model, self.sae, self.feature, value, self.selector, self.hook):
                yield None
            return
        from steering.conditional import steer_when

        count = self.vector(0.0)  # a zero vector: the gate only counts
        with steer_when(model, count, self.firing()) as stats:
            with amplify_feature(model, self.sae, self.feature, scale, hook_name=self.hook):
                yield stats


def sae_feature(features: dict[str, Any] | None, d_model: int) -> tuple[dict[str, Any] | None, str]:
    """The features stage's top-ranked self-check feature and the parent's SAE, or why there is none.

    Args:
        features: :func:`experiments.real.features.stage_features`'s result (``None``: not run).
        d_model: the steered model's width.

    Returns:
        ``({"sae", "feature", "typical", "mean_other", "hook", "dir"}, "")`` or ``(None, reason)``.
    """
    from steering.sae_io import load_sae

    if not features:
        return None, "no SAE: the features stage did not run"
    rows, where = features.get("features") or [], (features.get("cache") or {}).get("dir")
    if not where:
        return None, "no SAE: the features stage trained none (no position before a phrase)"
    if not rows:
        return None, "no SAE feature: the features stage chose none"
    top = rows[0]  # the stage's own ranking: largest excess of the mean before a phrase
    typical = float(top["mean_before"])
    if not typical > 0 or typical == float("inf"):
        return None, f"no SAE feature: feature {top['feature']} has mean {typical!r} before a phrase"
    from interp.errors import InterpError

    path = Path(where) / "sae_parent"
    try:
        sae = load_sae(path)
    except InterpError as exc:
        return None, f"no SAE: {exc}"
    hook = str(features.get("hook") or "")
    own = getattr(getattr(sae.cfg, "metadata", None), "hook_name", None)
    if own and own != hook:
        return None, f"no SAE: the SAE in {str(path)!r} reads {own!r}, the features stage says {hook!r}"
    if int(sae.cfg.d_in) != d_model:
        return None, f"no SAE: the SAE in {str(path)!r} reads width {sae.cfg.d_in}, the model has {d_model}"
    info = {"feature": int(top["feature"]), "typical": typical, "mean_other": float(top["mean_other"])}
    return {"sae": sae, **info, "hook": hook, "dir": str(path)}, ""


def self_check_vector(state: State, hook: str, parent: Any = None) -> tuple[Any, dict[str, Any]]:
    """Difference of means at ``hook`` of the parent: before self-check phrases vs other response
    positions; with the parent's mean score along the vector's unit direction at each kind of
    position (the conditional gate's threshold lies halfway between them)."""
    import torch

    from interp.hooks import record
    from interp.tasks.render import render_prompt
    from steering.vectors import SteeringVector, mean_difference, model_meta

    parent = load(state.parent) if parent is None else parent
    ends = set(step_end_ids(parent))
    pos, neg, at_end = [], [], 0
    for ex, text in zip(state.problems.examples, state.evals["parent"]["responses"], strict=True):
        prompt = render_prompt(parent, ex.prompt)
        row, before = phrase_positions(parent, prompt, text)
        if not before or len(row) > parent.n_ctx:
            continue
        with torch.no_grad(), record(parent, hook, device="cpu") as acts:
            parent(torch.tensor([row]))
        a = acts[hook][0].float()
        response = list(range(len(prompt) - 1, len(row)))
        pos.append(a[before])
        neg.append(a[[i for i in response if i not in before]])
        at_end += sum(row[i] in ends for i in before)
    if not pos:
        return None, {"n_before_phrase": 0, "n_other": 0}
    p, n = torch.cat(pos), torch.cat(neg)
    meta = {
        "method": "mean",
        "d_model": int(p.shape[1]),
        "model": model_meta(parent),
        "provenance": {"source": "parent's greedy answers", "positives": len(p), "negatives": len(n)},
    }
    direction = mean_difference(p, n)
    unit = direction / direction.norm().clamp_min(1e-12)
    before_score, other_score = float((p @ unit).mean()), float((n @ unit).mean())
    info = {
        "n_before_phrase": len(p),
        "n_other": len(n),
        "n_before_phrase_at_step_end": at_end,
        "parent_score_before_phrase": before_score,
        "parent_score_other": other_score,
        "gate_threshold": (before_score + other_score) / 2,
    }
    return SteeringVector({hook: direction}, meta), info


def _kl(model: Any, vec: Any, scale: float, method: "Method | FeatureEdit") -> list[float]:
    """Per neutral text: mean over positions of KL(unsteered || steered)."""
    import torch

    rows = [torch.tensor([model.encode(text)]) for text in NEUTRAL]
    with torch.no_grad():
        refs = [torch.log_softmax(model(toks).float(), -1) for toks in rows]
        with method.apply(model, vec, scale):  # entered once: setting hooks up is not free
            news = [torch.log_softmax(model(toks).float(), -1) for toks in rows]
    return [float((ref.exp() * (ref - new)).sum(-1).mean()) for ref, new in zip(refs, news, strict=True)]


def _selected_share(model: Any, problems: Any, texts: list[str], selector: Any) -> float:
    """Share of prompt + response tokens that ``selector`` picks."""
    import torch

    from interp.tasks.render import render_prompt

    hit = seen = 0
    for ex, t in zip(problems.examples, texts, strict=True):
        row = render_prompt(model, ex.prompt) + model.encode(t, add_special_tokens=False)
        hit += int(selector.mask(torch.tensor([row])).sum())
        seen += len(row)
    return hit / seen if seen else float("nan")


def _measure(
    state: State,
    model: Any,
    problems: Any,
    vec: Any,
    scale: float,
    base: dict,
    method: "Method | FeatureEdit",
) -> dict[str, Any]:
    p = state.profile
    with method.apply(model, vec, scale) as stats:
        texts = [r[0] for r in respond(model, problems, p.max_new_tokens)]
    correct = [int(problems.correct(ex, t)) for ex, t in zip(problems.examples, texts, strict=True)]
    checks = self_checks(texts)
    from probes.stats import bootstrap

    kl = _kl(model, vec, scale, method)
    if stats is not None:
        share = stats.share
    elif method.selector is not None:
        share = _selected_share(model, problems, texts, method.selector)
    else:
        share = 1.0
    return {
        "scale": scale,
        "added_norm": scale * float(next(iter(vec.norms().values()))),
        "self_checks_per_response": mean(checks),
        "accuracy": mean(correct),
        "self_checks_diff": paired(checks, base["self_checks"], p.resamples),
        "accuracy_diff": paired(correct, base["correct"], p.resamples),
        "kl_neutral": interval(bootstrap(kl, resamples=p.resamples)),
        "steered_share": share,
        "example": texts[0],
    }


def _random_like(vec: Any, hook: str) -> Any:
    """A random direction (seed 0) of ``vec``'s norm at ``hook``."""
    from steering.vectors import SteeringVector, random_direction

    return SteeringVector(
        {hook: random_direction(vec.d_model, vec.norms()[hook], seed=0)},
        {**vec.meta, "method": "random", "provenance": {"source": "randn, seed 0, same norm"}},
    )


def method_scales(name: str, scales: "tuple[float, ...]") -> list[float]:
    """The multiples a method runs at: every one for ``always``, the largest
    :data:`POSITIONED_SCALES` for the methods that steer only some positions."""
    return list(scales) if name == "always" else sorted(scales)[-POSITIONED_SCALES:]


def methods_for(model: Any, vec: Any, hook: str, threshold: float) -> dict[str, Method]:
    """The three methods for ``model``: ``targeted`` only when a step end is one token."""
    from interp.selectors import AtTokens
    from steering.conditional import LinearGate

    d = vec.directions[hook].float()
    out = {"always": Method("always")}
    ends = step_end_ids(model)
    if ends:
        out["targeted"] = Method("targeted", selector=AtTokens(ends))
    out["conditional"] = Method(
        "conditional", gate=LinearGate(hook, d / d.norm().clamp_min(1e-12), threshold=threshold)
    )
    return out


class Plan(NamedTuple):
    """One method of stage 7: where it steers, its vector (for a feature edit: the vector whose norm
    the control copies), its random control, its scales, and the unsteered run it is paired with."""

    name: str
    model: Any
    method: Any
    vector: Any
    control: Any
    random: Any
    scales: list[float]
    against: str = "tune"


def stage_steering(
    state: State, verbalisation: dict[str, Any], features: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The parent's self-check vector and a random one of its norm, applied to the focus tune by
    each :class:`Method`, the parent's SAE feature clamped in the tune and amplified in the parent
    (:class:`FeatureEdit`), then recovery after a wrong step at each method's chosen scale.

    The focus tune is :func:`experiments.real.tunes.choose_focus`'s choice.

    Args:
        state: stages 1-3 done.
        verbalisation: stage (b)'s result (which tunes lost self-check phrases).
        features: stage (b)-features' result (its SAE and chosen features); ``None`` when it did not
            run: ``sae_clamp`` and the amplification are then recorded in ``not_run`` with why.
    """
    from experiments.real.wrong_steps import WRONG_STEP_TOKENS, recovery, unsteered

    p = state.profile
    tune, why = steering_target(state)
    model = load(state.spec_of(tune))
    parent = load(state.parent)
    hook = f"blocks.{model.n_layers // 2}.hook_resid_post"
    vec, info = self_check_vector(state, hook, parent)
    out: dict[str, Any] = {"tune": tune, "tune_why": why, "hook": hook, **info, "scales": {}, "random": {}}
    if vec is None:
        out["claim"] = verdict(
            "not testable", "the parent's answers hold no self-check phrase to build a vector from"
        )
        return out
    rand = _random_like(vec, hook)
    problems = state.problems.subset(p.steer_problems)
    base = _base(state, tune, problems)
    methods = methods_for(model, vec, hook, info["gate_threshold"])
    out.update(
        parent_self_checks_per_response=state.evals["parent"]["self_checks_per_response"],
        vector_norm=vec.norms()[hook],
        n_problems=len(problems),
        unsteered={"self_checks_per_response": mean(base["self_checks"]), "accuracy": mean(base["correct"])},
        step_end_ids=list(step_end_ids(model)),
        methods={},
    )
    plans = [
        Plan(name, model, m, vec, m, rand, method_scales(name, p.steer_scales)) for name, m in methods.items()
    ]
    plans += _feature_plans(out, features, model, parent, methods.get("targeted"))
    runs: dict[str, Any] = {"parent": (parent, unsteered), "tune": (model, unsteered)}
    bases = {"tune": base, "parent": _base(state, "parent", problems)}
    for plan in plans:
        x, ref = plan.model, plan.against
        r: dict[str, Any] = {"scales": {}, "random": {}}
        if ref != "tune":
            r["model"] = ref
        t = time.perf_counter()
        for s in plan.scales:
            r["scales"][str(s)] = _measure(state, x, problems, plan.vector, s, bases[ref], plan.method)
            r["random"][str(s)] = _measure(state, x, problems, plan.random, s, bases[ref], plan.control)
        r["seconds"] = round(time.perf_counter() - t, 2)  # both vectors at every scale, without recovery
        r["chosen_scale"] = chosen_scale(r, out["parent_self_checks_per_response"])
        if ref == "tune":
            r["phrases"] = _claim({**out, **r}, verbalisation)
        out["methods"][plan.name] = r
        s = float(r["chosen_scale"])
        runs[plan.name] = (x, lambda m=plan.method, v=plan.vector, x=x, s=s: m.apply(x, v, s))
        runs[f"{plan.name} random"] = (x, lambda m=plan.control, v=plan.random, x=x, s=s: m.apply(x, v, s))
    out["scales"], out["random"] = out["methods"]["always"]["scales"], out["methods"]["always"]["random"]
    against = {n: x.against for x in plans if x.against != "tune" for n in (x.name, f"{x.name} random")}
    budget = min(WRONG_STEP_TOKENS, p.max_new_tokens)
    out["recovery"] = recovery(runs, "tune", p.resamples, budget, against=against)
    out["claim"] = function_claim(out, verbalisation)
    return out


def _base(state: State, label: str, problems: Any) -> dict[str, list]:
    """``label``'s unsteered self-check counts and correctness on ``problems`` (from stages 1-3)."""
    keep = {ex.id for ex in problems.examples}
    ev = state.evals[label]
    return {
        k: [v for ex, v in zip(state.problems.examples, ev[k], strict=True) if ex.id in keep]
        for k in ("self_checks", "correct")
    }


def _feature_plans(
    out: dict[str, Any], features: dict[str, Any] | None, model: Any, parent: Any, targeted: Any
) -> list:
    """``sae_clamp`` in the tune and the amplification in the parent, each with its random control;
    records the feature in ``out["sae_feature"]``, or why they did not run in ``out["not_run"]``."""
    found, why = sae_feature(features, model.d_model)
    if found is not None and targeted is None:
        found, why = None, "no step-end token is one token for this tokenizer, so there is nowhere to clamp"
    if found is None:
        out["not_run"] = {CLAMP: why, AMPLIFY_LABEL: why}
        return []
    sae, f, typical, hook = found["sae"], found["feature"], found["typical"], found["hook"]
    clamp = FeatureEdit("sae_clamp", sae, f, typical, hook, selector=targeted.selector)
    amplify = FeatureEdit("sae_amplify", sae, f, typical, hook)
    clamp_vec = clamp.vector()
    amp_vec = amplify.vector((AMPLIFY - 1) / AMPLIFY)  # at scale AMPLIFY: (AMPLIFY - 1) x typical x row
    out["sae_feature"] = {
        **{k: v for k, v in found.items() if k != "sae"},
        "decoder_norm": float(clamp_vec.norms()[hook]) / typical,
        "clamp_multiples": list(CLAMP_MULTIPLES),
        "clamp_values": [m * typical for m in CLAMP_MULTIPLES],
        "amplify": AMPLIFY,
    }
    gated = Method("conditional", gate=amplify.firing())
    return [
        Plan(CLAMP, model, clamp, clamp_vec, targeted, _random_like(clamp_vec, hook), list(CLAMP_MULTIPLES)),
        Plan(
            AMPLIFY_LABEL, parent, amplify, amp_vec, gated, _random_like(amp_vec, hook), [AMPLIFY], "parent"
        ),
    ]


def steering_target(state: State) -> tuple[str, str]:
    """The tune to bring self-checks back into: the one that lost the most phrases per response
    against the parent (the focus tune when none lost any), and why."""
    parent = state.evals["parent"]["self_checks_per_response"]
    lost = {t: parent - state.evals[t]["self_checks_per_response"] for t in state.tunes}
    focus = state.focus or state.strongest
    best = max(lost, key=lambda t: (lost[t], t == focus)) if lost else focus
    if not lost or lost[best] <= 0:
        return focus, f"no tune lost self-check phrases; {focus} is the focus tune"
    return best, f"{best} lost the most self-check phrases per response ({lost[best]:.2f})"


def _up(d: dict) -> bool:
    return d["excludes_0"] and d["estimate"] > 0


def _down(d: dict) -> bool:
    return d["excludes_0"] and d["estimate"] < 0


def chosen_scale(r: dict[str, Any], parent_rate: float) -> str:
    """The scale whose recovery is measured, fixed before recovery is: among the scales whose
    responses stay functional (at most ``DEGENERATE`` times the parent's phrases per response,
    accuracy within ``ACCURACY_COST`` of the unsteered tune), the one with the largest self-check
    gain (the smaller on a tie); the smallest scale when none stays functional."""
    cap = DEGENERATE * parent_rate
    ok = [
        s
        for s, m in r["scales"].items()
        if m["self_checks_per_response"] <= cap and m["accuracy_diff"]["estimate"] >= -ACCURACY_COST
    ]
    if not ok:
        return min(r["scales"], key=float)
    return max(ok, key=lambda s: (r["scales"][s]["self_checks_diff"]["estimate"], -float(s)))


def _claim(r: dict[str, Any], verbalisation: dict[str, Any]) -> dict[str, Any]:
    """Reproduced only where the vector raises self-checks beyond the random control while the
    responses stay functional: no more than ``DEGENERATE`` times the parent's phrases per response
    (repeating "check" is not a self-check) and no accuracy lost with an interval below 0."""

    raised = [
        s
        for s, m in r["scales"].items()
        if _up(m["self_checks_diff"]) and not _up(r["random"][s]["self_checks_diff"])
    ]
    cap = DEGENERATE * r.get("parent_self_checks_per_response", 0.0)
    spam = [s for s in raised if r["scales"][s]["self_checks_per_response"] > cap]
    worse = [s for s in raised if _down(r["scales"][s]["accuracy_diff"])]
    back = [s for s in raised if s not in spam and s not in worse]
    numbers = "; ".join(
        f"x{s}: self-checks {m['self_checks_diff']['estimate']:+.2f} [{m['self_checks_diff']['low']:+.2f}, "
        f"{m['self_checks_diff']['high']:+.2f}] ({m['self_checks_per_response']:.2f} per response) "
        f"(random {r['random'][s]['self_checks_diff']['estimate']:+.2f}), "
        f"accuracy {m['accuracy_diff']['estimate']:+.2f}, KL {m['kl_neutral']['estimate']:.3f}"
        for s, m in r["scales"].items()
    )
    suppressed = verbalisation.get("tunes", {}).get(r["tune"], {}).get("suppressed")
    if not suppressed:
        return verdict(
            "not testable",
            f"{r['tune']} did not lose self-check phrases against the parent, so there "
            f"is nothing to bring back; {numbers}",
        )
    if back:
        return verdict(
            "reproduced",
            f"the parent's vector brings self-check phrases back at scales {back} where "
            f"a random vector of its norm does not: {numbers}",
            scales=back,
        )
    if raised:
        return verdict(
            "not reproduced",
            f"self-check phrases rose beyond the random control only where the responses broke: "
            f"scales {spam} repeat the phrases (more than {DEGENERATE}x the parent's "
            f"{r.get('parent_self_checks_per_response', 0.0):.2f} per response), scales {worse} lose "
            f"accuracy: {numbers}",
            scales=[],
            degenerate=spam,
            lost_accuracy=worse,
        )
    return verdict(
        "not reproduced",
        f"no scale raised self-check phrases with an interval above 0 beyond the random control: {numbers}",
        scales=[],
    )


def _iv(d: dict[str, Any]) -> str:
    return f"{d['estimate']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def _method_part(name: str, m: dict[str, Any], rec: dict[str, Any], cap: float) -> tuple[str, bool]:
    """One method's numbers at its chosen scale, and whether it passes every check."""
    s = m["chosen_scale"]
    own, rnd = m["scales"][s], m["random"][s]
    got, ctrl = rec[name], rec[f"{name} random"]
    ok = {
        "self-checks": _up(own["self_checks_diff"]) and not _up(rnd["self_checks_diff"]),
        "not degenerate": own["self_checks_per_response"] <= cap,
        "accuracy within costs": own["accuracy_diff"]["estimate"] >= -ACCURACY_COST,
        "recovery": _up(got["recovery_diff"]) and not _up(ctrl["recovery_diff"]),
    }
    failed = [k for k, v in ok.items() if not v]
    text = (
        f"{name} x{s} (steers {own['steered_share']:.0%} of positions): self-checks "
        f"{_iv(own['self_checks_diff'])} (random {_iv(rnd['self_checks_diff'])}), accuracy "
        f"{_iv(own['accuracy_diff'])}, KL {own['kl_neutral']['estimate']:.3f}, recovery "
        f"{_iv(got['recovery_diff'])} (random {_iv(ctrl['recovery_diff'])}), self-check after the "
        f"wrong step {_iv(got['self_check_diff'])}"
        + (f"; fails: {', '.join(failed)}" if failed else "; passes")
    )
    return text, not failed


def function_claim(r: dict[str, Any], verbalisation: dict[str, Any]) -> dict[str, Any]:
    """Does any method bring self-checks *and* recovery back within costs, beating its random control?

    Per method at its chosen scale: self-checks per response up with an interval above 0 where the
    random control's is not, responses not degenerate (at most ``DEGENERATE`` times the parent's
    phrases), accuracy within ``ACCURACY_COST`` of the unsteered tune (estimate), and recovery after
    a wrong step up with an interval above 0 where the random control's is not. A method run in
    another model (``"model"``: the amplification in the parent) is measured by the same rules
    against that model unsteered and reported beside the verdict, never as passing it; a method
    that did not run (``not_run``) is named with why.
    """
    rec = r["recovery"]["runs"]
    parent_rec = rec["parent"]["recovery_diff"]
    cap = DEGENERATE * r.get("parent_self_checks_per_response", 0.0)
    parts, beside, passed = [], [], []
    for name, m in r["methods"].items():
        text, ok = _method_part(name, m, rec, cap)
        if m.get("model"):
            beside.append(f"beside the verdict, in the {m['model']} against it unsteered: {text}")
        else:
            parts.append(text)
            passed += [name] if ok else []
    parts += beside + [f"{name} not run: {why}" for name, why in r.get("not_run", {}).items()]
    u = r["unsteered"]
    numbers = (
        f"unsteered {r['tune']}: {u['self_checks_per_response']:.2f} self-checks per response, accuracy "
        f"{u['accuracy']:.2f}, recovery {rec['tune']['recovery_rate']:.2f} on {r['recovery']['n_problems']} "
        f"wrong steps (parent {rec['parent']['recovery_rate']:.2f}, parent - tune {_iv(parent_rec)}); "
        + "; ".join(parts)
    )
    suppressed = verbalisation.get("tunes", {}).get(r["tune"], {}).get("suppressed")
    if not suppressed:
        return verdict(
            "not testable",
            f"{r['tune']} did not lose self-check phrases against the parent, so there is nothing to "
            f"bring back; {numbers}",
            methods=passed,
        )
    if passed:
        return verdict(
            "reproduced",
            f"yes: {passed} bring self-checks and recovery after a wrong step back within costs "
            f"(accuracy within {ACCURACY_COST:.0%} of the unsteered tune), beyond a random direction of "
            f"the same norm at the same positions: {numbers}",
            methods=passed,
        )
    return verdict(
        "not reproduced",
        f"no: no method (always-on, step-end targeted, gated, SAE clamp) brings self-checks and recovery "
        f"after a wrong step back within costs (accuracy within {ACCURACY_COST:.0%} of the unsteered tune) "
        f"beyond its random control: {numbers}",
        methods=[],
    )
