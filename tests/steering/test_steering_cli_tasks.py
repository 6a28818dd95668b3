"""``interp decode cot`` and ``interp steer sweep`` take ``--task`` and run on an ``hf:`` chat model.

The model is a tiny random Llama whose tokenizer carries a chat template writing the BOS itself;
answers are wrong, so these tests check the plumbing, the outputs and the one-line refusals.
"""

import json

import pytest
from cli_run import chat_corpus, cli, flags, refused


@pytest.fixture(scope="module")
def chat_llama_dir(make_chat_tokenizer, make_chat_llama):
    return make_chat_llama(make_chat_tokenizer(chat_corpus(10), 300))


@pytest.fixture(scope="module")
def chat_llama(chat_llama_dir):
    from interp.models import load_model

    return load_model(f"hf:{chat_llama_dir}", device="cpu")


@pytest.fixture(scope="module")
def vector_dir(chat_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("vec")
    (root / "pos.txt").write_text("wait, let me check\nwait\n")
    (root / "neg.txt").write_text("Answer: 12\nHello\n")
    out = root / "v"
    argv = flags("steer", "vector", model=f"hf:{chat_llama_dir}", positive=root / "pos.txt",
                 negative=root / "neg.txt", layers=1, out=out, q=True)
    assert cli(argv)[0] == 0
    return out


# --- steer sweep ----------------------------------------------------------------------------------


def test_sweep_on_a_task_measures_accuracy_self_checks_and_kl(chat_llama_dir, vector_dir, tmp_path, capsys):
    out = tmp_path / "s"
    rc, _, err = cli(
        flags("steer", "sweep", model=f"hf:{chat_llama_dir}", vector=vector_dir, task="arithmetic",
              max_problems=3, max_new_tokens=6, scales="0,8", out=out, q=True),
        capsys,
    )
    assert rc == 0, err
    data = json.loads((out / "sweep.json").read_text())
    assert set(data["targets"]) == {"accuracy", "self_checks_per_response"}
    assert all(len(v) == 2 for v in data["targets"].values())
    kl = data["costs"]["kl_task_solutions"]
    assert kl[0] == pytest.approx(0.0, abs=1e-6) and kl[1] > 0  # scale 0 is the unsteered model
    assert data["meta"]["task"]["n_examples"] == 3 and (out / "sweep.png").is_file()


def test_task_metrics_accuracy_is_the_tasks_own_score_of_the_greedy_responses(chat_llama):
    from interp.tasks import arithmetic_task
    from steering.task_metrics import greedy_responses, task_metrics

    task = arithmetic_task(n=2).subset(2)
    (behaviour,), _ = task_metrics(chat_llama, task, max_new_tokens=5)
    got = behaviour(chat_llama)
    assert got["accuracy"] == task.accuracy(greedy_responses(chat_llama, task, 5))


def test_self_checks_counts_phrases_once():
    from steering.task_metrics import self_checks

    assert self_checks("Wait, let me check. Hmm, verify: ok. Actually fine.") == 5
    assert self_checks("checkpoint unchecked awaited") == 0


@pytest.mark.parametrize(
    ("extra", "expect"),
    [({}, "give --task SPEC"), ({"task": "nosuch"}, "unknown task 'nosuch'")],
    ids=["no-task-or-neutral-on-hf", "task-unknown"],
)
def test_sweep_refuses_in_one_line_and_writes_nothing(
    extra, expect, chat_llama_dir, vector_dir, tmp_path, capsys
):
    out = tmp_path / "s"
    argv = flags("steer", "sweep", model=f"hf:{chat_llama_dir}", vector=vector_dir, out=out, q=True, **extra)
    refused(argv, capsys, expect, out)


# --- decode cot -----------------------------------------------------------------------------------


def test_decode_cot_on_a_task_renders_chat_prompts_and_scores_branches(chat_llama_dir, tmp_path, capsys):
    out = tmp_path / "o"
    rc, _, err = cli(
        flags("decode", "cot", model=f"hf:{chat_llama_dir}", task="arithmetic", n=2, k=3, max_new_tokens=6,
              out=out, q=True),
        capsys,
    )
    assert rc == 0, err
    data = json.loads((out / "cot.json").read_text())
    assert set(data["accuracy"]) == {"greedy", "cot-decoding", "any of 3"}
    assert data["task"]["n_examples"] == 2 and len(data["accuracy_by_confidence_rank"]) == 3
    assert (out / "cot.png").is_file()


def test_decode_cot_prompts_are_the_chat_rendering_with_one_bos(chat_llama):
    from interp.tasks import arithmetic_task, render_prompt
    from steering.task_metrics import task_prompts

    task = arithmetic_task(n=1).subset(1)
    (ids,) = task_prompts(chat_llama, task)
    assert ids == render_prompt(chat_llama, task.examples[0].prompt)
    assert ids.count(chat_llama.tokenizer.tok.bos_token_id) == 1


def test_cue_answer_span_is_after_the_last_cue_up_to_the_close(chat_llama):
    from steering.task_metrics import cue_answer_span

    eot = chat_llama.tokenizer.tok.eos_token_id
    head = chat_llama.encode("2 + 3 = 5\nAnswer:", add_special_tokens=False)
    tail = chat_llama.encode(" 5", add_special_tokens=False)
    span = cue_answer_span(chat_llama, "Answer:", eot)
    assert span(head + tail + [eot]) == (len(head), len(head) + len(tail))
    assert span(chat_llama.encode("no cue here", add_special_tokens=False)) is None


def test_decode_cot_task_and_prompts_together_are_refused(chat_llama_dir, tmp_path, capsys):
    out = tmp_path / "o"
    f = tmp_path / "p.txt"
    f.write_text("Hi\n")
    argv = flags("decode", "cot", model=f"hf:{chat_llama_dir}", task="arithmetic", prompts=f, out=out, q=True)
    refused(argv, capsys, "--task and --prompts both given", out)
