"""Accuracy by CoT length (natural bins) and under forced extra thinking."""

from types import SimpleNamespace

import pytest
import torch

from interp.models import Model
from interp.organism.tokenizer import WordTokenizer, organism_vocab
from probes.cot_length import (
    ForceConfig,
    accuracy_by_length,
    force_thinking,
    forced_accuracy,
    organism_steps,
)

TOK = WordTokenizer(organism_vocab(4))


def test_bins():
    r = accuracy_by_length([1, 1, 2, 3, 3, 3], [True, False, True, False, False, True])
    assert r.counts == (2, 1, 3) and r.accuracy == pytest.approx((0.5, 1.0, 1 / 3))
    r = accuracy_by_length([0, 5, 10], [True, True, False], bins=2)
    assert r.edges == (0.0, 5.0, 10.0) and r.counts == (1, 2)  # the last bin is closed
    r = accuracy_by_length([1, 9], [True, False], bins=[0, 2, 4, 10])
    assert r.counts == (1, 0, 1) and r.accuracy[1] != r.accuracy[1]  # NaN for an empty bin
    with pytest.raises(ValueError, match="increasing"):
        accuracy_by_length([1], [True], bins=[2, 1])
    with pytest.raises(ValueError, match="equal"):
        accuracy_by_length([1, 2], [True])


class ScriptLM(torch.nn.Module):
    """Always emits the next word of a script, keyed on the previous token (a bigram table)."""

    def __init__(self, nxt: dict[str, str]) -> None:
        super().__init__()
        V = len(TOK)
        self.table = torch.nn.Parameter(torch.zeros(V, V))
        with torch.no_grad():
            for a, b in nxt.items():
                self.table[TOK.token_id(a), TOK.token_id(b)] = 10.0
        self.cfg = SimpleNamespace(n_layers=1, d_model=1, d_vocab=V, n_ctx=40)
        self.hook_dict: dict = {}

    def forward(self, tokens, **kwargs):
        return self.table[tokens]


def _bigram_generate(lm):
    """Greedy decoding of a ScriptLM's bigram table, standing in for generate_continuations."""

    def fake_generate(
        model,
        prompts,
        max_new_tokens,
        temperature=0.0,
        stop_id=None,
        forbid=None,
        generator=None,
        batch_size=256,
    ):  # greedy decoding of the bigram table
        outs = []
        for p in prompts:
            o = []
            for _ in range(max_new_tokens):
                o.append(int(lm.table[(o or p)[-1]].argmax()))
                if o[-1] == stop_id:
                    break
            outs.append(o)
        return outs

    return fake_generate


def test_forcing_replaces_the_stop_word(monkeypatch):
    # T -> ; -> A -> 1 -> E ; CHECK -> OK -> ; : every forced "WAIT CHECK" is followed by "OK ;"
    lm = ScriptLM({"T": ";", ";": "A", "A": "1", "1": "E", "CHECK": "OK", "OK": ";"})
    model = Model(lm, TOK, "script")

    monkeypatch.setattr("probes.cot_length.generate_continuations", _bigram_generate(lm))
    prompt = [TOK.encode("Q n0 n1 T")]
    cfg = ForceConfig(ks=(0, 2), max_new_tokens=10)
    assert TOK.decode(force_thinking(model, prompt, 0, cfg)[0]) == "; A 1 E"
    two = TOK.decode(force_thinking(model, prompt, 2, cfg)[0])
    assert two == "; WAIT CHECK OK ; WAIT CHECK OK ; A 1 E"
    r = forced_accuracy(model, prompt, lambda i, ids: organism_steps(TOK.words(ids)) <= 1, cfg)
    assert r.accuracy == (1.0, 0.0) and r.mean_length == (4.0, 12.0)
    assert "forced k" in str(r)


def test_an_intercept_forces_only_where_it_allows_and_keeps_the_format(monkeypatch):
    # a two-step trace; ";" closes a move ("> n1 ;") or a check ("OK ;"); force a check only
    # after a move that had none, as the organism's trained format places checks
    lm = ScriptLM({"T": ">", ">": "n1", "n1": ";", ";": "n2", "n2": ":", ":": "A", "A": "E",
                   "CHECK": "OK", "OK": ";"})
    model = Model(lm, TOK, "script")
    monkeypatch.setattr("probes.cot_length.generate_continuations", _bigram_generate(lm))
    prompt = [TOK.encode("Q n0 n1 T")]

    def after_a_move(ids):
        words = TOK.words(ids)
        return len(words) >= 2 and words[-2] == ">"

    cfg = ForceConfig(ks=(0, 1, 2), max_new_tokens=10, stop_word=";", force="WAIT CHECK",
                      intercept=after_a_move)
    assert TOK.decode(force_thinking(model, prompt, 0, cfg)[0]) == "> n1 ; n2 : A E"
    one = TOK.decode(force_thinking(model, prompt, 1, cfg)[0])
    assert one == "> n1 WAIT CHECK OK ; n2 : A E"  # the ";" after OK was let through, not forced
    # a second extension finds no other move to check: the response ends the same way
    assert TOK.decode(force_thinking(model, prompt, 2, cfg)[0]) == one
    # without the intercept every ";" is forced, the one after OK included (a format break)
    free = ForceConfig(ks=(2,), max_new_tokens=10, stop_word=";", force="WAIT CHECK")
    assert "OK WAIT CHECK" in TOK.decode(force_thinking(model, prompt, 2, free)[0])


def test_forcing_on_a_transformer(hooked, tmp_path):
    from interp.models import as_model

    m = Model(as_model(hooked).module, TOK, "hooked")
    r = forced_accuracy(
        m, ["Q n0 n2 T", "Q n1 n3 T"], lambda i, ids: True, ForceConfig(ks=(0, 1), max_new_tokens=5)
    )
    assert r.accuracy == (1.0, 1.0) and all(v <= 12 for v in r.mean_length)
    assert r.save(tmp_path / "f.json").is_file() and r.plot(tmp_path / "f.png").stat().st_size > 0
    with pytest.raises(ValueError, match="ks="):
        ForceConfig(ks=())
