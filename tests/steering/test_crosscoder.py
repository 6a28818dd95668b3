"""steering.crosscoder: BatchTopK crosscoders, decoder-norm kinds, latent scaling, save and load."""

import json
import math

import pytest
import torch
from crosscoder_fixtures import PLANTED_CONFIG, planted

from interp.cache import CacheConfig, PairedCache, build_paired_cache
from interp.errors import InterpError
from steering.crosscoder import (
    CFG_FILE,
    WEIGHTS_FILE,
    Crosscoder,
    CrosscoderConfig,
    CrosscoderError,
    batch_topk,
    classify_latents,
    fit_beta,
    latent_scaling,
    train_crosscoder,
)

HOOK = "blocks.1.hook_resid_post"


# --- BatchTopK against a hand-computed case -------------------------------------------------------


def test_batch_topk_keeps_exactly_the_top_k_times_batch_entries_of_the_whole_batch():
    scores = torch.tensor([[0.1, 3.0, 0.2, 0.0], [2.0, 0.3, 0.0, 1.0]])
    kept = batch_topk(scores, k=1)  # 2 rows x k=1: the two largest of all eight, 3.0 and 2.0
    assert kept.tolist() == [[False, True, False, False], [True, False, False, False]]
    # both of a row's top entries may win, leaving the other row with none (per batch, not per row)
    scores = torch.tensor([[5.0, 4.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.5]])
    assert batch_topk(scores, k=1).tolist() == [[True, True, False, False], [False] * 4]
    assert batch_topk(torch.zeros(2, 4), k=1).sum() == 0  # nothing positive: nothing kept


def _hand_crosscoder(enc_base, enc_tuned, dec_base, dec_tuned, k=1, threshold=-1.0) -> Crosscoder:
    cc = Crosscoder(n_models=2, d_model=len(enc_base), n_latents=len(enc_base[0]), k=k)
    with torch.no_grad():
        cc.W_enc.copy_(torch.tensor([enc_base, enc_tuned]))
        cc.W_dec.copy_(torch.tensor([dec_base, dec_tuned]))
        cc.threshold.fill_(threshold)
        cc.fire_count.fill_(1)
    cc.labels = ("base", "tuned")
    return cc


