"""interp.architecture: what kind of network a model is, compared across artifacts."""

import pytest

from interp.architecture import (
    SUMMARY_KEYS,
    architecture_of,
    architecture_of_cache,
    architecture_summary,
    compare_architectures,
)
from interp.errors import ModelMismatchError
from interp.fingerprint import tokenizer_hash


def test_bridges_report_their_hugging_face_model_type(gpt2, llama, qwen2):
    arch = {name: architecture_of(m) for name, m in (("gpt2", gpt2), ("llama", llama), ("qwen2", qwen2))}
    assert {k: a["model_type"] for k, a in arch.items()} == {k: k for k in arch}
    for a in arch.values():  # the fixtures agree in every size: only the model type tells them apart
        assert (a["class"], a["n_layers"], a["d_model"], a["n_heads"], a["d_vocab"]) == (
            "TransformerBridge",
            2,
            32,
            4,
            64,
        )
        assert a["vocab"] == tokenizer_hash(gpt2.tokenizer.get_vocab())
    assert compare_architectures(arch["gpt2"], arch["llama"]) == ["model_type: 'gpt2' vs 'llama'"]
    assert compare_architectures(arch["gpt2"], architecture_of(gpt2.module)) == []  # a bare bridge too


def test_other_weights_same_architecture(gpt2, gpt2_other):
    assert gpt2.fingerprint != gpt2_other.fingerprint
    assert architecture_of(gpt2) == architecture_of(gpt2_other)


def test_hooked_transformer_records_its_settings(hooked):
    arch = architecture_of(hooked)
    assert arch["model_type"] == "hooked_transformer" and arch["class"] == "HookedTransformer"
    assert (arch["act_fn"], arch["normalization_type"], arch["positional_embedding_type"]) == (
        "gelu",
        "LN",
        "standard",
    )
    assert arch["vocab"] is None  # no tokenizer


def test_comparison_uses_only_keys_both_sides_record():
    full = {"model_type": "gpt2", "class": "TransformerBridge", "n_layers": 2, "d_model": 32}
    full["vocab"] = "sha256:a"
    old = {k: full[k] for k in SUMMARY_KEYS if k in full}  # a record from before the full check
    assert compare_architectures(old, full) == []
    assert compare_architectures({**old, "n_layers": 3}, full) == ["n_layers: 3 vs 2"]
    assert compare_architectures({**full, "vocab": None}, full) == []  # no tokenizer: not compared
    assert architecture_summary(full) == "gpt2, 2 layers, d_model 32"
    assert architecture_summary(old) == "TransformerBridge, 2 layers, d_model 32"


def test_architecture_of_a_cache(built_cache, gpt2, llama):
    recorded = architecture_of_cache(built_cache)
    assert set(SUMMARY_KEYS) <= set(recorded)  # the sizes every manifest records, at least
    assert compare_architectures(recorded, architecture_of(gpt2)) == []
    assert recorded == architecture_of(gpt2)  # new manifests record the whole architecture
    assert compare_architectures(recorded, architecture_of(llama)) == ["model_type: 'gpt2' vs 'llama'"]
    assert architecture_of_cache(built_cache, gpt2)["model_type"] == "gpt2"  # its own model, checked
    with pytest.raises(ModelMismatchError):
        architecture_of_cache(built_cache, llama)
