"""Steering methods side by side on the organism: can checking be put back, and does it work?

The question of issue 13 on the built-in test bed: into the fine-tune whose markers are gone
(``sft-clean``, trained on traces with every check stripped), do the toolkit's steering methods
bring back markers *and* what checking is for (recovery after an injected mistake,
:mod:`interp.organism.recovery`), with solve rate within 5 points of the unsteered model and fact
recall within 2 points?

The vector is base's own: the matched contrast of :func:`interp.organism.contrasts.check_vs_commit`
(the node token of a good move at an uncertain step, followed by ``WAIT ... OK`` vs by ``;``) read
by base over training traces (teacher-forced; base's own greedy traces check at nearly every such
step, which leaves one side almost empty), at each layer's ``hook_resid_post``, rescaled to that
hook's mean activation norm in the target. Chosen on ``train`` problems: the hook (where always-on
steering at 1x brings back most markers), then per method the scale (most markers with solve rate
within 5 points of unsteered); everything reported is measured on held-out ``test_id`` problems.
Methods, all at that hook:

- ``always``: added at every position (:func:`interp.hooks.add_vector`);
- ``targeted``: only at the node token of a committed move (``> nX``), the position the contrast
  was read at, through the KV cache (:class:`interp.selectors.AfterPattern`);
- ``conditional``: only where a linear gate on the target's own activation at that hook says a
  check is due (the contrast direction, thresholded halfway between base's mean score where a check
  follows and elsewhere:
  :func:`steering.conditional.steer_when`), with the share of positions steered.

Each is compared with the unsteered target per problem (paired bootstrap 95% intervals): markers
per response, solve rate, answer accuracy, flag and recovery rates after an injected wrong move,
and fact recall. ``base`` is listed as the reference. SAE-feature clamping (issue 13, item 3) is
not in this comparison: it needs an SAE of the organism, which only finding 4's experiment trains.

    python -m experiments.elicit_methods --zoo runs/reproduce/zoo --out runs/elicit
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

TARGET = "sft-clean"
KEEP_SOLVE = 0.05  # solve rate may fall by at most this for a setting to count (and to be chosen)
KEEP_FACTS = 0.02
SCALES = (0.25, 0.5, 1.0, 2.0)  # times the hook's mean activation norm
METHODS = ("always", "targeted", "conditional")
N_SELECT, N_EVAL, N_CONTRAST = 40, 150, 200


def _interval(a: list, b: list) -> dict | None:
    from experiments.verdicts import paired_interval

    return paired_interval(a, b)


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


def run(zoo: str | Path, out: str | Path, max_new_tokens: int = 140, seed: int = 0) -> dict[str, Any]:
    from interp.hooks import add_vector
    from interp.organism.contrasts import check_vs_commit, encode_words, training_traces
    from interp.organism.store import load_organism, load_world
    from interp.selectors import AfterPattern
    from steering.conditional import steer_when
    from steering.layer_choice import contrast_vector, rescale_to_layer_norm

    world, tok = load_world(zoo)
    base, _ = load_organism("base", zoo)
    target, _ = load_organism(TARGET, zoo)
    train = world.split("train")
    test = world.split("test_id")[:N_EVAL]

    # the contrast, read by base over training traces (teacher-forced): at good moves of uncertain
    # steps, those the data follows with a check vs those it closes at once
    traces = training_traces(world, N_CONTRAST, seed=seed)
    contrast = check_vs_commit(traces, world=world)
    rows = encode_words(traces, tok)
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in range(base.cfg.n_layers)]
    raw = contrast_vector(base, rows, contrast.positive, contrast.negative, hooks)
    vec = rescale_to_layer_norm(raw, target, rows)

    # the hook: where always-on steering at 1x the layer norm brings back most markers (train problems)
    select = train[N_CONTRAST : N_CONTRAST + N_SELECT]
    plain_sel = measure(target, tok, world, select, max_new_tokens)
    node_ids = tuple(tok.token_id(f"n{v}") for v in range(world.n_nodes))
    after_move = AfterPattern((tok.token_id(">"), node_ids), within=0)
    by_hook = {}
    for hook in hooks:
        with add_vector(target, hook, vec.directions[hook]):
            by_hook[hook] = _mean(measure(target, tok, world, select, max_new_tokens)["markers"])
    hook = max(hooks, key=lambda h: by_hook[h])
    direction = vec.directions[hook]
    steer_one = type(vec)({hook: direction}, vec.meta)
    gate = _gate(base, rows, contrast, raw.directions[hook], hook)

    def method(name: str, scale: float):
        if name == "always":
            return add_vector(target, hook, direction, scale=scale)
        if name == "targeted":
            return add_vector(target, hook, direction, scale=scale, positions=after_move)
        return steer_when(target, steer_one, gate, scale=scale)

    # per method, the scale: most markers with solve within KEEP_SOLVE on the train problems
    grid, chosen = [], {}
    for name in METHODS:
        rows_m = []
        for scale in SCALES:
            with method(name, scale):
                m = measure(target, tok, world, select, max_new_tokens)
            rows_m.append(
                {
                    "method": name,
                    "scale": scale,
                    "markers": _mean(m["markers"]),
                    "solve_change": _mean(m["solved"]) - _mean(plain_sel["solved"]),
                }
            )
        grid += rows_m
        keep = [g for g in rows_m if g["solve_change"] >= -KEEP_SOLVE] or rows_m[:1]
        chosen[name] = max(keep, key=lambda g: (g["markers"], -g["scale"]))["scale"]

    results: dict[str, dict[str, list]] = {}
    shares: dict[str, float] = {}
    results["base"] = measure(base, tok, world, test, max_new_tokens, test)
    results["unsteered"] = measure(target, tok, world, test, max_new_tokens, test)
    for name in METHODS:
        with method(name, chosen[name]) as stats:
            results[name] = measure(target, tok, world, test, max_new_tokens, test)
        if name == "conditional":
            shares[name] = stats.share
    settings = {
        "hook": hook,
        "markers_by_hook": by_hook,
        "scales": chosen,
        "gate_threshold": gate.threshold,
        "selection": grid,
        "contrast": {"positive": contrast.n_positive, "negative": contrast.n_negative},
    }
    table = _table(results, shares)
    doc = {
        "target": TARGET,
        "settings": settings,
        "table": table,
        "per_problem": results,
        "n_problems": len(test),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "elicit_methods.json").write_text(json.dumps(doc, indent=1))
    (out / "elicit_methods.md").write_text(_markdown(doc))
    return doc


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
    ref = results["unsteered"]
    rows = []
    for name, r in results.items():
        row: dict[str, Any] = {"setting": name, "steered_share": shares.get(name)}
        for key in ("markers", "solved", "answer", "flagged", "recovered", "facts"):
            row[key] = _mean(r[key])
            row[f"{key}_vs_unsteered"] = None if name == "unsteered" else _interval(r[key], ref[key])
        solve, facts = row["solved_vs_unsteered"], row["facts_vs_unsteered"]
        row["within_costs"] = (
            None
            if name in ("unsteered", "base")
            else bool(
                solve and solve["estimate"] >= -KEEP_SOLVE and facts and facts["estimate"] >= -KEEP_FACTS
            )
        )
        rows.append(row)
    return rows


def _markdown(doc: dict) -> str:
    from experiments.verdicts import fmt_interval

    s = doc["settings"]
    lines = [
        f"# Steering methods on {doc['target']} ({doc['n_problems']} test_id problems)",
        "",
        f"Vector: base's matched contrast at `{s['hook']}`, scales in units of the hook's mean norm "
        f"(hook and scales chosen on train problems); contrast positions {s['contrast']['positive']} "
        f"vs {s['contrast']['negative']}.",
        "",
        "| setting | scale | steered share | markers | solve | answer | flag | recovery | facts "
        "| within costs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["table"]:

        def cell(key: str, r: dict = r) -> str:
            iv = r[f"{key}_vs_unsteered"]
            return f"{r[key]:.2f}" + (f" ({fmt_interval(iv)})" if iv else "")

        share = "" if r["steered_share"] is None else f"{r['steered_share']:.2f}"
        cells = [cell(k) for k in ("markers", "solved", "answer", "flagged", "recovered", "facts")]
        scale = s.get("scales", {}).get(r["setting"], "")
        lines.append(
            f"| {r['setting']} | {scale} | {share} | " + " | ".join(cells) + f" | {r['within_costs']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoo", required=True, help="the organism zoo directory")
    p.add_argument("--out", required=True, help="directory for elicit_methods.json and .md")
    p.add_argument("--max-new-tokens", type=int, default=140)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    doc = run(args.zoo, args.out, args.max_new_tokens)
    print(_markdown(doc))  # noqa: T201  (a script's output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
