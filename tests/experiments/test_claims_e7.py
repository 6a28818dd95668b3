"""Finding 7's verdict from a hand-made result: RL must move the model beyond same-norm noise first."""

import re

import pytest
from claim_fixtures import vs_parent

from experiments.e7_forking import claim

N, R = 40, 30  # problems, responses
HALF = [1, 0] * 20


def shift(mean_kl, excess):
    """R responses of 10 tokens, 2 of them high-entropy (share 0.2), with the given mean KL per
    token and excess concentration, also as the pooled sums the verdict bootstraps."""
    kl = [mean_kl + 0.01 * (i % 3) for i in range(R)]
    ex = [excess + 0.01 * (i % 3) for i in range(R)]
    return {
        "mean_kl": kl,
        "excess": ex,
        "kl_total": [10 * k for k in kl],
        "kl_high": [10 * k * (e + 0.2) for k, e in zip(kl, ex, strict=True)],
        "n_high": [2] * R,
        "n_tokens": [10] * R,
    }


def rl(correct, excess):
    return {
        "share_of_shift_on_high_entropy": 0.9,
        "share_of_tokens_high_entropy": 0.2,
        "solve_rate_id": sum(correct) / N,
        "per_response": shift(0.5, excess),
        "per_problem": {"correct": correct, "solved": correct},
    }


def result(noise=None, fork_correct=(1,) * N, rl_excess=0.6, raised=True):
    r = {
        "forking_share": 0.2,
        "genuine_forks_caught_by_top20": 0.8,
        "rl": {
            "rl-answer": rl([1] * N if raised else HALF, rl_excess),
            "rl-fork": rl(list(fork_correct), rl_excess),
        },
        "per_problem": {"base_correct": HALF, "base_solved": HALF},
        "vs_parent": {"rl-answer": vs_parent(raised)},
        "rl_weight_change": {"rl-answer": 0.05, "rl-fork": 0.04},
    }
    if noise is not None:
        r["noise_shift"], r["noise_weight_change"] = noise, 0.05
    return r


def test_without_the_noise_control_it_is_not_testable():
    c = claim(result())
    assert c.verdict == "not testable"
    assert c.explanation == "not testable: same-norm noise control measured failed (not measured)"
    # noise that moves the model as much as RL: RL did not move it beyond noise
    c = claim(result(noise=shift(0.5, 0.6)))
    assert c.verdict == "not testable" and "RL moved the model beyond noise" in c.explanation


def test_a_concentration_no_higher_than_noise_and_no_fork_gain_do_not_reproduce():
    c = claim(result(noise=shift(0.1, 0.6), fork_correct=HALF))
    assert c.verdict == "not reproduced"
    assert re.search(r"excess concentration - noise -?0\.00 \[", c.organism)


def test_concentration_beyond_noise_and_a_fork_gain_reproduce():
    assert claim(result(noise=shift(0.1, 0.0))).verdict == "reproduced"
    # rl-answer did not raise accuracy: the top-20% half is not testable, the finding holds in part
    c = claim(result(noise=shift(0.1, 0.0), raised=False))
    assert (
        c.verdict == "partly" and "rl-answer raised accuracy over base (cot format) failed" in c.explanation
    )


def test_shift_arrays_per_response_against_hand_computed_values():
    import torch

    from experiments.e7_forking import shift_arrays
    from probes.entropy import ShiftResult

    entropy = (torch.tensor([2.0, 0.1, 0.1, 0.1]), torch.tensor([0.1, 0.1]))
    kl = (torch.tensor([0.6, 0.2, 0.1, 0.1]), torch.tensor([0.0, 0.0]))
    out = shift_arrays(ShiftResult(entropy, kl, "kl", threshold=1.0))
    assert out["mean_kl"][0] == pytest.approx(0.25) and out["mean_kl"][1] == 0.0
    # 60% of the shift on the one high-entropy token of four: excess 0.6 - 0.25
    assert out["excess"][0] == pytest.approx(0.35) and out["excess"][1] is None


def test_the_three_arms_and_both_matched_controls_are_reported():
    r = result(noise=shift(0.1, 0.0))
    r["rl"]["rl-bottom"] = rl([0] * N, 0.6)
    r["noise"] = {"share_of_shift_on_high_entropy": 0.7, "share_of_tokens_high_entropy": 0.2}
    r["sft_matched"] = {
        "model": "sft-self@100",
        "relative_weight_change": 0.048,
        "share_of_shift_on_high_entropy": 0.55,
    }
    c = claim(r)
    assert "same-size noise 70.0%, sft-self@100 (SFT of change 0.048) 55.0%" in c.organism
    assert "test_id: base answer 0.50 [" in c.organism and "solve 50.0%" in c.organism
    assert "rl-answer answer 1.00 [1.00, 1.00], solve 100.0%" in c.organism
    assert "rl-bottom answer 0.00 [0.00, 0.00], solve 0.0%" in c.organism
    assert "rl-fork - rl-bottom 1.00 [1.00, 1.00]" in c.organism
    assert c.verdict == "reproduced"  # the controls reported beside it do not change the verdict


def test_a_shift_of_zero_everywhere_reads_n_a_not_nan():
    r = result(noise=shift(0.0, 0.0))
    r["noise"] = {"share_of_shift_on_high_entropy": float("nan")}
    assert "same-size noise n/a" in claim(r).organism and "nan" not in claim(r).organism


def test_the_pooled_concentration_decides_not_the_mean_of_per_response_shares():
    """RL's responses concentrate more on average, but its KL mass sits in responses that do not:
    pooled, noise concentrates more. The quick run once printed 'RL 89.1%, noise 94.0%' beside a
    per-response interval above zero and said reproduced."""
    noise = shift(0.3, 0.6)
    full = shift(0.5, 0.7)
    # half the responses carry almost all of RL's KL and put none of it on high-entropy tokens
    for i in range(R // 2):
        full["kl_total"][i] *= 50
        full["kl_high"][i] = 0.0
    r = result(noise=noise)
    r["rl"]["rl-answer"]["per_response"] = full
    c = claim(r)
    assert "excess concentration - noise -" in c.organism
    assert "shift concentrates on high-entropy tokens beyond noise: reproduced" not in c.explanation
