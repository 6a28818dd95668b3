"""Finding 9 (Ghosal et al. 2025; Wu et al. 2025): more thinking is not always better.

Natural length: ``base``'s sampled traces (T=1), solve rate against the number of steps and
against the number of tokens, within each distance (the organism's difficulty). At a fixed
distance a valid trace has as many steps as moves, but its tokens vary: checks sit only at
uncertain steps, and mistakes are caught and retracted there.

Forced length, in the trained format (``forced_in_format``): each time ``base`` (and
``rl-answer``) would close a move at an uncertain step with ``;`` (``> n17 ;``) instead of
checking it, the ``;`` is replaced ``k`` times by ``WAIT``
(:func:`interp.organism.probing.closes_a_move` with the world: not the move onto the goal, not
the correction after ``BAD BACK``), so that each forced extension is a check where training
places checks, and the model writes the check's content itself (``CHECK n17 : n4 n22 D 1 OK ;``).
Decoding is sampled (T=1, the same seed at every ``k``): greedily, a base trained with checks
after 80% of its uncertain moves checks every one of them, which leaves nothing to force. Answer
accuracy per ``k``, and each problem's outcome per ``k`` (for paired intervals): whether the
answer is right, whether the whole response is valid, and how many ``WAIT`` it holds.

The format-break control (``forced``): the answer's ``A`` replaced ``k`` times by ``WAIT CHECK``,
which puts a check after the final ``;``, where training never puts one. It is reported beside
the in-format forcing and never carries the verdict.

Where each check sits is recorded too (:func:`check_places`): where training places checks
(directly after a step's first move, at an uncertain step) or where it never does (at a certain
step, the move onto the goal among them; after ``BAD BACK > n17``; after the last ``;``). A ``;``
that closes a move says nothing of the goal by itself; the intercept reads the goal from the
prompt, and the counts check that the forcing stayed in the trained format.

Beside the verdict, overthinking control (SEAL, Chen et al. 2025; :func:`seal_run`): the reverse
move, shortening by steering. A vector read by ``base`` over training traces (teacher-forced) from
the matched contrast :func:`interp.organism.contrasts.reflection_vs_execution` (the node token of a
move at an uncertain step followed by ``WAIT``, a reflection or a transition, minus one followed by
``;``, execution), at each layer's ``hook_resid_post``, rescaled to that hook's mean activation
norm. Its layer is chosen before the evaluation, on ``train`` problems only
(:func:`choose_seal_layer`): per layer and scale, the tokens the subtraction cuts per response
against unsteered, per unit of KL on held-out training traces (:func:`kl_trace_rows`: they hold
the boundaries, so the KL is the subtraction's cost where it acts), among cuts of more than
:data:`SWEEP_MIN_CUT` tokens; the middle
layer when none qualifies. At that layer the vector is added with negative scales
(:data:`SEAL_SCALES`) at every such boundary
(:func:`boundaries`, through the KV cache) while ``base`` decodes exactly as the forced-length
curve's ``k = 0`` run (T=1, the same seed): tokens and checks per response and answer accuracy per
scale, each paired with the unsteered run, and a random direction of the same norm at the same
positions and scales as the control. The figure ``seal`` puts these points beside the forced ones
(accuracy against mean tokens). It never enters the verdict.

The verdict (:func:`claim`) needs forcing in the trained format that added checks where training
places them (per response at the largest ``k`` minus at ``k = 0``, paired over problems, above
zero) and none where it never places one (that difference not above zero). Then base's answer
accuracy at the largest ``k`` minus at ``k = 0``, paired over problems, must exclude zero
downward.
"""

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from experiments.claims import Claim, pct
from experiments.context import Context
from experiments.verdicts import (
    ClaimHead,
    Precondition,
    beyond_zero,
    check_preconditions,
    counted,
    diff_interval,
    enough,
    fmt_interval,
    holds,
    interval_verdict,
    measured,
    paired_interval,
)
from interp.organism import respond, validate_trace
from interp.organism.probing import closes_a_move, organism_is_correct
from interp.organism.traces import cot_prompt
from interp.organism.validator import parse_node
from interp.selectors import AfterPattern, Selector
from probes.cot_length import (
    ForceConfig,
    accuracy_by_length,
    forced_accuracy,
    organism_steps,
)

