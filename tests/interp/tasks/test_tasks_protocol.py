"""interp.tasks.protocol: examples and tasks validate their fields; splits, subsets, scoring."""

import pytest

from interp.errors import InterpError
from interp.tasks.protocol import (
    CueAnswer,
    Example,
    LineSteps,
    Task,
    TaskError,
    answers_match,
    check_messages,
    normalise_answer,
)


def _task(examples=None, **kw):
    examples = examples or [
        Example("a", "1 + 1?", "2", ("1 + 1 = 2",)), Example("b", "2 + 2?", "4", split="train")
    ]
    return Task("t", examples, "Answer:", CueAnswer("Answer:"), LineSteps("Answer:"), **kw)


def test_example_normalises_lists_and_messages():
    ex = Example("q", [{"role": "user", "content": "Hi"}], "yes", ["s1", "s2"])
    assert ex.prompt == ({"role": "user", "content": "Hi"},) and ex.steps == ("s1", "s2")
    assert ex.is_chat and not Example("p", "text", "x").is_chat
    assert hash(ex) == hash(Example("q", "other", "yes", ()))  # hashable despite meta being a dict


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"id": ""}, r"example id ''; expected a non-empty string"),
        ({"prompt": "  "}, r"example 'q': empty prompt"),
        ({"prompt": []}, r"expected a non-empty list of \{'role', 'content'\} messages"),
        ({"prompt": [{"role": "robot", "content": "x"}]}, r"message 0 has role 'robot'; expected one of"),
        ({"prompt": [{"role": "user"}]}, r"message 0 is .*expected \{'role': \.\.\., 'content'"),
        ({"answer": " "}, r"answer ' '; expected a non-empty string"),
        ({"steps": "7 + 5 = 12"}, r"steps '7 \+ 5 = 12'; expected a list of strings"),
        ({"steps": ["ok", ""]}, r"step 1 is ''; expected non-empty text"),
        ({"split": "held out"}, r"split 'held out'; expected a word"),
    ],
)
def test_example_refuses_bad_fields_in_one_line(kwargs, match):
    fields = {"id": "q", "prompt": "What?", "answer": "x", **kwargs}
    with pytest.raises(TaskError, match=match) as info:
        Example(**fields)
    assert isinstance(info.value, InterpError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_check_messages_rejects_a_bare_string_and_keeps_extra_fields():
    # field types the test-time type checker would catch in Example's constructor
    with pytest.raises(TaskError, match="expected a non-empty list"):
        check_messages("hello")
    with pytest.raises(TaskError, match=r"message 0 has non-string field 'name'"):
        check_messages([{"role": "user", "content": "x", "name": 3}])
    assert check_messages([{"role": "system", "content": "", "name": "x"}]) == (
        {"role": "system", "content": "", "name": "x"},
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, r"task name ''"),
        ({"examples": []}, r"task 't' has no examples"),
        ({"examples": [Example("a", "q", "1"), Example("a", "r", "2")]}, r"example id 'a' occurs twice"),
        ({"answer_cue": " "}, r"answer_cue=' '; expected non-empty text"),
        ({"stop": ""}, r"stop=''; expected None or non-empty text"),
    ],
)
def test_task_refuses_bad_fields(kwargs, match):
    fields = {
        "name": "t", "examples": [Example("a", "q", "1")], "answer_cue": "Answer:",
        "extract_answer": CueAnswer("Answer:"), "split_steps": LineSteps("Answer:"), **kwargs,
    }
    with pytest.raises(TaskError, match=match):
        Task(**fields)


def test_split_keeps_one_split_and_names_the_others_when_empty():
    t = _task()
    assert t.splits == ("test", "train")
    assert [ex.id for ex in t.split("train")] == ["b"]
    assert t.split("train").meta["split"] == "train"
    expected = r"no examples in split 'heldout'; its splits are \['test', 'train'\]"
    with pytest.raises(TaskError, match=expected):
        t.split("heldout")


def test_subset_is_seeded_and_keeps_order():
    t = _task([Example(f"e{i}", "q", str(i)) for i in range(20)])
    a, b, c = t.subset(5, seed=1), t.subset(5, seed=1), t.subset(5, seed=2)
    assert [e.id for e in a] == [e.id for e in b] != [e.id for e in c]
    ids = [e.id for e in a]
    assert ids == sorted(ids, key=lambda s: int(s[1:])) and len(ids) == 5
    assert t.subset(50) is t
    for bad in (0, -1, True):  # a float is refused by the type annotation
        with pytest.raises(TaskError, match=r"subset n=.*expected a positive integer"):
            t.subset(bad)


def test_accuracy_reads_and_scores_each_response():
    t = _task()
    assert t.accuracy(["1 + 1 = 2\nAnswer: 2", "Answer: 5"]) == 0.5
    assert t.accuracy(["Answer: **2**.", " 4"]) == 1.0
    with pytest.raises(TaskError, match=r"got 1 responses; expected one per example \(2\)"):
        t.accuracy(["Answer: 2"])
    with pytest.raises(TaskError, match=r"got a string"):
        t.accuracy("Answer: 2")


def test_solution_and_compose():
    t = _task()
    assert t.solution(t.examples[0]) == "1 + 1 = 2\nAnswer: 2"
    assert t.compose(["a", "b"]) == "a\nb\nAnswer:"
    assert t.compose(["a"], cue=False) == "a"
    with pytest.raises(TaskError, match=r"task 't' has no self-check solution format"):
        t.solution(t.examples[0], with_checks=True)
    custom = _task(solution_writer=lambda ex, checks: f"{ex.answer}{'!' if checks else ''}")
    assert custom.solution(custom.examples[0], with_checks=True) == "2!"


def test_normalised_matching_and_aliases():
    assert normalise_answer("  Bogotá. ") == normalise_answer("bogota") == "bogota"
    assert normalise_answer("**Paris**") == "paris"
    ex = Example("c", "q", "Kyiv", meta={"aliases": ["Kiev"]})
    assert answers_match(ex, "kiev.") and answers_match(ex, "KYIV")
    assert not answers_match(ex, "Lviv") and not answers_match(ex, None) and not answers_match(ex, "...")


def test_cue_extraction_and_line_steps():
    f = CueAnswer("Answer:")
    assert f("x\nAnswer: Paris\nmore") == "Paris"
    assert f("Answer:") is None and f("") is None
    assert f("Answer: a\nAnswer: b") == "b", "the last cue wins"
    s = LineSteps("Answer:")
    assert s("one\n two \n\nAnswer: 3") == ["one", "two"]
    assert s("Tom has 7. He buys 5, so 12. Answer: 12") == ["Tom has 7.", "He buys 5, so 12."]
    assert s("Answer: 3") == []


def test_describe_hashes_the_examples():
    a, b = _task().describe(), _task().describe()
    assert a == b and a["splits"] == {"test": 1, "train": 1} and a["n_examples"] == 2
    other = _task([Example("a", "1 + 1?", "3"), Example("b", "2 + 2?", "4", split="train")]).describe()
    assert other["sha256"] != a["sha256"]
