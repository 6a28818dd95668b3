"""Steered generation with the key-value cache, dose-response sweeps, and the ``interp steer`` CLI."""

import contextlib
import json
import logging
from pathlib import Path

import pytest
import torch

from interp.cli import main
from interp.models import as_model
from interp.organism.steering import organism_metrics
from steering.sweep import (
    SweepConfig,
    SweepResult,
    dose_response,
    generate_steered,
    kl_cost,
)
from steering.vectors import SteeringVector

HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")


def _vector(d, seed=0, norm=4.0):
    g = torch.Generator().manual_seed(seed)
    dirs = {h: torch.randn(d, generator=g) for h in HOOKS}
    return SteeringVector({h: norm * v / v.norm() for h, v in dirs.items()}, {"method": "manual"})


def _greedy_full_recompute(model, prompt, n):
    """Oracle: no cache; every step reruns the whole sequence (vector at every position once per pass)."""
    seq = list(prompt)
    for _ in range(n):
        with torch.inference_mode():
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    return seq[len(prompt) :]


@pytest.mark.parametrize("fixture", ["hooked", "gpt2"])
def test_steered_kv_generation_matches_full_recompute(request, fixture):
    model = as_model(request.getfixturevalue(fixture))
    vec = _vector(model.d_model, norm=30.0)
    prompts = [[2, 3, 4], [5, 6, 7], [8, 9]]
    steered = generate_steered(model, vec, prompts, 8, scale=1.0)
    plain = generate_steered(model, None, prompts, 8)
    with vec.apply(model, scale=1.0):
        oracle = [_greedy_full_recompute(model.module, p, 8) for p in prompts]
    assert steered == oracle
    assert steered != plain  # the vector is strong enough to change what is generated


def test_kl_cost_zero_unsteered_positive_steered(hooked):
    vec = _vector(32)
    rows = [[2, 3, 4, 5], [6, 7]]
    kl = kl_cost(hooked, rows)
    r = dose_response(hooked, vec, [], [kl], SweepConfig(scales=(0.0, 1.0, 3.0)))
    values = r.values["kl_to_unsteered"]
    assert values[0] == 0.0 and 0 < values[1] < values[2]
    # oracle: the mean over the six real tokens, computed by hand for scale 1
    with torch.inference_mode():
        ref = [hooked(torch.tensor([row])).log_softmax(-1)[0] for row in rows]
        with vec.apply(hooked, scale=1.0):
            now = [hooked(torch.tensor([row])).log_softmax(-1)[0] for row in rows]
    want = torch.cat([(a.exp() * (a - b)).sum(-1) for a, b in zip(ref, now, strict=True)]).mean()
    assert values[1] == pytest.approx(float(want), rel=1e-4)


def test_sweep_config_validates():
    with pytest.raises(ValueError, match="scales"):
        SweepConfig(scales=())
    with pytest.raises(ValueError, match="scales"):
        SweepConfig(scales=(0.0, float("nan")))


@pytest.fixture(scope="module")
def organism(tiny_zoo):
    from interp.organism import load_organism, load_world

    module, tok = load_organism("base", tiny_zoo)
    world, _ = load_world(tiny_zoo)
    return as_model(module, spec="organism:base"), tok, world


def test_organism_sweep_scale_zero_equals_unsteered(organism, tmp_path):
    model, tok, world = organism
    vec = _vector(model.d_model, norm=20.0)
    targets, costs = organism_metrics(model, tok, world, max_problems=8, max_new_tokens=40, kl_cost=kl_cost)
    result = dose_response(model, vec, targets, costs, SweepConfig(scales=(0.0, 1.0)))
    unsteered = {k: v for fn in [*targets, *costs] for k, v in fn(model).items()}
    assert result.at(0.0) == unsteered
    assert result.targets == ("markers_per_response", "solve_rate_id", "solve_rate_ood")
    assert set(result.costs) == {"fact_recall", "trace_validity", "kl_to_unsteered"}
    assert result.at(0.0)["kl_to_unsteered"] == 0.0 and result.at(1.0)["kl_to_unsteered"] > 0
    assert "markers_per_response" in str(result)
    path = result.save(tmp_path / "sweep.json")
    assert json.loads(path.read_text())["scales"] == [0.0, 1.0]
    assert result.plot(tmp_path / "sweep.png").stat().st_size > 0
    with pytest.raises(KeyError, match="not swept"):
        result.at(2.0)


