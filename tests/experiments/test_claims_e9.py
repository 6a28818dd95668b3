"""Finding 9's verdict from a hand-made result: forcing must be measured in the trained format."""

from experiments.e9_cot_length import claim

N = 40
KS = [0, 1, 2, 4]


def forced(at_0, at_max):
    per = {"0": at_0, "1": at_0, "2": at_max, "4": at_max}
    return {"ks": KS, "accuracy": [sum(per[str(k)]) / N for k in KS], "per_problem": per}


def result(in_format=None):
    r = {"forced": {"base": forced([1] * N, [0] * N), "rl-answer": forced([1] * N, [0] * N)}}
    if in_format is not None:
        r["forced_in_format"] = {"base": in_format}
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
    assert c.verdict == "reproduced" and "in the trained format: base 100.0% -> 50.0%" in c.organism


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
