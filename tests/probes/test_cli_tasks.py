"""Every ``interp probe`` command takes ``--task`` and runs on an ``hf:`` chat model (issue 11).

The model is a tiny random Llama whose tokenizer (a small BPE, BOS ``<s>``) carries a chat
template that writes the BOS itself: answers are wrong, so these tests check the plumbing (the
chat rendering, the outputs written, the one-line refusals and that nothing is left behind).
"""

import json

import pytest
from cli_run import chat_corpus, cli, flags, refused


@pytest.fixture(scope="module")
def chat_tokenizer(make_chat_tokenizer):
    return make_chat_tokenizer(chat_corpus(), 400)


@pytest.fixture(scope="module")
def chat_llama_dir(make_chat_llama, chat_tokenizer):
    return make_chat_llama(chat_tokenizer, seed=0)


@pytest.fixture(scope="module")
def tuned_llama_dir(make_chat_llama, chat_tokenizer):
    """The same architecture and tokenizer, other weights: a stand-in fine-tune."""
    return make_chat_llama(chat_tokenizer, seed=1, name="chat_llama_tuned")


@pytest.fixture(scope="module")
def chat_llama(chat_llama_dir):
    from interp.models import load_model

    return load_model(f"hf:{chat_llama_dir}", device="cpu")


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    """A user's .jsonl task: chat prompts with gold steps."""
    rows = [
        {
            "messages": [{"role": "user", "content": f"What is {a} + {b}?"}],
            "answer": str(a + b),
            "steps": [f"{a} + {b} = {a + b}"],
        }
        for a, b in ((2, 3), (4, 1), (5, 5), (7, 2))
    ]
    path = tmp_path_factory.mktemp("task") / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- passk ----------------------------------------------------------------------------------------


def test_passk_on_a_chat_model_writes_pass_at_k_with_intervals(chat_llama_dir, task_file, tmp_path, capsys):
    out = tmp_path / "o"
    rc, stdout, err = cli(
        flags("probe", "passk", model=f"hf:{chat_llama_dir}", task=task_file, n=4, k="1,2,4",
              temperature=1.0, top_p=0.9, max_new_tokens=6, out=out, q=True),
        capsys,
    )
    assert rc == 0, err
    data = json.loads((out / "passk.json").read_text())
    assert data["n"] == 4 and data["ks"] == [1, 2, 4] and len(data["correct"]) == 4
    assert set(data["meta"]["intervals"]) == {"1", "2", "4"}
    assert data["meta"]["task"]["name"] == "sums" and data["meta"]["top_p"] == 0.9
    assert (out / "passk.png").is_file() and "95% interval" in stdout


def test_passk_pass_at_k_matches_the_estimator_on_the_sampled_responses(chat_llama, task_file):
    from interp.tasks import resolve_task
    from probes.passk import mean_pass_at_k
    from probes.task_metrics import respond, task_pass_at_k

    task = resolve_task(str(task_file))
    r = task_pass_at_k(chat_llama, task, 3, [1, 3], max_new_tokens=5, seed=1)
    again = respond(chat_llama, task, 5, samples=3, temperature=1.0, seed=1)
    correct = [sum(task.correct(ex, t) for t in ts) for ex, ts in zip(task, again.texts, strict=True)]
    assert list(r.correct) == correct
    assert r.pass_at[1] == pytest.approx(mean_pass_at_k([3] * 4, correct, 1))


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        ({"k": "1,9"}, "--k 9"),
        ({"temperature": "0"}, "--temperature 0.0"),
        ({"top_p": "1.5"}, "--top-p 1.5"),
        ({"n": "0"}, "--n 0"),
        ({"task": "nosuch"}, "invalid choice: 'nosuch'"),
        ({"task": None}, "pass --task"),
    ],
    ids=["k-above-n", "temperature-0", "top-p-above-1", "n-0", "task-unknown", "no-task-on-hf"],
)
def test_passk_refuses_bad_values_in_one_line(extra, expect, chat_llama_dir, task_file, tmp_path, capsys):
    out = tmp_path / "o"
    options = {"model": f"hf:{chat_llama_dir}", "task": task_file, "out": out, "q": True, **extra}
    refused(flags("probe", "passk", **options), capsys, expect, out)


# --- damage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "metric"), [("facts", "logprob"), ("task_file", "accuracy")])
def test_damage_scores_a_task_on_hf_models(
    task, metric, chat_llama_dir, tuned_llama_dir, task_file, tmp_path, capsys
):
    out = tmp_path / "o"
    rc, _, err = cli(
        flags("probe", "damage", base=f"hf:{chat_llama_dir}", tuned=f"hf:{tuned_llama_dir}",
              task=task_file if task == "task_file" else task, max_problems=4, max_new_tokens=4,
              out=out, q=True),
        capsys,
    )
    assert rc == 0, err
    data = json.loads((out / "damage.json").read_text())
    assert f"_{metric}" in json.dumps(data)  # the scorer is named after the task's metric
    assert (out / "damage.png").is_file()


def test_task_scorer_logprob_is_the_mean_gold_logprob(chat_llama):
    from interp.tasks import fact_logprob, facts_task
    from probes.task_metrics import task_scorer

    task = facts_task().subset(3)
    assert task_scorer(task, "logprob")(chat_llama) == pytest.approx(
        float(fact_logprob(chat_llama, task).mean())
    )


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        ({"task": "solve_rate"}, "scores organism models"),
        ({}, "is not organism:NAME (for other models pass --task"),
        ({"task": "facts", "metric": "recall"}, "invalid choice: 'recall'"),
    ],
    ids=["organism-scorer-on-hf", "no-task-on-hf", "metric-unknown"],
)
def test_damage_refuses_in_one_line(extra, expect, chat_llama_dir, tmp_path, capsys):
    out = tmp_path / "o"
    model = f"hf:{chat_llama_dir}"
    refused(flags("probe", "damage", base=model, tuned=model, out=out, q=True, **extra), capsys, expect, out)


