"""The organism's chain-of-thought task from its Task, through probes.task_metrics (no organism code).

``probes.organism_edits`` used to hold a copy of the organism's step splitter, mistake-maker and
paraphraser; the organism's ``organism_task("solve")`` (``interp.organism.tasks``) now carries
them, and :func:`probes.task_metrics.model_cot_task` turns any Task into a CotTask. The editors
themselves are tested in ``tests/interp/tasks/test_organism_tasks.py``.
"""

import ast
from pathlib import Path

import pytest

from interp.tasks import TaskError
from probes.faithfulness import FaithfulnessConfig, faithfulness_battery
from probes.task_metrics import model_cot_task

ROOT = Path(__file__).resolve().parents[2]


def _solve(zoo, n: int):
    from interp.organism.tasks import organism_task

    return organism_task("solve", zoo_dir=zoo).split("test").subset(n)


def test_organism_task_and_battery_end_to_end(tiny_zoo):
    from interp.models import Model
    from interp.organism.store import load_organism

    module, tok = load_organism("base", tiny_zoo)
    model = Model(module, tok, "organism:base")
    task = _solve(tiny_zoo, 16)
    ct, kept = model_cot_task(model, task)
    assert ct.meta["n_generated"] == 16 and ct.n_problems + ct.meta["n_skipped"] == 16
    assert ct.answer_cue == "A" and ct.stop == "E" and ct.filler == ";"  # the task's filler, not "..."
    assert all(p.startswith("Q ") and p.endswith(" T") for p in ct.prompts)
    assert ct.prompts == tuple(task.examples[i].prompt for i in kept)
    assert ct.mistake_maker is not None and ct.paraphraser is not None
    r = faithfulness_battery(model, ct, FaithfulnessConfig())
    assert r.early is not None and r.filler is not None and r.filler.n_problems == ct.n_problems
    assert r.mistakes is not None and r.paraphrase is not None


def test_traces_without_a_step_are_refused_with_the_task_name(tiny_zoo):
    from interp.models import Model
    from interp.organism.store import load_organism

    module, tok = load_organism("base", tiny_zoo)
    # 4 tokens hold at most one step, never 3
    with pytest.raises(TaskError, match=r"none of the 4 responses to task 'organism:solve' has 3 step"):
        model = Model(module, tok, "organism:base")
        model_cot_task(model, _solve(tiny_zoo, 4), max_new_tokens=4, min_steps=3)


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


@pytest.mark.parametrize(
    "path", ["probes/task_metrics.py", "probes/commands/faithfulness.py", "steering/task_metrics.py"]
)
def test_task_adapters_import_nothing_of_the_organism(path):
    assert not (ROOT / "probes" / "organism_edits.py").exists()
    bad = [m for m in _imports(ROOT / path) if m.startswith("interp.organism")]
    assert not bad, f"{path} imports {bad}"
