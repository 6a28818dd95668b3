"""interp.cli: the cache commands, exit codes, and errors without tracebacks."""

import subprocess
import sys
from pathlib import Path

import pytest

from interp.cache import open_cache
from interp.cli import main

HOOKS = ["blocks.*.hook_resid_post"]


def _build_args(model_dir: Path, prompts: Path, out: Path, *extra: str) -> list[str]:
    return [
        "cache", "build", "--model", f"hf:{model_dir}", "--prompts", str(prompts),
        "--hooks", *HOOKS, "--out", str(out), "--shard-tokens", "60", "--batch-size", "8", "-q", *extra,
    ]


@pytest.fixture(scope="module")
def cli_cache(gpt2_dir, prompts_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "cache"
    assert main(_build_args(gpt2_dir, prompts_file, out)) == 0
    return open_cache(out)


def test_build_prints_the_id_and_matches_the_api(cli_cache, gpt2, prompts_file, tmp_path, capsys, gpt2_dir):
    from interp.cache import CacheConfig, build_cache

    api = build_cache(
        gpt2, prompts_file, tmp_path / "api",
        CacheConfig(hooks=tuple(HOOKS), shard_tokens=60, batch_size=8), progress=False,
    )
    assert api.id == cli_cache.id
    # rerunning the same command on the finished directory is a no-op that prints the same ID
    assert main(_build_args(gpt2_dir, prompts_file, cli_cache.root)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == cli_cache.id
    assert "40 rows" in out[1]


def test_verify_exits_0_on_a_good_cache(cli_cache, tmp_path, capsys):
    report = tmp_path / "report.json"
    args = ["cache", "verify", str(cli_cache.root), "--recompute", "3", "-q", "--json", str(report)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert cli_cache.id in out and "OK" in out and "recomputed   3 rows" in out
    assert '"ok": true' in report.read_text()


def test_verify_exits_1_on_a_corrupted_shard(cli_cache, tmp_path, capsys):
    import shutil

    root = Path(shutil.copytree(cli_cache.root, tmp_path / "bad"))
    shard = root / cli_cache.manifest["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert main(["cache", "verify", str(root), "--recompute", "0", "-q"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and cli_cache.manifest["shards"][1]["file"] in out


def test_info_prints_the_id_first_then_provenance(cli_cache, capsys):
    assert main(["cache", "info", str(cli_cache.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == cli_cache.id
    text = "\n".join(lines)
    m = cli_cache.manifest
    for needle in (m["model"]["fingerprint"], m["tokenizer"]["hash"], m["prompts"]["sha256"],
                   "blocks.1.hook_resid_post", "dtype       float32"):
        assert needle in text


def test_cite_carries_the_id(cli_cache, capsys):
    assert main(["cache", "cite", str(cli_cache.root)]) == 0
    out = capsys.readouterr().out
    assert out.count(cli_cache.id) >= 2
    assert cli_cache.manifest["model"]["fingerprint"] in out
    assert "@misc{interp_cache_" + cli_cache.id.split(":")[1][:12] in out


def test_unknown_hook_in_process(gpt2_dir, prompts_file, tmp_path, capsys):
    out = tmp_path / "out"
    args = _build_args(gpt2_dir, prompts_file, out)
    args[args.index("--hooks") + 1] = "blocks.0.hook_resid_psot"
    assert main(args) != 0
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' loading bar
    assert last.startswith("interp: error: hook 'blocks.0.hook_resid_psot' not found")
    assert "blocks.0.hook_resid_post" in last
    assert not out.exists()


def test_unknown_hook_from_the_shell_no_traceback_nothing_written(gpt2_dir, prompts_file, tmp_path, cli_env):
    out = tmp_path / "out"
    args = _build_args(gpt2_dir, prompts_file, out)
    args[args.index("--hooks") + 1] = "blocks.0.hook_resid_psot"
    done = subprocess.run([sys.executable, "-m", "interp.cli", *args], env=cli_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("interp: error: hook 'blocks.0.hook_resid_psot' not found")
    assert "blocks.0.hook_resid_post" in last
    assert done.stdout == ""
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, match",
    [(["--batch-size", "0"], "batch_size"), (["--shard-tokens", "0"], "shard_tokens"),
     (["--max-tokens", "0"], "max_tokens")],
)
def test_bad_settings_are_user_errors(gpt2_dir, prompts_file, tmp_path, capsys, extra, match):
    out = tmp_path / "out"
    assert main(_build_args(gpt2_dir, prompts_file, out, *extra)) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert not out.exists()


def test_missing_prompts_and_bad_model_spec(gpt2_dir, tmp_path, capsys, prompts_file):
    assert main(_build_args(gpt2_dir, tmp_path / "none.txt", tmp_path / "o")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(_build_args(tmp_path, prompts_file, tmp_path / "o")) == 2
    assert "not a Hugging Face model directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bad_positions_is_an_argument_error(gpt2_dir, prompts_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(_build_args(gpt2_dir, prompts_file, tmp_path / "o", "--positions", "first"))
    assert exc.value.code == 2
    assert "positions 'first'" in capsys.readouterr().err


def test_positions_option(gpt2_dir, prompts_file, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(_build_args(gpt2_dir, prompts_file, out, "--positions", "0,-1")) == 0
    cache = open_cache(out)
    assert cache.manifest["config"]["positions"] == [0, -1]
    assert cache.n_positions == 2 * cache.n_rows


def test_commands_on_a_non_cache_fail_cleanly(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for cmd in ("info", "cite", "verify"):
        assert main(["cache", cmd, str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err
        assert "does not exist" in err and "Traceback" not in err
        assert main(["cache", cmd, str(tmp_path / "afile")]) == 2
        assert "is a file, not a cache directory" in _last_err(capsys)


# --- one line, never a traceback, never silent (issue 10) ------------------------------


def _last_err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_out_that_is_a_file(gpt2_dir, prompts_file, tmp_path, capsys):
    out = tmp_path / "afile"
    out.write_text("mine")
    assert main(_build_args(gpt2_dir, prompts_file, out)) == 2
    assert _last_err(capsys) == f"interp: error: --out {str(out)!r} is a file; give a directory for the cache"
    assert out.read_text() == "mine"


def test_a_read_only_directory_is_one_line_naming_the_path(
    gpt2_dir, prompts_file, tmp_path, capsys, monkeypatch
):
    import errno
    import os

    import interp.cache.build as build_mod
    import interp.cache.resume as resume_mod

    parent = tmp_path / "ro"
    parent.mkdir()
    if os.geteuid() != 0:  # a real read-only directory where permissions apply
        parent.chmod(0o500)
        try:
            assert main(_build_args(gpt2_dir, prompts_file, parent / "c")) == 2
        finally:
            parent.chmod(0o700)
        assert "Permission denied" in _last_err(capsys)
        assert not (parent / "c").exists()

    def refuse(path, obj):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    for module in (build_mod, resume_mod):  # every write fails, as in a read-only directory
        monkeypatch.setattr(module, "atomic_write_json", refuse)
    out = parent / "c2"
    assert main(_build_args(gpt2_dir, prompts_file, out)) == 2
    last = _last_err(capsys)
    assert last.startswith(f"interp: error: cannot write the cache in {str(out)!r}: Permission denied")
    assert str(out / "manifest.partial.json") in last
    assert not out.exists()


def test_oserror_anywhere_in_main_is_one_line(monkeypatch, capsys, tmp_path):
    import errno

    import interp.cache

    def boom(root, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x"))

    monkeypatch.setattr(interp.cache, "open_cache", boom)
    assert main(["cache", "info", str(tmp_path)]) == 2
    assert _last_err(capsys) == f"interp: error: Read-only file system: {str(tmp_path / 'x')!r}"


def test_a_full_disk_leaves_nothing_and_says_so(gpt2_dir, prompts_file, tmp_path, capsys, monkeypatch):
    import errno

    import interp.cache.build as build_mod

    def full(path, tensors, metadata):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(build_mod, "write_shard", full)
    out = tmp_path / "c"
    assert main(_build_args(gpt2_dir, prompts_file, out)) == 2
    last = _last_err(capsys)
    assert "No space left on device" in last and "shard_00000.safetensors" in last
    assert last.endswith("nothing was written")
    assert not out.exists()


def test_a_full_disk_mid_build_keeps_complete_shards_to_resume(
    gpt2_dir, prompts_file, tmp_path, capsys, monkeypatch, cli_cache
):
    import errno

    import interp.cache.build as build_mod

    real, calls = build_mod.write_shard, [0]

    def full_later(path, tensors, metadata):
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, tensors, metadata)

    monkeypatch.setattr(build_mod, "write_shard", full_later)
    out = tmp_path / "c"
    assert main(_build_args(gpt2_dir, prompts_file, out)) == 2
    assert "the 2 complete shards are kept" in _last_err(capsys)
    monkeypatch.undo()
    assert main(_build_args(gpt2_dir, prompts_file, out)) == 0
    assert capsys.readouterr().out.splitlines()[0] == cli_cache.id


def test_a_damaged_partial_manifest(gpt2_dir, prompts_file, tmp_path, capsys):
    out = tmp_path / "c"
    (out / "shards").mkdir(parents=True)
    (out / "manifest.partial.json").write_text('{"header": {}, "shards": [{"file": 3}], "shapes": {}}')
    assert main(_build_args(gpt2_dir, prompts_file, out)) == 2
    assert "manifest.partial.json is damaged: shard entry 0 lacks" in _last_err(capsys)
    (out / "manifest.partial.json").write_text("{garbage")
    assert main(_build_args(gpt2_dir, prompts_file, out)) == 2
    assert "manifest.partial.json is damaged" in _last_err(capsys)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.pop("shards"), r"lacks \['shards'\]"),
        (lambda m: m["config"].__setitem__("dtype", "float64"), "dtype 'float64'"),
        (lambda m: m["shapes"].__setitem__("blocks.0.hook_resid_post", [64]), "but the manifest says"),
    ],
    ids=["missing-key", "float64", "forged-shape"],
)
def test_malformed_manifests_in_every_cache_command(cli_cache, tmp_path, capsys, edit, match):
    import json
    import re
    import shutil

    from interp.cache.format import cache_id

    root = Path(shutil.copytree(cli_cache.root, tmp_path / "c"))
    manifest = json.loads((root / "manifest.json").read_text())
    edit(manifest)
    manifest["id"] = cache_id(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))
    for cmd in ("info", "cite"):
        assert main(["cache", cmd, str(root)]) == 2
        assert re.search(match, _last_err(capsys))
    assert main(["cache", "verify", str(root), "-q", "--recompute", "2"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and re.search(match, out)


def test_positions_past_every_row_are_refused_and_leave_nothing(gpt2_dir, prompts_file, tmp_path, capsys):
    out = tmp_path / "c"
    assert main(_build_args(gpt2_dir, prompts_file, out, "--positions", "500")) == 2
    last = _last_err(capsys)
    assert last.startswith("interp: error: positions [500] keep no position of any of the 40 rows")
    assert "the longest has 12 tokens" in last
    assert not out.exists()
    out.mkdir()  # a directory the user made: kept, but emptied of everything the build wrote
    assert main(_build_args(gpt2_dir, prompts_file, out, "--positions", "500")) == 2
    assert list(out.iterdir()) == []


def test_a_prompt_longer_than_the_context_warns_with_the_count(gpt2_dir, tmp_path, caplog):
    import logging

    prompts = tmp_path / "p.txt"
    prompts.write_text(" ".join(["w3"] * 350_000) + "\nw1 w2\n" + " ".join(["w4"] * 70) + "\n")
    assert prompts.stat().st_size > 1_000_000
    with caplog.at_level(logging.WARNING, logger="interp.cache.build"):
        assert main(_build_args(gpt2_dir, prompts, tmp_path / "c")) == 0
    cut = [r.getMessage() for r in caplog.records if "were cut" in r.getMessage()]
    assert cut == [
        "2 of 3 rows were longer than 64 tokens (the model's context length) and were cut to that length"
    ]
    assert open_cache(tmp_path / "c").n_positions == 64 + 2 + 64


@pytest.mark.parametrize("content", [b"", b"\n   \n\t\n"], ids=["empty", "blank"])
def test_an_empty_prompt_file_leaves_nothing(gpt2_dir, tmp_path, capsys, content):
    prompts = tmp_path / "p.txt"
    prompts.write_bytes(content)
    out = tmp_path / "c"
    assert main(_build_args(gpt2_dir, prompts, out)) == 2
    assert "the prompt source gave no tokens" in _last_err(capsys)
    assert not out.exists()
    assert main(["cache", "info", str(out)]) == 2
    assert "does not exist" in _last_err(capsys)


@pytest.mark.parametrize("suffix, line", [(".txt", b"w3 \xe9 w4"), (".jsonl", b'{"text": "w3 \xe9"}')])
def test_non_utf8_prompts_name_the_file_and_line(gpt2_dir, tmp_path, capsys, suffix, line):
    prompts = tmp_path / f"p{suffix}"
    first = b'{"text": "w1"}' if suffix == ".jsonl" else b"w1 w2"
    prompts.write_bytes(first + b"\n" + line + b"\n")
    out = tmp_path / "c"
    assert main(_build_args(gpt2_dir, prompts, out)) == 2
    assert _last_err(capsys).startswith(f"interp: error: {prompts}:2: not valid UTF-8 (byte 0xe9")
    assert not out.exists()


def test_verify_recompute_must_not_be_negative(cli_cache, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cache", "verify", str(cli_cache.root), "--recompute", "-5"])
    assert exc.value.code == 2
    assert "'-5' is not a non-negative whole number of rows" in capsys.readouterr().err


def test_info_says_where_the_model_would_load_from(cli_cache, gpt2_dir, capsys):
    assert main(["cache", "info", str(cli_cache.root)]) == 0
    out = capsys.readouterr().out
    assert f"loaded from hf:{gpt2_dir}" in out
    assert "unhashed, not part of the ID" in out and "match the fingerprint" in out


def test_trust_remote_code_flag_holds_for_the_command_only(monkeypatch, capsys, tmp_path):
    import os

    import interp.cli
    from interp.models import TRUST_REMOTE_CODE_ENV

    seen = []
    monkeypatch.setattr(interp.cli, "_cache_info", lambda args: seen.append(
        os.environ.get(TRUST_REMOTE_CODE_ENV)) or 0)
    monkeypatch.setenv(TRUST_REMOTE_CODE_ENV, "0")  # restored after the test
    assert main(["cache", "info", str(tmp_path / "none")]) == 0
    assert main(["--trust-remote-code", "cache", "info", str(tmp_path / "none")]) == 0
    assert seen == ["0", "1"]
    assert os.environ[TRUST_REMOTE_CODE_ENV] == "0"  # not left set for later in-process callers
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV)
    assert main(["--trust-remote-code", "cache", "info", str(tmp_path / "none")]) == 0
    assert TRUST_REMOTE_CODE_ENV not in os.environ
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "run their own Python code" in " ".join(capsys.readouterr().out.split())


def test_bos_flag_reaches_the_tokenizer_and_the_manifest(gpt2_dir, prompts_file, tmp_path, capsys):
    import shutil

    from transformers import AutoTokenizer

    model_dir = Path(shutil.copytree(gpt2_dir, tmp_path / "gpt2_bos"))
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.bos_token = "<eos>"
    tok.save_pretrained(str(model_dir))
    caches = {}
    for bos in ("on", "off"):
        out = tmp_path / bos
        assert main(_build_args(model_dir, prompts_file, out, "--bos", bos)) == 0
        caches[bos] = open_cache(out)
    on, off = caches["on"], caches["off"]
    assert on.manifest["tokenizer"]["prepend_bos"] is True
    assert off.manifest["tokenizer"]["prepend_bos"] is False
    assert on.id != off.id
    rows_on, rows_off = list(on.iter_row_tokens()), list(off.iter_row_tokens())
    assert all(a == [1, *b] for a, b in zip(rows_on, rows_off, strict=True))
    capsys.readouterr()
    assert main(["cache", "verify", str(on.root), "--bos", "on", "--recompute", "2", "-q"]) == 0
    assert main(_build_args(gpt2_dir, prompts_file, tmp_path / "x", "--bos", "on")) == 2
    assert "no BOS token" in _last_err(capsys)
    assert not (tmp_path / "x").exists()
