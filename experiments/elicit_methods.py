"""Steering methods side by side on the organism: can checking be put back, and does it work?

The question of issue 13 on the built-in test bed: into the fine-tune whose markers are gone
(``sft-clean``, trained on traces with every check stripped), do the toolkit's steering methods
bring back markers *and* what checking is for (recovery after an injected mistake,
:mod:`interp.organism.recovery`), with solve rate within 5 points of the unsteered model and fact
recall within 2 points? Finding 6's experiment (:mod:`experiments.e6_elicitation`) runs
:func:`compare` as its steering step; ``python -m experiments.elicit_methods`` runs that step alone.

First the precondition: on the held-out problems the target must have fewer markers than base
(paired interval below zero); otherwise there is nothing to bring back and the comparison is
**not testable** (nothing is steered).

The vector is base's own: the matched contrast of :func:`interp.organism.contrasts.check_vs_commit`
(the node token of a good move at an uncertain step, followed by ``WAIT ... OK`` vs by ``;``) read
by base over training traces (teacher-forced), at each layer's ``hook_resid_post``, rescaled to that
hook's mean activation norm in the target. Chosen on ``train`` problems: the hook (where always-on
steering at 1x brings back most markers), then per method the scale (most markers with solve rate
within 5 points of unsteered); everything reported is measured on held-out ``test_id`` problems.
Methods:

- ``always``: the vector added at every position (:func:`interp.hooks.add_vector`);
- ``targeted``: only at the node token of a committed move (``> nX``), the position the contrast
  was read at, through the KV cache (:class:`interp.selectors.AfterPattern`);
- ``conditional``: only where a linear gate on the target's own activation at that hook says a
  check is due (the contrast direction, thresholded halfway between base's mean score where a check
  follows and elsewhere: :func:`steering.conditional.steer_when`), with the share of positions
  steered;
- ``sae_clamp``: base's marker feature (finding 4's SAE feature that best picks out the positions
  before ``WAIT``) clamped in the target at the targeted positions, at the SAE's hook
  (:func:`steering.sae_steering.clamp_feature`), the value a multiple of base's mean activation of
  the feature before ``WAIT`` -- the transfer of base's feature into the tuned model.

The control: a random direction (seeded) of the same norm as the best method's edit (the method with
the most markers on the train problems), at its hook, positions and scale (for ``sae_clamp``: the
clamp's mean edit norm at the targeted positions). A method *brings checking back* when markers and
recovery both rise over unsteered (paired 95% intervals above zero), solve rate stays within 5
points and fact recall within 2 (point estimates), and its recovery beats the control's (paired
interval of method minus control above zero).

    python -m experiments.elicit_methods --zoo runs/reproduce/zoo --out runs/elicit
"""

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from experiments.verdicts import beyond_zero, fmt_interval, holds, paired_interval

log = logging.getLogger(__name__)

TARGET = "sft-clean"
KEEP_SOLVE = 0.05  # solve rate may fall by at most this for a setting to count (and to be chosen)
KEEP_FACTS = 0.02
SCALES = (0.25, 0.5, 1.0, 2.0)  # times the hook's mean activation norm
CLAMPS = (1.0, 2.0, 4.0)  # times base's mean activation of the marker feature before WAIT
METHODS = ("always", "targeted", "conditional", "sae_clamp")
CONTROL = "control"
N_SELECT, N_EVAL, N_CONTRAST = 40, 150, 200
KEYS = ("markers", "solved", "answer", "flagged", "recovered", "facts")


@dataclass(frozen=True)
class MarkerFeature:
    """Base's marker SAE feature: the SAE, its hook, the feature, and its mean activation in base
    at the positions before ``WAIT`` (clamp values are multiples of it)."""

    sae: Any
    hook: str
    feature: int
    typical: float


def measure(model, tok, world, problems, max_new_tokens: int, recovery_problems=None) -> dict[str, list]:
    """Per-problem markers, solved, answer-correct; per-node fact recall; flag/recovery per problem."""
    from interp.organism.evaluate import answers_correct, check_responses, facts_correct, respond
    from interp.organism.recovery import recovery
    from interp.organism.traces import cot_prompt, count_markers

    responses = respond(model, tok, [cot_prompt(s, g) for s, g in problems], max_new_tokens)
    out = {
        "markers": [count_markers(r) for r in responses],
        "solved": [int(c.valid) for c in check_responses(world, problems, responses)],
        "answer": [int(x) for x in answers_correct(world, problems, responses)],
    }
    if recovery_problems is not None:
        rec = recovery(model, tok, world, recovery_problems, "wrong", max_new_tokens)
        out["flagged"], out["recovered"] = rec.flagged, rec.recovered
        out["facts"] = [int(x) for x in facts_correct(model, tok, world)]
    return out


