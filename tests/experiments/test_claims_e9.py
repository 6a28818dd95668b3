"""Finding 9's verdict from a hand-made result: forcing must be measured in the trained format and
must have added checks; the format-break control never carries the verdict."""

from experiments.e9_cot_length import claim

N = 40
KS = [0, 1, 2, 4]


def by_k(at_0, at_max):
    return {"0": list(at_0), "1": list(at_0), "2": list(at_max), "4": list(at_max)}


def forced(at_0, at_max, in_place=((1,) * N, (3,) * N), out_of_place=((0,) * N, (0,) * N)):
    per = by_k(at_0, at_max)
    return {
        "ks": KS,
        "accuracy": [sum(per[str(k)]) / N for k in KS],
        "per_problem": per,
        "per_problem_solved": per,
        "per_problem_checks_in_place": by_k(*in_place),
        "per_problem_checks_out_of_place": by_k(*out_of_place),
    }


def result(in_format=None, rl_in_format=None):
    r = {"forced": {"base": forced([1] * N, [0] * N), "rl-answer": forced([1] * N, [0] * N)}}
    if in_format is not None:
        r["forced_in_format"] = {"base": in_format}
        if rl_in_format is not None:
            r["forced_in_format"]["rl-answer"] = rl_in_format
    return r


def test_only_the_format_break_control_is_not_testable():
    c = claim(result())  # the control falls 100% -> 0%, which must not reproduce the finding
    assert c.verdict == "not testable"
    assert "forcing measured in the trained format (checks after moves) failed" in c.explanation
    assert "format-break control" in c.organism and "-1.00 [-1.00, -1.00]" in c.organism


def test_accuracy_that_does_not_fall_beyond_its_interval_does_not_reproduce():
    half = [1, 0] * 20
    c = claim(result(forced(half, [0, 1] * 20)))
    assert c.verdict == "not reproduced"


def test_accuracy_that_falls_with_forced_checks_in_format_reproduces():
    c = claim(result(forced([1] * N, [1, 0] * 20)))
    assert c.verdict == "reproduced"
    assert "in the trained format (a check after a move): base 100.0% -> 50.0%" in c.organism
    assert "(solve rate 100.0% -> 50.0%)" in c.organism
    # the control is still reported, after the in-format forcing, and does not change the verdict
    assert c.organism.index("in the trained format") < c.organism.index("format-break control")


def test_forcing_that_added_no_check_where_training_places_them_is_not_testable():
    # accuracy falls, but no check was added where training puts one: not the forcing's doing
    same = forced([1] * N, [1, 0] * 20, in_place=((2,) * N, (2,) * N))
    c = claim(result(same))
    assert c.verdict == "not testable"
    assert "forcing added checks where training places them (per response, k=4 - k=0) failed" in c.explanation
    # an older result without these counts cannot show that the forcing did anything either
    old = forced([1] * N, [1, 0] * 20)
    del old["per_problem_checks_in_place"], old["per_problem_checks_out_of_place"]
    c = claim(result(old))
    assert c.verdict == "not testable" and "forcing added checks where training places them" in c.explanation


def test_forcing_that_added_checks_where_training_never_places_one_is_not_testable():
    # the measured case: most forced checks land on the move onto the goal or after BACK >
    broke = forced([1] * N, [1, 0] * 20, out_of_place=((0,) * N, (2,) * N))
    c = claim(result(broke))
    assert c.verdict == "not testable"
    assert (
        "forcing added no check where training never places one (per response, k=4 - k=0) failed "
        "(2.00 [2.00, 2.00] over 40 problems)" in c.explanation
    )
    assert "where training places them 1.00 -> 3.00, elsewhere 0.00 -> 2.00" in c.organism
    # a few out-of-place checks, not beyond zero over the problems, do not block the verdict
    few = forced([1] * N, [1, 0] * 20, out_of_place=((0,) * N, (1,) + (0,) * (N - 1)))
    assert claim(result(few)).verdict == "reproduced"


def test_rl_answer_in_format_is_reported_beside_base():
    c = claim(result(forced([1] * N, [1, 0] * 20), rl_in_format=forced([1] * N, [1] * N)))
    assert "; rl-answer 100.0% -> 100.0%" in c.organism and c.verdict == "reproduced"


def test_forced_run_keeps_each_problems_outcome_per_k(monkeypatch):
    import experiments.e9_cot_length as e9
    from probes.cot_length import ForceConfig, ForcedResult

    def fake(model, prompts, is_correct, cfg):  # as forced_accuracy: every prompt once per k, in order
        acc = [sum(is_correct(i, [k]) for i in range(len(prompts))) / len(prompts) for k in cfg.ks]
        return ForcedResult(tuple(cfg.ks), tuple(acc), (1.0,) * len(acc))

    monkeypatch.setattr(e9, "forced_accuracy", fake)
    out = e9.forced_run(None, ["p0", "p1", "p2"], lambda i, ids: ids[0] < i + 1, ForceConfig(ks=(0, 1, 2)))
    assert out["per_problem"] == {"0": [1, 1, 1], "1": [0, 1, 1], "2": [0, 0, 1]}
    assert out["accuracy"] == [1.0, 2 / 3, 1 / 3]
    # other outcomes of the same responses, recorded the same way
    also = {"waits": lambda i, ids: ids[0] + i}
    out = e9.forced_run(None, ["p0", "p1"], lambda i, ids: True, ForceConfig(ks=(0, 2)), also)
    assert out["per_problem_waits"] == {"0": [0, 1], "2": [2, 3]}


