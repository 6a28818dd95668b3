"""interp.models and interp.fingerprint: loading by spec, and weight fingerprints."""

import pytest
import torch
from torch import nn

from interp.errors import SpecError
from interp.fingerprint import fingerprint_module, fingerprint_state, hash_token_rows
from interp.models import Model, as_model, load_model


def test_hf_spec_loads_a_bridge_with_tokenizer(gpt2, gpt2_dir):
    assert gpt2.spec == f"hf:{gpt2_dir}"
    assert (gpt2.n_layers, gpt2.d_model, gpt2.d_vocab) == (2, 32, 64)
    assert type(gpt2.module).__name__ == "TransformerBridge"
    ids = gpt2.encode("w0 w61 w7")
    # word-level vocabulary: w{i} has id i + 2 (ids 0, 1 are <unk>, <eos>)
    assert ids[-3:] == [2, 63, 9]
    assert gpt2.decode(ids[-3:]).split() == ["w0", "w61", "w7"]
    assert gpt2.tokenizer_hash().startswith("sha256:")
    assert gpt2.describe()["fingerprint"] == gpt2.fingerprint
    assert gpt2.describe()["dtype"] == "float32"


def test_llama_family_loads(llama):
    assert (llama.n_layers, llama.d_model) == (2, 32)
    assert "blocks.1.hook_resid_post" in llama.hook_points


def test_bad_specs_raise_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no source prefix"):
        load_model("gpt2-small")
    with pytest.raises(SpecError, match="unknown model source 'xx'"):
        load_model("xx:foo")
    with pytest.raises(SpecError, match="not a Hugging Face model directory"):
        load_model(f"hf:{tmp_path}", device="cpu")
    with pytest.raises(SpecError, match="unknown dtype"):
        load_model(f"hf:{tmp_path}", device="cpu", dtype="float64")


def test_model_refuses_a_plain_module():
    with pytest.raises(TypeError, match="TransformerLens"):
        Model(nn.Linear(2, 2), tokenizer=None, spec="x")


def test_encode_without_tokenizer_raises(hooked):
    m = as_model(hooked, spec="tiny")
    assert m.spec == "tiny"
    with pytest.raises(SpecError, match="no tokenizer"):
        m.encode("w1")


def test_load_model_wraps_built_modules_and_passes_models_through(hooked, gpt2):
    wrapped = load_model(hooked)
    assert wrapped.module is hooked
    assert load_model(gpt2) is gpt2
    tokens = torch.tensor([[3, 4, 5]])
    torch.testing.assert_close(wrapped(tokens), hooked(tokens))


# --- fingerprints -----------------------------------------------------------------------


def test_same_weights_same_fingerprint(gpt2, gpt2_dir):
    again = load_model(f"hf:{gpt2_dir}", device="cpu")
    assert again is not gpt2
    assert again.fingerprint == gpt2.fingerprint
    assert gpt2.fingerprint.startswith("sha256:") and len(gpt2.fingerprint) == 7 + 64


def test_other_seed_other_fingerprint(gpt2, gpt2_other):
    assert gpt2.fingerprint != gpt2_other.fingerprint


def test_one_changed_element_changes_fingerprint(gpt2_dir):
    m = load_model(f"hf:{gpt2_dir}", device="cpu")
    before = m.fingerprint
    name, param = next(iter(m.module.named_parameters()))
    with torch.no_grad():
        flat = param.view(-1)
        flat[flat.numel() // 2] += 1e-3
    assert m.fingerprint == before, "fingerprint is cached until refreshed"
    after = m.refresh_fingerprint()
    assert after != before, f"changing one element of {name} left the fingerprint unchanged"
    with torch.no_grad():
        flat[flat.numel() // 2] -= 1e-3
    # float rounding may not restore the exact bits; restore them from the saved weights instead
    restored = load_model(f"hf:{gpt2_dir}", device="cpu")
    assert restored.fingerprint == before


def test_fingerprint_covers_names_shapes_and_dtypes():
    base = fingerprint_state({"w": torch.zeros(4)})
    assert fingerprint_state({"v": torch.zeros(4)}) != base
    assert fingerprint_state({"w": torch.zeros(2, 2)}) != base
    assert fingerprint_state({"w": torch.zeros(4, dtype=torch.int32)}) != base, "same bytes, other dtype"
    assert fingerprint_state({"w": torch.zeros(2, dtype=torch.float64)}) != base
    assert fingerprint_state({"w": torch.zeros(4)}) == base
    # a non-contiguous view hashes like its contiguous copy
    t = torch.arange(12.0).reshape(3, 4)
    assert fingerprint_state({"w": t.T}) == fingerprint_state({"w": t.T.contiguous()})


def test_bfloat16_model_fingerprints_and_runs(gpt2_dir, gpt2):
    m = load_model(f"hf:{gpt2_dir}", device="cpu", dtype="bfloat16")
    assert m.describe()["dtype"] == "bfloat16"
    assert m.fingerprint.startswith("sha256:")
    assert m.fingerprint != gpt2.fingerprint
    assert m.fingerprint == fingerprint_module(m.module)
    logits = m(torch.tensor([[2, 3, 4]]))
    assert logits.dtype == torch.bfloat16 and logits.shape == (1, 3, 64)
    assert torch.isfinite(logits.float()).all()


def test_bfloat16_bytes_are_hashed_exactly():
    a = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    b = a.clone()
    b[1] = torch.tensor(2.015625, dtype=torch.bfloat16)  # next bfloat16 after 2.0
    assert not torch.equal(a, b)
    assert fingerprint_state({"w": a}) != fingerprint_state({"w": b})


def test_hash_token_rows_keeps_row_boundaries():
    assert hash_token_rows([[1, 2], [3]]) != hash_token_rows([[1], [2, 3]])
    assert hash_token_rows([[1, 2], [3]]) == hash_token_rows([(1, 2), (3,)])
