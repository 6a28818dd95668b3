"""Steering vectors: construction (planted directions), exact application, model policy, files, clamping."""

import logging

import pytest
import torch

from interp.errors import HookNameError, ModelMismatchError
from interp.hooks import record
from interp.models import as_model
from steering.vectors import (
    SteeringVector,
    VectorFileError,
    amplify_feature,
    clamp_feature,
    from_cache,
    from_prompts,
    from_sae_feature,
    mean_difference,
    pca_difference,
    prompt_activations,
)

HOOK = "blocks.0.hook_resid_post"


def _planted(n=200, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d, generator=g)
    v /= v.norm()
    base = torch.randn(n, d, generator=g)
    coef = 1.0 + torch.rand(n, generator=g)  # every pair differs by 1..2 times v, plus noise
    pos = base + coef[:, None] * 3 * v + 0.05 * torch.randn(n, d, generator=g)
    neg = base + 0.05 * torch.randn(n, d, generator=g)
    return v, pos, neg, float(coef.mean() * 3)


def test_planted_direction_recovered_by_mean_and_pca():
    v, pos, neg, length = _planted()
    for found in (mean_difference(pos, neg), pca_difference(pos, neg)):
        cos = float(found @ v / found.norm())
        assert cos > 0.99, cos
        assert found.norm() == pytest.approx(length, rel=0.02)
    # PCA's sign follows the mean difference, whichever way the set is given
    assert float(pca_difference(neg, pos) @ v) < 0


def test_pca_rejects_unpaired_sets():
    with pytest.raises(ValueError, match="paired"):
        pca_difference(torch.zeros(3, 4), torch.zeros(2, 4))


def _manual_last(model, rows, hook):
    out = []
    for r in rows:  # one prompt at a time: no padding at all
        with torch.inference_mode(), record(model, hook) as acts:
            model(torch.tensor([r]))
        out.append(acts[hook][0, -1])
    return torch.stack(out)


@pytest.mark.parametrize("fixture", ["hooked", "gpt2"])
def test_from_prompts_matches_unbatched_oracle(request, fixture):
    model = as_model(request.getfixturevalue(fixture))
    pos = [[2, 3, 4, 5], [6, 7], [8, 9, 10]]
    neg = [[11, 12], [13, 14, 15, 16, 17], [18]]
    vec = from_prompts(model, pos, neg, "blocks.*.hook_resid_post", batch_size=2)
    assert vec.hook_names == ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
    for hook in vec.hook_names:
        module = model.module
        want = _manual_last(module, pos, hook).mean(0) - _manual_last(module, neg, hook).mean(0)
        torch.testing.assert_close(vec.directions[hook], want, atol=1e-5, rtol=1e-5)
    assert vec.meta["model"]["fingerprint"] == model.fingerprint
    assert vec.meta["provenance"]["positive"]["count"] == 3
    pca = from_prompts(model, pos, neg, HOOK, method="pca")
    assert float(pca.directions[HOOK] @ vec.directions[HOOK]) > 0


def test_prompt_positions_all_and_indices(hooked):
    rows = [[2, 3, 4], [5, 6]]
    all_ = prompt_activations(hooked, rows, HOOK, positions="all")[HOOK]
    first = prompt_activations(hooked, rows, HOOK, positions=0)[HOOK]
    with record(hooked, HOOK) as acts:
        hooked(torch.tensor([rows[0]]))
    torch.testing.assert_close(all_[0], acts[HOOK][0].mean(0))
    torch.testing.assert_close(first[0], acts[HOOK][0, 0])
    with pytest.raises(ValueError, match="outside prompt 1"):
        prompt_activations(hooked, rows, HOOK, positions=[2])


