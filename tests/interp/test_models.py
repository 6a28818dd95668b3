"""interp.models and interp.fingerprint: loading by spec, refusing unsafe checkpoints, fingerprints."""

import inspect
import json
import pickle
import shutil
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from interp.errors import CheckpointError, InterpError, RemoteCodeError, SpecError
from interp.fingerprint import fingerprint_module, fingerprint_state, hash_token_rows
from interp.models import CAUSAL_LM_FAMILIES, TRUST_REMOTE_CODE_ENV, Model, as_model, load_model


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


# --- what load_model refuses (issue 10): code from the folder, non-causal LMs, unsafe weights ---


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert isinstance(exc.value, InterpError) and "\n" not in msg, msg
    return msg


def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_the_api_contract_other_modules_rely_on():
    assert TRUST_REMOTE_CODE_ENV == "INTERP_TRUST_REMOTE_CODE"
    params = inspect.signature(load_model).parameters
    assert [p for p in params if params[p].kind is inspect.Parameter.KEYWORD_ONLY] == [
        "prepend_bos",
        "trust_remote_code",
        "device_map",
        "max_memory",
    ]
    assert all(
        params[p].default is None for p in ("prepend_bos", "trust_remote_code", "device_map", "max_memory")
    )


def test_a_tokenizer_that_names_its_own_code_is_refused_and_never_imported(gpt2_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    folder, marker = _copy(gpt2_dir, tmp_path / "m"), tmp_path / "MARKER"
    (folder / "tokenization_evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from transformers import PreTrainedTokenizerFast\n"
        "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n"
    )
    _edit_json(
        folder / "tokenizer_config.json",
        tokenizer_class="EvilTokenizer",
        auto_map={"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]},
    )
    refusal = r"tokenizer_config.json asks to run code .*\(auto_map\)"
    with pytest.raises(RemoteCodeError, match=refusal) as exc:
        load_model(f"hf:{folder}", device="cpu")
    assert "--trust-remote-code" in _one_line(exc)
    assert not marker.exists(), "the folder's code ran"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"trust_remote_code": True}, "trust_remote_code"),
        ({"auto_map": {"AutoModelForCausalLM": "modeling_evil.Evil"}}, "auto_map"),
        (
            {"task_specific_params": {"gen": {"trust_remote_code": 1}}},
            "task_specific_params.gen.trust_remote_code",
        ),
    ],
)
def test_remote_code_in_config_needs_the_users_consent(changes, named, gpt2, gpt2_dir, tmp_path, monkeypatch):
    folder = _copy(gpt2_dir, tmp_path / "m")
    _edit_json(folder / "config.json", **changes)
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    refusal = f"config.json asks to run code from the model folder \\({named}\\)"
    with pytest.raises(RemoteCodeError, match=refusal):
        load_model(f"hf:{folder}", device="cpu")
    monkeypatch.setenv(TRUST_REMOTE_CODE_ENV, "1")
    with pytest.raises(RemoteCodeError):
        load_model(f"hf:{folder}", device="cpu", trust_remote_code=False)  # explicit beats the variable
    if named != "auto_map":  # nothing to import: with consent it simply loads
        assert load_model(f"hf:{folder}", device="cpu").fingerprint == gpt2.fingerprint


def _bert_config():
    from transformers import BertConfig

    return BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )


def test_a_bert_checkpoint_is_refused_naming_the_supported_families(gpt2_dir, tmp_path):
    from transformers import BertForMaskedLM

    folder = tmp_path / "bert"
    BertForMaskedLM(_bert_config()).save_pretrained(str(folder))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(gpt2_dir / f, folder)
    with pytest.raises(CheckpointError, match="model_type 'bert' .* is not a decoder-only causal LM") as exc:
        load_model(f"hf:{folder}", device="cpu")
    assert all(f"({t})" in _one_line(exc) for t in ("gpt2", "llama", "qwen2"))


def test_a_bert_config_without_weights_is_one_line(tmp_path):
    _bert_config().save_pretrained(str(tmp_path))
    with pytest.raises(CheckpointError, match="model_type 'bert'") as exc:
        load_model(f"hf:{tmp_path}", device="cpu")
    _one_line(exc)


def test_a_causal_family_with_another_head_is_refused(gpt2_dir, tmp_path):
    folder = _copy(gpt2_dir, tmp_path / "m")
    _edit_json(folder / "config.json", architectures=["GPT2ForSequenceClassification"])
    with pytest.raises(CheckpointError, match="'GPT2ForSequenceClassification' is not the causal LM"):
        load_model(f"hf:{folder}", device="cpu")


def test_a_pickle_only_checkpoint_is_refused_without_unpickling_it(gpt2_dir, tmp_path):
    folder, marker = _copy(gpt2_dir, tmp_path / "m"), tmp_path / "UNPICKLED"
    (folder / "model.safetensors").unlink()

    class Trap:  # unpickling calls open(marker, "w"), which creates the marker
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Trap()))
    refusal = r"pickled \(pytorch_model.bin\) and were not opened: only safetensors"
    with pytest.raises(CheckpointError, match=refusal) as exc:
        load_model(f"hf:{folder}", device="cpu")
    _one_line(exc)
    assert not marker.exists()


