"""steering.diff_lens: per-position mean activation differences, the logit lens, steering by them."""

import json

import pytest
import torch

from interp.cache import CacheConfig, build_paired_cache
from interp.errors import InterpError
from steering.diff_lens import (
    DiffLensError,
    activation_difference,
    logit_lens,
    model_readout,
    steer_by_difference,
)
from steering.steering_vector import SteeringVector

HOOK = "blocks.1.hook_resid_post"


def _embeddings(vocab=10, d_model=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d_model, d_model, generator=g))[0].T[:vocab]  # orthonormal rows


def test_a_difference_that_is_token_3s_embedding_promotes_token_3():
    emb = _embeddings()
    W_U = emb.T  # tied unembedding: logit of token t = <x, emb[t]>
    g = torch.Generator().manual_seed(1)
    base = torch.randn(6, 4, 16, generator=g)
    planted = torch.stack([emb[3], emb[3], emb[5], 2 * emb[3]])  # what tuning added at each position
    diff = activation_difference({"base": base, "tuned": base + planted}, hook=HOOK, n_positions=4)
    torch.testing.assert_close(diff.mean, planted, atol=1e-5, rtol=0)
    assert diff.counts.tolist() == [6, 6, 6, 6] and diff.labels == ("base", "tuned")
    reading = logit_lens(diff.mean, W_U, k=1)
    assert reading.ids[:, 0].tolist() == [3, 3, 5, 3]
    unit = logit_lens(diff.mean, W_U, norm=lambda x: x / x.norm(dim=-1, keepdim=True), k=2)
    assert unit.ids[:, 0].tolist() == [3, 3, 5, 3]
    assert unit.logits[:, 0].tolist() == pytest.approx([1.0] * 4, abs=1e-5)
    # the norm is applied before the unembedding: a sign flip demotes token 3 to last place
    flipped = logit_lens(diff.mean[:1], W_U, norm=lambda x: -x, k=10)
    assert flipped.ids[0, -1] == 3
    named = logit_lens(diff.mean, W_U, k=1, decode=lambda ids: f"tok{ids[0]}")
    assert named.tokens[0] == ("tok3",) and "'tok5'" in str(named)
    json.dumps(named.to_dict())


def test_only_the_first_n_positions_are_averaged_and_rows_are_weighted_equally():
    g = torch.Generator().manual_seed(2)
    base, tuned = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    diff = activation_difference({"base": base, "tuned": tuned}, n_positions=2)
    hand = torch.stack([sum(tuned[r, p] - base[r, p] for r in range(3)) / 3 for p in range(2)])
    torch.testing.assert_close(diff.mean, hand)
    assert diff.n_positions == 2


@pytest.fixture(scope="module")
def paired(gpt2, gpt2_other, prompts, tmp_path_factory):
    config = CacheConfig(hooks=(HOOK,), shard_tokens=60, batch_size=8)
    root = tmp_path_factory.mktemp("lens_paired")
    return build_paired_cache({"base": gpt2, "tuned": gpt2_other}, prompts, root, config, progress=False)


def test_per_position_means_over_a_paired_cache_equal_the_hand_computed_means(paired):
    diff = activation_difference(paired, HOOK, n_positions=6, batch_size=7)  # chunks across shards
    base, tuned = paired["base"], paired["tuned"]
    a, b = base[HOOK].to_tensor().double(), tuned[HOOK].to_tensor().double()
    rows, positions = base.rows.tolist(), base.positions.tolist()
    sums, counts = {}, {}
    for i, (_row, p) in enumerate(zip(rows, positions, strict=True)):  # position by position
        if p < 6:
            sums[p] = sums.get(p, 0) + (b[i] - a[i])
            counts[p] = counts.get(p, 0) + 1
    assert diff.counts.tolist() == [counts[p] for p in range(6)]
    assert counts[0] == base.n_rows > counts[5]  # short rows stop counting early
    hand = torch.stack([sums[p] / counts[p] for p in range(6)]).float()
    torch.testing.assert_close(diff.mean, hand, atol=1e-5, rtol=1e-5)
    assert diff.meta["base"]["cache_id"] == base.id and diff.meta["tuned"]["cache_id"] == tuned.id
    assert "position" in str(diff) and json.dumps(diff.to_dict())


