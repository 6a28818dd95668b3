"""experiments.model_diff: crosscoder diffs of base against its fine-tunes, for finding 4."""

import json
from dataclasses import replace

import crosscoder_fixtures as PLANTED
import pytest
import torch

from experiments.model_diff import (
    CC_DIR,
    CONTROL_PREFIX,
    MarkedPositions,
    diff_pair,
    model_diff,
    summary,
)
from interp.errors import CrosscoderError, InterpError
from steering.crosscoder import Crosscoder, CrosscoderConfig

CONFIG = replace(PLANTED.PLANTED_CONFIG, steps=250)


def _positions(base: torch.Tensor, direction: torch.Tensor) -> MarkedPositions:
    """Positions "before the marker" where the planted direction is on in base; token 7 there, 3 elsewhere."""
    on = base @ direction > 0.25
    tokens = torch.where(on, 7, 3)
    return MarkedPositions(on, tokens, torch.full_like(tokens, -1))


def test_planted_base_only_direction_is_named_and_noise_gives_no_base_only_latents():
    """Oracle: base carries 4 shared and 3 base-only directions, tuned only the shared ones (plus
    its own 3). The marker positions are those where base-only direction 0 is on: the crosscoder
    must find base-only latents that survive latent scaling, and the best marker latent must be
    one of them, firing at token 7. The control: a "tune" that is base's shared code with fresh
    noise yields no surviving base-only latent."""
    acts, dirs, kinds = PLANTED.planted(n=2048)
    marked = dirs[kinds.index("base-only")]
    positions = _positions(acts["base"], marked)
    cc, res = diff_pair(acts, ("base", "tuned"), CONFIG, "planted", positions, lambda t: f"tok{t}")
    assert res["counts"]["base-only"] >= 2 and res["counts"]["shared"] >= 3, res["counts"]
    assert res["base_only_surviving"] >= 2
    best = res["best_marker_latent"]
    assert best["kind"] == "base-only" and best["survives_scaling"] and best["auroc"] > 0.95, best
    dec = cc.W_dec[0, best["latent"]].detach()
    assert float(dec @ marked / dec.norm()) > 0.9  # it reads the planted direction
    assert best["tokens"][0] == ["tok7", min(50, int(positions.before_marker.sum()))]
    assert best["next_tokens"] == [["<end>", best["tokens"][0][1]]]
    named = res["base_only_named"]
    assert named[0]["latent"] == best["latent"] and len(named) <= 3
    assert [n["auroc"] for n in named] == sorted((n["auroc"] for n in named), reverse=True)
    json.dumps(res)

    same, _, _ = PLANTED.planted(n=2048, n_base=0, n_tuned=0, seed=3)
    _, control = diff_pair(same, ("base", "tuned"), CONFIG, "planted", _positions(same["base"], dirs[0]), str)
    assert control["base_only_surviving"] == 0 and control["tuned_only_surviving"] == 0, control["counts"]


def test_positions_of_other_lengths_are_refused_naming_them():
    with pytest.raises(CrosscoderError, match="lengths 3, 2 and 3; expected one length") as info:
        MarkedPositions(torch.zeros(3, dtype=torch.bool), torch.zeros(2), torch.zeros(3))
    assert isinstance(info.value, InterpError)
    acts = {"base": torch.randn(64, 4), "tuned": torch.randn(64, 4)}
    small = CrosscoderConfig(n_latents=8, k=2, steps=5, batch_size=16)
    short = MarkedPositions(torch.zeros(10, dtype=torch.bool), torch.zeros(10), torch.zeros(10))
    with pytest.raises(CrosscoderError, match="64 encoded positions but 10 marked ones"):
        diff_pair(acts, ("base", "tuned"), small, "h", short, str)


