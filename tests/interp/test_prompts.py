"""interp.prompts: every accepted prompt source, and clear errors for the rest."""

import hashlib
import json

import pytest
import torch

from interp.errors import SpecError
from interp.fingerprint import hash_token_rows
from interp.prompts import PromptSource, resolve_prompts


def test_text_file_one_prompt_per_line_blank_lines_skipped(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"w1 w2\n\n   \nw3\r\nw4 w5")
    src = resolve_prompts(path)
    assert list(src.texts()) == ["w1 w2", "w3", "w4 w5"]
    assert list(src.texts()) == ["w1 w2", "w3", "w4 w5"], "restartable"
    assert src.tokens is None
    assert src.description == {
        "kind": "file", "name": "p.txt", "sha256": "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    assert resolve_prompts(str(path)).description == src.description


def test_jsonl_text_prompt_and_custom_fields(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(o) for o in [{"text": "w1"}, {"prompt": "w2", "q": "w9"}]) + "\n\n")
    assert list(resolve_prompts(path).texts()) == ["w1", "w2"]
    custom = tmp_path / "q.jsonl"
    custom.write_text(json.dumps({"q": "w7", "text": "ignored"}) + "\n")
    src = resolve_prompts(custom, field="q")
    assert list(src.texts()) == ["w7"]
    assert src.description["field"] == "q"


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "w1"}\n{oops\n')
    with pytest.raises(SpecError, match=r"bad\.jsonl:2: not valid JSON"):
        list(resolve_prompts(path).texts())
    path.write_text('{"text": "w1"}\n{"other": "w2"}\n')
    expected = r"bad\.jsonl:2: expected an object with a string field 'text' or 'prompt'"
    with pytest.raises(SpecError, match=expected):
        list(resolve_prompts(path).texts())
    path.write_text('{"text": 3}\n')
    with pytest.raises(SpecError, match=":1:"):
        list(resolve_prompts(path).texts())


def test_strings_token_lists_and_tensors():
    s = resolve_prompts(["w1 w2", "w3"])
    assert list(s.texts()) == ["w1 w2", "w3"]
    assert s.description["kind"] == "strings" and s.description["count"] == 2
    t = resolve_prompts([[1, 2, 3], (4, 5)])
    assert list(t.tokens()) == [[1, 2, 3], [4, 5]]
    assert t.description == {"kind": "tokens", "count": 2, "sha256": hash_token_rows([[1, 2, 3], [4, 5]])}
    x = resolve_prompts(torch.tensor([[1, 2], [3, 4]]))
    assert list(x.tokens()) == [[1, 2], [3, 4]] and list(x.tokens()) == [[1, 2], [3, 4]]
    assert x.description == resolve_prompts([[1, 2], [3, 4]]).description
    src = PromptSource({"kind": "custom"}, texts=lambda: iter(["w1"]))
    assert resolve_prompts(src) is src


def test_in_memory_sources_are_described_by_content():
    """Same count, other content: the description differs (it decides reuse of a finished cache)."""
    assert resolve_prompts(["w1", "w2"]).description != resolve_prompts(["w1", "w3"]).description
    assert resolve_prompts(["w1 w2"]).description != resolve_prompts(["w1", "w2"]).description
    assert resolve_prompts([[1, 2]]).description != resolve_prompts([[1], [2]]).description
    assert resolve_prompts(["w1", "w2"]).description == resolve_prompts(("w1", "w2")).description


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.tensor([[1.0, 2.0]]), "integer"),
        (torch.tensor([1, 2]), r"\[batch, pos\]"),
        (12, "unsupported prompts of type int"),
        ([1, "w1"], "unsupported"),
        ("missing.txt", "does not exist"),
    ],
)
def test_bad_sources_raise_spec_error(bad, match):
    with pytest.raises(SpecError, match=match):
        resolve_prompts(bad)


def test_missing_cache_dir_source(tmp_path):
    from interp.errors import CacheError

    with pytest.raises(CacheError, match="does not exist"):
        resolve_prompts(f"cache:{tmp_path / 'none'}")


def test_cache_source_yields_the_cached_rows(built_cache, gpt2, prompts):
    src = resolve_prompts(f"cache:{built_cache.root}")
    assert src.texts is None
    assert list(src.tokens()) == [gpt2.encode(p) for p in prompts]
    assert src.description == {"kind": "cache", "cache_id": built_cache.id, "count": len(prompts)}


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_non_utf8_names_the_file_and_the_line(tmp_path, suffix):
    path = tmp_path / f"latin{suffix}"
    good = b'{"text": "w1"}' if suffix == ".jsonl" else b"w1 w2"
    path.write_bytes(good + b"\n" + good + b"\n" + b'{"text": "caf\xe9"}\n')
    with pytest.raises(SpecError, match=rf"latin\{suffix}:3: not valid UTF-8 \(byte 0xe9 at offset \d+"):
        list(resolve_prompts(path).texts())


def test_lines_split_as_text_mode_splits_them(tmp_path):
    """Reading bytes (to name a bad line) must not change which prompts a file gives."""
    path = tmp_path / "p.txt"
    raw = b"w1 w2\r\nw3\rw4\n\nw5\x0cw6\xc2\x85w7\n  \nw8"
    path.write_bytes(raw)
    with open(path, encoding="utf-8") as f:
        expected = [line.rstrip("\n") for line in f if line.strip()]
    assert list(resolve_prompts(path).texts()) == expected == ["w1 w2", "w3", "w4", "w5\x0cw6\x85w7", "w8"]