def test_encode_keeps_the_batch_top_of_decoder_weighted_activations_then_the_threshold():
    eye = torch.eye(4).tolist()
    # latent 3's decoder norms sum to 4: its activation 1.0 outranks 2.0 and 3.0 of the others
    dec_base = [[0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 0.5, 0], [0, 0, 0, 2.0]]
    cc = _hand_crosscoder(eye, [[0.0] * 4] * 4, dec_base, dec_base, k=1)
    base = torch.tensor([[0.1, 3.0, 0.2, 0.0], [2.0, 0.3, 0.0, 1.0]])
    x = torch.stack([base, torch.zeros(2, 4)], dim=1)  # [batch, model, d_model]; tuned reads nothing
    # scores = f * (||d_base|| + ||d_tuned||): [[0.1, 3, 0.2, 0], [2, 0.3, 0, 4]]: keep 4 and 3
    assert cc.encode(x).tolist() == [[0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    cc.threshold.fill_(1.5)  # inference: every score above 1.5, whatever the batch
    assert cc.encode(x).tolist() == [[0.0, 3.0, 0.0, 0.0], [2.0, 0.0, 0.0, 1.0]]
    assert cc.encode(x, batch_rule=True).tolist() == [[0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


# --- planted shared and model-specific directions (tests/crosscoder_fixtures.py) ------------------


@pytest.fixture(scope="module")
def planted_run():
    acts, dirs, kinds = planted()
    cc = train_crosscoder(acts, PLANTED_CONFIG, hook="planted", progress=False)
    return acts, dirs, kinds, cc


def test_crosscoder_recovers_planted_directions_and_labels_them_by_kind(planted_run):
    acts, dirs, kinds, cc = planted_run
    found = classify_latents(cc)
    assert found.labels == ("base", "tuned")
    best, cosines = [], []
    for direction, kind in zip(dirs, kinds, strict=True):
        dec = cc.W_dec[0 if kind == "base-only" else 1].detach()
        cos = dec @ direction / dec.norm(dim=-1).clamp(min=1e-9)
        best.append(int(cos.argmax()))
        cosines.append(float(cos.max()))
    assert sum(c > 0.9 for c in cosines) >= 9, cosines
    pairs = list(zip(best, kinds, strict=True))
    right = {k: sum(found.kinds[j] == k for j, kk in pairs if kk == k) for k in set(kinds)}
    assert right["shared"] >= 3 and right["base-only"] >= 2 and right["tuned-only"] >= 2, right
    shared = [j for j, k in zip(best, kinds, strict=True) if k == "shared" and found.kinds[j] == "shared"]
    assert all(found.cosine[j] > 0.9 for j in shared), found.cosine[shared]
    specific = [j for j, k in zip(best, kinds, strict=True) if k != "shared"]
    assert all(found.ratio[j] < 0.1 or found.ratio[j] > 0.9 for j in specific if found.kinds[j] != "other")
    # the planted data is reconstructed, and the threshold was estimated for inference
    assert min(cc.training_stats["fraction_variance_explained"].values()) > 0.95
    assert float(cc.threshold) > 0 and cc.hook == "planted" and cc.labels == ("base", "tuned")
    # a genuinely model-specific latent passes latent scaling: the other model carries none of it
    scaling = latent_scaling(cc, acts, latents=[j for j in specific if found.kinds[j] != "other"])
    assert scaling.flagged() == [], str(scaling)
    assert scaling.nu_error.abs().max() < 0.1 and scaling.nu_reconstruction.abs().max() < 0.1


# --- latent scaling against hand-computed least squares --------------------------------------------


def test_fit_beta_is_the_hand_computed_least_squares_scalar():
    f, d = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0])
    y = torch.tensor([[2.0, 5.0], [3.0, 1.0]])
    # argmin_b sum ||b f_i d - y_i||^2 = sum f_i (d . y_i) / (sum f_i^2 ||d||^2) = (2 + 6) / 5
    assert fit_beta(f, d, y) == pytest.approx(1.6)
    design = (f[:, None] * d).reshape(-1, 1)  # the same problem, solved by torch as a 1-column lstsq
    assert fit_beta(f, d, y) == pytest.approx(float(torch.linalg.lstsq(design, y.reshape(-1, 1)).solution))
    assert math.isnan(fit_beta(torch.zeros(2), d, y))  # never active: no beta


A = torch.tensor([1.0, 2.0, 0.5, 1.5])  # the shared latent's activations
B = torch.tensor([1.0, 0.5, 2.0, 1.0])  # the tuned-only latent's activations
E0, E1 = [1.0, 0.0], [0.0, 1.0]


def _shrinkage_case(c: float, decoupled: bool):
    """Tuned = a e0 + b e1; base = a e0 + c b e1. Latent 0 is shared (e0), latent 1 tuned-only
    (e1). With ``decoupled``, a base-only latent 2 reconstructs base's e1 part; without it, that
    part is left in base's error."""
    x = torch.stack(
        [
            A[:, None] * torch.tensor(E0) + c * B[:, None] * torch.tensor(E1),
            A[:, None] * torch.tensor(E0) + B[:, None] * torch.tensor(E1),
        ],
        dim=1,
    )
    on = 1.0 if decoupled else 0.0
    cc = _hand_crosscoder(
        enc_base=[[0.5, 0.0, 0.0], [0.0, 0.0, on]],
        enc_tuned=[[0.5, 0.0, 0.0], [0.0, 1.0, 0.0]],
        dec_base=[E0, [0.0, 0.0], [0.0, on]],
        dec_tuned=[E0, E1, [0.0, 0.0]],
        k=3,
        threshold=0.0,
    )
    return cc, {"base": x[:, 0], "tuned": x[:, 1]}


def test_latent_scaling_flags_a_tuned_only_latent_whose_direction_base_still_carries():
    cc, acts = _shrinkage_case(c=0.8, decoupled=False)
    assert classify_latents(cc).kinds[:2] == ("shared", "tuned-only")
    s = latent_scaling(cc, acts, latents=[1])
    # base error = 0.8 b e1: beta = sum b (0.8 b) / sum b^2 = 0.8; tuned error + b e1 = b e1: beta 1
    assert s.beta["error_other"].tolist() == pytest.approx([0.8])
    assert s.beta["error_own"].tolist() == pytest.approx([1.0])
    assert s.nu_error.tolist() == pytest.approx([0.8])
    assert s.nu_reconstruction.tolist() == pytest.approx([0.0])
    assert s.own == ("tuned",) and s.other == ("base",) and s.flagged() == [1]
    assert int(s.n_active[0]) == 4

    clean = latent_scaling(*_shrinkage_case(c=0.0, decoupled=False), latents=[1])
    assert clean.nu_error.tolist() == pytest.approx([0.0]) and clean.flagged() == []


def test_latent_scaling_flags_latent_decoupling_through_the_reconstruction_ratio():
    cc, acts = _shrinkage_case(c=0.8, decoupled=True)
    kinds = classify_latents(cc)
    assert kinds.kinds == ("shared", "tuned-only", "base-only")
    s = latent_scaling(cc, acts)  # default: the base-only and tuned-only latents
    assert s.latents == (2, 1) and s.own == ("base", "tuned")
    # latent 1: base's reconstruction holds 0.8 b e1 (by latent 2), its error nothing
    assert s.nu_reconstruction.tolist() == pytest.approx([1 / 0.8, 0.8])
    assert s.nu_error.tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    assert s.flagged() == [2, 1]
    # the streamed sums equal fit_beta on the targets built by hand
    x = torch.stack([acts["base"], acts["tuned"]], dim=1)
    f = cc.encode(x).detach()
    recon = cc.decode(f).detach()
    target = recon[:, 0] - cc.b_dec[0].detach()
    assert s.beta["reconstruction_other"][1] == pytest.approx(fit_beta(f[:, 1], torch.tensor(E1), target))
    json.dumps(s.to_dict())
    assert "flagged" in str(s)


# --- save and load --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    acts, _, _ = planted(n=512, seed=1)
    cfg = CrosscoderConfig(n_latents=32, k=2, steps=30, batch_size=64, lr=1e-2)
    cc = train_crosscoder(acts, cfg, hook=HOOK, progress=False)
    return cc, acts


def test_save_load_round_trip_is_equal(small, tmp_path):
    cc, acts = small
    path = cc.save(tmp_path / "cc")
    assert sorted(p.name for p in path.iterdir()) == [CFG_FILE, WEIGHTS_FILE]
    back = Crosscoder.load(path)
    for name, t in cc.state_dict().items():
        assert torch.equal(back.state_dict()[name], t), name
    assert (back.hook, back.labels, back.k, back.config) == (cc.hook, cc.labels, cc.k, cc.config)
    assert back.training_stats == json.loads(json.dumps(cc.training_stats))
    x = torch.stack([acts["base"], acts["tuned"]], dim=1)
    assert torch.equal(back(x), cc(x))
    cfg = json.loads((path / CFG_FILE).read_text())
    assert cfg["format"] == "interp.crosscoder/1" and cfg["threshold"] == pytest.approx(float(cc.threshold))
    # saving again replaces it in place, leaving no temporary directory behind
    cc.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cc"]


def _one_line_refusal(path, match):
    with pytest.raises(CrosscoderError, match=match) as info:
        Crosscoder.load(path)
    assert "\n" not in str(info.value) and isinstance(info.value, InterpError)


def test_a_corrupt_or_incomplete_directory_is_refused_in_one_line(small, tmp_path):
    cc, _ = small
    path = cc.save(tmp_path / "cc")
    data = bytearray((path / WEIGHTS_FILE).read_bytes())
    data[-5] ^= 0xFF  # one flipped bit of a weight
    (path / WEIGHTS_FILE).write_bytes(bytes(data))
    _one_line_refusal(path, "does not match the sha256")

    cc.save(path)
    cfg_text = (path / CFG_FILE).read_text()
    (path / CFG_FILE).write_text(cfg_text[: len(cfg_text) // 2])  # truncated
    _one_line_refusal(path, "cfg.json is not readable JSON")

    cfg = json.loads(cfg_text)
    (path / CFG_FILE).write_text(json.dumps({**cfg, "n_latents": 64}))  # sizes that lie about the weights
    _one_line_refusal(path, r"holds .* cfg.json needs")
    (path / CFG_FILE).write_text(json.dumps({**cfg, "format": "other/9"}))
    _one_line_refusal(path, "has format 'other/9'")
    (path / CFG_FILE).write_text(json.dumps({**cfg, "labels": ["base"]}))
    _one_line_refusal(path, "expected 2 names")

    (path / WEIGHTS_FILE).unlink()
    _one_line_refusal(path, "model.safetensors is missing")


def test_saving_over_other_files_is_refused_and_leaves_them_alone(small, tmp_path):
    cc, _ = small
    target = tmp_path / "results"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(CrosscoderError, match="holds something else"):
        cc.save(target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"n_latents": 0}, "n_latents must be a positive int, got 0"),
        ({"k": 0}, "k must be a positive int"),
        ({"n_latents": 8, "k": 9}, "k=9 must be at most n_latents=8"),
        ({"steps": -3}, "steps must be a positive int, got -3"),
        ({"batch_size": True}, "batch_size must be a positive int"),
        ({"lr": -1.0}, "lr must be a positive number, got -1.0"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"threshold_beta": 1.0}, r"threshold_beta must be a number in \[0, 1\)"),
        ({"threshold_start": -0.1}, "threshold_start must be a fraction"),
        ({"aux_k": 0}, "aux_k must be None or an int"),
        ({"aux_coefficient": -1.0}, "aux_coefficient must be a number >= 0"),
        ({"exclude_positions": (-1,)}, "exclude_positions"),
    ],
)
def test_a_config_value_out_of_range_is_refused_naming_it(bad, match):
    with pytest.raises(CrosscoderError, match=match):
        CrosscoderConfig(**bad)


