"""Information gain against a model whose answer probabilities are set by hand."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from interp.models import Model
from interp.organism.probing import organism_reference
from interp.organism.tokenizer import WordTokenizer, organism_vocab
from probes.info_gain import InfoGainConfig, info_gain, split_organism_trace

TOK = WordTokenizer(organism_vocab(4))
SEMI, ANS = TOK.token_id(";"), TOK.token_id("n3")
P = [0.1, 0.3, 0.2, 0.9]  # p(answer "n3" | k steps in context), k = number of ";" seen


class StepCountLM(nn.Module):
    """Next-token logits depend only on how many ``;`` came so far: the answer token gets ``c_k``."""

    def __init__(self) -> None:
        super().__init__()
        V = len(TOK)
        self.cfg = SimpleNamespace(n_layers=1, d_model=1, d_vocab=V, n_ctx=64)
        self.hook_dict: dict = {}
        self.dummy = nn.Parameter(torch.zeros(1))
        # softmax(c at ANS, 0 elsewhere)[ANS] = p  <=>  c = log(p (V - 1) / (1 - p))
        self.c = torch.tensor([math.log(p * (V - 1) / (1 - p)) for p in P])

    def row(self, k: int) -> torch.Tensor:
        z = torch.zeros(self.cfg.d_vocab)
        z[ANS] = self.c[min(k, len(P) - 1)]
        return z

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        k = (tokens == SEMI).long().cumsum(-1).clamp(max=len(P) - 1)
        logits = torch.zeros(*tokens.shape, self.cfg.d_vocab)
        logits[..., ANS] = self.c[k]
        return logits


@pytest.fixture(scope="module")
def lm() -> Model:
    return Model(StepCountLM(), TOK, "step-count")


STEPS = ["n0 > n1 ;", "n1 > n2 ;", "n2 > n3 ;"]


def test_clean_form_exact(lm):
    r = info_gain(lm, ["Q n0 n3 T"], [STEPS], ["n3"])
    assert r.nll[0] == pytest.approx([-math.log(p) for p in P], abs=1e-5)
    gains = [math.log(P[i]) - math.log(P[i - 1]) for i in range(1, 4)]
    assert r.step_gains[0] == pytest.approx(gains, abs=1e-5)
    assert r.step_gains[0][1] < 0  # step 2 made the answer less likely
    assert r.totals[0] == pytest.approx(math.log(0.9 / 0.1), abs=1e-5)
    assert r.normalised[0] == pytest.approx(math.log(0.9 / 0.1) / -math.log(0.1), abs=1e-5)


def test_ppl_variant_exact(lm):
    """PPL_i by a per-token loop over the known distributions; InfoGain = sum of drops / (n+1)."""
    model = lm.module
    r = info_gain(lm, ["Q n0 n3 T"], [STEPS], ["n3"])
    ppl = []
    for i in range(4):
        words = ("Q n0 n3 T " + " ".join(STEPS[:i]) + " A n3").split()
        ids = TOK.encode(" ".join(words))
        nll, k = 0.0, 0
        for t in range(len(ids) - 1):
            k += ids[t] == SEMI
            nll -= float(torch.log_softmax(model.row(k), 0)[ids[t + 1]])
        ppl.append(math.exp(nll / (len(ids) - 1)))
    assert r.ppl[0] == pytest.approx(ppl, rel=1e-5)
    expected = sum(a - b for a, b in zip(ppl, ppl[1:], strict=False)) / 4
    assert r.ppl_info_gain[0] == pytest.approx(expected, rel=1e-5)


def test_batching_does_not_change_values(lm, hooked):
    from interp.models import as_model

    qs = ["Q n0 n3 T", "Q n1 n3 T"]
    traces = [STEPS, STEPS[1:]]
    a = info_gain(lm, qs, traces, ["n3", "n3"], InfoGainConfig(batch_size=1))
    b = info_gain(lm, qs, traces, ["n3", "n3"], InfoGainConfig(batch_size=64))
    for x, y in zip(a.nll, b.nll, strict=True):
        assert x == pytest.approx(y, abs=1e-6)
    assert len(b.nll[1]) == 3
    m = Model(as_model(hooked).module, TOK, "hooked")  # a real transformer, organism words
    r1 = info_gain(m, qs, traces, ["1 n0 n3 E", "2 n1 n2 n3 E"], InfoGainConfig(batch_size=2))
    r2 = info_gain(m, qs, traces, ["1 n0 n3 E", "2 n1 n2 n3 E"], InfoGainConfig(batch_size=7))
    for x, y in zip(r1.nll, r2.nll, strict=True):
        assert x == pytest.approx(y, abs=1e-4)


def test_result_outputs(lm, tmp_path):
    r = info_gain(lm, ["Q n0 n3 T"], [STEPS], ["n3"])
    d = r.save(tmp_path / "ig.json")
    assert d.is_file() and "info_gain_normalised" in str(r)
    assert r.to_dict()["mean"]["steps"] == 3
    assert r.plot(tmp_path / "ig.png").stat().st_size > 0


def test_errors(lm):
    with pytest.raises(ValueError, match="trace 0 has no steps"):
        info_gain(lm, ["Q n0 n3 T"], [[]], ["n3"])
    with pytest.raises(ValueError, match="answer 0 is missing"):
        info_gain(lm, ["Q n0 n3 T"], [STEPS], [" "])
    with pytest.raises(ValueError, match="1 questions, 2 traces"):
        info_gain(lm, ["Q n0 n3 T"], [STEPS, STEPS], ["n3"])
    with pytest.raises(ValueError, match="answer_marker"):
        InfoGainConfig(answer_marker=" ")


def test_split_and_reference():
    from interp.organism.world import WorldConfig, make_world

    steps, ans = split_organism_trace(
        "n0 : n1 n2 > n1 WAIT CHECK n1 : n2 n3 D 1 OK ; n1 : n2 n3 > n3 ; A n0 n1 n3 E"
    )
    assert steps == ["n0 : n1 n2 > n1 WAIT CHECK n1 : n2 n3 D 1 OK ;", "n1 : n2 n3 > n3 ;"]
    assert ans == "n0 n1 n3 E"
    assert split_organism_trace("n0 : n1 > n1") == (["n0 : n1 > n1"], None)
    w = make_world(WorldConfig(n_nodes=8, out_degree=2, max_id_dist=3, max_ood_dist=4))
    s, g = next((s, g) for s, g in w.split("train") if w.dist(s, g) >= 2)
    ref = organism_reference(w, s, g)
    path = [int(x[1:]) for x in ref.split()[:-1]]
    assert w.is_shortest_path(path, s, g)
    wrong = f"A n{s} n{g} E"
    assert organism_reference(w, s, g, wrong) == ref  # a wrong answer is not used as reference
    assert organism_reference(w, s, g, "A " + ref) == ref


@pytest.fixture(scope="module")
def mini_zoo(tmp_path_factory):
    """A two-model organism zoo (random weights) written in the zoo layout: seconds, not a build."""
    from interp.atomic import atomic_write_json
    from interp.organism.store import save_weights_atomic
    from interp.organism.train import ModelShape, build_model
    from interp.organism.world import WorldConfig, make_world

    zoo = tmp_path_factory.mktemp("zoo")
    world = make_world(WorldConfig(n_nodes=8, out_degree=2, max_id_dist=2, max_ood_dist=3))
    vocab = organism_vocab(world.n_nodes)
    atomic_write_json(zoo / "world.json", {"world": world.to_json(), "vocab": vocab})
    shape = ModelShape(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=64)
    for name, seed in (("base", 0), ("tuned", 1)):
        (zoo / name).mkdir()
        save_weights_atomic(zoo / name / "model.safetensors", build_model(shape, len(vocab), seed))
        atomic_write_json(zoo / name / "config.json", shape.hooked_config(len(vocab)))
        atomic_write_json(zoo / name / "card.json", {"name": name})
    return zoo


def test_cli(mini_zoo, tmp_path, monkeypatch, capsys):
    import json

    from interp.cli import main

    monkeypatch.setenv("INTERP_ZOO", str(mini_zoo))
    out = tmp_path / "ig"
    argv = [
        "probe",
        "info-gain",
        "--scorer",
        "organism:base",
        "--model",
        "organism:tuned",
        "--n",
        "4",
        "--max-new-tokens",
        "10",
        "--out",
        str(out),
        "-q",
    ]
    assert main(argv) == 0
    data = json.loads((out / "info_gain.json").read_text())
    assert data["n_traces"] + data["meta"]["skipped_without_steps"] == 4
    assert data["meta"]["scorer"] == "organism:base" and data["meta"]["model"] == "organism:tuned"
    assert (out / "info_gain.png").stat().st_size > 0
    assert "info_gain_normalised" in capsys.readouterr().out
    assert main([*argv[:-3], "--n", "0", "--out", str(out)]) == 2


def test_shared_path_equals_plain_pairs(hooked):
    """On a HookedTransformer info_gain shares each trace's context; the values are the plain pairs'."""
    from interp.models import as_model
    from probes.scoring import score_continuations

    m = Model(as_model(hooked).module, TOK, "hooked")
    qs, traces, answers = ["Q n0 n3 T", "Q n1 n3 T"], [STEPS, STEPS[1:]], ["1 n0 n3 E", "2 n1 n2 n3 E"]
    r = info_gain(m, qs, traces, answers)
    pre, cont = [], []
    for q, steps, a in zip(qs, traces, answers, strict=True):
        for i in range(len(steps) + 1):
            pre.append(" ".join([q, *steps[:i], "A"]))
            cont.append(" " + a)
    s = score_continuations(m, pre, cont)
    flat = [v for c in r.nll for v in c]
    assert flat == pytest.approx(s.nll.tolist(), abs=1e-4)
    ppl = [math.exp(float(x) / int(n)) for x, n in zip(s.sequence_nll, s.sequence_tokens, strict=True)]
    assert [v for c in r.ppl for v in c] == pytest.approx(ppl, rel=1e-4)
