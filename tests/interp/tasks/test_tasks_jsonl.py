"""interp.tasks.jsonl: a user's task file; every bad line is refused naming the file and the line."""

import json
import logging

import pytest

from interp.errors import InterpError
from interp.tasks.jsonl import load_jsonl_task
from interp.tasks.protocol import TaskError


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_a_good_file(tmp_path):
    path = _write(tmp_path / "mine.jsonl", [
        {"prompt": "What is 2 + 3?", "answer": "5", "steps": ["2 + 3 = 5"], "split": "train"},
        "",
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Capital of Peru?"}],
         "answer": "Lima", "id": "peru", "meta": {"aliases": ["Lima, Peru"]}},
    ])
    t = load_jsonl_task(path)
    assert t.name == "mine" and [ex.id for ex in t] == ["mine-1", "peru"]
    first, second = t.examples
    assert first.prompt == "What is 2 + 3?" and first.steps == ("2 + 3 = 5",) and first.split == "train"
    assert second.is_chat and second.prompt[1] == {"role": "user", "content": "Capital of Peru?"}
    assert second.split == "test" and t.splits == ("train", "test")
    assert t.accuracy(["2 + 3 = 5\nAnswer: 5", "Answer: Lima, Peru"]) == 1.0
    assert t.meta["source"]["name"] == "mine.jsonl" and t.meta["source"]["sha256"].startswith("sha256:")
    assert load_jsonl_task(path, name="x", answer_cue="=>").answer_cue == "=>"


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("{oops", r"bad\.jsonl:2: not valid JSON"),
        ('["a list"]', r"bad\.jsonl:2: expected a JSON object, got list"),
        ({"answer": "1"}, r"bad\.jsonl:2: expected exactly one of 'prompt' \(text\) or 'messages'.*neither"),
        ({"prompt": "q", "messages": [], "answer": "1"}, r"bad\.jsonl:2: .*got both"),
        ({"prompt": ["q"], "answer": "1"}, r"bad\.jsonl:2: 'prompt' is list; expected text"),
        ({"prompt": "q"}, r"bad\.jsonl:2: 'answer' is missing; expected text"),
        ({"prompt": "q", "answer": 42},
         r"bad\.jsonl:2: 'answer' is int 42; expected text \(write numbers as \"42\"\)"),
        ({"prompt": "q", "answer": "1", "steps": "1 = 1"}, r"bad\.jsonl:2: 'steps' must be a list of texts"),
        ({"messages": [{"role": "bot", "content": "x"}], "answer": "1"}, r"bad\.jsonl:2: .*role 'bot'"),
        ({"messages": "hi", "answer": "1"}, r"bad\.jsonl:2: .*expected a non-empty list"),
        ({"prompt": "q", "answer": "1", "split": 3}, r"bad\.jsonl:2: 'split' is int; expected str"),
        ({"prompt": "q", "answer": "1", "id": "a"}, r"bad\.jsonl:2: id 'a' already used on line 1"),
        ({"prompt": " ", "answer": "1"}, r"bad\.jsonl:2: example 'bad-2': empty prompt"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path, line, match):
    path = _write(tmp_path / "bad.jsonl", [{"prompt": "fine", "answer": "1", "id": "a"}, line])
    with pytest.raises(TaskError, match=match) as info:
        load_jsonl_task(path)
    assert isinstance(info.value, InterpError) and "\n" not in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(TaskError, match=r"task file '.*nope\.jsonl' does not exist"):
        load_jsonl_task(tmp_path / "nope.jsonl")
    with pytest.raises(TaskError, match=r"is a directory"):
        load_jsonl_task(tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(TaskError, match=r"has no examples"):
        load_jsonl_task(empty)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"prompt": "ok", "answer": "1"}\n{"prompt": "caf\xe9", "answer": "1"}\n')
    with pytest.raises(TaskError, match=r"latin\.jsonl:2: not valid UTF-8"):
        load_jsonl_task(latin)


def test_unknown_keys_are_warned_about_not_dropped_silently(tmp_path, caplog):
    path = _write(tmp_path / "extra.jsonl", [{"prompt": "q", "answer": "1", "solution": "x"}])
    with caplog.at_level(logging.WARNING, logger="interp.tasks.jsonl"):
        load_jsonl_task(path)
    assert "extra.jsonl:1: ignoring unknown keys ['solution']" in caplog.text
