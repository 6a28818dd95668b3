"""Finding 9's natural length: solve rate against steps and tokens within each distance."""

import pytest

from experiments.e9_cot_length import TOKEN_BINS, longer_minus_shorter, natural_by_distance

DIST = [2, 2, 2, 3, 3]
STEPS = [2, 2, 2, 3, 4]
TOKENS = [10, 20, 30, 15, 15]
SOLVED = [True, True, False, True, False]


def test_steps_and_tokens_are_binned_within_each_distance():
    out = natural_by_distance(DIST, STEPS, TOKENS, SOLVED)
    assert sorted(out) == ["2", "3"] and out["2"]["n"] == 3 and out["3"]["n"] == 2
    # distance 2: every valid-length trace has 2 steps, but the tokens differ
    assert out["2"]["steps"]["counts"] == [3] and out["2"]["steps"]["accuracy"] == [pytest.approx(2 / 3)]
    assert out["2"]["tokens"]["edges"] == [10.0, 20.0, 30.0, 31.0]
    assert out["2"]["tokens"]["accuracy"] == [1.0, 1.0, 0.0]
    assert out["3"]["steps"] == {"edges": [3.0, 4.0, 5.0], "counts": [1, 1], "accuracy": [1.0, 0.0]}
    assert out["3"]["tokens"] == {"edges": [15.0, 16.0], "counts": [2], "accuracy": [0.5]}


def test_many_token_lengths_fall_into_equal_width_bins():
    tokens = [10, 12, 14, 16, 18, 20, 30]
    out = natural_by_distance([1] * 7, [1] * 7, tokens, [1, 1, 1, 0, 0, 0, 1])
    b = out["1"]["tokens"]
    assert len(b["counts"]) == TOKEN_BINS and sum(b["counts"]) == 7
    assert b["edges"][0] == 10.0 and b["edges"][-1] == 30.0  # the last bin is closed: 30 is in it
    assert b["counts"][-1] == 1 and b["accuracy"][-1] == 1.0


def test_longer_minus_shorter_splits_at_each_distances_median():
    # distance 2: median 20, only the 30-token trace is longer (unsolved); distance 3: both 15
    # tokens, none longer. Longer [0] vs shorter [1, 1, 1, 0]: -0.75
    iv = longer_minus_shorter(DIST, TOKENS, SOLVED)
    assert iv["estimate"] == pytest.approx(-0.75)
    # an even count uses the mean of the two middle lengths
    iv = longer_minus_shorter([1] * 4, [10, 20, 30, 40], [0, 0, 1, 1])
    assert iv["estimate"] == pytest.approx(1.0)
    assert longer_minus_shorter([1, 1], [5, 5], [1, 0]) is None  # nothing is longer: no comparison


def test_check_places_against_the_trained_format():
    from experiments.e9_cot_length import check_places
    from interp.organism.world import World, WorldConfig

    # n0 -> n1 n2 n5, n1 -> n3 n4, n2 -> n3 n5, n3 -> n0 n4, n4 -> n0 n5, n5 -> n0 n1
    adj = [[1, 2, 5], [3, 4], [3, 5], [0, 4], [0, 5], [0, 1]]
    w = World(WorldConfig(n_nodes=6, max_id_dist=3, max_ood_dist=4), adj, {"test_id": []}, [0] * 6)
    assert w.uncertain(0, 3) and not w.uncertain(1, 3)  # n0: n5 is wrong; n1: one move away
    trained = "n0 : n1 n2 n5 > n5 WAIT CHECK n5 : n0 n1 D 2 BAD BACK > n1 ; n1 : n3 n4 > n3 ; A n0 n1 n3 E"
    assert check_places(w, 0, 3, trained.split()) == (1, 0)
    # forced in the trained format by closes_a_move: after BACK > n1, and onto the goal n3
    forced = (
        "n0 : n1 n2 n5 > n5 WAIT CHECK n5 : n0 n1 D 2 BAD BACK > n1 WAIT CHECK n1 : n3 n4 D 1 OK ; "
        "n1 : n3 n4 > n3 WAIT CHECK n3 : n0 n4 D X OK ; A n0 n1 n3 E"
    )
    assert check_places(w, 0, 3, forced.split()) == (1, 2)
    # the format-break control: a check after the last ";" (and one after the answer)
    broke = "n0 : n1 n2 n5 > n1 ; n1 : n3 n4 > n3 ; WAIT CHECK n3 ; A n0 n1 n3 E WAIT"
    assert check_places(w, 0, 3, broke.split()) == (0, 2)
    # a forced check of the first move where the model had none: where training places it
    assert check_places(w, 0, 3, "n0 : n1 n2 n5 > n1 WAIT CHECK n1 : n3 n4 D 1 OK ;".split()) == (1, 0)