def _mean(xs: list) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def compare(ctx, target: str = TARGET, feature: MarkerFeature | None = None, seed: int = 0) -> dict[str, Any]:
    """The steering methods on ``target`` against unsteered, with the random-direction control.

    Args:
        ctx: the run's :class:`experiments.context.Context` (zoo models, world, budget).
        target: the zoo model to steer.
        feature: base's marker SAE feature for ``sae_clamp`` (``None``: that method is left out).
        seed: the contrast traces' and the control direction's seed.

    Returns:
        ``target``, ``n_problems``, ``precondition`` (name, held, detail), ``settings``,
        ``table`` (one row per setting), ``per_problem``, ``brings_back`` (methods that pass) and
        ``testable``.
    """
    from interp.organism.contrasts import check_vs_commit, encode_words, training_traces
    from steering.layer_choice import contrast_vector, rescale_to_layer_norm

    world, tok = ctx.world
    base, model = ctx.model("base").module, ctx.model(target).module
    max_new = ctx.budget.max_new_tokens
    limit = ctx.budget.problems or N_EVAL
    train, test = world.split("train"), world.split("test_id")[: min(N_EVAL, limit)]

    # the precondition, before anything is steered: the target must have lost markers
    results = {
        "base": measure(base, tok, world, test, max_new, test),
        "unsteered": measure(model, tok, world, test, max_new, test),
    }
    pre = holds(
        f"{target} has fewer markers than base",
        paired_interval(results["unsteered"]["markers"], results["base"]["markers"]),
        -1,
    )
    doc: dict[str, Any] = {
        "target": target,
        "n_problems": len(test),
        "precondition": {"name": pre.name, "held": pre.held, "detail": pre.detail},
        "testable": pre.held,
        "settings": {},
        "brings_back": [],
    }
    if not pre.held:
        doc.update(table=_table(results, {}), per_problem=results)
        return doc

    # base's matched contrast, read over training traces (teacher-forced), rescaled in the target
    n_contrast = min(N_CONTRAST, limit)
    traces = training_traces(world, n_contrast, seed=seed)
    contrast = check_vs_commit(traces, world=world)
    rows = encode_words(traces, tok)
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in range(base.cfg.n_layers)]
    raw = contrast_vector(base, rows, contrast.positive, contrast.negative, hooks)
    vec = rescale_to_layer_norm(raw, model, rows)
    select = train[n_contrast : n_contrast + min(N_SELECT, limit)]
    plain_sel = measure(model, tok, world, select, max_new)

    from interp.hooks import add_vector

    by_hook = {}
    for hook in hooks:  # three layers in the organism: every one is tried
        with add_vector(model, hook, vec.directions[hook]):
            by_hook[hook] = _mean(measure(model, tok, world, select, max_new)["markers"])
    hook = max(hooks, key=lambda h: by_hook[h])
    methods = _Methods(
        model, tok, world, vec, hook, _gate(base, rows, contrast, raw.directions[hook], hook), feature
    )

    grid, chosen = [], {}
    for name in methods.names:
        rows_m = []
        for value in methods.values(name):
            with methods.apply(name, value):
                m = measure(model, tok, world, select, max_new)
            rows_m.append(
                {
                    "method": name,
                    "scale": value,
                    "markers": _mean(m["markers"]),
                    "solve_change": _mean(m["solved"]) - _mean(plain_sel["solved"]),
                }
            )
        grid += rows_m
        keep = [g for g in rows_m if g["solve_change"] >= -KEEP_SOLVE] or rows_m[:1]
        chosen[name] = max(keep, key=lambda g: (g["markers"], -g["scale"]))["scale"]
    # the control copies the method that brought back most markers on the train problems
    at = {g["method"]: g["markers"] for g in grid if g["scale"] == chosen[g["method"]]}
    best = max(methods.names, key=lambda n: at[n])

    shares: dict[str, float] = {}
    for name in methods.names:
        with methods.apply(name, chosen[name]) as stats:
            results[name] = measure(model, tok, world, test, max_new, test)
        if stats is not None:
            shares[name] = stats.share
    control_norm = methods.edit_norm(best, chosen[best], rows)
    with methods.control(best, chosen[best], control_norm, seed) as stats:
        results[CONTROL] = measure(model, tok, world, test, max_new, test)
    if stats is not None:
        shares[CONTROL] = stats.share

    table = _table(results, shares)
    doc.update(
        settings={
            "hook": hook,
            "markers_by_hook": by_hook,
            "scales": chosen,
            "gate_threshold": methods.gate.threshold,
            "selection": grid,
            "n_select": len(select),
            "contrast": {"positive": contrast.n_positive, "negative": contrast.n_negative},
            "sae": None
            if feature is None
            else {"hook": feature.hook, "feature": feature.feature, "typical": feature.typical},
            "control": {"copies": best, "norm": control_norm, "seed": seed},
        },
        table=table,
        per_problem=results,
        brings_back=[r["setting"] for r in table if r.get("brings_back")],
    )
    return doc


