"""interp.tasks.resolve: every accepted --task form, and one-line refusals for the rest."""

import json
import sys

import pytest

from interp.organism.world import WorldConfig, make_world
from interp.tasks.protocol import Example, Task, TaskError
from interp.tasks.resolve import resolve_task

USER_MODULE = '''
from interp.tasks.protocol import CueAnswer, Example, LineSteps, Task

CALLS = []

def make(model=None, n=2):
    CALLS.append(model)
    examples = [Example(f"u{i}", f"question {i}", str(i)) for i in range(n)]
    return Task("user", examples, "Answer:", CueAnswer("Answer:"), LineSteps("Answer:"))

def plain(n=1):
    return make(None, n)

def not_a_task():
    return 42
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    name = f"user_tasks_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_built_in_names_take_their_options():
    assert resolve_task("arithmetic", n=3).describe()["splits"] == {"train": 3, "test": 3, "ood": 3}
    facts = resolve_task("facts", n=5, seed=1)
    assert facts.name == "facts" and len(facts) == 5
    with pytest.raises(TaskError, match=r"task 'arithmetic' takes no option 'size'; it takes \['n', 'seed'"):
        resolve_task("arithmetic", size=3)
    with pytest.raises(TaskError, match=r"known=True needs the model"):
        resolve_task("facts", known=True)


def test_a_task_is_returned_as_is_and_refuses_options():
    t = Task("t", [Example("a", "q", "1")], "A:", lambda s: s, lambda s: [])
    assert resolve_task(t) is t
    with pytest.raises(TaskError, match=r"already built; options \['n'\] do not apply"):
        resolve_task(t, n=2)


def test_a_jsonl_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"prompt": "2 + 2?", "answer": "4"}) + "\n")
    assert resolve_task(str(path)).name == "mine" and resolve_task(path, name="x").name == "x"
    with pytest.raises(TaskError, match=r"task file '.*missing\.jsonl' does not exist"):
        resolve_task(str(tmp_path / "missing.jsonl"))
    other = tmp_path / "tasks.csv"
    other.write_text("q,a\n")
    with pytest.raises(TaskError, match=r"task file '.*tasks\.csv' is not a \.jsonl file"):
        resolve_task(str(other))


def test_module_function_is_imported_only_when_named_and_gets_the_model(user_module):
    assert user_module not in sys.modules
    t = resolve_task(f"{user_module}:make", model="the model", n=3)
    assert t.name == "user" and len(t) == 3
    assert sys.modules[user_module].CALLS == ["the model"]
    assert len(resolve_task(f"{user_module}:plain", model="ignored")) == 1
    with pytest.raises(TaskError, match=r"returned int, not an interp\.tasks\.Task"):
        resolve_task(f"{user_module}:not_a_task")
    with pytest.raises(TaskError, match=rf"module '{user_module}' has no function 'nope'"):
        resolve_task(f"{user_module}:nope")
    with pytest.raises(TaskError, match=r"takes no option 'seed'; it takes \['n'\]"):
        resolve_task(f"{user_module}:make", seed=1)


def test_a_module_that_cannot_be_imported_is_one_line():
    expected = r"task 'no_such_module_x:make': cannot import module 'no_such_module_x'"
    with pytest.raises(TaskError, match=expected):
        resolve_task("no_such_module_x:make")


def test_organism_tasks_from_a_zoo_world(tmp_path, monkeypatch):
    import interp.organism.store as store

    world = make_world(WorldConfig(n_nodes=8, max_id_dist=2, max_ood_dist=3, seed=0))
    monkeypatch.setattr(store, "load_world", lambda zoo_dir=None: (world, None))
    solve = resolve_task("organism:solve", zoo_dir=tmp_path)
    assert solve.name == "organism:solve"
    assert set(solve.splits) <= {"train", "rl", "test", "ood", "comp", "start"}
    assert len(resolve_task("organism:fact_recall")) == 8
    assert resolve_task("organism:solve", splits=["test_id"]).splits == ("test",)
    expected = r"unknown organism task 'paths'; expected one of organism:fact_recall"
    with pytest.raises(TaskError, match=expected):
        resolve_task("organism:paths")


def test_organism_tasks_without_a_zoo_say_how_to_build_it(tmp_path):
    from interp.errors import SpecError

    with pytest.raises(SpecError, match=r"no organism zoo at .*interp organism build"):
        resolve_task("organism:solve", zoo_dir=tmp_path / "nozoo")


@pytest.mark.parametrize("spec", ["nonsense", "", "a b:c", "facts.txt"])
def test_unknown_specs_list_the_accepted_forms(spec):
    expected = r"expected 'facts', 'arithmetic', a \.jsonl task file, 'module:function'"
    with pytest.raises(TaskError, match=expected):
        resolve_task(spec)