# SEAL-style overthinking control, reported beside the verdict


def _organism(zoo):
    from interp.models import Model
    from interp.organism.store import load_organism, load_world

    world, tok = load_world(zoo)
    module, _ = load_organism("base", zoo)
    return world, tok, Model(module, tok, "organism:base")


def test_boundaries_pick_the_contrasts_positions_and_only_there_is_the_vector_added(tiny_zoo):
    import torch

    from experiments.e9_cot_length import boundaries
    from interp.hooks import add_vector, record
    from interp.organism.contrasts import reflection_vs_execution

    world, tok, model = _organism(tiny_zoo)
    # 9: a move checked BAD, 20: the correction after BAD BACK (never a boundary), 27: a move
    # checked OK, 41: a move closed by ';'
    seq = (
        "Q n0 n5 T n0 : n1 n2 > n2 WAIT CHECK n2 : n4 D 3 BAD BACK > n1 ; "
        "n1 : n3 n4 > n3 WAIT CHECK n3 : n5 D 1 OK ; n3 : n5 > n5 ; A n0 n1 n3 n5 E"
    )
    c = reflection_vs_execution([seq])
    ids = torch.tensor([tok.encode(seq)])
    picked = boundaries(tok, world.n_nodes).mask(ids)[0].nonzero().flatten().tolist()
    assert picked == sorted(c.positive[0] + c.negative[0]) == [9, 27, 41]
    hook = "blocks.0.hook_resid_post"
    with record(model, hook) as plain:
        model.module(ids)
    with add_vector(
        model, hook, torch.ones(model.d_model), scale=-1.0, positions=boundaries(tok, world.n_nodes)
    ):
        with record(model, hook) as steered:
            model.module(ids)
    changed = (steered[hook][0] != plain[hook][0]).any(-1).nonzero().flatten().tolist()
    assert changed == [9, 27, 41]


def test_seal_run_at_scale_zero_reproduces_the_unforced_run_and_the_control_has_the_norm(tiny_zoo):
    from dataclasses import replace

    import torch

    from experiments.e9_cot_length import forced_run, random_like, seal_run, seal_vector
    from interp.organism.probing import closes_a_move, organism_is_correct
    from interp.organism.traces import cot_prompt
    from probes.cot_length import ForceConfig

    world, tok, model = _organism(tiny_zoo)
    problems = world.split("test_id")[:6]
    prompts = [cot_prompt(s, g) for s, g in problems]
    is_correct = organism_is_correct(world, problems, tok)
    also = {"solved": lambda i, ids: int(is_correct(i, ids))}
    cfg = ForceConfig(
        ks=(0,),
        force="WAIT",
        stop_word=";",
        intercept=closes_a_move(tok, world),
        max_new_tokens=30,
        temperature=1.0,
        seed=0,
    )
    curve = forced_run(model, prompts, is_correct, cfg)  # the forced-length curve's k=0 run
    cfg = replace(cfg, ks=(0, 1, 2, 4))  # seal_run decodes at k=0 only, whatever the curve's ks
    vec, contrast = seal_vector(model, tok, world, n_traces=40)
    hook = vec.hook_names[0]
    assert hook == f"blocks.{model.n_layers // 2}.hook_resid_post" and contrast.n_positive > 0
    direction = vec.directions[hook]
    # rescaled to the hook's mean activation norm
    assert float(direction.norm()) == pytest.approx(vec.meta["rescale"]["norms"][hook], rel=1e-5)
    seal = seal_run(model, tok, world, prompts, is_correct, cfg, also, hook, direction, scales=(0.0, -1.0))
    ref, top = seal["steered"]
    assert ref["scale"] == 0.0 and top["scale"] == -1.0
    assert ref["per_problem"]["accuracy"] == curve["per_problem"]["0"]
    assert ref["tokens"] == pytest.approx(curve["mean_length"][0])
    assert ref["accuracy"] == pytest.approx(curve["accuracy"][0])
    assert ref["vs_unsteered"]["tokens"]["estimate"] == 0.0
    assert sorted(top["vs_unsteered"]) == ["accuracy", "checks", "solved", "tokens"] and "vs_random" in top
    assert [r["scale"] for r in seal["random"]] == [-1.0]  # the control at each nonzero scale
    assert seal["control_norm"] == pytest.approx(seal["norm"], rel=1e-5)
    control = random_like(direction, 0)
    assert float(control.norm()) == pytest.approx(float(direction.norm()), rel=1e-5)
    assert abs(float(torch.nn.functional.cosine_similarity(control, direction, dim=0))) < 0.9
    from steering.layer_choice import LayerChoiceError

    with pytest.raises(LayerChoiceError, match=r"scales=\(-1.0,\); expected 0 among them"):
        seal_run(model, tok, world, prompts, is_correct, cfg, also, hook, direction, scales=(-1.0,))


