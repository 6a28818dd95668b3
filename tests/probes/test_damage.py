"""probes.damage: a hand-damaged layer must be named; patching is exact, KV-cache safe, and leaves
no trace; scorer failures and mismatched architectures are clear errors."""

import copy
import json
import math

import pytest
import torch
from tiny_hooked import tiny_hooked
from transformer_lens import HookedTransformer

from interp.hooks import record
from interp.models import Model, load_model
from probes.damage import (
    DamageConfig,
    DamageError,
    ProbeTask,
    check_same_architecture,
    cross_patch,
    localise_damage,
    parameter_groups,
    probe_retention,
    weight_change,
)

D_VOCAB = 64
DAMAGED = 1


def _tiny(n_layers=3, d_vocab=D_VOCAB, seed=0) -> HookedTransformer:
    return tiny_hooked(d_vocab, seed=seed, n_layers=n_layers)


def _damaged_copy(base: HookedTransformer, layer: int) -> HookedTransformer:
    """A 'fine-tune': a little noise on every weight, and block ``layer``'s MLP re-randomised."""
    tuned = copy.deepcopy(base)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(1e-3 * p.std().nan_to_num() * torch.randn(p.shape, generator=g))
        for p in (tuned.blocks[layer].mlp.W_in, tuned.blocks[layer].mlp.W_out):
            p.copy_(3 * p.std() * torch.randn(p.shape, generator=g))
    return tuned


@pytest.fixture(scope="module")
def pair():
    base = Model(_tiny(), None, "tiny-base")
    return base, Model(_damaged_copy(base.module, DAMAGED), None, "tiny-tuned")


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(2, D_VOCAB, (24, 12), generator=torch.Generator().manual_seed(2))


def agreement_scorer(reference: Model, tokens: torch.Tensor):
    """Share of positions where a model's next-token argmax is the reference model's."""
    with torch.inference_mode():
        ref = reference(tokens).argmax(-1)

    def agreement(model: Model) -> float:
        with torch.inference_mode():
            return float((model(tokens).argmax(-1) == ref).float().mean())

    return agreement


def token_task(n: int = 160) -> ProbeTask:
    """Is the last token one of 2..5 (rather than 6..9)? Few token types: linearly readable."""
    g = torch.Generator().manual_seed(3)
    rows = torch.cat(
        [torch.randint(2, D_VOCAB, (n, 5), generator=g), torch.randint(2, 10, (n, 1), generator=g)], 1
    )
    return ProbeTask(
        "low token", tuple(map(tuple, rows.tolist())), (-1,) * n, tuple(int(r[-1] < 6) for r in rows)
    )


def test_names_the_hand_damaged_layer(pair, tokens, tmp_path):
    base, tuned = pair
    before = (base.refresh_fingerprint(), tuned.refresh_fingerprint())
    report = localise_damage(
        base,
        tuned,
        agreement_scorer(base, tokens),
        tokens=tokens.tolist(),
        probe_task=token_task(),
        progress=False,
    )
    assert report.score_base == 1.0 and report.score_tuned < 0.9
    for evidence in ("restoration", "weight_change", "cka_drop"):
        assert report.top_layer(evidence) == DAMAGED, (evidence, report.layer_evidence[evidence])
    assert report.damaged_layers == (DAMAGED,)
    assert f"layer {DAMAGED}" in report.verdict and "blocks.1.hook_mlp_out" in report.verdict
    row = {r.site: r for r in report.rows}
    assert row["blocks.1.hook_mlp_out"].restoration > 0.9
    assert row["blocks.1.hook_mlp_out"].damage > 0.9  # the tuned MLP alone brings the loss into the base
    assert abs(row["blocks.0.hook_mlp_out"].restoration) < 0.2
    assert row["blocks.2.hook_resid_post"].restoration == 1.0  # the whole stack from the base
    assert row["blocks.0.hook_resid_post"].cka > 0.99 > row["blocks.1.hook_mlp_out"].cka
    assert (
        row["blocks.0.hook_resid_post"].probe_base > 0.8
    )  # the token is linearly readable before the damage
    assert (base.refresh_fingerprint(), tuned.refresh_fingerprint()) == before, (
        "patching left weights changed"
    )

    data = json.loads(report.save(tmp_path / "d.json").read_text())
    assert data["damaged_layers"] == [DAMAGED] and len(data["rows"]) == 2 + 3 * 3
    assert report.plot(tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4)
    assert len(report.plot(axes)) == 4 and all(ax.lines for ax in axes)
    plt.close(fig)
    assert "restoration" in str(report) and "blocks.1.hook_mlp_out" in str(report)