class _Methods:
    """How each method steers the target, and the random-direction control of one of them."""

    def __init__(self, model, tok, world, vec, hook: str, gate, feature: MarkerFeature | None):
        from interp.selectors import AfterPattern

        self.model, self.vec, self.hook, self.gate, self.feature = model, vec, hook, gate, feature
        self.direction = vec.directions[hook]
        node_ids = tuple(tok.token_id(f"n{v}") for v in range(world.n_nodes))
        self.after_move = AfterPattern((tok.token_id(">"), node_ids), within=0)
        self.names = [m for m in METHODS if m != "sae_clamp" or feature is not None]

    def values(self, name: str) -> tuple[float, ...]:
        return CLAMPS if name == "sae_clamp" else SCALES

    def apply(self, name: str, value: float):
        """The method's context manager: it yields gate statistics for ``conditional``, else None."""
        from interp.hooks import add_vector
        from steering.conditional import steer_when
        from steering.sae_steering import clamp_feature

        if name == "always":
            return add_vector(self.model, self.hook, self.direction, scale=value)
        if name == "targeted":
            return add_vector(self.model, self.hook, self.direction, scale=value, positions=self.after_move)
        if name == "conditional":
            return steer_when(self.model, self._one(self.direction), self.gate, scale=value)
        f = self.feature
        return clamp_feature(
            self.model, f.sae, f.feature, value * f.typical, positions=self.after_move, hook_name=f.hook
        )

    def edit_norm(self, name: str, value: float, rows: list[list[int]]) -> float:
        """The norm of what the method adds at a steered position (for ``sae_clamp``: its mean over
        the targeted positions of ``rows`` in the target)."""
        if name != "sae_clamp":
            return float(value * self.direction.norm())
        from interp.hooks import record

        f = self.feature
        norms = []
        for row in rows:
            ids = torch.tensor([row])
            with torch.no_grad(), record(self.model, f.hook, positions=self.after_move) as acts:
                self.model(ids)
            if acts[f.hook].shape[0]:
                with torch.no_grad():
                    now = f.sae.encode(acts[f.hook].float())[..., f.feature]
                norms.append((value * f.typical - now).abs() * f.sae.W_dec[f.feature].detach().float().norm())
        return float(torch.cat(norms).mean()) if norms else 0.0

    def control(self, name: str, value: float, norm: float, seed: int):
        """A random direction of norm ``norm`` at the method's hook and positions (seeded)."""
        from interp.hooks import add_vector
        from steering.conditional import steer_when
        from steering.vectors import random_direction

        hook = self.feature.hook if name == "sae_clamp" else self.hook
        d = random_direction(self.direction.shape[0], norm, seed)
        if name == "conditional":
            return steer_when(self.model, self._one(d, hook), self.gate, scale=1.0)
        positions = None if name == "always" else self.after_move
        return add_vector(self.model, hook, d, positions=positions)

    def _one(self, direction: torch.Tensor, hook: str | None = None):
        return type(self.vec)({hook or self.hook: direction}, self.vec.meta)


def _gate(model, rows, contrast, direction: torch.Tensor, hook: str):
    """A linear gate along the contrast direction, thresholded halfway between base's mean score at
    the positive positions (a check follows) and at every other position of the same rows."""
    from interp.hooks import record
    from steering.conditional import LinearGate

    unit = direction / direction.norm()
    pos, rest = [], []
    for row, positive in zip(rows, contrast.positive, strict=True):
        with torch.no_grad(), record(model, hook) as acts:
            model(torch.tensor([row]))
        score = acts[hook][0].float() @ unit
        chosen = torch.zeros(len(row), dtype=torch.bool)
        chosen[list(positive)] = True
        pos.append(score[chosen])
        rest.append(score[~chosen])
    threshold = float((torch.cat(pos).mean() + torch.cat(rest).mean()) / 2)
    return LinearGate(hook, unit, threshold=threshold)


