import argparse
import json

import pytest
import torch

from interp.errors import SpecError
from interp.organism import (
    MODEL_NAMES,
    WordTokenizer,
    available_organisms,
    build_zoo,
    load_organism,
    load_world,
    organism_prompts,
)
from interp.organism.evaluate import EVAL_METRICS
from interp.organism.zoo import METRICS


def test_tiny_zoo_has_every_model_with_cards(tiny_zoo):
    from interp.organism.world import SPLITS

    assert available_organisms(tiny_zoo, doses=False) == sorted(MODEL_NAMES)
    world = json.loads((tiny_zoo / "world.json").read_text())
    assert set(world["world"]["splits"]) == set(SPLITS)
    for name in MODEL_NAMES:
        card = json.loads((tiny_zoo / name / "card.json").read_text())
        for key in (*METRICS, "build_seconds", "steps", "seed"):
            assert isinstance(card[key], int | float), (name, key)
        for key in METRICS[:-1]:
            assert 0.0 <= card[key] <= 1.0
        assert set(EVAL_METRICS) <= set(card)  # experiments may reuse a card's measurements
        assert card["fingerprint"].startswith("sha256:")
        assert card["recipe"]["profile"] == "tiny"
        cfg = json.loads((tiny_zoo / name / "config.json").read_text())
        assert cfg["d_vocab"] == len(world["vocab"])
    assert not list(tiny_zoo.rglob("*.tmp"))


def test_loads_through_the_model_spec(tiny_zoo, monkeypatch):
    from interp.models import load_model

    monkeypatch.setenv("INTERP_ZOO", str(tiny_zoo))
    model = load_model("organism:base", device="cpu")
    card = json.loads((tiny_zoo / "base" / "card.json").read_text())
    assert model.fingerprint == card["fingerprint"]
    assert isinstance(model.tokenizer, WordTokenizer)
    ids = model.encode(organism_prompts("test_id")[0])
    assert model(torch.tensor([ids])).shape == (1, len(ids), model.d_vocab)


def test_reload_gives_identical_logits(tiny_zoo, tmp_path):
    import shutil

    from interp.atomic import atomic_write_json as write_json_atomic
    from interp.organism.store import save_weights_atomic
    from interp.organism.train import ModelShape, build_model

    a, tok = load_organism("rl-fork", tiny_zoo)
    b, _ = load_organism("rl-fork", tiny_zoo)
    ids = torch.tensor([tok.encode(p) for p in organism_prompts("test_ood", tiny_zoo)[:4]])
    with torch.no_grad():
        assert torch.equal(a(ids), b(ids))
    # an in-memory model saved through the zoo's writers comes back bit for bit
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copy(tiny_zoo / "world.json", zoo / "world.json")
    shape = ModelShape(2, 32, 4, 64, 64)
    model = build_model(shape, len(tok), seed=7)
    (zoo / "m").mkdir()
    save_weights_atomic(zoo / "m" / "model.safetensors", model)
    write_json_atomic(zoo / "m" / "config.json", shape.hooked_config(len(tok)))
    write_json_atomic(zoo / "m" / "card.json", {"name": "m"})
    c, _ = load_organism("m", zoo)
    with torch.no_grad():
        assert torch.equal(model(ids), c(ids))


def test_rebuild_reuses_models_and_doses(tiny_zoo):
    names = available_organisms(tiny_zoo)
    assert len(names) > len(MODEL_NAMES)  # the doses are there too
    before = {n: (tiny_zoo / n / "model.safetensors").stat().st_mtime_ns for n in names}
    cards = build_zoo("tiny", tiny_zoo, seed=0, progress=False, threads=1)
    after = {n: (tiny_zoo / n / "model.safetensors").stat().st_mtime_ns for n in names}
    assert before == after and [c["name"] for c in cards] == list(MODEL_NAMES)
    assert available_organisms(tiny_zoo) == names