# SEAL's layer, chosen by tokens cut per unit of KL on train problems before the evaluation


def _sweep_cfg(tok, world, max_new_tokens=30):
    from interp.organism.probing import closes_a_move
    from probes.cot_length import ForceConfig

    return ForceConfig(
        ks=(0, 1, 2, 4),  # the sweep decodes at k=0 only, as seal_run does
        force="WAIT",
        stop_word=";",
        intercept=closes_a_move(tok, world),
        max_new_tokens=max_new_tokens,
        temperature=1.0,
        seed=0,
    )


def _fake_sweep(monkeypatch, model, hooks, tokens, kl):
    """Decoding and KL replaced by hand-built tables: ``tokens[hook][i]`` mean tokens per response
    and ``kl[hook][i]`` KL while ``hook`` is steered at the ``i``-th scale (``tokens[None]``:
    unsteered). Returns the prompts each decoding was given."""
    import experiments.e9_cot_length as e9
    import steering.sweep

    seen: list[list[str]] = []
    calls = {"tokens": {}, "kl": {}}

    def steered():
        on = [h for h in hooks if model.module.hook_dict[h]._forward_hooks]
        assert len(on) <= 1
        return on[0] if on else None

    def cell(table, key):
        h = steered()
        if h is None:
            return table[None]
        i = calls[key].get(h, 0)
        calls[key][h] = i + 1
        return table[h][i]

    def fake_run(m, prompts, is_correct, cfg, also=None):
        assert cfg.ks == (0,)
        seen.append(list(prompts))
        return {"ks": [0], "accuracy": [0.5], "mean_length": [cell(tokens, "tokens")]}

    def fake_kl(m, rows, batch_size=32, name="kl"):
        return lambda now: {name: 0.0 if steered() is None else cell(kl, "kl")}

    monkeypatch.setattr(e9, "forced_run", fake_run)
    monkeypatch.setattr(steering.sweep, "kl_cost", fake_kl)
    return seen