FINDING = 9
TITLE = "More thinking is not always better"
PAPER = "forcing longer thinking cut accuracy 87.3% -> 70.3%; accuracy is an inverted U in CoT length"
FORCED = (0, 1, 2, 4)
HEAD = ClaimHead(FINDING, TITLE, PAPER)
TOKEN_BINS = 5  # equal-width token bins per distance (one bin per length when there are fewer)
SEAL_SCALES = (0.0, -0.25, -0.5, -1.0)  # times the hook's mean activation norm; 0: unsteered
SEAL_TRACES = 200  # training traces the SEAL contrast is read over
# SEAL's layer sweep (choose_seal_layer), on train problems, before the evaluation
SWEEP_PROBLEMS = 100  # train problems decoded per cell (at most the profile's problem budget)
SWEEP_SCALES = (0.25, 0.5, 1.0)  # the magnitudes of SEAL_SCALES' subtractions
# A check costs at least 8 tokens ("WAIT CHECK n3 : n5 D 1 OK"), so a cut of one token per
# response is about one check removed in every eighth response: less is no shortening to speak of
SWEEP_MIN_CUT = 1.0
KL_TRACES = 64  # held-out training traces the sweep's KL is measured on
KL_TRACE_SEED = 1  # the SEAL contrast reads seed 0's traces

Outcome = Callable[[int, list[int]], "bool | int"]


def forced_run(
    model, prompts: list[str], is_correct: Callable, cfg: ForceConfig, also: dict[str, Outcome] | None = None
) -> dict:
    """:func:`probes.cot_length.forced_accuracy` with each problem's outcome per ``k`` kept
    (``per_problem[str(k)]``: 1 or 0 per prompt; absent if the outcomes could not be matched to
    ``k``), and likewise each of ``also``'s outcomes (``also[name](i, ids)``, a bool or a count)
    under ``per_problem_<name>``."""
    also = also or {}
    seen: list[list[int]] = [[] for _ in prompts]
    extra: dict[str, list[list[int]]] = {name: [[] for _ in prompts] for name in also}

    def recording(i: int, ids: list[int]) -> bool:
        ok = bool(is_correct(i, ids))
        seen[i].append(int(ok))
        for name, fn in also.items():
            extra[name][i].append(int(fn(i, ids)))
        return ok

    res = forced_accuracy(model, prompts, recording, cfg)
    out = {"ks": list(res.ks), "accuracy": list(res.accuracy), "mean_length": list(res.mean_length)}
    if all(len(s) == len(res.ks) for s in seen):  # one call per problem per k, in the order of ks
        out["per_problem"] = {str(k): [s[j] for s in seen] for j, k in enumerate(res.ks)}
        for name, lists in extra.items():
            out[f"per_problem_{name}"] = {str(k): [s[j] for s in lists] for j, k in enumerate(res.ks)}
    return out


def _binned(lengths: Sequence[int], correct: Sequence[bool | int], bins: int | None = None) -> dict:
    if bins is not None and len(set(lengths)) <= bins:
        bins = None  # few distinct lengths: one bin each
    la = accuracy_by_length(list(lengths), [bool(c) for c in correct], bins)
    return {"edges": list(la.edges), "counts": list(la.counts), "accuracy": list(la.accuracy)}


def natural_by_distance(
    distance: Sequence[int], steps: Sequence[int], tokens: Sequence[int], solved: Sequence[bool | int]
) -> dict:
    """Per distance: solve rate against steps (one bin per count) and against tokens
    (:data:`TOKEN_BINS` equal-width bins, or one per count when there are fewer)."""
    out = {}
    for d in sorted(set(distance)):
        idx = [i for i, x in enumerate(distance) if x == d]
        ok = [solved[i] for i in idx]
        out[str(d)] = {
            "n": len(idx),
            "steps": _binned([steps[i] for i in idx], ok),
            "tokens": _binned([tokens[i] for i in idx], ok, TOKEN_BINS),
        }
    return out


