import pytest
import torch

from interp.errors import InterpError
from interp.organism.tokenizer import UnknownWordError, WordTokenizer, organism_vocab
from interp.organism.traces import KINDS, DataRecipe, ExampleSampler


def test_round_trip_every_kind_of_example(world):
    tok = WordTokenizer(organism_vocab(world.n_nodes, world.config.n_colours))
    mix = {k: 1.0 for k in KINDS}
    sampler = ExampleSampler(world, DataRecipe(mix=mix), seed=0)
    for ex in sampler.batch(300):
        ids = tok.encode(ex.text)
        assert len(ids) == len(ex.words)
        assert tok.decode(ids) == ex.text


def test_vocab_is_fixed_and_ids_are_dense():
    tok = WordTokenizer(organism_vocab(24))
    vocab = tok.get_vocab()
    assert sorted(vocab.values()) == list(range(len(vocab)))
    assert tok.decode([tok.pad_token_id]) == "<pad>"
    assert tok.hash() == WordTokenizer(organism_vocab(24)).hash()
    assert tok.hash() != WordTokenizer(organism_vocab(25)).hash()


def test_unknown_word_is_named():
    tok = WordTokenizer(organism_vocab(24))
    with pytest.raises(UnknownWordError, match="'n99'") as info:
        tok.encode("Q n1 n99 T")
    assert isinstance(info.value, InterpError) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownWordError, match="'hello'"):
        tok.encode("hello")
    with pytest.raises(UnknownWordError, match="outside the vocabulary"):
        tok.decode([len(tok)])


def test_whitespace_is_normalised_not_lost():
    tok = WordTokenizer(organism_vocab(4))
    assert tok.decode(tok.encode("  Q   n1\tn2 T ")) == "Q n1 n2 T"
    assert tok.encode("") == []


def test_bad_vocab_rejected():
    with pytest.raises(ValueError, match="unique"):
        WordTokenizer(["a", "a"])
    with pytest.raises(ValueError, match="whitespace"):
        WordTokenizer(["a b"])


def test_decodes_tensor_rows():
    tok = WordTokenizer(organism_vocab(4))
    row = torch.tensor([tok.encode("Q n1 n2 T")])[0].tolist()
    assert tok.decode(row) == "Q n1 n2 T"