def test_seal_layer_is_the_best_tokens_cut_per_kl_and_the_sweep_sees_train_problems_only(
    tiny_zoo, monkeypatch
):
    from experiments.e9_cot_length import (
        SWEEP_MIN_CUT,
        SWEEP_SCALES,
        _layer_choice_text,
        choose_seal_layer,
        kl_trace_rows,
        seal_vector,
        sweep_problems,
    )
    from interp.organism.traces import cot_prompt
    from steering.layer_choice import pick_best

    world, tok, model = _organism(tiny_zoo)
    layers = range(model.n_layers)
    vec, _ = seal_vector(model, tok, world, n_traces=40, layers=layers)
    hooks = [f"blocks.{x}.hook_resid_post" for x in layers]
    assert list(vec.hook_names) == hooks and len(hooks) >= 2
    # the table: the last layer cuts the most tokens, the first the most per unit of KL
    tokens = {None: 50.0, hooks[0]: [49.0, 47.0, 46.0], hooks[-1]: [45.0, 40.0, 30.0]}
    kl = {hooks[0]: [0.01, 0.02, 0.5], hooks[-1]: [1.0, 2.0, 4.0]}
    for h in hooks[1:-1]:
        tokens[h], kl[h] = [50.0, 50.5, 49.5], [0.1, 0.2, 0.3]
    seen = _fake_sweep(monkeypatch, model, hooks, tokens, kl)
    problems = sweep_problems(world, 6)
    rows = kl_trace_rows(world, tok, 8)
    out = choose_seal_layer(model, tok, world, vec, problems, _sweep_cfg(tok, world), rows)
    cut = {h: [tokens[None] - t for t in tokens[h]] for h in hooks}
    oracle = pick_best(cut, kl, SWEEP_SCALES, 1e-4, SWEEP_MIN_CUT)
    assert oracle == (hooks[0], 0.5)  # 3 tokens for 0.02 nats: 150 per nat; the last layer's best is 10
    assert out["chosen"] == {"hook": hooks[0], "layer": 0, "scale": -0.5, "tokens_cut": 3.0, "kl": 0.02}
    assert out["fallback"] is False and out["min_effect"] == SWEEP_MIN_CUT
    assert len(out["table"]) == len(hooks) * len(SWEEP_SCALES)
    assert {(r["hook"], r["scale"]): r["tokens"] for r in out["table"]}[(hooks[-1], 1.0)] == 30.0
    text = _layer_choice_text(out)
    assert f"chosen {hooks[0]} (3.0 tokens cut at -0.5, KL 0.02" in text
    assert "cut at scales -0.25/-0.5/-1: blocks.0 1.0/3.0/4.0" in text
    # train problems only, never the evaluation's (test_id), in every decoding of the sweep
    test_id = set(world.split("test_id"))
    assert problems and set(problems) <= set(world.split("train")) and not set(problems) & test_id
    assert len(seen) == 1 + len(hooks) * len(SWEEP_SCALES)
    assert all(p == [cot_prompt(s, g) for s, g in problems] for p in seen)
    assert sum(len(h._forward_hooks) for h in model.module.hook_dict.values()) == 0


def test_seal_layer_falls_back_to_the_middle_layer_when_no_cut_qualifies(tiny_zoo, monkeypatch):
    from experiments.e9_cot_length import (
        _layer_choice_text,
        choose_seal_layer,
        kl_trace_rows,
        seal_vector,
        sweep_problems,
    )

    world, tok, model = _organism(tiny_zoo)
    vec, _ = seal_vector(model, tok, world, n_traces=40, layers=range(model.n_layers))
    hooks = list(vec.hook_names)
    # cuts of at most one token per response (the minimum) or lengthening: none qualifies
    tokens = {None: 50.0, **{h: [49.5, 49.0, 51.0] for h in hooks}}
    kl = {h: [0.0, 0.0, 0.0] for h in hooks}
    _fake_sweep(monkeypatch, model, hooks, tokens, kl)
    rows = kl_trace_rows(world, tok, 8)
    out = choose_seal_layer(model, tok, world, vec, sweep_problems(world, 4), _sweep_cfg(tok, world), rows)
    middle = f"blocks.{model.n_layers // 2}.hook_resid_post"
    assert out["fallback"] is True and out["chosen"]["hook"] == middle and out["best"] is None
    assert f"no layer qualified: fell back to the middle layer, {middle}" in _layer_choice_text(out)


def test_seal_layer_sweep_on_the_tiny_organism(tiny_zoo):
    # no fake: real decoding at the boundaries; the KL rows are traces that hold boundaries, so the
    # subtraction costs KL there; the per-layer vectors are the single-layer vector of each layer
    import torch

    from experiments.e9_cot_length import choose_seal_layer, kl_trace_rows, seal_vector, sweep_problems

    world, tok, model = _organism(tiny_zoo)
    vec, _ = seal_vector(model, tok, world, n_traces=40, layers=range(model.n_layers))
    single, _ = seal_vector(model, tok, world, n_traces=40)
    middle = single.hook_names[0]
    torch.testing.assert_close(vec.directions[middle], single.directions[middle])
    rows = kl_trace_rows(world, tok, 8)
    assert rows and all(">" in tok.words(r) for r in rows)
    out = choose_seal_layer(
        model, tok, world, vec, sweep_problems(world, 4), _sweep_cfg(tok, world, 20), rows, scales=(1.0,)
    )
    assert out["kl_all_zero"] is False and all(r["kl"] > 0 for r in out["table"])
    assert len(out["table"]) == model.n_layers
    assert out["meta"]["positions"].startswith("And(") and out["problems"] == {"split": "train", "count": 4}
    assert out["chosen"]["hook"] in vec.hook_names
    assert sum(len(h._forward_hooks) for h in model.module.hook_dict.values()) == 0