@pytest.mark.parametrize("fixture", ["hooked", "gpt2"])
def test_apply_adds_exactly_scale_times_direction(request, fixture):
    model = request.getfixturevalue(fixture)
    d = as_model(model).d_model
    g = torch.Generator().manual_seed(1)
    vec = SteeringVector(
        {HOOK: torch.randn(d, generator=g), "blocks.1.hook_resid_post": torch.randn(d, generator=g)},
        {"method": "manual"},
    )
    toks = torch.tensor([[2, 3, 4, 5], [6, 7, 8, 9]])
    with torch.inference_mode(), record(model, HOOK) as plain:
        model(toks)
    with torch.inference_mode(), vec.apply(model, scale=2.5, layers=[0]), record(model, HOOK) as steered:
        model(toks)
    torch.testing.assert_close(
        steered[HOOK] - plain[HOOK], (2.5 * vec.directions[HOOK]).expand(2, 4, d), atol=1e-5, rtol=1e-5
    )
    with torch.inference_mode(), vec.apply(model, scale=1.0, positions=[1]), record(model, HOOK) as one:
        model(toks)
    delta = one[HOOK] - plain[HOOK]
    torch.testing.assert_close(delta[:, 1], vec.directions[HOOK].expand(2, d), atol=1e-5, rtol=1e-5)
    assert float(delta[:, [0, 2, 3]].abs().max()) == 0.0


def test_hooks_removed_after_exception(hooked, gpt2, hook_counts):
    for model in (hooked, gpt2):
        vec = SteeringVector({HOOK: torch.ones(32), "blocks.1.hook_resid_post": torch.ones(32)}, {})
        with pytest.raises(RuntimeError, match="boom"), vec.apply(model, scale=1.0):
            assert hook_counts(model)  # installed inside
            raise RuntimeError("boom")
        assert hook_counts(model) == {}
    bad = SteeringVector({HOOK: torch.ones(32), "blocks.9.hook_resid_post": torch.ones(32)}, {})
    with pytest.raises(HookNameError, match="blocks.9"), bad.apply(hooked):
        pass
    assert hook_counts(hooked) == {}


def test_save_load_round_trip_and_corruption(hooked, tmp_path):
    vec = from_prompts(hooked, [[2, 3], [4, 5]], [[6, 7], [8, 9]], "blocks.*.hook_resid_post", method="pca")
    path = vec.save(tmp_path / "vec")
    back = SteeringVector.load(path)
    assert back.hook_names == vec.hook_names and back.meta == vec.meta
    for h in vec.hook_names:
        assert torch.equal(back.directions[h], vec.directions[h])
    assert not list(path.glob("*.tmp"))
    data = bytearray((path / "vector.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "vector.safetensors").write_bytes(bytes(data))
    with pytest.raises(VectorFileError, match="corrupt"):
        SteeringVector.load(path)
    (path / "vector.json").unlink()
    with pytest.raises(VectorFileError, match="vector.json is missing"):
        SteeringVector.load(path)
    with pytest.raises(VectorFileError, match="missing"):
        SteeringVector.load(tmp_path / "nowhere")


def test_model_policy(hooked, gpt2, gpt2_other, caplog):
    vec = from_prompts(gpt2, [[2, 3]], [[4, 5]], HOOK)
    small = SteeringVector({HOOK: torch.ones(16)}, {})
    with pytest.raises(ModelMismatchError, match="d_model 16.*d_model 32"), small.apply(hooked):
        pass
    # same width and depth, other architecture (HookedTransformer vs TransformerBridge): refused
    with pytest.raises(ModelMismatchError, match="class"), vec.apply(hooked):
        pass
    # same architecture, other weights: allowed, with a warning, once per pair of models
    from steering import steering_vector

    steering_vector._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="steering.vectors"), vec.apply(gpt2_other):
        pass
    assert "other weights" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="steering.vectors"), vec.apply(gpt2_other):
        pass
    assert "other weights" not in caplog.text  # a sweep applies it many times: said once
    with caplog.at_level(logging.WARNING, logger="steering.vectors"), vec.apply(gpt2):
        pass
    assert "other weights" not in caplog.text


# --- identity checks and tampered files (issue 10, items 6 and 8) -------------------------


def test_vector_from_gpt2_refused_on_a_llama_of_the_same_sizes(gpt2, llama, tmp_path, caplog):
    assert (gpt2.n_layers, gpt2.d_model, gpt2.d_vocab) == (llama.n_layers, llama.d_model, llama.d_vocab)
    vec = SteeringVector.load(from_prompts(gpt2, [[2, 3]], [[4, 5]], HOOK).save(tmp_path / "vec"))
    assert vec.meta["model"]["architecture"]["model_type"] == "gpt2"
    with caplog.at_level(logging.WARNING, logger="steering.vectors"):
        with pytest.raises(ModelMismatchError) as exc, vec.apply(llama):
            pass
    msg = str(exc.value)
    assert "model_type: 'gpt2' vs 'llama'" in msg and "(gpt2, 2 layers" in msg and "(llama, 2 layers" in msg
    assert llama.spec in msg and "same architecture" not in caplog.text


