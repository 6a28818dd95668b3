"""experiments.elicit_methods: the side-by-side table against hand-computed means and the rules,
the control's norm and positions against the method's own edit, zero scale against unsteered, and
the not-testable path."""

from types import SimpleNamespace

import pytest
import torch

import experiments.elicit_methods as em
from experiments.elicit_methods import KEEP_SOLVE, MarkerFeature, _Methods, _table, markdown
from experiments.verdicts import paired_interval
from interp.hooks import record
from steering.conditional import LinearGate
from steering.steering_vector import SteeringVector
from steering.vectors import random_direction

N = 20
HOOK = "blocks.0.hook_resid_post"
AFTER = "blocks.1.hook_resid_pre"  # equals HOOK's output: the edit made there, read unchanged
ROW = [5, 9, 1, 2, 9, 1, 3, 7]  # ">" is 1, nodes n0/n1 are 2/3: committed moves end at 3 and 6
MOVES = [3, 6]


def _r(markers, solved, facts, recovered, flagged=None):
    return {
        "markers": list(markers),
        "solved": list(solved),
        "answer": list(solved),
        "flagged": list(flagged or [0] * len(recovered)),
        "recovered": list(recovered),
        "facts": list(facts),
    }


def _results():
    ones, zeros, half = [1] * N, [0] * N, [1, 0] * (N // 2)
    return {
        "base": _r([6] * N, half, ones, ones),
        "unsteered": _r(zeros, half, ones, zeros),
        # markers and recovery up, costs kept, recovery above the control: brings checking back
        "targeted": _r([2] * N, half, ones, ones),
        # markers up but solving falls by half: outside costs
        "always": _r([3] * N, zeros, ones, half),
        # markers and recovery up, costs kept, but no better than the random direction
        "conditional": _r([1] * N, half, ones, [0, 1] * (N // 2)),
        "control": _r(zeros, half, ones, [0, 1] * (N // 2)),
    }


def test_table_means_intervals_cost_rule_and_the_control():
    table = {row["setting"]: row for row in _table(_results(), {"conditional": 0.25})}
    assert table["always"]["markers"] == 3.0 and table["targeted"]["recovered"] == 1.0
    assert table["always"]["markers_vs_unsteered"] == paired_interval([3] * N, [0] * N)
    assert table["always"]["solved_vs_unsteered"]["estimate"] == -0.5 < -KEEP_SOLVE
    assert table["always"]["within_costs"] is False and table["targeted"]["within_costs"] is True
    assert table["targeted"]["beats_control"] is True and table["targeted"]["brings_back"] is True
    # same recovery rate as the control, on other problems: the paired interval straddles zero
    assert table["conditional"]["recovered_vs_control"]["estimate"] == 0.0
    assert table["conditional"]["beats_control"] is False and table["conditional"]["brings_back"] is False
    assert table["always"]["brings_back"] is False  # its recovery beats the control, its costs do not hold
    assert table["control"]["brings_back"] is None and table["control"]["recovered_vs_control"] is None
    assert table["unsteered"]["within_costs"] is None and table["conditional"]["steered_share"] == 0.25


def _doc(results, testable=True):
    table = _table(results, {})
    return {
        "target": "t",
        "n_problems": N,
        "testable": testable,
        "precondition": {"name": "t has fewer markers than base", "held": testable, "detail": "d"},
        "table": table,
        "brings_back": [r["setting"] for r in table if r.get("brings_back")],
        "settings": {
            "hook": "h",
            "n_select": 4,
            "scales": {"targeted": 0.5},
            "contrast": {"positive": 5, "negative": 7},
            "control": {"copies": "targeted", "norm": 2.0, "seed": 0},
        },
    }


def test_summary_and_markdown_name_what_brings_checking_back():
    doc = _doc(_results())
    text = em.summary(doc)
    assert "brought back by targeted" in text and "always markers 3.00 [3.00, 3.00]" in text
    assert "(outside costs)" in text and "random direction at targeted's setting" in text
    md = markdown(doc)
    assert "| targeted | 0.5 |  | 2.00 (" in md and "| control | " in md and "| True | 0.50 [" in md


def _methods(model, feature=None):
    tok = SimpleNamespace(token_id={">": 1, "n0": 2, "n1": 3}.__getitem__)
    world = SimpleNamespace(n_nodes=2)
    direction = torch.linspace(-1, 1, model.cfg.d_model)
    vec = SteeringVector({HOOK: direction}, {"method": "manual"})
    gate = LinearGate(HOOK, torch.zeros(model.cfg.d_model), threshold=-1.0)  # fires everywhere
    return _Methods(model, tok, world, vec, HOOK, gate, feature)


def _edit(model, cm):
    ids = torch.tensor([ROW])
    with torch.no_grad(), record(model, AFTER) as plain:
        model(ids)
    with torch.no_grad(), cm, record(model, AFTER) as steered:
        model(ids)
    return (steered[AFTER] - plain[AFTER])[0]


def test_random_direction_has_the_norm_asked_for_and_is_seeded():
    d = random_direction(16, 2.5, seed=3)
    assert d.norm().item() == pytest.approx(2.5)
    assert torch.equal(d, random_direction(16, 2.5, seed=3))
    assert not torch.equal(d, random_direction(16, 2.5, seed=4))


@pytest.mark.parametrize("name", ["always", "targeted", "conditional"])
def test_the_control_adds_a_random_direction_of_the_methods_norm_where_the_method_steers(hooked, name):
    m = _methods(hooked)
    method = _edit(hooked, m.apply(name, 0.7))
    norm = m.edit_norm(name, 0.7, [ROW])
    assert norm == pytest.approx(0.7 * float(m.direction.norm()))
    control = _edit(hooked, m.control(name, 0.7, norm, seed=0))
    where = method.norm(dim=-1) > 1e-6
    assert torch.equal(where, control.norm(dim=-1) > 1e-6)
    assert where.nonzero().flatten().tolist() == (MOVES if name == "targeted" else list(range(len(ROW))))
    assert torch.allclose(control[where].norm(dim=-1), method[where].norm(dim=-1), atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(control[where], method[where], dim=-1)
    assert cos.abs().max() < 0.9  # another direction, not the method's


@pytest.mark.parametrize("name", ["always", "targeted", "conditional"])
def test_zero_scale_gives_the_unsteered_model(hooked, name):
    ids = torch.tensor([ROW])
    with torch.no_grad():
        plain = hooked(ids)
        with _methods(hooked).apply(name, 0.0):
            steered = hooked(ids)
    assert torch.equal(plain, steered)


class _SAE:
    """A tiny SAE: ``relu(x @ W_enc)``, decoder ``W_dec``."""

    def __init__(self, d_model: int, d_sae: int = 6):
        g = torch.Generator().manual_seed(0)
        self.W_enc = torch.randn(d_model, d_sae, generator=g)
        self.W_dec = torch.randn(d_sae, d_model, generator=g)

    def encode(self, x):
        return torch.relu(x @ self.W_enc)


def test_sae_clamp_control_matches_the_clamps_mean_edit_at_the_targeted_positions(hooked):
    feature = MarkerFeature(_SAE(hooked.cfg.d_model), HOOK, feature=2, typical=1.5)
    m = _methods(hooked, feature)
    assert m.names == ["always", "targeted", "conditional", "sae_clamp"]
    clamp = _edit(hooked, m.apply("sae_clamp", 2.0))
    assert clamp.norm(dim=-1).nonzero().flatten().tolist() == MOVES  # only at committed moves
    norm = m.edit_norm("sae_clamp", 2.0, [ROW])
    assert norm == pytest.approx(float(clamp[MOVES].norm(dim=-1).mean()), rel=1e-4)
    control = _edit(hooked, m.control("sae_clamp", 2.0, norm, seed=0))
    assert control.norm(dim=-1).nonzero().flatten().tolist() == MOVES
    assert torch.allclose(control[MOVES].norm(dim=-1), torch.tensor([norm, norm]), atol=1e-4)
    assert _methods(hooked).names == ["always", "targeted", "conditional"]  # no SAE: no clamp


def test_a_target_that_kept_its_markers_is_not_testable_and_nothing_is_steered(monkeypatch):
    calls = []

    def fake_measure(model, tok, world, problems, max_new_tokens, recovery_problems=None):
        calls.append(model)
        return _r([2] * N, [1] * N, [1] * N, [1] * N)  # base and target alike

    monkeypatch.setattr(em, "measure", fake_measure)
    world = SimpleNamespace(split=lambda name: [(0, 1)] * 50)
    ctx = SimpleNamespace(
        world=(world, None),
        model=lambda name: SimpleNamespace(module=name),
        budget=SimpleNamespace(problems=N, max_new_tokens=8),
    )
    doc = em.compare(ctx, "sft-clean")
    assert calls == ["base", "sft-clean"]  # measured once each, never steered
    assert doc["testable"] is False and doc["precondition"]["held"] is False
    assert doc["precondition"]["name"] == "sft-clean has fewer markers than base"
    assert [r["setting"] for r in doc["table"]] == ["base", "unsteered"] and doc["n_problems"] == N
    assert em.summary(doc).startswith("steering sft-clean back toward checking: not testable")
    assert "Precondition: sft-clean has fewer markers than base: failed" in markdown(doc)