def test_loading_a_config_with_unknown_keys_warns(caplog):
    with caplog.at_level("WARNING", logger="steering.crosscoder"):
        cfg = CrosscoderConfig.from_dict({"n_latents": 8, "k": 2, "l1": 3})
    assert cfg.n_latents == 8 and "ignoring unknown keys ['l1']" in caplog.text


def test_mismatched_widths_rows_or_models_are_refused_in_memory(small):
    cfg = CrosscoderConfig(n_latents=8, k=1, steps=1, batch_size=4)
    with pytest.raises(CrosscoderError, match=r"differ in d_model: \{'base': 16, 'tuned': 8\}"):
        train_crosscoder({"base": torch.randn(8, 16), "tuned": torch.randn(8, 8)}, cfg, progress=False)
    with pytest.raises(CrosscoderError, match="different numbers of positions"):
        train_crosscoder({"base": torch.randn(8, 16), "tuned": torch.randn(9, 16)}, cfg, progress=False)
    with pytest.raises(CrosscoderError, match="two or more models"):
        train_crosscoder({"base": torch.randn(8, 16)}, cfg, progress=False)
    with pytest.raises(CrosscoderError, match="fewer than one batch of batch_size=4"):
        train_crosscoder({"base": torch.randn(3, 16), "tuned": torch.randn(3, 16)}, cfg, progress=False)
    cc, _ = small
    with pytest.raises(CrosscoderError, match="reads d_model=16, but 'blocks.1.hook_resid_post' has width 8"):
        cc.check_fits({"base": torch.randn(4, 8), "tuned": torch.randn(4, 8)})
    with pytest.raises(CrosscoderError, match="trained on hook 'blocks.1.hook_resid_post', not on 'blocks.0"):
        cc.check_fits({"base": torch.randn(4, 16), "tuned": torch.randn(4, 16)}, hook="blocks.0.hook_embed")
    with pytest.raises(CrosscoderError, match="no activations for model 'tuned'"):
        latent_scaling(cc, {"base": torch.randn(4, 16), "sft": torch.randn(4, 16)})