def _with_old_architecture(vec, tmp_path):
    import json

    path = vec.save(tmp_path / "old")
    info = json.loads((path / "vector.json").read_text())
    arch = info["meta"]["model"]["architecture"]
    info["meta"]["model"]["architecture"] = {k: arch[k] for k in ("class", "n_layers", "d_model", "d_vocab")}
    (path / "vector.json").write_text(json.dumps(info))
    return path


def test_old_vector_files_compare_the_keys_they_record(gpt2, gpt2_other, hooked, tmp_path, caplog):
    from steering import steering_vector

    old = SteeringVector.load(_with_old_architecture(from_prompts(gpt2, [[2, 3]], [[4, 5]], HOOK), tmp_path))
    steering_vector._WARNED_PARTIAL.clear()
    steering_vector._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="steering.vectors"), old.apply(gpt2_other):
        pass
    assert "saved before the full architecture check" in caplog.text and "other weights" in caplog.text
    with pytest.raises(ModelMismatchError, match="class: 'TransformerBridge' vs 'HookedTransformer'"):
        with old.apply(hooked):
            pass


def test_a_vector_with_two_names_of_one_hook_point_is_refused(gpt2, hook_counts):
    vec = SteeringVector({HOOK: torch.ones(32), "blocks.0.hook_out": torch.ones(32)}, {})
    with pytest.raises(HookNameError, match="already steers under other names"), vec.apply(gpt2):
        pass
    assert hook_counts(gpt2) == {}


def test_a_layer_the_vector_lacks_is_a_hook_name_error():
    vec = SteeringVector({HOOK: torch.ones(4)}, {})
    with pytest.raises(HookNameError, match="no direction for 3"):
        vec.select([3])