def test_no_lost_score_falls_back_to_weight_change(pair, tokens):
    base, tuned = pair
    calls = []

    def constant(model: Model) -> float:
        calls.append(model.spec)
        return 0.5

    report = localise_damage(base, tuned, constant, tokens=tokens.tolist(), progress=False)
    assert len(calls) == 2, "patching runs the scorer although nothing was lost"
    assert report.top_layer("restoration") is None and report.damaged_layers == (DAMAGED,)
    assert "lost no score" in report.verdict


def test_mlp_transplant_is_the_donor_mlp_on_the_receivers_input(pair, tokens):
    base, tuned = pair
    site = "blocks.1.hook_mlp_out"
    with torch.inference_mode():
        with record(tuned, ["blocks.1.hook_resid_mid", site]) as acts:
            tuned(tokens)
        block = base.module.blocks[1]
        expected = block.mlp(block.ln2(acts["blocks.1.hook_resid_mid"]))
        with cross_patch(tuned, base, site), record(tuned, site) as patched:
            tuned(tokens)
    torch.testing.assert_close(patched[site], expected)
    assert not torch.allclose(patched[site], acts[site])


def test_resid_post_transplant_is_an_activation_patch(pair, tokens):
    base, tuned = pair
    site = "blocks.1.hook_resid_post"
    with torch.inference_mode(), record(base, site) as donor:
        base(tokens)
    with torch.inference_mode(), cross_patch(tuned, base, site), record(tuned, site) as got:
        tuned(tokens)
    torch.testing.assert_close(got[site], donor[site])