def test_training_is_deterministic_doses_included(tiny_zoo, tmp_path):
    """A rebuild on two threads gives the session zoo's weights (built on one), doses included:
    CPU backward kernels that sum in thread order must not leak into the weights."""
    import shutil

    from interp.fingerprint import fingerprint_module
    from interp.organism.store import read_card

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copytree(tiny_zoo / "base", zoo / "base")  # training base again would only add time
    cards = build_zoo("tiny", zoo, seed=0, progress=False, threads=2, only=["sft-answer", "rl-fork"])
    # rl-fork runs as many steps as rl-answer did, so rl-answer is built first
    assert [c["name"] for c in cards] == ["base", "sft-answer", "rl-answer", "rl-fork"]
    assert cards[0]["build_seconds"] == read_card("base", tiny_zoo)["build_seconds"]  # reused
    assert not torch.are_deterministic_algorithms_enabled()  # the build restores the setting
    doses = [n for n in available_organisms(zoo) if "@" in n]
    assert {"sft-answer@2", "sft-answer@4", "rl-answer@1", "rl-fork@1"} <= set(doses)
    for n in ["sft-answer", "rl-answer", "rl-fork", *doses]:
        assert read_card(n, zoo)["fingerprint"] == read_card(n, tiny_zoo)["fingerprint"], n
    m, _ = load_organism("sft-answer@2", zoo)
    assert fingerprint_module(m) == read_card("sft-answer@2", zoo)["fingerprint"]


def test_errors_name_what_exists(tiny_zoo, tmp_path):
    with pytest.raises(SpecError, match="sft-answer"):
        load_organism("nope", tiny_zoo)
    with pytest.raises(SpecError, match="interp organism build"):
        load_organism("base", tmp_path / "missing")
    with pytest.raises(SpecError, match="test_ood"):
        organism_prompts("validation", tiny_zoo)
    with pytest.raises(ValueError, match="quick"):
        build_zoo("huge", tmp_path / "x")


def test_prompts(tiny_zoo):
    tok = load_organism("base", tiny_zoo)[1]
    cot = organism_prompts("test_id", tiny_zoo)
    ans = organism_prompts("test_id_answer", tiny_zoo)
    facts = organism_prompts("facts", tiny_zoo)
    assert len(cot) == len(ans) and cot[0].endswith(" T") and ans[0].endswith(" A")
    assert len(facts) == 24 and all(tok.encode(p) for p in cot + ans + facts)
    assert not set(cot) & set(organism_prompts("train", tiny_zoo))


def test_cli_list_and_build(tiny_zoo, capsys):
    from interp.organism.cli import add_parser

    parser = argparse.ArgumentParser(prog="interp")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["organism", "list", "--zoo", str(tiny_zoo)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "solve_id" in out and all(n in out for n in MODEL_NAMES)
    table, doses = out.split("doses (steps", 1)
    assert "@" not in table  # one table row per model; its doses get a line below
    line = next(ln for ln in doses.splitlines() if ln.strip().startswith("sft-answer:"))
    assert line.strip().startswith("sft-answer: 0 = base, 2 (0.0") and ", final 5 (0.0" in line
    assert not any(ln.strip().startswith(("base:", "swapped:")) for ln in doses.splitlines())
    args = parser.parse_args(["organism", "build", "--profile", "tiny", "--out", str(tiny_zoo), "--quiet"])
    assert args.profile == "tiny" and args.func(args) == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["organism", "build", "--profile", "huge"])


def test_evaluate_model_returns_exactly_the_listed_metrics(tiny_zoo):
    from interp.organism.evaluate import EvalConfig, evaluate_model

    model, tok = load_organism("base", tiny_zoo)
    world, _ = load_world(tiny_zoo)
    cfg = EvalConfig(max_problems=2, max_new_tokens=8, samples=1)
    assert set(evaluate_model(model, tok, world, "cot", cfg)) == set(EVAL_METRICS)


def test_fine_tune_cards_say_whether_accuracy_rose_over_the_parent(tiny_zoo):
    for name in MODEL_NAMES:
        card = json.loads((tiny_zoo / name / "card.json").read_text())
        if card["parent"] is None:
            assert "raised_answer_accuracy" not in card
            continue
        parent = json.loads((tiny_zoo / card["parent"] / "card.json").read_text())
        key = "answer_only_accuracy" if card["format"] == "answer" else "cot_answer_accuracy_id"
        assert card["parent_answer_accuracy_id_same_format"] == parent[key]
        gain = card["answer_accuracy_id"] - parent[key]
        assert abs(card["answer_accuracy_gain_vs_parent"] - gain) < 2e-4
        assert card["raised_answer_accuracy"] == (card["answer_accuracy_gain_vs_parent"] > 0)