def test_sweep_result_rejects_duplicate_metric_names(hooked):
    twice = [lambda m: {"x": 1.0}, lambda m: {"x": 2.0}]
    with pytest.raises(ValueError, match="'x'"):
        dose_response(hooked, _vector(32), twice, config=SweepConfig(scales=(0.0,)))
    r = SweepResult((0.0,), {"a": (1.0,)}, ("a",))
    assert r.costs == () and r.to_dict()["targets"] == {"a": [1.0]}


def test_cli_vector_and_sweep_on_organism(tiny_zoo, tmp_path, monkeypatch, capsys):
    from interp.organism import load_world
    from interp.organism.traces import cot_prompt, fact_prompt

    monkeypatch.setenv("INTERP_ZOO", str(tiny_zoo))
    world, _ = load_world(tiny_zoo)
    pos, neg = tmp_path / "pos.txt", tmp_path / "neg.txt"
    pos.write_text("\n".join(cot_prompt(a, b) for a, b in world.split("test_id")[:6]) + "\n")
    neg.write_text("\n".join(fact_prompt(n) for n in range(6)) + "\n")
    vdir = tmp_path / "vec"
    args = [
        "steer",
        "vector",
        "--model",
        "organism:base",
        "--positive",
        str(pos),
        "--negative",
        str(neg),
        "--layers",
        "0,1",
        "--out",
        str(vdir),
        "-q",
    ]
    assert main(args) == 0
    vec = SteeringVector.load(vdir)
    assert vec.hook_names == HOOKS and (vdir / "vector.png").is_file()
    sdir = tmp_path / "sweep"
    args = [
        "steer",
        "sweep",
        "--model",
        "organism:base",
        "--vector",
        str(vdir),
        "--scales",
        "0,2",
        "--max-problems",
        "4",
        "--max-new-tokens",
        "30",
        "--out",
        str(sdir),
        "-q",
    ]
    assert main(args) == 0
    data = json.loads((sdir / "sweep.json").read_text())
    assert data["scales"] == [0.0, 2.0] and data["costs"]["kl_task_solutions"][0] == 0.0
    assert (sdir / "sweep.png").is_file()
    # the default on organism models is --task organism:solve (its test split), like any task
    task = data["meta"]["task"]
    assert task["name"] == "organism:solve" and set(task["splits"]) == {"test"}
    assert set(data["targets"]) == {"accuracy", "self_checks_per_response"}
    assert "self_checks_per_response" in capsys.readouterr().out
    # bad input: a clear error and exit code 2, nothing written
    bad = ["steer", "vector", "--model", "organism:base", "--out", str(tmp_path / "bad")]
    assert main(bad) == 2
    assert "--positive" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_cli_vector_from_cache_and_hf_sweep(built_cache, gpt2_dir, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(int(t) % 2) for t in built_cache.tokens.tolist()) + "\n")
    vdir = tmp_path / "vec"
    assert (
        main(
            [
                "steer",
                "vector",
                "--cache",
                str(built_cache.root),
                "--labels",
                str(labels),
                "--hooks",
                "blocks.1.hook_resid_post",
                "--out",
                str(vdir),
                "-q",
            ]
        )
        == 0
    )
    vec = SteeringVector.load(vdir)
    assert vec.meta["provenance"]["cache_id"] == built_cache.id
    neutral = tmp_path / "neutral.txt"
    neutral.write_text("w1 w2 w3\nw4 w5\n")
    sdir = tmp_path / "sweep"
    assert (
        main(
            [
                "steer",
                "sweep",
                "--model",
                f"hf:{gpt2_dir}",
                "--vector",
                str(vdir),
                "--scales",
                "0,1",
                "--neutral",
                str(neutral),
                "--out",
                str(sdir),
                "-q",
            ]
        )
        == 0
    )
    data = json.loads((sdir / "sweep.json").read_text())
    assert data["costs"]["kl_neutral"][0] == 0.0 and data["costs"]["kl_neutral"][1] > 0


# --- refusals before anything runs (issue 10, items 6 and 8) -------------------------------


@pytest.fixture(scope="module")
def gpt2_vector(gpt2, tmp_path_factory):
    from steering.vectors import from_prompts

    vec = from_prompts(gpt2, [[2, 3, 4]], [[5, 6, 7]], list(HOOKS))
    return vec.save(tmp_path_factory.mktemp("gpt2_vector") / "vec")


@pytest.fixture
def neutral(tmp_path):
    path = tmp_path / "neutral.txt"
    path.write_text("w1 w2 w3\nw4 w5\n")
    return path