def _table(results: dict[str, dict[str, list]], shares: dict[str, float]) -> list[dict]:
    """One row per setting: means, paired intervals against unsteered (and, for each method,
    recovery against the control), the cost rule and whether the method brings checking back."""
    ref, control = results["unsteered"], results.get(CONTROL)
    rows = []
    for name, r in results.items():
        row: dict[str, Any] = {"setting": name, "steered_share": shares.get(name)}
        for key in KEYS:
            row[key] = _mean(r[key])
            row[f"{key}_vs_unsteered"] = None if name == "unsteered" else paired_interval(r[key], ref[key])
        if name in ("unsteered", "base"):
            row.update(within_costs=None, recovered_vs_control=None, beats_control=None, brings_back=None)
            rows.append(row)
            continue
        solve, facts = row["solved_vs_unsteered"], row["facts_vs_unsteered"]
        row["within_costs"] = bool(
            solve and solve["estimate"] >= -KEEP_SOLVE and facts and facts["estimate"] >= -KEEP_FACTS
        )
        vs = (
            None
            if control is None or name == CONTROL
            else paired_interval(r["recovered"], control["recovered"])
        )
        row["recovered_vs_control"] = vs
        row["beats_control"] = None if name == CONTROL else beyond_zero(vs, +1)
        row["brings_back"] = (
            None
            if name == CONTROL
            else bool(
                beyond_zero(row["markers_vs_unsteered"], +1)
                and beyond_zero(row["recovered_vs_unsteered"], +1)
                and row["within_costs"]
                and row["beats_control"]
            )
        )
        rows.append(row)
    return rows


def summary(doc: dict) -> str:
    """The comparison in one sentence (finding 6's claim text carries it beside its verdict)."""
    pre = doc["precondition"]
    if not doc["testable"]:
        return (
            f"steering {doc['target']} back toward checking: not testable ({pre['name']} failed: "
            f"{pre['detail']})"
        )
    rows = {r["setting"]: r for r in doc["table"]}
    parts = [
        f"{name} markers {fmt_interval(r['markers_vs_unsteered'])}, recovery "
        f"{fmt_interval(r['recovered_vs_unsteered'])}" + ("" if r["within_costs"] else " (outside costs)")
        for name, r in rows.items()
        if name not in ("base", "unsteered")
    ]
    passed = doc["brings_back"]
    verdict = f"brought back by {', '.join(passed)}" if passed else "brought back by no method"
    copies = doc["settings"]["control"]["copies"]
    return (
        f"steering {doc['target']} ({doc['n_problems']} test_id problems; vs unsteered, the control a "
        f"random direction at {copies}'s setting): {'; '.join(parts)} -- checking (markers and "
        f"recovery up, costs kept, recovery above the control) {verdict}"
    )


def markdown(doc: dict) -> str:
    s = doc["settings"]
    lines = [f"# Steering methods on {doc['target']} ({doc['n_problems']} test_id problems)", ""]
    pre = doc["precondition"]
    lines += [f"Precondition: {pre['name']}: {'held' if pre['held'] else 'failed'} ({pre['detail']}).", ""]
    if doc["testable"]:
        lines += [
            f"Vector: base's matched contrast at `{s['hook']}`, scales in units of the hook's mean norm "
            f"(hook and scales chosen on {s['n_select']} train problems); contrast positions "
            f"{s['contrast']['positive']} vs {s['contrast']['negative']}. Control: a random direction "
            f"of norm {s['control']['norm']:.2f} at {s['control']['copies']}'s hook, positions and scale.",
            "",
        ]
    lines += [
        "| setting | scale | steered share | markers | solve | answer | flag | recovery | facts "
        "| within costs | recovery vs control | brings checking back |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["table"]:

        def cell(key: str, r: dict = r) -> str:
            iv = r[f"{key}_vs_unsteered"]
            return f"{r[key]:.2f}" + (f" ({fmt_interval(iv)})" if iv else "")

        share = "" if r["steered_share"] is None else f"{r['steered_share']:.2f}"
        cells = [cell(k) for k in KEYS]
        scale = s.get("scales", {}).get(r["setting"], "")
        vs = fmt_interval(r["recovered_vs_control"]) if r.get("recovered_vs_control") else ""
        lines.append(
            f"| {r['setting']} | {scale} | {share} | "
            + " | ".join(cells)
            + f" | {r['within_costs']} | {vs} | {r.get('brings_back')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from experiments.context import Context
    from experiments.e6_elicitation import steering
    from experiments.reproduce import _zoo_env

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoo", required=True, help="the organism zoo directory")
    p.add_argument("--out", required=True, help="directory for elicit_methods.json and .md")
    p.add_argument("--profile", default="quick", choices=["tiny", "quick", "full"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    out = Path(args.out)
    with _zoo_env(Path(args.zoo)):
        doc = steering(Context(args.profile, out, args.zoo, progress=False, experiment="elicit_methods"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "elicit_methods.json").write_text(json.dumps(doc, indent=1, default=float))
    (out / "elicit_methods.md").write_text(markdown(doc))
    print(markdown(doc))  # noqa: T201  (a script's output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
