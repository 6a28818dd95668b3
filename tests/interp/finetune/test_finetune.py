"""End to end on a tiny chat Llama: doses, cards, determinism, reuse, refusals."""

import os
import shutil
from dataclasses import replace

import pytest

from interp.errors import CacheError
from interp.finetune import CARD, FinetuneError, finetune, read_card
from interp.models import load_model


@pytest.fixture(scope="module")
def run(chat_llama_dir, tiny_config, arith_task, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "run"
    paths = finetune(f"hf:{chat_llama_dir}", tiny_config, out, progress=False, task=arith_task)
    return out, paths


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_every_dose_is_a_loadable_checkpoint_with_its_card(run, tiny_config, chat_llama_dir):
    out, paths = run
    assert [p.name for p in paths] == ["step-00000", "step-00003", "step-00006"]
    assert sorted(p.name for p in out.iterdir()) == ["step-00000", "step-00003", "step-00006"]  # no temp left
    parent_fp = load_model(f"hf:{chat_llama_dir}", device="cpu").fingerprint
    for p, step in zip(paths, (0, 3, 6), strict=True):
        card = read_card(p)
        assert card["step"] == step and card["method"] == "sft-solution"
        assert card["config"] == tiny_config.to_dict()
        assert len(card["loss_curve"]) == step
        assert (
            card["parent"]["fingerprint"] == parent_fp
            and card["parent"]["spec"] == f"hf:{chat_llama_dir.name}"
        )
        assert card["data"]["hash"].startswith("sha256:") and card["data"]["n_examples"] == 8
        assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(card["files"])
        loaded = load_model(f"hf:{p}", device="cpu")
        assert card["fingerprint"] == loaded.fingerprint  # the hash a cache of this checkpoint cites
        assert "<s>assistant" in loaded.tokenizer.tok.chat_template  # the chat template travels
    assert read_card(paths[0])["fingerprint"] == parent_fp  # dose 0 is the parent itself


def test_loss_falls_and_the_weights_move_away_from_the_parent(run):
    _, paths = run
    cards = [read_card(p) for p in paths]
    curve = cards[-1]["loss_curve"]
    assert curve[-1] < curve[0] - 0.1
    assert cards[0]["relative_change"]["overall"] == 0.0
    assert cards[0]["relative_change"]["per_layer"] == [0.0, 0.0]
    assert 0 < cards[1]["relative_change"]["overall"] < cards[2]["relative_change"]["overall"]
    assert len(cards[2]["relative_change"]["per_layer"]) == 2
    assert all(v > 0 for v in cards[2]["relative_change"]["per_layer"])


def test_the_same_seed_gives_the_same_checkpoints_and_another_seed_does_not(
    run, chat_llama_dir, tiny_config, arith_task, tmp_path
):
    _, paths = run
    again = finetune(f"hf:{chat_llama_dir}", tiny_config, tmp_path / "again", progress=False, task=arith_task)
    assert [read_card(p)["fingerprint"] for p in again] == [read_card(p)["fingerprint"] for p in paths]
    other = finetune(
        f"hf:{chat_llama_dir}",
        replace(tiny_config, seed=1, doses=()),
        tmp_path / "seed1",
        progress=False,
        task=arith_task,
    )
    assert read_card(other[0])["fingerprint"] != read_card(paths[-1])["fingerprint"]


def test_a_rerun_reuses_finished_doses_without_training(
    run, chat_llama_dir, tiny_config, arith_task, monkeypatch
):
    out, paths = run
    before = _mtimes(out)

    def no_training(*args, **kwargs):
        raise AssertionError("a rerun of a finished run must not train")

    monkeypatch.setattr("interp.finetune.run.train", no_training)
    assert finetune(f"hf:{chat_llama_dir}", tiny_config, out, progress=False, task=arith_task) == paths
    assert _mtimes(out) == before


def test_a_longer_run_keeps_the_shorter_runs_doses_and_adds_its_own(
    run, chat_llama_dir, tiny_config, arith_task, tmp_path
):
    out = tmp_path / "longer"
    shutil.copytree(run[0], out)
    kept = _mtimes(out / "step-00003")
    paths = finetune(
        f"hf:{chat_llama_dir}",
        replace(tiny_config, steps=7, doses=(3,)),
        out,
        progress=False,
        task=arith_task,
    )
    assert [p.name for p in paths] == ["step-00003", "step-00007"]
    assert _mtimes(out / "step-00003") == kept
    assert read_card(paths[1])["loss_curve"][:6] == read_card(run[1][2])["loss_curve"]


def test_a_folder_holding_another_run_is_refused_and_left_alone(run, chat_llama_dir, tiny_config, arith_task):
    out, _ = run
    before = _mtimes(out)
    with pytest.raises(
        FinetuneError, match=r"holds a checkpoint of another run \(lr 0\.003 there, 0\.001 here\)"
    ):
        finetune(f"hf:{chat_llama_dir}", replace(tiny_config, lr=1e-3), out, progress=False, task=arith_task)
    assert _mtimes(out) == before


def test_a_tampered_checkpoint_is_not_reused(run, chat_llama_dir, tiny_config, arith_task, tmp_path, caplog):
    out = tmp_path / "tampered"
    shutil.copytree(run[0], out)
    weights = out / "step-00003" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    paths = finetune(f"hf:{chat_llama_dir}", tiny_config, out, progress=False, task=arith_task)
    assert "does not match its recorded sha256" in caplog.text
    assert read_card(paths[1])["fingerprint"] == read_card(run[1][1])["fingerprint"]
    assert load_model(f"hf:{paths[1]}", device="cpu").fingerprint == read_card(paths[1])["fingerprint"]


def test_a_run_that_fails_leaves_no_half_written_dose(
    chat_llama_dir, tiny_config, arith_task, tmp_path, monkeypatch
):
    calls = []

    def failing(path, obj):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        from interp.atomic import atomic_write_json

        atomic_write_json(path, obj)

    monkeypatch.setattr("interp.finetune.checkpoints.atomic_write_json", failing)
    out = tmp_path / "failed"
    with pytest.raises(OSError, match="No space left"):
        finetune(f"hf:{chat_llama_dir}", tiny_config, out, progress=False, task=arith_task)
    assert sorted(p.name for p in out.iterdir()) == ["step-00000"]  # no temp folder, no lock
    assert (out / "step-00000" / CARD).is_file()


def test_a_model_that_is_not_a_hugging_face_checkpoint_is_refused_before_anything_is_made(
    tiny_config, tmp_path
):
    for spec in ("organism:base", "tl:gpt2"):
        with pytest.raises(FinetuneError, match=rf"model '{spec}' cannot be fine-tuned here; expected"):
            finetune(spec, tiny_config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_output_folder_in_use_by_another_run_is_refused(chat_llama_dir, tiny_config, arith_task, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "build.lock").write_text(f'{{"pid": {os.getpid()}, "host": "{os.uname().nodename}"}}')
    with pytest.raises(CacheError, match=r"another build \(PID \d+"):
        finetune(f"hf:{chat_llama_dir}", tiny_config, out, progress=False, task=arith_task)
    assert sorted(p.name for p in out.iterdir()) == ["build.lock"]


def test_an_output_path_that_is_a_file_is_refused(chat_llama_dir, tiny_config, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FinetuneError, match=r"out_dir '.*/f' is a file, not a directory"):
        finetune(f"hf:{chat_llama_dir}", tiny_config, tmp_path / "f")
