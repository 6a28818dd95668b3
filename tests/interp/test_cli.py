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
    for cmd in ("info", "cite", "verify"):
        assert main(["cache", cmd, str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err
        assert "does not exist" in err and "Traceback" not in err