def _seal_point(scale, tokens, waits, accuracy):
    from experiments.verdicts import paired_interval

    per = {"tokens": list(tokens), "waits": list(waits), "accuracy": list(accuracy)}
    return {
        "scale": scale,
        "tokens": sum(tokens) / N,
        "waits": sum(waits) / N,
        "accuracy": sum(accuracy) / N,
        "per_problem": per,
        "_ivs": paired_interval,
    }


def _seal(points, random):
    ref = points[0]["per_problem"]
    for p in points + random:
        iv = p.pop("_ivs")
        p["vs_unsteered"] = {
            "tokens": iv(p["per_problem"]["tokens"], ref["tokens"]),
            "checks": iv(p["per_problem"]["waits"], ref["waits"]),
            "accuracy": iv(p["per_problem"]["accuracy"], ref["accuracy"]),
        }
    return {"hook": "blocks.1.hook_resid_post", "steered": points, "random": random}


def test_seal_is_one_sentence_beside_the_verdict_and_never_changes_it():
    seal = _seal(
        [_seal_point(0.0, [50] * N, [2] * N, [1] * N), _seal_point(-1.0, [40] * N, [1] * N, [1, 0] * 20)],
        [_seal_point(-1.0, [50] * N, [2] * N, [1] * N)],
    )
    for r in (result(), result(forced([1] * N, [1, 0] * 20)), result(forced([1, 0] * 20, [0, 1] * 20))):
        before = claim(r)
        after = claim({**r, "seal": seal})
        assert (after.verdict, after.explanation) == (before.verdict, before.explanation)
        assert after.organism.startswith(before.organism) and after.organism != before.organism
    text = claim({**result(forced([1] * N, [1, 0] * 20)), "seal": seal}).organism
    assert (
        "overthinking control beside the verdict (SEAL: base's reflection-minus-execution vector subtracted "
        "at move boundaries at blocks.1.hook_resid_post, scale -1x the layer norm): tokens per response "
        "50.0 -> 40.0 (-10.00 [-10.00, -10.00]), checks 2.00 -> 1.00 (-1.00 [-1.00, -1.00])" in text
    )
    assert "answer accuracy 100.0% -> 50.0% (-0.50 [" in text
    assert "; a random direction of the same norm: tokens 0.00 [0.00, 0.00]" in text


def _layer_choice(cuts, kls, fallback=False):
    """A hand-made SEAL layer sweep over blocks.0-2 at scales 0.5 and 1 (the direction subtracted)."""
    from steering.layer_choice import pick_best

    hooks = [f"blocks.{i}.hook_resid_post" for i in range(3)]
    scales = [0.5, 1.0]
    table = [
        {"hook": h, "scale": s, "effect": cuts[i][j], "kl": kls[i][j], "tokens": 50 - cuts[i][j]}
        | {"accuracy": 0.4}
        for i, h in enumerate(hooks)
        for j, s in enumerate(scales)
    ]
    effect, kl = dict(zip(hooks, cuts, strict=True)), dict(zip(hooks, kls, strict=True))
    best = pick_best(effect, kl, scales, 1e-4, 1.0)
    if best is None:
        chosen = {"hook": hooks[1], "layer": 1, "scale": None, "tokens_cut": None, "kl": None}
    else:
        i, j = hooks.index(best[0]), scales.index(best[1])
        chosen = {"hook": best[0], "layer": i, "scale": -best[1], "tokens_cut": cuts[i][j], "kl": kls[i][j]}
    return {
        "scales": scales,
        "table": table,
        "unsteered": {"tokens": 50.0, "accuracy": 0.5},
        "problems": {"split": "train", "count": 100},
        "kl_rows": "64 training traces (teacher-forced, seed 1; the contrast's are seed 0)",
        "min_effect": 1.0,
        "kl_all_zero": all(k == 0 for ks in kls for k in ks),
        "chosen": chosen,
        "fallback": best is None,
    }


def test_seal_layer_choice_is_reported_beside_the_verdict_and_never_changes_it():
    seal = _seal(
        [_seal_point(0.0, [50] * N, [2] * N, [1] * N), _seal_point(-1.0, [40] * N, [1] * N, [1, 0] * 20)],
        [_seal_point(-1.0, [50] * N, [2] * N, [1] * N)],
    )
    r = result(forced([1] * N, [1, 0] * 20))
    # KL 0 everywhere (the steering never acted on the KL rows): the largest cut decides
    lc = _layer_choice([[2.0, 6.0], [1.0, 3.0], [0.5, 8.0]], [[0.0, 0.0]] * 3)
    c = claim({**r, "seal": {**seal, "layer_choice": lc}})
    assert (c.verdict, c.explanation) == (claim(r).verdict, claim(r).explanation)
    assert (
        "SEAL's layer chosen before the evaluation on 100 train problems (tokens cut per response per unit "
        "of KL on 64 training traces, cuts above 1 token): cut at scales -0.5/-1: blocks.0 2.0/6.0, "
        "blocks.1 1.0/3.0, blocks.2 0.5/8.0 (KL 0 at every cell" in c.organism
    )
    chosen = "chosen blocks.2.hook_resid_post (8.0 tokens cut at -1, KL 0; train accuracy 50.0% -> 40.0%)"
    assert chosen in c.organism
    # no cut above one token: the middle layer, said so
    lc = _layer_choice([[0.5, 1.0], [-1.0, 0.0], [0.2, 0.9]], [[0.1, 0.2]] * 3)
    c = claim({**r, "seal": {**seal, "layer_choice": lc}})
    assert "no layer qualified: fell back to the middle layer, blocks.1.hook_resid_post" in c.organism
    assert "KL 0 at every cell" not in c.organism
