"""Shared helpers of the command-line tests: build argv from keywords, run it, check a refusal.

``tests/`` is on ``sys.path`` (pytest puts the root conftest's folder there), so a test imports
these as ``from cli_run import cli, flags, refused``.
"""

from pathlib import Path

from interp.cli import main


def flags(*words, **options) -> list[str]:
    """``flags("probe", "passk", model="hf:x", max_new_tokens=4, q=True)`` as an argv list.

    A keyword becomes ``--name-with-dashes VALUE`` (``n=4``: ``--n 4``; ``q=True``: ``-q``;
    ``True``: the bare flag; ``None``: left out); every value is turned into a string.
    """
    argv = [str(w) for w in words]
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = "-q" if name == "q" else "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def cli(argv, capsys=None) -> tuple[int, str, str]:
    """Run ``interp`` in this process: ``(exit code, stdout, stderr)`` (streams empty without capsys)."""
    rc = main([str(a) for a in argv])
    if capsys is None:
        return rc, "", ""
    out = capsys.readouterr()
    return rc, out.out, out.err


def refused(argv, capsys, expect: str, out_dir: Path) -> None:
    """Exit 2 with one ``interp: error:`` line holding ``expect``, no traceback, nothing at ``out_dir``.

    A refusal by argparse itself (``invalid choice``) exits through ``SystemExit(2)``; both count.
    """
    try:
        rc, _, err = cli(argv, capsys)
    except SystemExit as exc:
        rc, err = exc.code, capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith(("interp: error", "interp "))]
    assert rc == 2 and lines and expect in lines[-1], err
    assert "Traceback" not in err
    assert not Path(out_dir).exists()


def chat_corpus(n_arithmetic: int = 20) -> list[str]:
    """Text to train a tiny chat tokenizer on: the built-in tasks' prompts and steps, and chat words."""
    from interp.tasks import arithmetic_task, facts_task

    arithmetic = arithmetic_task(n=n_arithmetic)
    lines = [m["content"] for t in (facts_task(), arithmetic) for ex in t for m in ex.prompt]
    lines += [step for ex in arithmetic for step in ex.steps]
    return lines + ["<|user|>\nHi\n<|assistant|>\nHello\n", "Answer: 12.", "wait, let me check. Wait."]