def longer_minus_shorter(
    distance: Sequence[int], tokens: Sequence[int], solved: Sequence[bool | int]
) -> dict | None:
    """Solve rate of the traces longer than their distance's median token count minus that of the
    others (pooled over distances; a bootstrap interval of two independent groups)."""
    longer, shorter = [], []
    for d in set(distance):
        idx = [i for i, x in enumerate(distance) if x == d]
        ts = sorted(tokens[i] for i in idx)
        median = ts[len(ts) // 2] if len(ts) % 2 else (ts[len(ts) // 2 - 1] + ts[len(ts) // 2]) / 2
        for i in idx:
            (longer if tokens[i] > median else shorter).append(int(solved[i]))
    return diff_interval(longer, shorter)


def check_places(world, start: int, goal: int, words: Sequence[str]) -> tuple[int, int]:
    """Checks (``WAIT``) in a response where training places them, and elsewhere.

    Training puts at most one check in a step, directly after the step's first move
    (``> n17 WAIT``), and only at an uncertain step (:meth:`World.uncertain`: a wrong neighbour
    exists and the goal is two or more moves away). Any other check is one training never shows:
    a check at a certain step (the move onto the goal among them), a second check in a step (after
    ``BAD BACK > n17``), or one after the last ``;`` or the answer.

    Returns:
        ``(in_place, out_of_place)`` counts.
    """
    in_place = out_of_place = 0
    cur: int | None = start
    moves, checked = 0, False
    for i, w in enumerate(words):
        if w == ">":
            moves += 1
        elif w == "WAIT":
            ok = (
                cur is not None
                and moves == 1
                and not checked
                and i >= 2
                and words[i - 2] == ">"
                and world.uncertain(cur, goal)
            )
            in_place, out_of_place = in_place + ok, out_of_place + (not ok)
            checked = True
        elif w == ";":
            cur = parse_node(words[i + 1], world.n_nodes) if i + 1 < len(words) else None
            moves, checked = 0, False
        elif w == "A":
            cur = None
    return in_place, out_of_place


def boundaries(tok, n_nodes: int) -> Selector:
    """The node token closing a forward move (``> n17``), not the move after ``BAD BACK``: the
    boundaries :func:`~interp.organism.contrasts.reflection_vs_execution` reads, picked from the
    tokens seen so far (so a cached decoding step steers where a full pass would)."""
    nodes = tuple(tok.token_id(f"n{v}") for v in range(n_nodes))
    arrow = tok.token_id(">")
    return AfterPattern((arrow, nodes)) & ~AfterPattern((tok.token_id("BACK"), arrow, nodes))


def seal_vector(
    model,
    tok,
    world,
    n_traces: int = SEAL_TRACES,
    seed: int = 0,
    layer: int | None = None,
    layers: Sequence[int] | None = None,
):
    """Base's reflection-minus-execution vector (SEAL's, with the sign that adds reflection).

    Read over ``n_traces`` training traces, teacher-forced, from
    :func:`~interp.organism.contrasts.reflection_vs_execution` with the world (uncertain steps
    only), at ``blocks.{layer}.hook_resid_post`` (default: the middle layer), or at each of
    ``layers`` when given (one pass over the same rows), each rescaled to its hook's mean
    activation norm over the same rows.

    Returns:
        ``(vector, contrast)``: the :class:`steering.steering_vector.SteeringVector` (one hook per
        layer) and the :class:`~interp.organism.contrasts.Contrast` it was read from.
    """
    from interp.organism.contrasts import encode_words, reflection_vs_execution, training_traces
    from steering.layer_choice import contrast_vector, rescale_to_layer_norm

    traces = training_traces(world, n_traces, seed=seed)
    contrast = reflection_vs_execution(traces, world=world)
    rows = encode_words(traces, tok)
    if layers is None:
        layers = [model.n_layers // 2 if layer is None else layer]
    hooks = [f"blocks.{int(x)}.hook_resid_post" for x in layers]
    raw = contrast_vector(model, rows, contrast.positive, contrast.negative, hooks, contrast=contrast.meta)
    return rescale_to_layer_norm(raw, model, rows), contrast


def sweep_problems(world, n: int) -> list[tuple[int, int]]:
    """The first ``n`` ``train`` problems that are not ``test_id`` problems: the layer choice
    never sees the evaluation's problems."""
    held_out = set(world.split("test_id"))
    return [p for p in world.split("train") if p not in held_out][:n]


def kl_trace_rows(world, tok, n: int = KL_TRACES) -> list[list[int]]:
    """``n`` training traces (teacher-forced) drawn with another seed than the SEAL contrast's:
    rows that hold the move boundaries the vector is added at, so the layer sweep's KL measures
    what the subtraction does to base's next-token distributions where it acts."""
    from interp.organism.contrasts import encode_words, training_traces

    return encode_words(training_traces(world, n, seed=KL_TRACE_SEED), tok)


def choose_seal_layer(
    model,
    tok,
    world,
    vector,
    problems: Sequence[tuple[int, int]],
    cfg: ForceConfig,
    kl_rows: Sequence[Sequence[int]],
    scales: Sequence[float] = SWEEP_SCALES,
    min_cut: float = SWEEP_MIN_CUT,
) -> dict:
    """SEAL's layer by tokens cut per unit of KL (:func:`steering.layer_choice.layer_sweep`).

    Each layer's direction of ``vector`` is *subtracted* alone at the :func:`boundaries`: the
    sweep adds the negated direction (execution minus reflection) at positive ``scales``, which
    is SEAL's negative scale ``-s`` on ``vector``. The effect is tokens cut per response (the
    unsteered mean minus the steered mean) of ``cfg``'s decoding at ``k = 0`` on ``problems``; the
    cost is the KL on ``kl_rows``. The chosen layer is the one of the cell with the largest cut
    per unit of KL among cuts above ``min_cut`` (:func:`steering.layer_choice.pick_best`); the
    middle layer when no cell qualifies (``fallback``).

    Returns:
        The sweep (:meth:`LayerSweepResult.to_dict`) with, per cell, the answer accuracy on
        ``problems`` too, and ``chosen``: ``{"hook", "layer", "scale", "tokens_cut", "kl"}``.

    Raises:
        LayerChoiceError: no problem, or bad scales.
    """
    from steering.layer_choice import LayerChoiceError, LayerSweepConfig, layer_sweep
    from steering.steering_vector import SteeringVector

    if not problems:
        raise LayerChoiceError("the SEAL layer sweep got no problem; expected train problems to decode")
    prompts = [cot_prompt(s, g) for s, g in problems]
    is_correct = organism_is_correct(world, list(problems), tok)
    one = replace(cfg, ks=(0,))
    runs: list[tuple[float, float]] = []  # (mean tokens, accuracy) per call, in the sweep's order

    def minus_tokens(m) -> float:
        f = forced_run(m, prompts, is_correct, one)
        runs.append((f["mean_length"][0], f["accuracy"][0]))
        return -f["mean_length"][0]

    subtract = SteeringVector(
        {h: -d for h, d in vector.directions.items()},
        {**vector.meta, "sign": "negated: execution minus reflection, so a positive scale s is SEAL's -s"},
    )
    sel = boundaries(tok, world.n_nodes)
    config = LayerSweepConfig(rescale=False, positions=sel, min_effect=float(min_cut))
    sweep = layer_sweep(model, subtract, scales, minus_tokens, kl_rows, config)
    out = sweep.to_dict()
    (tokens0, acc0), cells = runs[0], iter(runs[1:])
    for row in out["table"]:  # hooks outer, scales inner: the order layer_sweep measures them in
        row["tokens"], row["accuracy"] = next(cells)
    out["unsteered"] = {"tokens": tokens0, "accuracy": acc0}
    out["problems"] = {"split": "train", "count": len(problems)}
    out["sign"] = "the direction subtracted: scale s in the table is SEAL's -s"
    out["effect"] = "tokens cut per response (unsteered mean minus steered mean)"
    out["kl_rows"] = (
        f"{len(kl_rows)} training traces (teacher-forced, seed {KL_TRACE_SEED}; the contrast's are seed 0)"
    )
    out["min_effect"] = float(min_cut)
    out["kl_all_zero"] = all(k == 0.0 for ks in sweep.kl.values() for k in ks)
    if sweep.best is None:
        middle = model.n_layers // 2
        hook = f"blocks.{middle}.hook_resid_post"
        out["chosen"] = {"hook": hook, "layer": middle, "scale": None, "tokens_cut": None, "kl": None}
        out["fallback"] = True
    else:
        hook, scale = sweep.best
        i = sweep.scales.index(scale)
        out["chosen"] = {
            "hook": hook,
            "layer": int(hook.split(".")[1]),
            "scale": -scale,
            "tokens_cut": sweep.effect[hook][i],
            "kl": sweep.kl[hook][i],
        }
        out["fallback"] = False
    return out


def random_like(direction: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random direction (seeded Gaussian, drawn in float64) with the norm of ``direction``
    (:func:`steering.vectors.random_direction`)."""
    from steering.vectors import random_direction

    norm = float(direction.double().norm())
    return random_direction(direction.shape[0], norm, seed, torch.float64).to(direction.dtype)


def _steered(model, prompts, is_correct, cfg, also, hook, direction, scale, selector) -> dict:
    from interp.hooks import add_vector

    with add_vector(model, hook, direction, scale=scale, positions=selector):
        f = forced_run(model, prompts, is_correct, cfg, also)
    if "per_problem" not in f:
        raise RuntimeError("per-problem outcomes of the steered run could not be matched to the prompts")
    per = {"accuracy": f["per_problem"]["0"]}
    per.update({name: f[f"per_problem_{name}"]["0"] for name in also})
    return {"scale": scale, **{k: _mean(v) for k, v in per.items()}, "per_problem": per}


def seal_run(
    model,
    tok,
    world,
    prompts: list[str],
    is_correct: Callable,
    cfg: ForceConfig,
    also: dict[str, Outcome],
    hook: str,
    direction: torch.Tensor,
    scales: Sequence[float] = SEAL_SCALES,
    control_seed: int = 0,
) -> dict:
    """Sampled decoding with ``scale * direction`` added at the :func:`boundaries`, per scale.

    Decoding is ``cfg`` at ``k = 0`` only (the forced-length curve's unforced run: the same
    temperature, seed and budget), so scale 0 reproduces that run's responses. Each scale, and a
    random direction of the same norm (:func:`random_like`) at each nonzero scale, is compared with
    scale 0 per problem (paired bootstrap 95% intervals) on tokens and checks (``WAIT``) per
    response, answer accuracy and solve rate; the vector also against the control at its scale.

    Returns:
        ``{"hook", "norm", "positions", "steered": [...], "random": [...]}``, one entry per scale
        with means, per-problem outcomes and intervals.

    Raises:
        LayerChoiceError: ``scales`` without 0 (the unsteered reference).
    """
    if 0.0 not in [float(s) for s in scales]:
        from steering.layer_choice import LayerChoiceError

        raise LayerChoiceError(f"scales={tuple(scales)!r}; expected 0 among them (the unsteered reference)")
    one = replace(cfg, ks=(0,))
    also = {**also, "tokens": lambda i, ids: len(ids), "waits": lambda i, ids: tok.words(ids).count("WAIT")}
    sel = boundaries(tok, world.n_nodes)
    control = random_like(direction, control_seed)
    steered = [_steered(model, prompts, is_correct, one, also, hook, direction, s, sel) for s in scales]
    ref = next(r for r in steered if r["scale"] == 0)
    random = [
        _steered(model, prompts, is_correct, one, also, hook, control, s, sel) for s in scales if s != 0
    ]
    keys = {"tokens": "tokens", "checks": "waits", "accuracy": "accuracy", "solved": "solved"}
    keys = {k: v for k, v in keys.items() if v in ref["per_problem"]}
    by_scale = {r["scale"]: r for r in random}
    for r in steered + random:
        r["vs_unsteered"] = {
            k: paired_interval(r["per_problem"][v], ref["per_problem"][v]) for k, v in keys.items()
        }
    for r in steered:
        if r["scale"] in by_scale:
            c = by_scale[r["scale"]]["per_problem"]
            r["vs_random"] = {k: paired_interval(r["per_problem"][v], c[v]) for k, v in keys.items()}
    return {
        "hook": hook,
        "norm": float(direction.norm()),
        "control_norm": float(control.norm()),
        "positions": "node token closing a forward move ('> nX', not after BAD BACK), via the KV cache",
        "steered": steered,
        "random": random,
    }


def run(ctx: Context) -> dict:
    import matplotlib.pyplot as plt

    world, tok = ctx.world
    problems = ctx.problems("test_id")
    prompts = [cot_prompt(s, g) for s, g in problems]
    gen = torch.Generator().manual_seed(0)
    reps = max(1, min(4, ctx.budget.samples // 4))
    sampled = respond(
        ctx.model("base").module, tok, prompts * reps, ctx.budget.max_new_tokens, 1.0, False, gen
    )
    probs = problems * reps
    solved = [validate_trace(world, s, g, words).valid for (s, g), words in zip(probs, sampled, strict=True)]
    steps = [organism_steps(w) for w in sampled]
    tokens = [len(w) for w in sampled]
    distance = [world.dist(s, g) for s, g in probs]
    natural = accuracy_by_length(steps, solved)
    by_dist = natural_by_distance(distance, steps, tokens, solved)

    def solves(i: int, ids: list[int]) -> bool:
        return validate_trace(world, *problems[i], tok.words(ids)).valid

    def waits(i: int, ids: list[int]) -> int:
        return tok.words(ids).count("WAIT")

    def in_place(i: int, ids: list[int]) -> int:
        return check_places(world, *problems[i], tok.words(ids))[0]

    def out_of_place(i: int, ids: list[int]) -> int:
        return check_places(world, *problems[i], tok.words(ids))[1]

    also = {
        "solved": solves,
        "waits": waits,
        "checks_in_place": in_place,
        "checks_out_of_place": out_of_place,
    }
    is_correct = organism_is_correct(world, problems, tok)
    budget = ctx.budget.max_new_tokens
    in_format_cfg = ForceConfig(
        ks=FORCED,
        force="WAIT",
        stop_word=";",
        intercept=closes_a_move(tok, world),
        max_new_tokens=budget,
        temperature=1.0,
        seed=0,
    )
    break_cfg = ForceConfig(ks=FORCED, force="WAIT CHECK", stop_word="A", max_new_tokens=budget)
    in_format, forced = {}, {}
    for name in ("base", "rl-answer"):
        in_format[name] = forced_run(ctx.model(name), prompts, is_correct, in_format_cfg, also)
        forced[name] = forced_run(ctx.model(name), prompts, is_correct, break_cfg, also)
    base = ctx.model("base")
    vec, contrast = seal_vector(base, tok, world, layers=range(base.n_layers))
    n_sweep = min(SWEEP_PROBLEMS, ctx.budget.problems or SWEEP_PROBLEMS)
    layers = choose_seal_layer(
        base, tok, world, vec, sweep_problems(world, n_sweep), in_format_cfg, kl_trace_rows(world, tok)
    )
    hook = layers["chosen"]["hook"]
    seal = seal_run(base, tok, world, prompts, is_correct, in_format_cfg, also, hook, vec.directions[hook])
    seal["contrast"] = {"name": contrast.name, **contrast.meta}
    seal["layer_choice"] = layers
    _figure(ctx, plt, by_dist, in_format, forced)
    _seal_figure(ctx, plt, in_format["base"], seal)
    return {
        "natural": {
            "edges": list(natural.edges),
            "counts": list(natural.counts),
            "accuracy": list(natural.accuracy),
        },
        "natural_by_distance": by_dist,
        "natural_longer_minus_shorter": longer_minus_shorter(distance, tokens, solved),
        "natural_responses": {"distance": distance, "steps": steps, "tokens": tokens, "solved": solved},
        "forced_in_format": in_format,
        "forced": forced,
        "seal": seal,
        "forcing": {
            "in_format": "';' closing a move at an uncertain step ('> node ;', not onto the goal, "
            "not after BAD BACK) replaced by 'WAIT' (closes_a_move with the world); sampled at T=1, "
            "seed 0 at every k",
            "format_break_control": "'A' replaced by 'WAIT CHECK' (a check after the final ';')",
        },
        "n_responses": len(sampled),
    }


def _figure(ctx: Context, plt, by_dist: dict, in_format: dict, forced: dict) -> None:
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 3.5))
    for ax, key, label in ((a1, "steps", "steps in the trace"), (a2, "tokens", "tokens in the trace")):
        for d, v in by_dist.items():
            b = v[key]
            mids = [(lo + hi) / 2 for lo, hi in zip(b["edges"], b["edges"][1:], strict=False)]
            pts = [(x, a) for x, a, c in zip(mids, b["accuracy"], b["counts"], strict=True) if c >= 3]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=f"distance {d}")
        ax.set_xlabel(f"{label} (natural)")
        ax.set_ylabel("solve rate (bins with >= 3 traces)")
        if ax.lines:
            ax.legend(fontsize=7)
    for name, v in in_format.items():
        a3.plot(v["ks"], v["accuracy"], marker="o", label=f"{name}: check after a move")
    for name, v in forced.items():
        a3.plot(v["ks"], v["accuracy"], marker="x", ls="--", label=f"{name}: control, check after the end")
    a3.set_xlabel("forced extra checks k")
    a3.set_ylabel("answer accuracy")
    a3.legend(fontsize=7)
    ctx.figure(fig, "length")


def _seal_figure(ctx: Context, plt, forced: dict, seal: dict) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(forced["mean_length"], forced["accuracy"], marker="o", label="base, forced checks (k)")
    for k, x, y in zip(forced["ks"], forced["mean_length"], forced["accuracy"], strict=True):
        ax.annotate(f"k={k}", (x, y), fontsize=7)
    for key, marker, label in (
        ("steered", "s", "SEAL vector"),
        ("random", "x", "random direction, same norm"),
    ):
        pts = seal[key]
        ax.plot([p["tokens"] for p in pts], [p["accuracy"] for p in pts], marker=marker, ls="--", label=label)
        for p in pts:
            ax.annotate(f"{p['scale']:g}", (p["tokens"], p["accuracy"]), fontsize=7)
    ax.set_xlabel("mean tokens per response")
    ax.set_ylabel("answer accuracy")
    ax.set_title(f"lengthening by forcing vs shortening by steering ({seal['hook']})", fontsize=9)
    ax.legend(fontsize=7)
    ctx.figure(fig, "seal")


def _seal_text(seal: dict) -> str:
    """One sentence: the strongest subtraction against unsteered, and the random control."""
    ref = next(r for r in seal["steered"] if r["scale"] == 0)
    top = min(seal["steered"], key=lambda r: r["scale"])
    ctrl = next((r for r in seal["random"] if r["scale"] == top["scale"]), None)
    iv = top["vs_unsteered"]
    text = (
        f"overthinking control beside the verdict (SEAL: base's reflection-minus-execution vector "
        f"subtracted at move boundaries at {seal['hook']}, scale {top['scale']:g}x the layer norm): "
        f"tokens per response {ref['tokens']:.1f} -> {top['tokens']:.1f} ({fmt_interval(iv['tokens'])}), "
        f"checks {ref['waits']:.2f} -> {top['waits']:.2f} ({fmt_interval(iv['checks'])}), "
        f"answer accuracy {pct(ref['accuracy'])} -> {pct(top['accuracy'])} ({fmt_interval(iv['accuracy'])})"
    )
    if ctrl is not None:
        c = ctrl["vs_unsteered"]
        text += (
            f"; a random direction of the same norm: tokens {fmt_interval(c['tokens'])}, "
            f"accuracy {fmt_interval(c['accuracy'])}"
        )
    if seal.get("layer_choice"):
        text += "; " + _layer_choice_text(seal["layer_choice"])
    return text


def _layer_choice_text(lc: dict) -> str:
    """The SEAL layer sweep in one clause: the rule, each layer's cuts per scale, the choice."""
    scales = lc["scales"]
    cuts: dict[str, list[float]] = {}
    for row in lc["table"]:
        cuts.setdefault(row["hook"], []).append(row["effect"])
    per_layer = ", ".join(
        f"{h.split('.hook')[0]} " + "/".join(f"{c:.1f}" for c in cs) for h, cs in cuts.items()
    )
    signed = "/".join(f"-{s:g}" for s in scales)
    text = (
        f"SEAL's layer chosen before the evaluation on {lc['problems']['count']} train problems "
        f"(tokens cut per response per unit of KL on {lc['kl_rows'].split(' (')[0]}, cuts above "
        f"{lc['min_effect']:g} token): cut at scales {signed}: {per_layer}"
    )
    if lc["kl_all_zero"]:
        text += " (KL 0 at every cell: the steering never acted on the KL rows, so the cut alone decided)"
    c = lc["chosen"]
    if lc["fallback"]:
        return text + f"; no layer qualified: fell back to the middle layer, {c['hook']}"
    row = next(r for r in lc["table"] if r["hook"] == c["hook"] and r["scale"] == -c["scale"])
    cut = (
        f"{c['tokens_cut']:.1f} tokens cut at {c['scale']:g}, KL {c['kl']:.3g}; train accuracy "
        f"{pct(lc['unsteered']['accuracy'])} -> {pct(row['accuracy'])}"
    )
    return text + f"; chosen {c['hook']} ({cut})"


def _fall(f: dict, key: str = "per_problem") -> dict | None:
    """An outcome at the largest forced ``k`` minus at ``k = 0``, paired over problems
    (``key``: ``per_problem`` for answer accuracy, ``per_problem_waits`` for WAITs per response)."""
    pp, ks = f.get(key), f["ks"]
    return paired_interval(pp[str(ks[-1])], pp[str(ks[0])]) if pp else None


def _mean(xs: list) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _in_format_text(name: str, f: dict) -> str:
    ks, solved = f["ks"], f.get("per_problem_solved")
    solve = (
        f" (solve rate {pct(_mean(solved[str(ks[0])]))} -> {pct(_mean(solved[str(ks[-1])]))})"
        if solved
        else ""
    )
    places = ""
    inp, outp = f.get("per_problem_checks_in_place"), f.get("per_problem_checks_out_of_place")
    if inp and outp:
        a, b = str(ks[0]), str(ks[-1])
        places = (
            f"; checks per response where training places them {_mean(inp[a]):.2f} -> {_mean(inp[b]):.2f}, "
            f"elsewhere {_mean(outp[a]):.2f} -> {_mean(outp[b]):.2f}"
        )
    return (
        f"{name} {pct(f['accuracy'][0])} -> {pct(f['accuracy'][-1])}{solve} with {ks[-1]} forced checks, "
        f"change {fmt_interval(_fall(f))}{places}"
    )


def _no_rise(name: str, iv: dict | None) -> Precondition:
    """Held when a paired difference rests on enough problems and does not exclude zero upward."""
    if iv is None:
        return Precondition(name, False, "not measured")
    return Precondition(name, enough(iv) and not beyond_zero(iv, +1), counted(iv))


def claim(r: dict) -> Claim:
    """Forcing must be measured in the trained format and must have added checks where training
    places them and none elsewhere (preconditions); then base's accuracy with the most forced
    checks minus without (paired over problems) must exclude zero downward. The format-break
    control is reported, never weighed."""
    control = r["forced"]["base"]
    text = [
        f"format-break control (check after the final ';'): base {pct(control['accuracy'][0])} -> "
        f"{pct(control['accuracy'][-1])} with {control['ks'][-1]} forced WAIT CHECKs, "
        f"change {fmt_interval(_fall(control))}"
        + "".join(f", {n} {fmt_interval(_fall(f))}" for n, f in r["forced"].items() if n != "base")
    ]
    in_formats = r.get("forced_in_format") or {}
    in_format = in_formats.get("base")
    fall = _fall(in_format) if in_format else None
    if in_format:
        text.insert(
            0,
            "in the trained format (a check after a move): "
            + "; ".join(_in_format_text(n, f) for n, f in in_formats.items()),
        )
    if r.get("natural_longer_minus_shorter") is not None:
        text.append(
            "natural length: solve rate of traces longer than their distance's median minus the rest "
            f"{fmt_interval(r['natural_longer_minus_shorter'])}"
        )
    if r.get("seal") and r["seal"].get("steered"):
        text.append(_seal_text(r["seal"]))
    organism = "; ".join(text)
    at = f" (per response, k={in_format['ks'][-1]} - k={in_format['ks'][0]})" if in_format else ""
    pre = [
        Precondition(
            "forcing measured in the trained format (checks after moves)",
            in_format is not None,
            "measured" if in_format else "not measured: only the format-break control ran",
        ),
        measured("per-problem outcomes of the forcing", fall),
        holds(
            f"forcing added checks where training places them{at}",
            _fall(in_format, "per_problem_checks_in_place") if in_format else None,
            +1,
        ),
        _no_rise(
            f"forcing added no check where training never places one{at}",
            _fall(in_format, "per_problem_checks_out_of_place") if in_format else None,
        ),
    ]
    failed = check_preconditions(HEAD, organism, *pre)
    if failed:
        return failed
    verdict = interval_verdict(fall, -1)
    why = (
        "forcing longer thinking in the trained format lowers accuracy (interval below zero)"
        if verdict == "reproduced"
        else "forcing longer thinking in the trained format does not lower accuracy beyond its interval"
    )
    return HEAD.claim(organism, verdict, why, pre)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