def test_summary_says_when_the_marker_latent_is_not_base_only():
    best = {"latent": 1, "kind": "shared", "ratio": 0.35, "auroc": 0.99, "survives_scaling": True}
    diff = {
        "marker": "WAIT",
        "tunes": {
            "sft-answer": {"base_only_surviving": 0, "control": {"base_only_surviving": 1}},
            "sft-clean": {
                "base_only_surviving": 2,
                "best_marker_latent": best,
                "control": {"base_only_surviving": 0, "best_marker_latent": {**best, "ratio": 0.5}},
            },
        },
    }
    assert summary(diff) == (
        "crosscoder diffs (base-only latents surviving latent scaling, tune vs same-size noise): "
        "sft-answer 0 vs 1, sft-clean 2 vs 0; best pre-WAIT latent in sft-clean: shared "
        "(decoder-norm ratio 0.35; the noise control's: 0.50; AUROC 0.99)"
    )
    diff["tunes"]["sft-clean"]["best_marker_latent"] = {
        **best,
        "kind": "base-only",
        "survives_scaling": False,
    }
    assert "base-only (flagged by latent scaling) (decoder-norm ratio 0.35;" in summary(diff)
    assert summary(None) is None and summary({"tunes": {}}) is None


# --- on the tiny zoo --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_diff(tiny_zoo, tmp_path_factory):
    import os

    from experiments.context import Context
    from experiments.e4_markers import marker_hook, marker_pair

    old = os.environ.get("INTERP_ZOO")
    os.environ["INTERP_ZOO"] = str(tiny_zoo)
    try:
        ctx = Context(
            "tiny", tmp_path_factory.mktemp("e4"), tiny_zoo, progress=False, experiment="e4_markers"
        )
        paired = marker_pair(ctx)
        hook = marker_hook(ctx)
        # sft-clean is in e4's pair, sft-self is cached here; base and a dose checkpoint are skipped
        diff = model_diff(ctx, paired, hook, ["base", "sft-clean", "sft-clean@30", "sft-self"])
        yield ctx, paired, hook, diff
    finally:
        if old is None:
            os.environ.pop("INTERP_ZOO", None)
        else:
            os.environ["INTERP_ZOO"] = old


def test_each_tune_of_base_and_its_noise_control_get_a_saved_crosscoder_with_both_fingerprints(tiny_diff):
    ctx, paired, hook, diff = tiny_diff
    assert list(diff["tunes"]) == ["sft-clean", "sft-self"] and diff["hook"] == hook
    for tune, res in diff["tunes"].items():
        control = res["control"]
        assert control["relative_change"] == pytest.approx(ctx.card(tune)["relative_weight_change"])
        assert set(res["counts"]) == {"base-only", "shared", "tuned-only", "other", "dead"}
        assert sum(res["counts"].values()) == diff["config"]["n_latents"]
        for label, r in ((tune, res), (CONTROL_PREFIX + tune, control)):
            assert r["dir"] == f"caches/e4_markers/{CC_DIR}/{label}"
            cc = Crosscoder.load(ctx.out / r["dir"])
            assert cc.labels == ("base", label) and cc.hook == hook
            assert cc.models["base"]["fingerprint"] == ctx.model("base").fingerprint
            base_cache = paired["base"] if label in paired.labels else None
            want = base_cache.id if base_cache else ctx.caches["model_diff_base"]["id"]
            assert cc.models["base"]["cache_id"] == want
        assert (
            Crosscoder.load(ctx.out / res["dir"]).models[tune]["fingerprint"] == ctx.model(tune).fingerprint
        )
        noisy = Crosscoder.load(ctx.out / control["dir"]).models[CONTROL_PREFIX + tune]["fingerprint"]
        assert noisy not in (ctx.model("base").fingerprint, ctx.model(tune).fingerprint)
    # the caches this diff built are cited; e4's own pair already is (paired_<name>)
    cited = {k for k in ctx.caches if k.startswith("model_diff_")}
    assert cited == {
        "model_diff_base",
        "model_diff_sft-self",
        "model_diff_noise-sft-clean",
        "model_diff_noise-sft-self",
    }
    json.dumps(diff)


def test_a_rerun_reuses_the_caches_and_replaces_the_crosscoders(tiny_diff):
    ctx, paired, hook, diff = tiny_diff
    again = model_diff(ctx, paired, hook, ["sft-clean"])
    assert again["tunes"]["sft-clean"]["counts"] == diff["tunes"]["sft-clean"]["counts"]  # seeded
    left = sorted(p.name for p in (ctx.out / "caches" / "e4_markers" / CC_DIR).iterdir())
    assert left == ["noise-sft-clean", "noise-sft-self", "sft-clean", "sft-self"]  # no temporary directories