# --- info-gain ------------------------------------------------------------------------------------


def test_info_gain_on_a_task_scores_the_models_own_steps(chat_llama_dir, task_file, tmp_path, capsys):
    out = tmp_path / "o"
    model = f"hf:{chat_llama_dir}"
    rc, stdout, err = cli(
        flags("probe", "info-gain", model=model, scorer=model, task=task_file, max_new_tokens=12,
              out=out, q=True),
        capsys,
    )
    assert rc == 0, err
    data = json.loads((out / "info_gain.json").read_text())
    assert data["meta"]["task"]["name"] == "sums" and data["meta"]["answer_marker"] == "Answer:"
    assert (out / "info_gain.png").is_file() and "responses had steps" in stdout


def test_chat_questions_encode_to_the_rendered_prompt_with_one_bos(chat_llama, task_file):
    from interp.tasks import render_prompt, resolve_task
    from probes.task_metrics import info_gain_inputs, text_model

    task = resolve_task(str(task_file))
    questions, traces, answers, kept = info_gain_inputs(
        chat_llama, task, ["2 + 3 = 5\nAnswer: 5"] * len(task)
    )
    view = text_model(chat_llama, task)
    ids = view.encode(questions[0] + task.joiner)
    assert ids == render_prompt(chat_llama, task.examples[0].prompt)
    bos = chat_llama.tokenizer.tok.bos_token_id
    assert ids.count(bos) == 1
    assert view.encode("What is 2?") == chat_llama.encode("What is 2?", add_special_tokens=False)
    assert traces[0] == ["2 + 3 = 5"] and answers == ["5", "5", "10", "9"] and kept == [0, 1, 2, 3]


# --- entropy --------------------------------------------------------------------------------------


def test_entropy_on_a_task_with_a_base_writes_profile_and_shift(
    chat_llama_dir, tuned_llama_dir, tmp_path, capsys
):
    out = tmp_path / "o"
    rc, _, err = cli(
        flags("probe", "entropy", model=f"hf:{tuned_llama_dir}", base=f"hf:{chat_llama_dir}",
              task="arithmetic", n=3, samples=2, max_new_tokens=8, out=out, q=True),
        capsys,
    )
    assert rc == 0, err
    data = json.loads((out / "entropy.json").read_text())
    assert data["meta"]["task"]["name"] == "arithmetic" and data["meta"]["task"]["n_examples"] == 3
    assert set(data["by_type"]) <= {"number", "self-check", "word", "symbol", "space"}
    assert (out / "shift.json").is_file() and (out / "entropy.png").is_file()


@pytest.mark.parametrize(
    ("command", "extra", "expect"),
    [
        ("info-gain", {"scorer": "MODEL"}, "expected organism:NAME"),
        ("entropy", {}, "expected organism:NAME"),
        ("entropy", {"task": "facts", "task_split": "nosuch"}, "no examples in split 'nosuch'"),
        ("faithfulness", {}, "for other models pass --task"),
    ],
    ids=["info-gain-no-task", "entropy-no-task", "entropy-split-unknown", "faithfulness-no-task"],
)
def test_probes_refuse_in_one_line_and_write_nothing(
    command, extra, expect, chat_llama_dir, tmp_path, capsys
):
    out = tmp_path / "o"
    model = f"hf:{chat_llama_dir}"
    extra = {k: model if v == "MODEL" else v for k, v in extra.items()}
    refused(flags("probe", command, model=model, out=out, q=True, **extra), capsys, expect, out)


# --- faithfulness ---------------------------------------------------------------------------------


def test_faithfulness_on_a_task_runs_early_answering_on_the_models_traces(chat_llama_dir, tmp_path, capsys):
    out = tmp_path / "o"
    rc, stdout, err = cli(
        flags("probe", "faithfulness", model=f"hf:{chat_llama_dir}", task="arithmetic", n=3,
              max_new_tokens=12, fractions="0,0.5,1", out=out, q=True),
        capsys,
    )
    assert rc == 0, err
    data = json.loads((out / "faithfulness.json").read_text())
    assert data["meta"]["task"]["name"] == "arithmetic"
    assert "early" in json.dumps(data) and (out / "faithfulness.png").is_file()
    assert "responses had a chain of thought" in stdout


def test_cot_task_carries_the_tasks_cue_editors_and_scorer(chat_llama):
    from interp.tasks import arithmetic_task
    from probes.task_metrics import cot_task

    task = arithmetic_task(n=3).subset(3)
    gold = [task.solution(ex) for ex in task]
    ct, kept = cot_task(chat_llama, task, [gold[0], "", gold[2]])
    assert kept == [0, 2] and ct.answer_cue == task.answer_cue and ct.joiner == task.joiner
    assert list(ct.steps[0]) == list(task.examples[0].steps)
    assert ct.correct(1, task.examples[2].answer) == 1.0 and ct.correct(0, "nonsense") == 0.0
    assert (ct.mistake_maker is None) == (task.mistake_maker is None)
    assert ct.meta["n_generated"] == 3 and ct.meta["n_skipped"] == 1 and ct.filler == "..."