def _greedy_uncached(module: HookedTransformer, prompts: torch.Tensor, steps: int) -> list[list[int]]:
    seq = prompts
    with torch.inference_mode():
        for _ in range(steps):
            seq = torch.cat([seq, module(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return seq[:, prompts.shape[1] :].tolist()


def test_attention_transplant_is_right_under_a_kv_cache(pair, tokens):
    from interp.organism.generate import generate

    _, tuned = pair
    other = Model(_tiny(seed=5), None, "other")  # attention weights far from the tuned model's
    prompts = tokens[:6, :5]
    site = f"blocks.{DAMAGED}.hook_attn_out"
    plain = generate(tuned.module, prompts.tolist(), 10)
    with cross_patch(tuned, other, site):
        cached = generate(tuned.module, prompts.tolist(), 10)
        uncached = _greedy_uncached(tuned.module, prompts, 10)
    assert cached == uncached
    assert cached != plain, "the transplant changed nothing: the test could not fail"


def test_patching_restores_weights_when_the_body_raises(pair):
    base, tuned = pair
    before = tuned.refresh_fingerprint()
    with pytest.raises(RuntimeError, match="boom"), cross_patch(tuned, base, "blocks.2.hook_resid_post"):
        assert tuned.refresh_fingerprint() != before
        raise RuntimeError("boom")
    assert tuned.refresh_fingerprint() == before


def test_a_scorer_that_raises_is_a_clear_error_and_leaves_no_patch(pair):
    base, tuned = pair
    before = tuned.refresh_fingerprint()

    def fussy(model: Model) -> float:
        if model.spec == "tiny-tuned" and fussy.calls > 1:
            raise ZeroDivisionError("no problems to score")
        fussy.calls += 1
        return 1.0 if model.spec == "tiny-base" else 0.0

    fussy.calls = 0
    with pytest.raises(
        DamageError,
        match=r"scorer 'fussy' raised ZeroDivisionError on 'tiny-tuned' with "
        r"blocks\.0\.hook_attn_out from 'tiny-base': no problems",
    ):
        localise_damage(base, tuned, fussy, progress=False)
    assert tuned.refresh_fingerprint() == before
    with pytest.raises(DamageError, match="returned nan on the base model"):
        localise_damage(base, tuned, lambda m: math.nan, progress=False)
    with pytest.raises(DamageError, match="returned 'high'"):
        localise_damage(base, tuned, lambda m: "high", progress=False)


def test_mismatched_architectures_are_a_clear_error(pair):
    base, _ = pair
    deeper = Model(_tiny(n_layers=4), None, "tiny-deeper")
    with pytest.raises(
        DamageError, match=r"base 'tiny-base' and tuned 'tiny-deeper' differ .*n_layers 3 vs 4"
    ):
        localise_damage(base, deeper, lambda m: 1.0, progress=False)
    wider_vocab = Model(_tiny(d_vocab=D_VOCAB + 1), None, "tiny-vocab")
    with pytest.raises(DamageError, match=r"parameters \['embed.W_E', 'unembed.W_U', 'unembed.b_U'\]"):
        check_same_architecture(base, wider_vocab)


def test_bad_sites_and_configs(pair):
    base, tuned = pair
    with (
        pytest.raises(ValueError, match="cannot patch 'blocks.0.hook_resid_mid'"),
        cross_patch(tuned, base, "blocks.0.hook_resid_mid"),
    ):
        pass
    with (
        pytest.raises(KeyError, match="blocks.7.hook_mlp_out"),
        cross_patch(tuned, base, "blocks.7.hook_mlp_out"),
    ):
        pass
    with pytest.raises(ValueError, match=r"components=\('mlp', 'ffn'\)"):
        DamageConfig(components=("mlp", "ffn"))
    with pytest.raises(ValueError, match=r"threshold=0\.0"):
        DamageConfig(threshold=0.0)


def test_probe_retention_is_equal_on_identical_models(pair, tokens):
    base, _ = pair
    twin = Model(_tiny(), None, "twin")
    twin.module.load_state_dict(base.module.state_dict())
    retained = probe_retention(base, twin, token_task(), DamageConfig(probe_test_fraction=0.5))
    assert list(retained) == [f"blocks.{i}.hook_resid_post" for i in range(3)]
    for acc_base, acc_twin in retained.values():
        assert acc_base == acc_twin and 0 <= acc_base <= 1


def test_weight_change_is_relative_frobenius_norm(pair):
    base, tuned = pair
    wc = weight_change(base, tuned)
    mlp = [n for n in parameter_groups(base)["blocks.1.mlp"]]
    pb, pt = base.module.state_dict(), tuned.module.state_dict()
    num = sum(float((pt[n] - pb[n]).pow(2).sum()) for n in mlp)
    den = sum(float(pb[n].pow(2).sum()) for n in mlp)
    assert wc["blocks.1.mlp"] == pytest.approx(math.sqrt(num / den), rel=1e-6)
    assert wc["blocks.0.attn"] < 0.01 < 1 < wc["blocks.1.mlp"]
    assert {"embed", "final", "blocks.0", "blocks.2.attn"} <= set(wc)


def test_bridge_models_name_the_damaged_layer(gpt2, gpt2_dir, llama, tokens):
    """The same method through TransformerBridge (an ``hf:`` GPT-2): block 1's MLP re-randomised."""
    groups = parameter_groups(llama)
    assert {"embed", "final", "blocks.0.attn", "blocks.1.mlp"} <= set(
        groups
    ) and "blocks.0.other" not in groups
    tuned = load_model(f"hf:{gpt2_dir}", device="cpu")
    mlp = [n for n in parameter_groups(tuned)["blocks.1.mlp"] if "c_fc" in n and n.endswith("weight")]
    with torch.no_grad():
        p = dict(tuned.module.named_parameters())[mlp[0]]
        p.copy_(3 * p.std() * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    before = gpt2.refresh_fingerprint()
    toks = tokens[:8, :10]
    report = localise_damage(
        gpt2,
        tuned,
        agreement_scorer(gpt2, toks),
        tokens=toks.tolist(),
        config=DamageConfig(components=("attn", "mlp"), directions="restore"),
        progress=False,
    )
    assert report.top_layer("restoration") == 1 and report.top_layer("weight_change") == 1
    assert {r.site: r for r in report.rows}["blocks.1.hook_mlp_out"].restoration == 1.0
    assert report.damaged_layers == (1,)
    assert gpt2.refresh_fingerprint() == before


# --- the organism helpers and the command line, on a small hand-made zoo ---------------------------


@pytest.fixture(scope="module")
def fake_zoo(tmp_path_factory):
    """A zoo directory with a random ``base``, its damaged ``sft-answer`` and a deeper ``deep``."""
    from interp.atomic import atomic_write_json
    from interp.organism.store import save_weights_atomic
    from interp.organism.tokenizer import WordTokenizer, organism_vocab
    from interp.organism.train import ModelShape, build_model
    from interp.organism.world import make_world

    zoo = tmp_path_factory.mktemp("zoo")
    world = make_world()
    vocab = organism_vocab(world.n_nodes)
    atomic_write_json(zoo / "world.json", {"world": world.to_json(), "vocab": vocab})
    shape, deep = ModelShape(2, 32, 2, 64, 64), ModelShape(3, 32, 2, 64, 64)
    base = build_model(shape, len(vocab), seed=0)
    models = {
        "base": (shape, base),
        "sft-answer": (shape, _damaged_copy(base, 1)),
        "deep": (deep, build_model(deep, len(vocab), seed=0)),
    }
    for name, (s, module) in models.items():
        (zoo / name).mkdir()
        save_weights_atomic(zoo / name / "model.safetensors", module)
        atomic_write_json(zoo / name / "config.json", s.hooked_config(len(vocab)))
        atomic_write_json(zoo / name / "card.json", {"name": name})
    return zoo, world, WordTokenizer(vocab)


def test_organism_probe_task_labels_the_recalled_neighbour(fake_zoo):
    from interp.organism.damage import organism_probe_rows
    from probes.damage import ProbeTask

    zoo, world, tok = fake_zoo
    task = ProbeTask(*organism_probe_rows(zoo, max_problems=10))
    assert len(task.tokens) == 2 * world.config.out_degree * (world.n_nodes + 10)
    assert sum(task.labels) * 2 == len(task.labels)
    for row, label in zip(task.tokens, task.labels, strict=True):
        words = tok.words(list(row))
        node = int(words[1][1:]) if words[0] == "F" else int(words[-3][1:])
        assert words[-2] == ":" and label == (int(words[-1][1:]) in world.neighbours(node))


def test_organism_scorers(fake_zoo):
    from interp.organism.damage import organism_scorer

    zoo, _, _ = fake_zoo
    from interp.organism.store import load_organism

    module, tok = load_organism("base", zoo)
    model = Model(module, tok, "organism:base")
    recall = organism_scorer("fact_recall", zoo)
    solve = organism_scorer("solve_rate", zoo, max_problems=3, max_new_tokens=4)
    assert recall.__name__ == "fact_recall" and solve.__name__ == "solve_rate_test_id"
    assert 0.0 <= recall(model) <= 1.0 and solve(model) == 0.0  # 4 tokens cannot hold a valid trace
    # under the test-time type checker a bad Literal is a TypeCheckError (a TypeError) first
    with pytest.raises((ValueError, TypeError), match="recall"):
        organism_scorer("recall", zoo)


def test_cli_writes_report_json_and_png(fake_zoo, tmp_path, monkeypatch, capsys):
    from interp.cli import main

    zoo, _, _ = fake_zoo
    monkeypatch.setenv("INTERP_ZOO", str(zoo))
    out = tmp_path / "out"
    argv = [
        "probe",
        "damage",
        "--base",
        "organism:base",
        "--tuned",
        "organism:sft-answer",
        "--out",
        str(out),
        "-q",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "damage.json").read_text())
    # the default on organism models is the organism's fact recall, resolved as a task by name
    assert data["scorer"] == "organism:fact_recall_accuracy" and data["base"] == "organism:base"
    assert data["damaged_layers"] == [1]  # random models recall nothing: the weight change decides
    assert (out / "damage.png").read_bytes()[:4] == b"\x89PNG"
    assert "blocks.1.hook_mlp_out" in printed and str(out / "damage.json") in printed


def test_cli_mismatch_and_non_organism_models_fail_clearly(fake_zoo, tmp_path, monkeypatch, capsys):
    from interp.cli import main

    zoo, _, _ = fake_zoo
    monkeypatch.setenv("INTERP_ZOO", str(zoo))
    argv = ["probe", "damage", "--base", "organism:base", "--out", str(tmp_path), "-q", "--device", "cpu"]
    assert main([*argv, "--tuned", "organism:deep"]) == 2
    err = capsys.readouterr().err
    assert "'organism:base' and tuned 'organism:deep'" in err and "n_layers 2 vs 3" in err
    assert main([*argv, "--tuned", "hf:/nowhere"]) == 2
    assert "'hf:/nowhere' is not organism:NAME" in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "a failed run left files behind"