# --- a real tiny paired cache ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def paired(gpt2, gpt2_other, prompts, tmp_path_factory):
    config = CacheConfig(hooks=(HOOK,), shard_tokens=60, batch_size=8)
    root = tmp_path_factory.mktemp("cc_paired")
    return build_paired_cache({"base": gpt2, "tuned": gpt2_other}, prompts, root, config, progress=False)


def test_training_on_a_paired_cache_records_both_fingerprints_and_cache_ids(
    paired, gpt2, gpt2_other, tmp_path
):
    cfg = CrosscoderConfig(n_latents=32, k=4, steps=20, batch_size=32, lr=1e-2)
    cc = train_crosscoder(paired, cfg, hook=HOOK, progress=False)
    assert cc.labels == ("base", "tuned") and cc.d_model == 32
    assert cc.models["base"]["fingerprint"] == gpt2.fingerprint
    assert cc.models["tuned"]["fingerprint"] == gpt2_other.fingerprint
    assert [cc.models[lab]["cache_id"] for lab in cc.labels] == [paired["base"].id, paired["tuned"].id]
    keep = cfg.exclusion().keep_mask(paired["base"])  # position 0 and BOS (attention sinks) left out
    assert cc.training_stats["n_positions"] == int(keep.sum()) < paired["base"].n_positions
    assert cc.training_stats["excluded"] == {"positions": [0], "bos": True}
    back = Crosscoder.load(cc.save(tmp_path / "cc"))
    assert back.models == json.loads(json.dumps(cc.models))
    # latent scaling streamed from the cache equals latent scaling of the same positions in memory
    acts = {lab: paired[lab][HOOK].to_tensor()[keep] for lab in ("base", "tuned")}
    some = list(range(8))
    from_cache = latent_scaling(back, paired, latents=some)
    in_memory = latent_scaling(back, acts, latents=some)
    for name, beta in from_cache.beta.items():
        torch.testing.assert_close(beta, in_memory.beta[name], equal_nan=True, rtol=1e-4, atol=1e-5)


