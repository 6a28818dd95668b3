"""``interp finetune``: the table on success, one-line refusals naming the flag, nothing written."""

import argparse

import pytest

from interp.errors import CommandLineError
from interp.finetune import FinetuneError, read_card
from interp.finetune.cli import add_parser


def _parse(argv):
    parser = argparse.ArgumentParser(prog="interp")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["finetune", *argv])


def _argv(model, out, *extra):
    return [
        "--model",
        model,
        "--method",
        "sft-answer",
        "--steps",
        "2",
        "--doses",
        "1",
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--threads",
        "1",
        "--max-len",
        "256",
        "--n-train",
        "4",
        "--lr",
        "3e-3",
        "--quiet",
        *extra,
    ]


def test_finetune_prints_one_row_per_dose(chat_llama_dir, tmp_path, capsys):
    args = _parse(_argv(f"hf:{chat_llama_dir}", tmp_path / "out"))
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(tmp_path / "out")
    assert lines[1].split() == ["dose", "steps", "seconds", "loss", "rel_change", "fingerprint"]
    rows = [line.split() for line in lines[2:]]
    assert [r[:2] for r in rows] == [["step-00001", "1"], ["step-00002", "2"]]
    card = read_card(tmp_path / "out" / "step-00002")
    assert rows[1][5] == card["fingerprint"][:23] and float(rows[1][4]) > 0
    assert card["config"]["lr"] == 3e-3 and card["config"]["method"] == "sft-answer"


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        (["--steps", "0"], CommandLineError, r"^--steps 0: expected an integer >= 1$"),
        (["--batch-size", "0"], CommandLineError, r"^--batch-size 0: expected an integer >= 1$"),
        (["--lr", "-1"], CommandLineError, r"^--lr -1.0: expected a number > 0$"),
        (
            ["--doses", "1,500"],
            CommandLineError,
            r"^--doses 1,500: expected step counts between 0 and steps=2$",
        ),
        (
            ["--rehearse-facts", "1.5"],
            CommandLineError,
            r"^--rehearse-facts 1.5: expected a share in \[0, 1\)$",
        ),
        (["--max-len", "1"], CommandLineError, r"^--max-len 1: expected an integer >= 2$"),
        (
            ["--model-dtype", "float16"],
            CommandLineError,
            r"^--model-dtype float16: fine-tuning expects one of float32, bfloat16$",
        ),
    ],
)
def test_bad_flags_answer_in_one_line_before_anything_loads(chat_llama_dir, tmp_path, extra, error, message):
    args = _parse(_argv(f"hf:{chat_llama_dir}", tmp_path / "out", *extra))
    with pytest.raises(error, match=message):
        args.func(args)
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_cannot_be_fine_tuned_is_refused_naming_what_can(tmp_path):
    args = _parse(_argv("organism:base", tmp_path / "out"))
    with pytest.raises(FinetuneError, match=r"'organism:base' cannot be fine-tuned here; expected .*hf:DIR"):
        args.func(args)
    assert list(tmp_path.iterdir()) == []


def test_an_out_path_that_is_a_file_is_refused(chat_llama_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    args = _parse(_argv(f"hf:{chat_llama_dir}", tmp_path / "file" / "out"))
    with pytest.raises(CommandLineError, match=r"--out '.*file/out': '.*file' is a file, not a directory"):
        args.func(args)


def test_an_unknown_method_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        _parse(["--model", "smollm2", "--method", "rl", "--steps", "1", "--out", "x"])
    assert "invalid choice: 'rl'" in capsys.readouterr().err