def test_no_weights_at_all_is_one_line(gpt2_dir, tmp_path):
    folder = _copy(gpt2_dir, tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights in .*expected model.safetensors"):
        load_model(f"hf:{folder}", device="cpu")


@pytest.mark.parametrize("keep", [0.5, 0.001])
def test_a_truncated_safetensors_file_is_one_line(keep, gpt2_dir, tmp_path):
    folder = _copy(gpt2_dir, tmp_path / "m")
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    with pytest.raises(CheckpointError, match="model.safetensors is not a complete safetensors file") as exc:
        load_model(f"hf:{folder}", device="cpu")
    _one_line(exc)


def test_a_shard_index_naming_a_missing_or_outside_shard_is_refused(gpt2_dir, tmp_path):
    folder = _copy(gpt2_dir, tmp_path / "m")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    index = folder / "model.safetensors.index.json"
    shards = {"wte": "model-00001-of-00002.safetensors", "x": "model-00002-of-00002.safetensors"}
    index.write_text(json.dumps({"weight_map": shards}))
    with pytest.raises(CheckpointError, match="names a shard that is not there: model-00002-of-00002"):
        load_model(f"hf:{folder}", device="cpu")
    index.write_text(json.dumps({"weight_map": {"x": "../elsewhere.safetensors"}}))
    with pytest.raises(CheckpointError, match="names a shard outside the folder"):
        load_model(f"hf:{folder}", device="cpu")
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"\xff" * 8 + b"{}")  # header length 2^64-1
    index.write_text(json.dumps({"weight_map": shards}))
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors is not a complete"):
        load_model(f"hf:{folder}", device="cpu")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"n_layer": 3}, "describes .* parameters but the safetensors files hold"),
        ({"n_embd": 1 << 20, "n_head": 1}, "describes .* parameters but the safetensors files hold"),
        ({"n_layer": 1}, "1[0-9] unexpected keys"),
        ({"n_positions": 10**9}, "describes 32,000,0[0-9,]+ parameters but the safetensors files hold"),
        ({"n_embd": "wide"}, "config.json does not describe a model .*n_embd"),
    ],
)
def test_a_config_that_does_not_fit_the_weights_is_refused(changes, match, gpt2_dir, tmp_path):
    """Never a model half made of random weights, and nothing allocated from the config's sizes."""
    folder = _copy(gpt2_dir, tmp_path / "m")
    _edit_json(folder / "config.json", **changes)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=match) as exc:
        load_model(f"hf:{folder}", device="cpu")
    _one_line(exc)
    assert time.perf_counter() - t0 < 5


def test_tl_without_the_hub_says_so_at_once(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    t0 = time.perf_counter()
    with pytest.raises(SpecError, match="hub is unreachable .*hf:PATH loads a local directory") as exc:
        load_model("tl:roneneldan/TinyStories-1M", device="cpu")
    _one_line(exc)
    assert time.perf_counter() - t0 < 3
    with pytest.raises(SpecError, match="'gpt-3' is not a TransformerLens pretrained model name"):
        load_model("tl:gpt-3", device="cpu")


# Tiny configs of every family in CAUSAL_LM_FAMILIES: the list of supported families is what is tested.
_COMMON = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    vocab_size=64,
    max_position_embeddings=64,
)
FAMILY_CONFIGS = {
    "gpt2": ("GPT2Config", dict(n_layer=2, n_embd=32, n_head=4, vocab_size=64, n_positions=64)),
    "gpt_neox": ("GPTNeoXConfig", _COMMON),
    "llama": ("LlamaConfig", {**_COMMON, "num_key_value_heads": 2}),
    "mistral": ("MistralConfig", {**_COMMON, "num_key_value_heads": 2}),
    "qwen2": ("Qwen2Config", {**_COMMON, "num_key_value_heads": 2}),
    "qwen3": ("Qwen3Config", {**_COMMON, "num_key_value_heads": 2, "head_dim": 8}),
    "gemma": ("GemmaConfig", {**_COMMON, "num_key_value_heads": 2, "head_dim": 8}),
    "gemma2": ("Gemma2Config", {**_COMMON, "num_key_value_heads": 2, "head_dim": 8}),
    "phi3": ("Phi3Config", {**_COMMON, "num_key_value_heads": 2, "pad_token_id": 0}),
    "olmo2": ("Olmo2Config", {**_COMMON, "num_key_value_heads": 2}),
    "stablelm": ("StableLmConfig", {**_COMMON, "num_key_value_heads": 2}),
}


def test_every_supported_family_is_tested():
    assert set(FAMILY_CONFIGS) == set(CAUSAL_LM_FAMILIES)


