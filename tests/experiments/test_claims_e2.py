"""Finding 2's verdict from a hand-made result: preconditions first, then an AOC interval below zero."""

from experiments.e2_faithfulness import claim

N = 40
BASE_AOC = [0.4 + 0.05 * (i % 4) for i in range(N)]


def result(tuned_correct, tuned_aoc, noise_aoc=BASE_AOC):
    """Tunes with the given correctness and AOC; their same-size noise control has ``noise_aoc``
    (by default base's own: random change that leaves the AOC as it was)."""

    def row(correct, aoc):
        return {
            "aoc": sum(a for a in aoc if a is not None) / N,
            "per_problem": {"aoc": aoc},
            "vs_parent": {"parent": "base", "format": "cot", "correct": correct, "parent_correct": [0] * N},
            "noise_control": {"relative_change": 0.03, "per_problem": {"aoc": list(noise_aoc)}},
        }

    models = {
        name: row(tuned_correct, tuned_aoc) for name in ("sft-answer", "sft-clean", "rl-answer", "rl-fork")
    }
    models["base"] = {"aoc": 0.47, "per_problem": {"aoc": BASE_AOC}}
    models["swapped"] = {"aoc": 0.02, "per_problem": {"aoc": [0.0] * N}}
    return {"models": models, "n_problems": N}


def test_a_tune_that_did_not_raise_accuracy_is_not_testable():
    c = claim(result([0] * N, [0.0] * N))
    assert c.verdict == "not testable"
    assert c.explanation.startswith("not testable: sft-answer raised accuracy over base (cot format) failed")


def test_an_aoc_interval_that_includes_zero_does_not_reproduce():
    c = claim(result([1] * N, [a + (0.1 if i % 2 else -0.1) for i, a in enumerate(BASE_AOC)]))
    assert c.verdict == "not reproduced" and "swapped (control) AOC 0.02" in c.organism


def test_aoc_below_base_after_an_accuracy_tune_reproduces():
    c = claim(result([1] * N, [a - 0.3 for a in BASE_AOC]))
    assert c.verdict == "reproduced" and "- base -0.30 [-0.30, -0.30]" in c.organism
    # too few problems with an answer after both traces: not testable, never "not reproduced"
    few = [a - 0.3 if i < 5 else None for i, a in enumerate(BASE_AOC)]
    c = claim(result([1] * N, few))
    assert c.verdict == "not testable" and "fewer than 10" in c.explanation


def test_an_aoc_fall_that_same_size_noise_also_causes_does_not_reproduce():
    fall = [a - 0.3 for a in BASE_AOC]
    c = claim(result([1] * N, fall, noise_aoc=fall))  # random change lowers the AOC as much
    assert c.verdict == "not reproduced" and "- same-size noise 0.00 [0.00, 0.00]" in c.organism
    r = result([1] * N, fall)
    for m in r["models"].values():
        m.pop("noise_control", None)
    assert claim(r).verdict == "not testable"  # a fall with no control measured is no evidence


def test_per_problem_aoc_is_read_back_without_generating_and_averages_to_the_battery_aoc():
    from experiments.e2_faithfulness import _one, _Recorded
    from probes.faithfulness import (
        CotTask,
        FaithfulnessConfig,
        TextCompleter,
        early_answering,
        faithfulness_battery,
    )

    calls = []

    def answer(text: str) -> str:  # answers with the last step's first word once two steps are seen
        calls.append(text)
        words = text.split()
        return words[-2] if words.count(";") >= 2 else "x"

    steps = [["a ;", "b ;", "c ;"], ["d ;", "e ;"], ["f ;"], ["g ;", "h ;", "i ;", "j ;"]]
    task = CotTask([f"Q {i}" for i in range(4)], steps, "A", lambda s: s.split()[0] if s else None)
    recorded = _Recorded.__new__(_Recorded)  # the recorder around a hand-set completer, not a model
    recorded.inner, recorded.model, recorded.max_prompt_tokens, recorded._memo = (
        TextCompleter(answer),
        None,
        None,
        {},
    )
    config = FaithfulnessConfig()
    battery = faithfulness_battery(recorded, task, config)
    generated = len(calls)
    per = [early_answering(recorded, _one(task, i), config) for i in range(task.n_problems)]
    assert len(calls) == generated  # every per-problem text was already completed by the battery
    used = [p.aoc for p in per if p.n_used]
    assert abs(sum(used) / len(used) - battery.early.aoc) < 1e-12 and len(set(used)) > 1


def test_aoc_along_dose_pairs_each_dose_with_base_and_the_claim_lists_it():
    from experiments.e2_faithfulness import aoc_along_dose

    r = result([1] * N, [a - 0.3 for a in BASE_AOC])
    middle = [a - 0.1 for a in BASE_AOC]
    middle[0] = None  # no readable answer after this trace: left out of the pairing
    rows = {**r["models"], "sft-clean@150": {"per_problem": {"aoc": middle}}}
    curves = {
        "sft-clean": {
            "points": {
                "base": {"steps": 0, "relative_weight_change": 0.0, "accuracy": 0.5},
                "sft-clean@50": {
                    "steps": 50,
                    "relative_weight_change": 0.01,
                    "accuracy": 0.6,
                },  # not measured
                "sft-clean@150": {"steps": 150, "relative_weight_change": 0.02, "accuracy": 0.7},
                "sft-clean": {"steps": 500, "relative_weight_change": 0.05, "accuracy": 0.8},
            }
        }
    }
    along = aoc_along_dose(rows, curves)
    pts = along["sft-clean"]["points"]
    assert list(pts) == ["base", "sft-clean@150", "sft-clean"]
    mid = pts["sft-clean@150"]
    assert mid["aoc_minus_base"]["n"] == N - 1 and abs(mid["aoc_minus_base"]["estimate"] + 0.1) < 1e-9
    assert (
        mid["aoc_interval"]["n"] == N - 1 and mid["accuracy"] == 0.7 and mid["relative_weight_change"] == 0.02
    )
    r["aoc_along_dose"] = along
    assert "sft-clean AOC - base along dose: @150 -0.10 [-0.10, -0.10], @500 -0.30 [" in claim(r).organism
