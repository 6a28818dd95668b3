"""--model-dtype (and --device) on every subcommand that loads a model, passed on to load_model."""

import argparse

import pytest

from interp.cli import build_parser, main
from interp.commands import MODEL_DTYPES, add_model_options

# An option naming a model spec marks a subcommand that loads one.
MODEL_FLAGS = {"--model", "--base", "--tuned", "--expert", "--antiexpert", "--scorer"}


def leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from leaf_parsers(sub, (*path, name))


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: a for a in parser._actions for flag in a.option_strings}


LOADERS = {path: p for path, p in leaf_parsers(build_parser()) if MODEL_FLAGS & set(options(p))}


def test_the_walk_finds_the_model_loading_subcommands():
    assert {"probe damage", "steer sweep", "decode cot", "cache build"} <= set(LOADERS)
    assert "cache info" not in LOADERS


@pytest.mark.parametrize("path", sorted(LOADERS))
def test_every_model_loading_subcommand_takes_model_dtype(path):
    opts = options(LOADERS[path])
    assert "--model-dtype" in opts, f"interp {path} loads a model but has no --model-dtype"
    action = opts["--model-dtype"]
    assert tuple(action.choices) == MODEL_DTYPES and action.default == "float32"
    assert "--device" in opts


def test_add_model_options_keeps_a_commands_own_device_and_refuses_other_dtypes(capsys):
    p = argparse.ArgumentParser(prog="interp x")
    p.add_argument("--device", default="cpu")
    add_model_options(p)
    assert vars(p.parse_args([])) == {
        "device": "cpu",
        "model_dtype": "float32",
        "device_map": None,
        "max_memory": None,
    }
    assert p.parse_args(["--model-dtype", "float16"]).model_dtype == "float16"
    with pytest.raises(SystemExit):
        p.parse_args(["--model-dtype", "float64"])
    assert "invalid choice: 'float64'" in capsys.readouterr().err


class Loaded(Exception):
    """Raised by the stand-in load_model: the command got as far as loading, with these options."""


@pytest.mark.parametrize(
    "argv",
    [
        ["steer", "vector", "--model", "hf:M", "--positive", "{f}", "--negative", "{f}", "--layers", "1"],
        ["decode", "cot", "--model", "hf:M", "--prompts", "{f}", "--stop", "w3"],
        [
            "decode",
            "proxy",
            "--base",
            "hf:M",
            "--expert",
            "hf:M",
            "--antiexpert",
            "hf:M",
            "--prompts",
            "{f}",
            "--stop",
            "w3",
        ],
    ],
    ids=["steer vector", "decode cot", "decode proxy"],
)
def test_the_dtype_reaches_load_model(argv, tmp_path, monkeypatch):
    import interp.models

    def fake_load(spec, device=None, dtype=None, **kwargs):
        raise Loaded(spec, device, dtype)

    monkeypatch.setattr(interp.models, "load_model", fake_load)
    prompts = tmp_path / "p.txt"
    prompts.write_text("w1 w2\nw3 w4\n")
    argv = [a.replace("{f}", str(prompts)) for a in argv]
    with pytest.raises(Loaded) as info:
        main([*argv, "--out", str(tmp_path / "out"), "--model-dtype", "bfloat16", "--device", "cpu"])
    assert info.value.args == ("hf:M", "cpu", "bfloat16")
    assert not (tmp_path / "out").exists()