@pytest.mark.parametrize("model_type", sorted(FAMILY_CONFIGS))
def test_each_supported_family_loads_and_matches_transformers(model_type, gpt2_dir, tmp_path):
    import transformers

    config_cls, kwargs = FAMILY_CONFIGS[model_type]
    torch.manual_seed(0)
    causal_lm = getattr(transformers, CAUSAL_LM_FAMILIES[model_type][1])
    causal_lm(getattr(transformers, config_cls)(**kwargs)).eval().save_pretrained(str(tmp_path))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(gpt2_dir / f, tmp_path)
    m = load_model(f"hf:{tmp_path}", device="cpu")
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    ids = torch.tensor([[2, 17, 40, 9, 5, 63]])
    with torch.no_grad():
        torch.testing.assert_close(m(ids), ref(ids).logits, atol=1e-5, rtol=1e-5)
    assert "blocks.1.hook_resid_post" in m.hook_points


@pytest.mark.parametrize("device", ["bogus", "cuda:99"])
def test_an_unusable_device_is_one_line_naming_the_usable_ones(gpt2_dir, device):
    from interp.errors import SpecError
    from interp.models import load_model

    with pytest.raises(SpecError, match=rf"device '{device}' is not usable here.*usable: cpu"):
        load_model(f"hf:{gpt2_dir}", device=device)


# --- Model.forward with an attention mask (left padding) -------------------------------------

MASK_PROMPTS = [[2, 5, 7], [3, 9, 11, 20, 4], [6], [10, 30, 2, 8]]


def rotary_hooked():
    from tiny_hooked import tiny_hooked

    return tiny_hooked(64, kind="rotary", seed=1)


def left_padded(prompts, pad):
    width = max(map(len, prompts))
    tokens = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return tokens, mask


@pytest.mark.parametrize("backend", ["gpt2", "llama", "qwen2", "hooked", "rotary_hooked"])
def test_a_masked_left_padded_batch_gives_each_rows_own_logits(request, backend):
    module = rotary_hooked() if backend == "rotary_hooked" else request.getfixturevalue(backend)
    model = as_model(module)
    for pad in (0, 1, 63):  # the pad's value never matters
        tokens, mask = left_padded(MASK_PROMPTS, pad)
        with torch.no_grad():
            batch = model(tokens, attention_mask=mask)
            unmasked = model(tokens)
            bool_mask = model(tokens, attention_mask=mask.bool())
        for i, p in enumerate(MASK_PROMPTS):
            with torch.no_grad():
                alone = model(torch.tensor([p]))[0]
            torch.testing.assert_close(batch[i, -len(p) :], alone, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(bool_mask[i, -len(p) :], alone, atol=1e-4, rtol=1e-4)
        # without the mask the padded rows are wrong: the mask is what makes them right
        short = MASK_PROMPTS[2]
        with torch.no_grad():
            alone = model(torch.tensor([short]))[0]
        assert (unmasked[2, -1] - alone[-1]).abs().max() > 1e-3


@pytest.mark.parametrize(
    "mask, match",
    [
        (torch.ones(2, 4, dtype=torch.int), r"shape \(2, 4\); expected the shape of the tokens, \(2, 3\)"),
        (torch.tensor([[1, 1, 2], [1, 1, 1]]), "holds 2; expected 1 for a real token and 0 for padding"),
        (torch.tensor([[1.0, 0.5, 1.0], [1, 1, 1]]), "holds 0.5; expected 1"),
        (torch.tensor([[1, 1, 1], [0, 0, 0]]), "row 1 has no real token; expected at least one 1"),
    ],
)
def test_a_bad_attention_mask_is_one_line_before_the_model_runs(gpt2, hooked, mask, match):
    from interp.generation import GenerationError

    tokens = torch.tensor([[2, 3, 4], [5, 6, 7]])
    calls: list[int] = []
    for model in (gpt2, as_model(hooked)):
        handle = model.module.embed.register_forward_pre_hook(lambda m, a: calls.append(1))
        try:
            with pytest.raises(GenerationError, match=f"attention_mask.*{match}") as info:
                model(tokens, attention_mask=mask)
        finally:
            handle.remove()
        assert isinstance(info.value, InterpError) and "\n" not in str(info.value)
    assert calls == []


def test_manifests_name_a_checkpoint_by_its_own_identity_not_its_folder(tmp_path):
    import json as _json

    from interp.models import portable_spec

    plain = tmp_path / "hf"
    plain.mkdir()
    assert portable_spec(f"hf:{plain}") == "hf:hf"
    tune = tmp_path / "step-00015"
    tune.mkdir()
    (tune / "finetune_card.json").write_text(_json.dumps({"name": "SmolLM2+sft-answer@15"}))
    assert portable_spec(f"hf:{tune}/") == "hf:SmolLM2+sft-answer@15"
    converted = tmp_path / "SmolLM2-135M-Instruct.Q4_1-b179c9523d0e"
    converted.mkdir()
    (converted / "interp_source.json").write_text(_json.dumps({"gguf": "SmolLM2-135M-Instruct.Q4_1.gguf"}))
    assert portable_spec(f"hf:{converted}") == "hf:SmolLM2-135M-Instruct.Q4_1"
    (tune / "finetune_card.json").write_text(_json.dumps({"name": "x" * 500}))  # not trusted
    assert portable_spec(f"hf:{tune}") == "hf:step-00015"