TAMPERED = {
    "meta is a list": (lambda info: info.update(meta=[1]), "'meta' must be an object"),
    "meta.model is a string": (lambda info: info["meta"].update(model="gpt2"), "'meta.model' must be"),
    "architecture is a string": (
        lambda info: info["meta"]["model"].update(architecture="gpt2"),
        "'meta.model.architecture' must be an object",
    ),
    "hooks is a string": (lambda info: info.update(hooks=HOOK), "'hooks' must be a non-empty list"),
    "hooks holds a number": (lambda info: info.update(hooks=[1]), "'hooks' must be a non-empty list"),
    "sha256 is null": (lambda info: info.update(sha256=None), "'sha256' must be a string"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_vector_json_is_refused_in_one_line(case, tmp_path):
    import json

    vec = SteeringVector({HOOK: torch.ones(32)}, {"model": {"spec": "x", "architecture": {}}})
    path = vec.save(tmp_path / "v")
    info = json.loads((path / "vector.json").read_text())
    edit, message = TAMPERED[case]
    edit(info)
    (path / "vector.json").write_text(json.dumps(info))
    with pytest.raises(VectorFileError, match=message) as exc:
        SteeringVector.load(path)
    assert "\n" not in str(exc.value)


def test_saving_where_a_file_is_in_the_way_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    vec = SteeringVector({HOOK: torch.ones(4)}, {})
    for target in (blocker, blocker / "vec"):
        with pytest.raises(VectorFileError, match="cannot save the steering vector"):
            vec.save(target)
    assert blocker.read_text() == "x"


def test_from_cache_matches_oracle(built_cache):
    labels = built_cache.tokens % 2 == 0
    vec = from_cache(built_cache, labels, batch_size=37)
    assert set(vec.hook_names) == set(built_cache.hooks)
    for h in vec.hook_names:
        x = built_cache[h].to_tensor().double()
        want = (x[labels].mean(0) - x[~labels].mean(0)).float()
        torch.testing.assert_close(vec.directions[h], want, atol=1e-5, rtol=1e-5)
    assert vec.meta["provenance"]["cache_id"] == built_cache.id
    with pytest.raises(ValueError, match="labels for a cache"):
        from_cache(built_cache, labels[:-1])


def _orthonormal_sae(d_in=32, d_sae=16, hook=HOOK):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name=hook)))
    q, _ = torch.linalg.qr(torch.randn(d_in, d_sae, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        sae.W_dec.copy_(q.T)  # orthonormal rows; tied encoder
        sae.W_enc.copy_(q)
        sae.b_dec.zero_()
        sae.b_enc.fill_(100.0)  # every feature active, so ReLU is the identity here
    return sae


# (context manager, expected feature value from the old one): clamp to 7.5, amplify by 2.5
REWRITES = {
    "clamp": (
        lambda m, sae: clamp_feature(m, sae, 3, 7.5, positions=[1, 2]),
        lambda f: torch.full_like(f, 7.5),
    ),
    "amplify": (lambda m, sae: amplify_feature(m, sae, 3, 2.5, positions=[1, 2]), lambda f: 2.5 * f),
}


@pytest.mark.parametrize("rewrite", sorted(REWRITES))
@pytest.mark.parametrize("fixture", ["hooked", "gpt2"])
def test_feature_rewrites_set_the_feature_where_asked(request, fixture, rewrite):
    model = request.getfixturevalue(fixture)
    sae = _orthonormal_sae()
    apply, expected = REWRITES[rewrite]
    toks = torch.tensor([[2, 3, 4, 5]])
    with torch.inference_mode(), record(model, HOOK) as plain:
        model(toks)
    with torch.inference_mode(), apply(model, sae), record(model, HOOK) as acts:
        model(toks)
    with torch.no_grad():
        f_new, f_old = sae.encode(acts[HOOK]), sae.encode(plain[HOOK])
    want = expected(f_old[0, [1, 2], 3])
    torch.testing.assert_close(f_new[0, [1, 2], 3], want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(f_new[0, [0, 3]], f_old[0, [0, 3]])  # other positions untouched
    others = [i for i in range(16) if i != 3]
    torch.testing.assert_close(f_new[..., others], f_old[..., others], atol=1e-4, rtol=0)


def test_clamp_follows_a_decode_that_divides_by_the_row_norm(hooked):
    # sae-lens TopK with rescale_acts_by_decoder_norm: decode adds f / |W_dec[f]| * W_dec[f]; rows of
    # norm 2 here, so a clamp along the raw row would overshoot the set value by a factor of 2
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    meta = SAEMetadata(hook_name=HOOK)
    cfg = TopKSAEConfig(d_in=32, d_sae=16, k=16, rescale_acts_by_decoder_norm=True, metadata=meta)
    sae = TopKSAE(cfg)
    q, _ = torch.linalg.qr(torch.randn(32, 16, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        sae.W_dec.copy_(2 * q.T)
        sae.W_enc.copy_(q / 2)
        sae.b_dec.zero_()
        sae.b_enc.fill_(100.0)  # every feature positive and kept (k = d_sae)
    toks = torch.tensor([[2, 3, 4, 5]])
    with torch.inference_mode(), clamp_feature(hooked, sae, 3, 7.5, positions=[1, 2]):
        with record(hooked, HOOK) as acts:
            hooked(toks)
    with torch.no_grad():
        f = sae.encode(acts[HOOK])
    torch.testing.assert_close(f[0, [1, 2], 3], torch.full((2,), 7.5), atol=1e-3, rtol=1e-4)


def test_amplify_by_one_changes_nothing_and_refuses_nan(hooked):
    sae, toks = _orthonormal_sae(), torch.tensor([[2, 3, 4, 5]])
    with torch.inference_mode(), record(hooked, HOOK) as plain:
        hooked(toks)
    with torch.inference_mode(), amplify_feature(hooked, sae, 3, 1.0), record(hooked, HOOK) as same:
        hooked(toks)
    torch.testing.assert_close(same[HOOK], plain[HOOK])
    with pytest.raises(ValueError, match="factor=nan"):
        with amplify_feature(hooked, sae, 3, float("nan")):
            pass


def test_from_sae_feature(gpt2):
    sae = _orthonormal_sae()
    vec = from_sae_feature(sae, 5, model=gpt2)
    assert vec.hook_names == (HOOK,)
    torch.testing.assert_close(vec.directions[HOOK], sae.W_dec[5].detach())
    assert vec.meta["provenance"]["feature"] == 5
    with pytest.raises(ValueError, match="feature=16"):
        from_sae_feature(sae, 16)
    with pytest.raises(ValueError, match="hook_name"):
        from_sae_feature(torch.eye(4), 1)