def _sweep_argv(model_dir, vector, neutral, out, *extra):
    return [
        "steer", "sweep", "--model", f"hf:{model_dir}", "--vector", str(vector), "--neutral", str(neutral),
        "--scales", "0,1", "--out", str(out), "-q", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("layer", ["5", "-1", "0,2"])
def test_cli_sweep_refuses_a_layer_out_of_range_before_loading_the_model(
    layer, gpt2_dir, gpt2_vector, neutral, tmp_path, capsys, monkeypatch
):
    import interp.models

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the layers were checked")

    monkeypatch.setattr(interp.models, "load_model", no_load)
    out = tmp_path / "out"
    assert main(_sweep_argv(gpt2_dir, gpt2_vector, neutral, out, "--layers", layer)) == 2
    bad = [x for x in layer.split(",") if x not in ("0", "1")][0]
    err = capsys.readouterr().err
    assert f"interp: error: layer {bad} is out of range: the model has 2 layers, 0 to 1" in err
    assert "Traceback" not in err and not out.exists()


def test_dose_response_refuses_a_layer_the_model_lacks(hooked):
    from interp.errors import HookNameError

    with pytest.raises(HookNameError, match="layer 7 is out of range: the model has 2 layers, 0 to 1"):
        dose_response(hooked, _vector(32), [], [kl_cost(hooked, [[2, 3]])], SweepConfig(layers=(7,)))


def test_cli_sweep_refuses_a_gpt2_vector_on_a_llama(llama_dir, gpt2_vector, neutral, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_sweep_argv(llama_dir, gpt2_vector, neutral, out)) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert "model_type: 'gpt2' vs 'llama'" in err and not out.exists()


def test_cli_sweep_bad_files_are_one_line(gpt2_dir, gpt2_vector, neutral, tmp_path, capsys):
    import shutil

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(_sweep_argv(gpt2_dir, gpt2_vector, neutral, blocker)) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"w1 w2\nw3 \xff w4\n")
    assert main(_sweep_argv(gpt2_dir, gpt2_vector, binary, tmp_path / "o1")) == 2
    assert f"--neutral {str(binary)!r} line 2 is not UTF-8" in capsys.readouterr().err
    tampered = Path(shutil.copytree(gpt2_vector, tmp_path / "tampered"))
    info = json.loads((tampered / "vector.json").read_text())
    info["meta"] = ["not", "an", "object"]
    (tampered / "vector.json").write_text(json.dumps(info))
    assert main(_sweep_argv(gpt2_dir, tampered, neutral, tmp_path / "o2")) == 2
    err = capsys.readouterr().err
    assert "'meta' must be an object" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:  # argparse: usage, then the one line
        main(_sweep_argv(gpt2_dir, gpt2_vector, neutral, tmp_path / "o3", "--layers", "x"))
    assert exc.value.code == 2 and "layers 'x' must be comma-separated" in capsys.readouterr().err
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 4))


# --- where to steer: selectors and gates in a sweep (issue 13, items 1, 4 and 8) ----------------


def _kl_by_hand(model, vec, rows, scale, mask_of):
    """Oracle: KL of the steered from the unsteered next-token distribution, averaged over the real
    tokens, with the vector added only where ``mask_of(row)`` is true (full pass, no cache)."""
    from interp.hooks import add_vector

    kls = []
    for row in rows:
        toks = torch.tensor([row])
        with torch.inference_mode():
            ref = model(toks).log_softmax(-1)[0]
            mask = torch.tensor([mask_of(row)])
            with contextlib.ExitStack() as stack:
                for hook, d in vec.directions.items():
                    stack.enter_context(add_vector(model, hook, d, scale=scale, positions=mask))
                now = model(toks).log_softmax(-1)[0]
        kls.append((ref.exp() * (ref - now)).sum(-1))
    return float(torch.cat(kls).mean())


def test_sweep_with_a_selector_steers_only_the_selected_positions(hooked):
    from interp.selectors import AfterTokens

    vec = _vector(32, norm=8.0)
    rows = [[2, 3, 4, 5, 3, 6], [7, 3, 8]]
    sel = AfterTokens([3], within=1)
    r = dose_response(hooked, vec, [], [kl_cost(hooked, rows)], SweepConfig(scales=(0.0, 1.0), positions=sel))
    after_3 = lambda row: [i > 0 and row[i - 1] == 3 for i in range(len(row))]  # noqa: E731
    want = _kl_by_hand(hooked, vec, rows, 1.0, after_3)
    everywhere = _kl_by_hand(hooked, vec, rows, 1.0, lambda row: [True] * len(row))
    assert r.values["kl_to_unsteered"][1] == pytest.approx(want, rel=1e-4)
    assert want < everywhere
    assert r.meta["positions"] == repr(sel)
    # 3 positions follow a 3 (hand count) of the 2 x 6 the pass computes (kl_cost right-pads the
    # short row without a mask); the counting hook changes nothing at scale 0
    assert r.values["steered_share"] == pytest.approx((3 / 12, 3 / 12))
    assert r.values["kl_to_unsteered"][0] == 0.0


