"""Every ``interp probe`` command takes ``--task`` and runs on an ``hf:`` chat model (issue 11).

The model is a tiny random Llama whose tokenizer (a small BPE, BOS ``<s>``) carries a chat
template that writes the BOS itself: answers are wrong, so these tests check the plumbing (the
chat rendering, the outputs written, the one-line refusals and that nothing is left behind).
"""

import json

import pytest

from interp.cli import main


def _corpus() -> list[str]:
    from interp.tasks import arithmetic_task, facts_task

    lines = [m["content"] for t in (facts_task(), arithmetic_task(n=20)) for ex in t for m in ex.prompt]
    lines += [step for ex in arithmetic_task(n=20) for step in ex.steps]
    lines += ["<|user|>\nHi\n<|assistant|>\nHello\n", "Answer: 12", "wait, let me check"]
    return lines


@pytest.fixture(scope="module")
def chat_tokenizer(make_chat_tokenizer):
    return make_chat_tokenizer(_corpus(), 400)


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


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def refused(argv: list[str], capsys, expect: str, out_dir) -> None:
    """Exit 2, one error line containing ``expect``, and nothing written at ``out_dir``."""
    rc, _, err = run_cli(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and expect in lines[0], err
    assert "Traceback" not in err
    assert not out_dir.exists()


# --- passk ----------------------------------------------------------------------------------------


def test_passk_on_a_chat_model_writes_pass_at_k_with_intervals(chat_llama_dir, task_file, tmp_path, capsys):
    out = tmp_path / "o"
    rc, stdout, err = run_cli(
        [
            "probe",
            "passk",
            "--model",
            f"hf:{chat_llama_dir}",
            "--task",
            task_file,
            "--n",
            4,
            "--k",
            "1,2,4",
            "--temperature",
            1.0,
            "--top-p",
            0.9,
            "--max-new-tokens",
            6,
            "--out",
            out,
            "-q",
        ],
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
        (["--k", "1,9"], "--k 9"),
        (["--temperature", "0"], "--temperature 0.0"),
        (["--top-p", "1.5"], "--top-p 1.5"),
        (["--n", "0"], "--n 0"),
        (["--task", "nosuch"], "invalid choice: 'nosuch'"),
    ],
    ids=["k-above-n", "temperature-0", "top-p-above-1", "n-0", "task-unknown"],
)
def test_passk_refuses_bad_values_in_one_line(extra, expect, chat_llama_dir, task_file, tmp_path, capsys):
    out = tmp_path / "o"
    argv = [
        "probe",
        "passk",
        "--model",
        f"hf:{chat_llama_dir}",
        "--task",
        task_file,
        "--out",
        out,
        "-q",
        *extra,
    ]
    if extra[0] == "--task":
        with pytest.raises(SystemExit):
            main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert expect in err.splitlines()[-1] and not out.exists()
        return
    refused(argv, capsys, expect, out)


def test_passk_without_task_on_an_hf_model_asks_for_one(chat_llama_dir, tmp_path, capsys):
    out = tmp_path / "o"
    refused(
        ["probe", "passk", "--model", f"hf:{chat_llama_dir}", "--out", out, "-q"], capsys, "pass --task", out
    )


# --- damage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "metric"), [("facts", "logprob"), ("task_file", "accuracy")])
def test_damage_scores_a_task_on_hf_models(
    task, metric, chat_llama_dir, tuned_llama_dir, task_file, tmp_path, capsys
):
    out = tmp_path / "o"
    spec = task_file if task == "task_file" else task
    rc, stdout, err = run_cli(
        [
            "probe",
            "damage",
            "--base",
            f"hf:{chat_llama_dir}",
            "--tuned",
            f"hf:{tuned_llama_dir}",
            "--task",
            spec,
            "--max-problems",
            4,
            "--max-new-tokens",
            4,
            "--out",
            out,
            "-q",
        ],
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
        (["--task", "solve_rate"], "scores organism models"),
        ([], "is not organism:NAME (for other models pass --task"),
        (["--task", "facts", "--metric", "recall"], "invalid choice: 'recall'"),
    ],
    ids=["organism-scorer-on-hf", "no-task-on-hf", "metric-unknown"],
)
def test_damage_refuses_in_one_line(extra, expect, chat_llama_dir, tmp_path, capsys):
    out = tmp_path / "o"
    argv = [
        "probe",
        "damage",
        "--base",
        f"hf:{chat_llama_dir}",
        "--tuned",
        f"hf:{chat_llama_dir}",
        "--out",
        out,
        "-q",
        *extra,
    ]
    if "--metric" in extra:
        with pytest.raises(SystemExit):
            main([str(a) for a in argv])
        assert expect in capsys.readouterr().err and not out.exists()
        return
    refused(argv, capsys, expect, out)


