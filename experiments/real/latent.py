"""Stage 6, finding (c) (Yue et al. 2025): does the tune win at pass@1 and the parent at pass@n?

``n`` samples per problem (temperature and nucleus of the profile) from the parent and the
strongest tune, each in its own format (the same chat prompt), on the first test problems;
pass@k by the unbiased estimator (:func:`probes.passk.pass_at_k`) for k = 1..n, and paired
bootstrap intervals of the per-problem differences at k = 1 and k = n.

Sampling goes through :func:`interp.generation.generate` rather than
:func:`probes.passk.sample_pass_at_k`, which takes no ``top_p``.
"""

from typing import Any

from experiments.real.common import load, paired, respond, verdict
from experiments.real.tunes import State


def _sample(state: State, label: str, problems: Any) -> dict[str, Any]:
    from probes.passk import pass_at_k

    p = state.profile
    samples = respond(
        load(state.spec_of(label)),
        problems,
        p.max_new_tokens,
        samples=p.passk_samples,
        temperature=p.temperature,
        top_p=p.top_p,
        seed=0,
    )
    correct = [
        sum(problems.correct(ex, s) for s in ss) for ex, ss in zip(problems.examples, samples, strict=True)
    ]
    n = p.passk_samples
    per_k = {k: [pass_at_k(n, c, k) for c in correct] for k in range(1, n + 1)}
    return {
        "correct": correct,
        "pass_at_k": {str(k): sum(v) / len(v) for k, v in per_k.items()},
        "per_problem": {str(k): v for k, v in per_k.items()},
    }


def stage_latent(state: State, preconditions: dict[str, Any]) -> dict[str, Any]:
    """pass@k of the parent and the focus tune, with intervals at k = 1 and k = n."""
    p = state.profile
    problems = state.problems.subset(p.passk_problems)
    tune = state.focus or state.strongest
    res = {"parent": _sample(state, "parent", problems), tune: _sample(state, tune, problems)}
    n = str(p.passk_samples)
    out = {
        "tune": tune,
        "n": p.passk_samples,
        "n_problems": len(problems),
        "temperature": p.temperature,
        "top_p": p.top_p,
        "pass_at_k": {k: v["pass_at_k"] for k, v in res.items()},
        "correct": {k: v["correct"] for k, v in res.items()},
        "tune_minus_parent_at_1": paired(
            res[tune]["per_problem"]["1"], res["parent"]["per_problem"]["1"], p.resamples
        ),
        "parent_minus_tune_at_n": paired(
            res["parent"]["per_problem"][n], res[tune]["per_problem"][n], p.resamples
        ),
        "raised_accuracy": preconditions[tune]["raised_accuracy"],
    }
    out["claim"] = _claim(out)
    return out


def _claim(r: dict[str, Any]) -> dict[str, Any]:
    a1, an = r["tune_minus_parent_at_1"], r["parent_minus_tune_at_n"]
    numbers = (
        f"pass@1 tune - parent {a1['estimate']:+.3f} [{a1['low']:+.3f}, {a1['high']:+.3f}], "
        f"pass@{r['n']} parent - tune {an['estimate']:+.3f} [{an['low']:+.3f}, {an['high']:+.3f}] "
        f"({r['n_problems']} problems, n={r['n']})"
    )
    if not r["raised_accuracy"]:
        return verdict(
            "not testable",
            f"{r['tune']} did not raise greedy accuracy over the parent (precondition); {numbers}",
        )
    tune_wins_1 = a1["excludes_0"] and a1["estimate"] > 0
    parent_wins_n = an["excludes_0"] and an["estimate"] > 0
    if tune_wins_1 and parent_wins_n:
        return verdict("reproduced", f"the tune wins at k=1 and the parent at k=n: {numbers}")
    return verdict(
        "not reproduced",
        f"{'the tune wins at k=1' if tune_wins_1 else 'no tune win at k=1 with an interval above 0'}"
        f", {'the parent wins at k=n' if parent_wins_n else 'no parent win at k=n with an interval above 0'}"
        f": {numbers}",
    )