def test_a_paired_cache_without_the_hook_or_the_model_is_refused(paired):
    cfg = CrosscoderConfig(n_latents=8, k=1, steps=1, batch_size=4)
    with pytest.raises(CrosscoderError, match="cache 'base' has no hook 'blocks.0.hook_embed'; its hooks"):
        train_crosscoder(paired, cfg, hook="blocks.0.hook_embed", progress=False)
    with pytest.raises(CrosscoderError, match="no model 'sft'; its labels are"):
        train_crosscoder(paired, cfg, hook=HOOK, labels=["base", "sft"], progress=False)
    with pytest.raises(CrosscoderError, match="a hook is needed"):
        train_crosscoder(paired, cfg, progress=False)


def test_caches_that_are_not_aligned_shard_by_shard_are_refused(paired, built_cache, gpt2_other, tmp_path):
    from interp.cache import build_cache

    cfg = CrosscoderConfig(n_latents=8, k=1, steps=1, batch_size=4)
    # the same token rows, cut into other shards: zipping their shuffled batches would misalign them
    config = CacheConfig(hooks=(HOOK,), shard_tokens=40)
    source = f"cache:{paired['base'].root}"
    resharded = build_cache(gpt2_other, source, tmp_path / "t", config, progress=False)
    assert list(resharded.iter_row_tokens()) == list(paired["base"].iter_row_tokens())
    assert resharded.manifest["shards"] != paired["base"].manifest["shards"]
    for other in (resharded, built_cache):  # built_cache: other prompts
        odd = PairedCache(paired.root, {"base": paired["base"], "tuned": other})
        with pytest.raises(CrosscoderError, match="are not over the same token rows in the same shards"):
            train_crosscoder(odd, cfg, hook=HOOK, progress=False)
