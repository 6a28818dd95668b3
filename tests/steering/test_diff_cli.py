"""``interp diff crosscoder`` and ``interp diff lens`` on a tiny paired cache of two GPT-2s."""

import json

import pytest
import torch

from interp.cache import CacheConfig, build_paired_cache
from steering.crosscoder import Crosscoder, classify_latents
from steering.diff_lens import activation_difference
from steering.steering_vector import SteeringVector
from tests.cli_run import cli, refused

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def pair_dir(gpt2, gpt2_other, prompts, tmp_path_factory):
    root = tmp_path_factory.mktemp("diff_cli_pair")
    config = CacheConfig(hooks=(HOOK,), shard_tokens=60, batch_size=8)
    build_paired_cache({"base": gpt2, "tuned": gpt2_other}, prompts, root, config, progress=False)
    return root


def test_crosscoder_command_trains_saves_and_classifies(pair_dir, tmp_path, capsys):
    out = tmp_path / "cc"
    argv = [
        "diff",
        "crosscoder",
        pair_dir,
        "--hook",
        HOOK,
        "--n-latents",
        32,
        "--k",
        4,
        "--steps",
        20,
        "--batch-size",
        32,
        "--out",
        out,
        "-q",
    ]
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    data = json.loads((out / "diff.json").read_text())
    cc = Crosscoder.load(out / "crosscoder")
    assert data["labels"] == ["base", "tuned"] and cc.hook == HOOK and cc.n_latents == 32
    assert data["kinds"] == json.loads(json.dumps(classify_latents(cc).to_dict()))
    assert sum(data["kinds"]["counts"].values()) == 32
    assert {m["fingerprint"] for m in data["models"].values()} == {
        m["fingerprint"] for m in cc.models.values()
    }
    assert (out / "ratios.png").stat().st_size > 0 and "decoder-norm ratio" in stdout


def test_lens_command_reads_the_mean_difference_and_saves_a_vector(pair_dir, gpt2, tmp_path, capsys):
    from interp.cache import open_paired_cache

    out = tmp_path / "lens"
    argv = ["diff", "lens", pair_dir, "--hook", HOOK, "--positions", 3, "--k", 4, "--vector", "--out", out]
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    data = json.loads((out / "lens.json").read_text())
    diff = activation_difference(open_paired_cache(pair_dir), hook=HOOK, n_positions=3)
    # the oracle: the same mean read through the base model's final norm and unembedding by hand
    module = gpt2.module
    with torch.no_grad():
        logits = module.ln_final(diff.mean) @ module.unembed.W_U
    assert data["lens"]["ids"] == logits.topk(4, dim=-1).indices.tolist()
    vec = SteeringVector.load(out / "vector")
    torch.testing.assert_close(vec.directions[HOOK], diff.mean[1:3].mean(0), rtol=1e-5, atol=1e-6)
    assert "top tokens pushed up" in stdout


def test_bad_requests_are_refused_in_one_line(pair_dir, tmp_path, capsys):
    out = tmp_path / "bad"
    refused(
        ["diff", "lens", pair_dir, "--hook", HOOK, "--positions", 0, "--out", out], capsys, "--positions", out
    )
    refused(
        [
            "diff",
            "crosscoder",
            pair_dir,
            "--hook",
            "blocks.9.hook_resid_post",
            "--steps",
            2,
            "--batch-size",
            8,
            "--out",
            out,
            "-q",
        ],
        capsys,
        "blocks.9.hook_resid_post",
        out,
    )
