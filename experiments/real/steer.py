"""Stage 7, finding (d): does a self-check direction from the parent bring self-checks back in the tune?

The vector: difference of means of the parent's residual stream at a middle layer, between the
positions just before a self-check phrase and every other response position, over the
parent's own greedy answers to the test problems (Venhoff et al.; Ward et al.: the token before
the behaviour). It is added at every position of the tune that lost the most self-check
phrases (:func:`steering_target`) at a few multiples of its own length; the control is a random
direction of the same norm at the same multiples. Measured against the unsteered tune on the
same problems (paired): self-check phrases per response and accuracy; the cost is the KL
divergence of the next-token distribution from the unsteered tune's on neutral text.
"""

import logging
import re
from typing import Any

from experiments.real.common import interval, load, mean, paired, respond, self_checks, verdict
from experiments.real.profile import SELF_CHECK
from experiments.real.tunes import State

log = logging.getLogger(__name__)

DEGENERATE = 3.0
"""A steered response with more than this many times the parent's self-check phrases per
response repeats them: degenerate text, not self-checking (measured: "check check check ...",
72 per response at 1x on SmolLM2 against the parent's 2.6)."""

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


def self_check_vector(state: State, hook: str):
    """Difference of means at ``hook`` of the parent: before self-check phrases vs other response
    positions."""
    import torch

    from interp.hooks import record
    from interp.tasks.render import render_prompt
    from steering.vectors import SteeringVector, mean_difference, model_meta

    parent = load(state.parent)
    pos, neg = [], []
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
    if not pos:
        return None, 0, 0
    p, n = torch.cat(pos), torch.cat(neg)
    meta = {
        "method": "mean",
        "d_model": int(p.shape[1]),
        "model": model_meta(parent),
        "provenance": {"source": "parent's greedy answers", "positives": len(p), "negatives": len(n)},
    }
    return SteeringVector({hook: mean_difference(p, n)}, meta), len(p), len(n)


def _kl(model: Any, vec: Any, scale: float) -> list[float]:
    """Per neutral text: mean over positions of KL(unsteered || steered)."""
    import torch

    out = []
    for text in NEUTRAL:
        toks = torch.tensor([model.encode(text)])
        with torch.no_grad():
            ref = torch.log_softmax(model(toks).float(), -1)
            with vec.apply(model, scale=scale):
                new = torch.log_softmax(model(toks).float(), -1)
        out.append(float((ref.exp() * (ref - new)).sum(-1).mean()))
    return out


def _measure(state: State, model: Any, problems: Any, vec: Any, scale: float, base: dict) -> dict[str, Any]:
    p = state.profile
    with vec.apply(model, scale=scale):
        texts = [r[0] for r in respond(model, problems, p.max_new_tokens)]
    correct = [int(problems.correct(ex, t)) for ex, t in zip(problems.examples, texts, strict=True)]
    checks = self_checks(texts)
    from probes.stats import bootstrap

    kl = _kl(model, vec, scale)
    return {
        "scale": scale,
        "self_checks_per_response": mean(checks),
        "accuracy": mean(correct),
        "self_checks_diff": paired(checks, base["self_checks"], p.resamples),
        "accuracy_diff": paired(correct, base["correct"], p.resamples),
        "kl_neutral": interval(bootstrap(kl, resamples=p.resamples)),
        "example": texts[0],
    }


def stage_steering(state: State, verbalisation: dict[str, Any]) -> dict[str, Any]:
    """The parent's self-check vector and a random one of its norm, applied to the focus tune.

    The focus tune is :func:`experiments.real.tunes.choose_focus`'s choice.
    """
    import torch

    from steering.vectors import SteeringVector

    p = state.profile
    tune, why = steering_target(state)
    model = load(state.spec_of(tune))
    hook = f"blocks.{model.n_layers // 2}.hook_resid_post"
    vec, n_pos, n_neg = self_check_vector(state, hook)
    out: dict[str, Any] = {
        "tune": tune,
        "tune_why": why,
        "hook": hook,
        "n_before_phrase": n_pos,
        "n_other": n_neg,
        "scales": {},
        "random": {},
    }
    if vec is None:
        out["claim"] = verdict(
            "not testable", "the parent's answers hold no self-check phrase to build a vector from"
        )
        return out
    norm = vec.norms()[hook]
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(vec.d_model, generator=gen)
    rand = SteeringVector(
        {hook: direction * (norm / float(direction.norm()))},
        {**vec.meta, "method": "random", "provenance": {"source": "randn, seed 0, same norm"}},
    )
    problems = state.problems.subset(p.steer_problems)
    keep = {ex.id for ex in problems.examples}
    ev = state.evals[tune]
    base = {
        k: [v for ex, v in zip(state.problems.examples, ev[k], strict=True) if ex.id in keep]
        for k in ("self_checks", "correct")
    }
    out.update(
        parent_self_checks_per_response=state.evals["parent"]["self_checks_per_response"],
        vector_norm=norm,
        n_problems=len(problems),
        unsteered={"self_checks_per_response": mean(base["self_checks"]), "accuracy": mean(base["correct"])},
    )
    for s in p.steer_scales:
        out["scales"][str(s)] = _measure(state, model, problems, vec, s, base)
        out["random"][str(s)] = _measure(state, model, problems, rand, s, base)
    out["claim"] = _claim(out, verbalisation)
    return out


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


def _claim(r: dict[str, Any], verbalisation: dict[str, Any]) -> dict[str, Any]:
    """Reproduced only where the vector raises self-checks beyond the random control while the
    responses stay functional: no more than ``DEGENERATE`` times the parent's phrases per response
    (repeating "check" is not a self-check) and no accuracy lost with an interval below 0."""

    def up(d: dict) -> bool:
        return d["excludes_0"] and d["estimate"] > 0

    def down(d: dict) -> bool:
        return d["excludes_0"] and d["estimate"] < 0

    raised = [
        s
        for s, m in r["scales"].items()
        if up(m["self_checks_diff"]) and not up(r["random"][s]["self_checks_diff"])
    ]
    cap = DEGENERATE * r.get("parent_self_checks_per_response", 0.0)
    spam = [s for s in raised if r["scales"][s]["self_checks_per_response"] > cap]
    worse = [s for s in raised if down(r["scales"][s]["accuracy_diff"])]
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