def test_the_model_readout_is_the_final_norm_and_unembedding_of_hugging_face(paired, gpt2, gpt2_dir):
    import transformers

    diff = activation_difference(paired, HOOK, n_positions=3)
    W_U, norm = model_readout(gpt2)
    reading = logit_lens(diff.mean, W_U, norm=norm, k=5, decode=gpt2.decode)
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(gpt2_dir)).eval()
    with torch.no_grad():
        oracle = hf.lm_head(hf.transformer.ln_f(diff.mean)).topk(5, dim=-1)
    assert torch.equal(reading.ids, oracle.indices)
    torch.testing.assert_close(reading.logits, oracle.values, atol=1e-4, rtol=1e-4)
    assert reading.tokens[0][0] == gpt2.decode([int(oracle.indices[0, 0])])
    with pytest.raises(TypeError, match="no unembed.W_U and ln_final"):
        model_readout(torch.nn.Linear(2, 2))


def test_steer_by_difference_gives_a_house_steering_vector_for_the_base_model(paired, gpt2, tmp_path):
    diff = activation_difference(paired, HOOK, n_positions=4)
    vec = steer_by_difference(diff)  # positions 1..3: position 0, the attention sink, left out
    w = diff.counts[1:].double()
    hand = (diff.mean[1:].double() * w[:, None]).sum(0) / w.sum()
    torch.testing.assert_close(vec.directions[HOOK], hand.float())
    assert vec.meta["model"]["fingerprint"] == gpt2.fingerprint
    assert vec.meta["provenance"]["positions"] == [1, 2, 3]
    assert vec.meta["provenance"]["cache_ids"]["tuned"] == paired["tuned"].id
    only0 = steer_by_difference(diff, positions=[0])
    torch.testing.assert_close(only0.directions[HOOK], diff.mean[0])
    back = SteeringVector.load(vec.save(tmp_path / "vec"))
    torch.testing.assert_close(back.directions[HOOK], vec.directions[HOOK])
    tokens = torch.tensor([gpt2.encode("w1 w2 w3")])
    with back.apply(gpt2, scale=0.0):  # fits the base model; scale 0 changes nothing
        same = gpt2(tokens)
    torch.testing.assert_close(same, gpt2(tokens))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: activation_difference(p, "blocks.0.hook_embed"), "cache 'base' has no hook 'blocks.0"),
        (lambda p: activation_difference(p), "a hook is needed"),
        (lambda p: activation_difference(p, HOOK, tuned="sft"), r"no activations labelled 'sft'; labels are"),
        (lambda p: activation_difference(p, HOOK, tuned="base"), "base and tuned are both 'base'"),
        (lambda p: activation_difference(p, HOOK, n_positions=0), "n_positions must be a positive int"),
        (lambda p: steer_by_difference(activation_difference(p, HOOK, n_positions=2), positions=[2]),
         r"positions \[2\] must be a non-empty list of positions in 0..1"),
    ],
    ids=["hook", "no-hook", "label", "same", "n", "position"],
)
def test_bad_requests_on_a_paired_cache_are_refused_in_one_line(paired, call, match):
    with pytest.raises(DiffLensError, match=match) as info:
        call(paired)
    assert "\n" not in str(info.value) and isinstance(info.value, InterpError)


def test_bad_in_memory_inputs_are_refused():
    with pytest.raises(DiffLensError, match=r"got \(2, 3, 4\) for 'base' and \(2, 3, 5\) for 'tuned'"):
        activation_difference({"base": torch.zeros(2, 3, 4), "tuned": torch.zeros(2, 3, 5)})
    with pytest.raises(DiffLensError, match=r"k must be an int in 1..7"):
        logit_lens(torch.zeros(1, 3), torch.zeros(3, 7), k=8)
    no_hook = activation_difference({"base": torch.zeros(2, 3, 4), "tuned": torch.ones(2, 3, 4)})
    with pytest.raises(DiffLensError, match="no hook name"):
        steer_by_difference(no_hook)
