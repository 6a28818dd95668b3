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
    x = tiny_cache[HOOK][:300]
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


def _direct_ce(model, rows):
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            logits = model(torch.tensor([row]))[0, :-1]
            total += float(torch.nn.functional.cross_entropy(logits, torch.tensor(row[1:]), reduction="sum"))
            count += len(row) - 1
    return total / count


@pytest.mark.parametrize("which", ["hooked", "gpt2"])
def test_spliced_ce_oracles(which, request, tiny_cache, built_cache):
    """An exact reconstruction leaves CE unchanged; a zero one equals zero ablation (both backends)."""
    model = as_model(request.getfixturevalue(which))
    cache, hook = (tiny_cache, HOOK) if which == "hooked" else (built_cache, "blocks.1.hook_resid_post")
    d_in = cache[hook].shape[-1]
    exact = evaluate_sae(_fixed_sae(d_in, "identity"), cache, hook, model=model, n_tokens=60, ce_batch_rows=4)
    zero = evaluate_sae(_fixed_sae(d_in, "zero"), cache, hook, model=model, n_tokens=60, ce_batch_rows=4)
    rows = [r for r in cache.iter_row_tokens()]
    n_rows = next(i for i in range(len(rows)) if sum(len(r) - 1 for r in rows[: i + 1]) >= 60) + 1
    assert exact.ce_clean == pytest.approx(_direct_ce(model, rows[:n_rows]), abs=1e-4)
    assert exact.ce_tokens == sum(len(r) - 1 for r in rows[:n_rows])
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
    ],
)
def test_damaged_metadata_is_refused(key, value, message, trained, tmp_path):
    path = save_sae(trained.sae, tmp_path / "sae")
    meta = json.loads((path / "cfg.json").read_text())["metadata"]
    _edit_cfg(path, metadata={**meta, key: value})
    with pytest.raises(SAEError, match=message):
        load_sae(path)


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
