"""Token entropy, forking tokens and distribution shift against hand-computed values."""

import math
from types import SimpleNamespace

import pytest
import torch

from interp.models import Model, as_model
from interp.organism.tokenizer import WordTokenizer, organism_vocab
from probes.entropy import EntropyConfig, distribution_shift, entropy_profile, organism_token_type

TOK = WordTokenizer(organism_vocab(4))
V = len(TOK)


class TableLM(torch.nn.Module):
    """Bigram LM: logits at a position are the table row of the token there."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)
        self.cfg = SimpleNamespace(n_layers=1, d_model=1, d_vocab=table.shape[1], n_ctx=32)
        self.hook_dict: dict = {}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens]


def _hand_entropy(z: list[float], T: float = 1.0) -> float:
    e = [math.exp(v / T) for v in z]
    p = [x / sum(e) for x in e]
    return -sum(q * math.log(q) for q in p if q > 0)


@pytest.fixture(scope="module")
def table() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(V, V, generator=g) * 3
    t[TOK.token_id(">")] = 0.0  # uniform after ">": the highest entropy there is
    return t


PROMPTS = ["Q n0 n3 T", "Q n1 n2 T"]
RESPONSES = [
    "n0 : n1 n2 > n1 ; n1 : n3 > n3 ; A 2 n0 n1 n3 E",
    "n1 : n2 > n2 WAIT CHECK n2 : n0 OK ; A 1 n1 n2 E",
]


def test_entropy_by_hand(table):
    model = Model(TableLM(table), TOK, "table")
    r = entropy_profile(model, PROMPTS, RESPONSES, EntropyConfig(temperature=2.0))
    for p, resp, H in zip(PROMPTS, RESPONSES, r.entropy, strict=True):
        ids = TOK.encode(p + " " + resp)
        prev = ids[len(TOK.encode(p)) - 1 : -1]  # the token before each response token
        assert H.tolist() == pytest.approx([_hand_entropy(table[i].tolist(), 2.0) for i in prev], abs=1e-5)
    allH = torch.cat(r.entropy).double()
    assert r.threshold == pytest.approx(float(torch.quantile(allH, 0.8)))
    assert r.forking_share == pytest.approx(float((allH >= r.threshold).double().mean()))
    # tokens after ">" see a uniform distribution: entropy log V, always forking
    assert r.by_type["node"]["mean_entropy"] > 0
    assert max(float(h.max()) for h in r.entropy) == pytest.approx(math.log(V), abs=1e-5)
    n_tok = sum(len(w) for w in r.words)
    assert sum(v["count"] for v in r.by_type.values()) == n_tok == sum(v["count"] for v in r.by_step.values())
    assert r.by_type["WAIT"]["count"] == 1 and set(r.by_step) == {0, 1, 2}
    assert sum(v["share_of_forking"] for v in r.by_type.values()) == pytest.approx(1.0)


def test_on_transformers(hooked, gpt2):
    for m, prompts, resps in ((as_model(hooked), [[2, 3]], [[4, 5, 6]]), (gpt2, ["w1 w2"], ["w3 w4 w5"])):
        r = entropy_profile(m, prompts, resps, token_type=lambda w: "word")
        assert len(r.entropy[0]) == 3 and r.by_type["word"]["count"] == 3
        assert bool((r.entropy[0] <= math.log(m.d_vocab) + 1e-4).all())


def test_shift_by_hand(table):
    tuned_table = table.clone()
    tuned_table[TOK.token_id(">")] = torch.linspace(0, 3, V)  # only the high-entropy rows move
    base, tuned = Model(TableLM(table), TOK, "base"), Model(TableLM(tuned_table), TOK, "tuned")
    r = distribution_shift(base, tuned, PROMPTS, RESPONSES, measure="kl")
    ids = TOK.encode(PROMPTS[0] + " " + RESPONSES[0])
    prev = ids[len(TOK.encode(PROMPTS[0])) - 1 : -1]
    lp_b, lp_t = torch.log_softmax(table, -1), torch.log_softmax(tuned_table, -1)
    kl = [float((lp_t[i].exp() * (lp_t[i] - lp_b[i])).sum()) for i in prev]
    assert r.shift[0].tolist() == pytest.approx(kl, abs=1e-5)
    s = r.summary()
    assert s["share_of_shift_on_high_entropy"] == pytest.approx(1.0)
    assert s["pearson"] > 0
    js = distribution_shift(base, tuned, PROMPTS, RESPONSES, measure="js")
    assert float(torch.cat(js.shift).max()) <= math.log(2) + 1e-6
    assert float(torch.cat(js.shift).max()) > 0


def test_outputs_and_errors(table, tmp_path):
    model = Model(TableLM(table), TOK, "table")
    r = entropy_profile(model, PROMPTS, RESPONSES)
    assert "forking" in str(r) and r.save(tmp_path / "e.json").is_file()
    assert r.plot(tmp_path / "e.png").stat().st_size > 0
    s = distribution_shift(model, model, PROMPTS, RESPONSES)
    assert s.plot(tmp_path / "s.png").stat().st_size > 0 and "pearson" in str(s)
    with pytest.raises(ValueError, match="top_fraction"):
        EntropyConfig(top_fraction=1.5)
    with pytest.raises(ValueError, match="measure"):
        distribution_shift(model, model, PROMPTS, RESPONSES, measure="tv")
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        entropy_profile(model, PROMPTS, RESPONSES[:1])
    with pytest.raises(ValueError, match="d_vocab"):
        distribution_shift(model, Model(TableLM(torch.zeros(V + 1, V + 1)), None, "x"), [[1]], [[2]])
    assert organism_token_type("n12") == "node" and organism_token_type("BACK") == "BACK"


def test_cli(tmp_path, monkeypatch, capsys):
    import json

    from interp.atomic import atomic_write_json
    from interp.cli import main
    from interp.organism.store import save_weights_atomic
    from interp.organism.train import ModelShape, build_model
    from interp.organism.world import WorldConfig, make_world

    zoo = tmp_path / "zoo"  # a two-model zoo with random weights, in the zoo layout
    world = make_world(WorldConfig(n_nodes=8, out_degree=2, max_id_dist=2, max_ood_dist=3))
    vocab = organism_vocab(world.n_nodes)
    zoo.mkdir()
    atomic_write_json(zoo / "world.json", {"world": world.to_json(), "vocab": vocab})
    shape = ModelShape(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=64)
    for name, seed in (("base", 0), ("tuned", 1)):
        (zoo / name).mkdir()
        save_weights_atomic(zoo / name / "model.safetensors", build_model(shape, len(vocab), seed))
        atomic_write_json(zoo / name / "config.json", shape.hooked_config(len(vocab)))
        atomic_write_json(zoo / name / "card.json", {"name": name})
    monkeypatch.setenv("INTERP_ZOO", str(zoo))
    out = tmp_path / "ent"
    argv = [
        "probe",
        "entropy",
        "--model",
        "organism:tuned",
        "--base",
        "organism:base",
        "--n",
        "3",
        "--samples",
        "2",
        "--max-new-tokens",
        "8",
        "--out",
        str(out),
        "-q",
    ]
    assert main(argv) == 0
    data = json.loads((out / "entropy.json").read_text())
    assert len(data["entropy"]) == 6 and 0 < data["forking_share"] <= 1
    shift = json.loads((out / "shift.json").read_text())
    assert shift["measure"] == "kl" and len(shift["shift"]) == 6
    assert (out / "entropy.png").is_file() and (out / "shift.png").is_file()
    assert "forking threshold" in capsys.readouterr().out
    assert main([*argv[:-3], "--top-fraction", "2", "--out", str(out)]) == 2