# --- info-gain ------------------------------------------------------------------------------------


def test_info_gain_on_a_task_scores_the_models_own_steps(chat_llama_dir, task_file, tmp_path, capsys):
    out = tmp_path / "o"
    rc, stdout, err = run_cli(
        [
            "probe",
            "info-gain",
            "--model",
            f"hf:{chat_llama_dir}",
            "--scorer",
            f"hf:{chat_llama_dir}",
            "--task",
            task_file,
            "--max-new-tokens",
            12,
            "--out",
            out,
            "-q",
        ],
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


def test_info_gain_without_task_on_an_hf_model_asks_for_one(chat_llama_dir, tmp_path, capsys):
    out = tmp_path / "o"
    refused(
        [
            "probe",
            "info-gain",
            "--model",
            f"hf:{chat_llama_dir}",
            "--scorer",
            f"hf:{chat_llama_dir}",
            "--out",
            out,
            "-q",
        ],
        capsys,
        "expected organism:NAME",
        out,
    )


# --- entropy --------------------------------------------------------------------------------------


def test_entropy_on_a_task_with_a_base_writes_profile_and_shift(
    chat_llama_dir, tuned_llama_dir, tmp_path, capsys
):
    out = tmp_path / "o"
    rc, stdout, err = run_cli(
        [
            "probe",
            "entropy",
            "--model",
            f"hf:{tuned_llama_dir}",
            "--base",
            f"hf:{chat_llama_dir}",
            "--task",
            "arithmetic",
            "--n",
            3,
            "--samples",
            2,
            "--max-new-tokens",
            8,
            "--out",
            out,
            "-q",
        ],
        capsys,
    )
    assert rc == 0, err
    data = json.loads((out / "entropy.json").read_text())
    assert data["meta"]["task"]["name"] == "arithmetic" and data["meta"]["task"]["n_examples"] == 3
    assert set(data["by_type"]) <= {"number", "self-check", "word", "symbol", "space"}
    assert (out / "shift.json").is_file() and (out / "entropy.png").is_file()


def test_entropy_without_task_on_an_hf_model_asks_for_one(chat_llama_dir, tmp_path, capsys):
    out = tmp_path / "o"
    refused(
        ["probe", "entropy", "--model", f"hf:{chat_llama_dir}", "--out", out, "-q"],
        capsys,
        "expected organism:NAME",
        out,
    )


def test_entropy_task_split_unknown_is_one_line_and_writes_nothing(chat_llama_dir, tmp_path, capsys):
    out = tmp_path / "o"
    refused(
        [
            "probe",
            "entropy",
            "--model",
            f"hf:{chat_llama_dir}",
            "--task",
            "facts",
            "--task-split",
            "nosuch",
            "--out",
            out,
            "-q",
        ],
        capsys,
        "no examples in split 'nosuch'",
        out,
    )


# --- faithfulness ---------------------------------------------------------------------------------


def test_faithfulness_on_a_task_runs_early_answering_on_the_models_traces(chat_llama_dir, tmp_path, capsys):
    out = tmp_path / "o"
    rc, stdout, err = run_cli(
        [
            "probe",
            "faithfulness",
            "--model",
            f"hf:{chat_llama_dir}",
            "--task",
            "arithmetic",
            "--n",
            3,
            "--max-new-tokens",
            12,
            "--fractions",
            "0,0.5,1",
            "--out",
            out,
            "-q",
        ],
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


def test_faithfulness_without_task_on_an_hf_model_asks_for_one(chat_llama_dir, tmp_path, capsys):
    out = tmp_path / "o"
    refused(
        ["probe", "faithfulness", "--model", f"hf:{chat_llama_dir}", "--out", out, "-q"],
        capsys,
        "for other models pass --task",
        out,
    )