def test_sweep_warns_when_a_selector_never_selects(hooked, caplog):
    from interp.selectors import AtTokens

    vec = _vector(32, norm=8.0)
    rows = [[2, 3, 4], [5, 6]]
    nowhere = AtTokens([60])  # in no row
    with caplog.at_level(logging.WARNING, logger="steering.sweep"):
        r = dose_response(hooked, vec, [], [kl_cost(hooked, rows)], SweepConfig((1.0,), positions=nowhere))
    assert r.values["steered_share"] == (0.0,) and r.values["kl_to_unsteered"] == (0.0,)
    assert "steered no position at any scale" in caplog.text and "AtTokens" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="steering.sweep"):
        dose_response(hooked, vec, [], [kl_cost(hooked, rows)], SweepConfig((1.0,), positions=AtTokens([3])))
    assert "steered no position" not in caplog.text


def test_sweep_with_a_gate_reports_the_steered_share(hooked):
    from steering.conditional import LinearGate

    vec = _vector(32, norm=8.0)
    rows = [[2, 3, 4, 5], [6, 7]]
    cost = [kl_cost(hooked, rows)]
    first = HOOKS[0]
    always = LinearGate(first, torch.zeros(32), threshold=-1.0)
    never = LinearGate(first, torch.zeros(32), threshold=1.0)
    on = dose_response(hooked, vec, [], cost, SweepConfig(scales=(0.0, 1.0), gate=always))
    off = dose_response(hooked, vec, [], cost, SweepConfig(scales=(1.0,), gate=never))
    plain = dose_response(hooked, vec, [], cost, SweepConfig(scales=(0.0, 1.0)))
    assert on.values["kl_to_unsteered"] == pytest.approx(plain.values["kl_to_unsteered"], rel=1e-5)
    assert on.values["steered_share"] == (1.0, 1.0)
    assert off.values["kl_to_unsteered"] == (0.0,) and off.values["steered_share"] == (0.0,)
    assert on.meta["gate"] == {"hook": first, "kind": "LinearGate", "threshold": -1.0}


def test_sweep_config_refuses_a_gate_with_positions_and_a_gate_that_is_not_one():
    from steering.conditional import LinearGate

    gate = LinearGate(HOOKS[0], torch.zeros(4))
    with pytest.raises(ValueError, match="a gate decides the positions itself"):
        SweepConfig(positions=-1, gate=gate)
    with pytest.raises(ValueError, match="expected a LinearGate or FeatureGate"):
        SweepConfig(gate="blocks.0.hook_resid_post")


def test_cli_sweep_at_tokens_and_gate(gpt2_dir, gpt2_vector, neutral, tmp_path, capsys):
    out_at, out_gate, out_all = tmp_path / "at", tmp_path / "gate", tmp_path / "all"
    assert main(_sweep_argv(gpt2_dir, gpt2_vector, neutral, out_at, "--at-tokens", "w2,w4")) == 0
    assert main(_sweep_argv(gpt2_dir, gpt2_vector, neutral, out_gate, "--gate-threshold=-1e9")) == 0
    assert main(_sweep_argv(gpt2_dir, gpt2_vector, neutral, out_all)) == 0
    at, gate, every = (json.loads((d / "sweep.json").read_text()) for d in (out_at, out_gate, out_all))
    assert 0 < at["costs"]["kl_neutral"][1] < every["costs"]["kl_neutral"][1]
    assert gate["costs"]["kl_neutral"] == pytest.approx(every["costs"]["kl_neutral"], rel=1e-5)
    assert gate["costs"]["steered_share"] == [1.0, 1.0]
    assert "AtTokens" in at["meta"]["positions"] and gate["meta"]["gate"]["hook"] == HOOKS[0]


def test_cli_sweep_refuses_two_ways_of_choosing_positions_and_a_word_of_two_tokens(
    gpt2_dir, gpt2_vector, neutral, tmp_path, capsys
):
    out = tmp_path / "o"
    argv = _sweep_argv(gpt2_dir, gpt2_vector, neutral, out, "--at-tokens", "w2", "--gate-threshold", "0")
    assert main(argv) == 2
    assert "--at-tokens and --gate-threshold both choose where to steer" in capsys.readouterr().err
    assert main(_sweep_argv(gpt2_dir, gpt2_vector, neutral, out, "--after-tokens", "w2 w3")) == 2
    err = capsys.readouterr().err
    assert "--after-tokens 'w2 w3' is 2 tokens" in err and "Traceback" not in err and not out.exists()