def test_cache_source_refuses_a_cache_with_other_rows(built_cache, tmp_path):
    """The rows a ``cache:DIR`` source yields are checked against the manifest first."""
    import shutil

    from interp.errors import CacheError

    root = shutil.copytree(built_cache.root, tmp_path / "c")
    entry = built_cache.manifest["shards"][0]
    shard = tmp_path / "c" / entry["file"]
    from interp.cache.format import read_header

    infos, base = read_header(shard)
    data = bytearray(shard.read_bytes())
    at = base + infos["row_tokens"]["data_offsets"][0]
    data[at] ^= 0x01  # the first token of the first row: same size, same layout
    shard.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="holds other token rows"):
        resolve_prompts(f"cache:{root}")


def test_a_cache_spec_without_a_directory_and_a_directory_as_a_file(tmp_path):
    with pytest.raises(SpecError, match="'cache:' names no directory"):
        resolve_prompts("cache:")
    with pytest.raises(SpecError, match="is a directory; expected a .txt or .jsonl file"):
        resolve_prompts(str(tmp_path))


# --- chat messages in JSONL prompt files (issue 11) ----------------------------------------------

CHAT = [{"role": "user", "content": "w1 w2"}]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }} "
    "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
)


@pytest.fixture(scope="module")
def chat_llama(tmp_path_factory, make_bpe_tokenizer, make_prompts):
    """A tiny Llama whose BPE tokenizer (BOS ``<s>`` by default) carries a small chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from interp.models import load_model

    corpus = make_prompts(50) + ["[user] [assistant] [system] w1 w2"]
    tok = make_bpe_tokenizer("llama", corpus, 120)
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=128,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id,
    )
    path = tmp_path_factory.mktemp("chat_llama_prompts")
    LlamaForCausalLM(cfg).eval().save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return load_model(f"hf:{path}", device="cpu")


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_messages_lines_are_chat_prompts(tmp_path):
    path = _jsonl(tmp_path / "chat.jsonl", [{"text": "w1"}, {"messages": CHAT}])
    src = resolve_prompts(path)
    assert list(src.prompts()) == ["w1", tuple(CHAT)]
    assert src.description["kind"] == "file" and src.description["field"] is None
    with pytest.raises(SpecError, match=r"chat\.jsonl:2: holds chat messages, and this use needs plain text"):
        list(src.texts())
    only_text = resolve_prompts(_jsonl(tmp_path / "t.jsonl", [{"text": "w1"}]))
    assert list(only_text.texts()) == list(only_text.prompts()) == ["w1"]


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"messages": [{"role": "bot", "content": "x"}]}, r"m\.jsonl:1: message 0 has role 'bot'"),
        ({"messages": "w1 w2"}, r"m\.jsonl:1: 'messages' is str; expected a list"),
        ({"messages": []}, r"m\.jsonl:1: expected a non-empty list"),
        ({"other": 1}, r"m\.jsonl:1: expected an object with a string field 'text' or 'prompt', or a 'mess"),
    ],
)
def test_bad_messages_lines_name_the_file_and_line(tmp_path, row, match):
    path = _jsonl(tmp_path / "m.jsonl", [row])
    with pytest.raises(SpecError, match=match):
        list(resolve_prompts(path).prompts())


def test_in_memory_chat_prompts():
    src = resolve_prompts(["w1", CHAT])
    assert src.description["kind"] == "prompts" and list(src.prompts()) == ["w1", tuple(CHAT)]
    assert src.description != resolve_prompts(["w1", [{"role": "user", "content": "w3"}]]).description
    with pytest.raises(SpecError, match=r"prompt 1: message 0 has role 'bot'"):
        resolve_prompts(["w1", [{"role": "bot", "content": "x"}]])


def test_a_cache_of_chat_prompts_holds_the_rendered_ids_with_one_bos(chat_llama, tmp_path):
    from interp.cache import CacheConfig, build_cache
    from interp.tasks.render import render_prompt

    answered = [*CHAT, {"role": "assistant", "content": "w3"}]
    path = _jsonl(tmp_path / "chat.jsonl", [{"messages": CHAT}, {"text": "w1 w2"}, {"messages": answered}])
    cfg = CacheConfig(hooks=("blocks.0.hook_resid_post",), batch_size=4, seed=0)
    cache = build_cache(chat_llama, path, tmp_path / "cache", cfg, progress=False)
    rows = list(cache.iter_row_tokens())
    hf = chat_llama.tokenizer.tok
    rendered = hf.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith("<s>[user] w1 w2</s>") and rendered.endswith("[assistant] ")
    bos = hf.bos_token_id
    assert rows[0] == hf(rendered, add_special_tokens=False)["input_ids"] == render_prompt(chat_llama, CHAT)
    assert rows[1] == chat_llama.encode("w1 w2") and rows[1][0] == bos
    closed = hf.apply_chat_template(answered, tokenize=False, add_generation_prompt=False)
    assert rows[2] == hf(closed, add_special_tokens=False)["input_ids"], "no header after an assistant turn"
    assert all(r.count(bos) == 1 and r[0] == bos for r in rows)


def test_chat_prompts_for_a_model_without_a_template_leave_nothing(gpt2, tmp_path):
    from interp.cache import CacheConfig, build_cache

    path = _jsonl(tmp_path / "chat.jsonl", [{"messages": CHAT}])
    cfg = CacheConfig(hooks=("blocks.0.hook_resid_post",), batch_size=4, seed=0)
    with pytest.raises(SpecError, match=r"has no chat template, so it cannot render chat messages"):
        build_cache(gpt2, path, tmp_path / "cache", cfg, progress=False)
    assert not (tmp_path / "cache").exists()
