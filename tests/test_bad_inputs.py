"""A round of bad inputs over every subcommand (issue 10): each gets one clear line, no traceback.

Every case runs ``interp.cli.main(argv)`` in-process and demands a non-zero exit, no traceback,
exactly one error line on stderr (argparse's own refusals print their usage block first) that
contains a distinctive part of the expected message (the flag or value at fault), and nothing
left behind: the test's scratch folder stays empty and the files it points at are unchanged.

The fixtures are hand-made: tiny Hugging Face GPT-2 directories and a cache (``tests/conftest.py``),
a three-model organism zoo with random weights in the zoo layout, and broken copies of each.
A case whose fix has not landed yet names that area in ``waits_on`` (``xfail(strict=True)``).
"""

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from interp.cli import main


@dataclass(frozen=True)
class Case:
    """One bad input: the argv (``{name}`` fields filled from the fixtures), the expected text."""

    id: str
    argv: str | list[str]
    expect: str
    zoo: str = "{zoo}"
    waits_on: str | None = None  # an area whose fix is not in yet: the case is xfail(strict) until then


HF_BUILD = "cache build --model hf:{gpt2} --prompts {prompts} --hooks blocks.0.hook_resid_post --out {t}/c -q"
ORG_BUILD = HF_BUILD.replace("hf:{gpt2}", "organism:base").replace("{prompts}", "organism:test_id")
VECTOR = "steer vector --model hf:{gpt2} --positive {pos} --negative {neg} --layers 1 --out {t}/v -q"
SWEEP = "steer sweep --model hf:{gpt2} --vector {vec} --neutral {prompts} --out {t}/s -q"
SAE_TRAIN = "sae train --cache {cache} --hook blocks.1.hook_resid_post --out {t}/s --no-ce -q"
SAE_TRAIN += " --steps 2 --batch-size 16"
ENTROPY = "probe entropy --model organism:base --n 2 --max-new-tokens 6 --out {t}/o -q"
FAITH = "probe faithfulness --model organism:base --n 2 --out {t}/o -q"
DAMAGE = "probe damage --base organism:base --tuned organism:base --out {t}/o -q"
SOLVE = f"{DAMAGE} --task solve_rate"
GAIN = "probe info-gain --scorer organism:base --model organism:base --n 2 --max-new-tokens 6 --out {t}/o -q"
COT = "decode cot --model organism:base --k 2 --n 2 --max-new-tokens 4 --out {t}/o -q"
COT_TEXT = "decode cot --model hf:{gpt2} --max-new-tokens 3 --out {t}/o -q"
PROXY = (
    "decode proxy --base organism:base --expert organism:small-tuned --antiexpert organism:small-base "
    "--n 2 --max-new-tokens 3 --out {t}/o -q"
)
VECTOR_CACHE = "steer vector --cache {cache} --labels {labels_all} --layers 1 --out {t}/v"
PASSK = "probe passk --model hf:{gpt2} --task arithmetic --n 2 --k 1,2 --max-new-tokens 3 --out {t}/o -q"
PROXY_HF = re.sub(r"organism:[\w-]+", "hf:{gpt2}", PROXY)  # all three models hf:{gpt2}


def _adding(base: str, rows: list[str]) -> list[Case]:
    """A case per row ``"id | words put after base | expected text"``."""
    cases = []
    for row in rows:
        key, words, expect = row.split(" | ")
        cases.append(Case(key, f"{base} {words}", expect))
    return cases


def _replacing(base: str, rows: list[str]) -> list[Case]:
    """A case per row ``"id | a part of base | what it becomes | expected text"``."""
    cases = []
    for row in rows:
        key, old, new, expect = row.split(" | ")
        assert old in base, f"case {key}: {old!r} is not in {base!r}"
        cases.append(Case(key, base.replace(old, new), expect))
    return cases


CASES = [
    # model specs and zoos
    *_replacing(HF_BUILD, [
        "spec-unknown-kind | hf:{gpt2} | foo:bar | unknown model source 'foo'",
        "spec-hf-dir-missing | {gpt2} | {t}/nothere | not a Hugging Face model directory",
    ]),
    *_replacing(ORG_BUILD, [
        "spec-organism-not-in-zoo | organism:base | organism:nosuch | no organism 'nosuch'",
    ]),
    Case("zoo-world-json-corrupt", ORG_BUILD, "world.json", zoo="{zoo_badworld}"),
    Case("zoo-weights-truncated", ORG_BUILD, "model.safetensors", zoo="{zoo_trunc}"),
    Case("zoo-config-bad-values", ORG_BUILD, "config.json", zoo="{zoo_badcfg}"),
    *_adding("organism", [
        "organism-list-card-corrupt | list --zoo {zoo_badcard} | card.json",
        "organism-list-no-zoo | list --zoo {t}/nozoo | no organism zoo at",
        "organism-build-threads-0 | build --profile tiny --out {t}/z --threads 0 -q | --threads 0",
        "organism-build-out-is-file | build --profile tiny --out {afile} -q | is a file",
        "organism-build-profile-huge | build --profile huge --out {t}/z | invalid choice: 'huge'",
    ]),
    # prompts
    *_replacing(HF_BUILD, [
        "prompts-is-a-directory | {prompts} | {adir} | adir",
        "prompts-jsonl-non-object-line | {prompts} | {nonobj} | nonobj.jsonl:2",
        "prompts-organism-split-unknown | {prompts} | organism:nosplit"
        " | unknown organism prompt split 'nosplit'",
        "prompts-cache-dir-missing | {prompts} | cache:{t}/nocache | does not exist",
        "prompts-jsonl-field-missing | {prompts} | {nonobj} --prompt-field body | field 'body' holds text",
    ]),
    # cache build, verify, info, cite
    *_adding(HF_BUILD, [
        "cache-batch-size-0 | --batch-size 0 | batch_size must be at least 1, got 0",
        "cache-shard-tokens-negative | --shard-tokens -1 | shard_tokens must be at least 1",
        "cache-max-seq-len-0 | --max-seq-len 0 | max_seq_len must be at least 1",
        "cache-positions-not-ints | --positions a,b | positions 'a,b'",
        "cache-dtype-float64 | --dtype float64 | invalid choice: 'float64'",
    ]),
    *_replacing(HF_BUILD, [
        "cache-hook-unknown | hook_resid_post | hook_nosuch | blocks.0.hook_nosuch",
        "cache-hook-layer-past-model | blocks.0 | blocks.7 | blocks.7.hook_resid_post",
        "cache-out-parent-is-file | {t}/c | {afile}/c | afile",
    ]),
    *_adding("cache", [
        "cache-info-dir-missing | info {t}/nothere | does not exist",
        "cache-cite-not-a-cache | cite {empty_dir} | no manifest.json",
        "cache-verify-json-is-dir | verify {cache} --recompute 0 -q --json {adir} | adir",
        "cache-verify-model-unknown | verify {cache} --model organism:nosuch -q | no organism 'nosuch'",
        "cache-pair-one-model | pair --models base=hf:{gpt2} --prompts {prompts}"
        " --hooks blocks.0.hook_resid_post --out {t}/p -q | two",
    ]),
    *_adding(PASSK, [
        "passk-k-above-n | --k 1,9 | --k 9",
        "passk-top-p-above-1 | --top-p 1.5 | --top-p 1.5",
    ]),
    *_adding("finetune --model hf:{gpt2} --method sft-answer --out {t}/f -q", [
        "finetune-steps-0 | --steps 0 | --steps 0",
        "finetune-dose-past-steps | --steps 4 --doses 2,9 | 9",
    ]),
    # reproduce
    *_adding("reproduce", [
        "reproduce-only-e99 | --only e99 --out {t}/r -q | unknown experiments ['e99']",
        "reproduce-out-is-file | --only e1_info_gain --out {afile} -q | is a file",
    ]),
    Case(
        "reproduce-no-build-without-zoo",
        "reproduce --profile tiny --no-build --out {t}/r -q",
        "--no-build: no zoo",
        zoo="{t}/nozoo",
    ),
    # probe entropy
    *_adding(ENTROPY, [
        "entropy-temperature-0 | --temperature 0 | temperature=0.0",
        "entropy-top-fraction-1.5 | --top-fraction 1.5 | top_fraction=1.5",
        "entropy-base-other-tokenizer | --base hf:{gpt2} | another tokenizer",
        "entropy-split-unknown | --split nosuch | invalid choice: 'nosuch'",
    ]),
    *_replacing(ENTROPY, [
        "entropy-max-new-tokens-0 | --max-new-tokens 6 | --max-new-tokens 0 | --max-new-tokens 0",
        "entropy-out-is-file | {t}/o | {afile} | is a file",
        "entropy-model-not-organism | organism:base | hf:{gpt2} | expected organism:NAME",
    ]),
    # probe faithfulness
    *_adding(FAITH, [
        "faith-split-unknown | --split nosuch | --split 'nosuch': expected one of",
        "faith-test-unknown | --tests early bogus | 'bogus'",
        "faith-fraction-above-1 | --fractions 0,1.5 | fractions=(0.0, 1.5)",
    ]),
    *_replacing(FAITH, ["faith-out-is-file | {t}/o | {afile} | is a file"]),
    # probe damage
    *_adding(DAMAGE, ["damage-task-unknown | --task nosuch | invalid choice: 'nosuch'"]),
    *_adding(SOLVE, [
        "damage-split-unknown | --split nosuch | unknown split 'nosuch'",
        "damage-max-new-tokens-0 | --max-new-tokens 0 | --max-new-tokens 0",
        "damage-max-problems-0 | --max-problems 0 | --max-problems 0",
    ]),
    *_replacing(DAMAGE, [
        "damage-architectures-differ | --tuned organism:base | --tuned organism:small-tuned"
        " | differ in architecture",
        "damage-out-is-file | {t}/o | {afile} | is a file",
    ]),
    # probe info-gain
    *_replacing(GAIN, [
        "info-gain-max-new-tokens-negative | --max-new-tokens 6 | --max-new-tokens -5 | -5",
        "info-gain-model-not-organism | --model organism:base | --model hf:{gpt2} | expected organism:NAME",
        "info-gain-scorer-dir-missing | --scorer organism:base | --scorer hf:{t}/nothere"
        " | not a Hugging Face model directory",
        "info-gain-out-is-file | {t}/o | {afile} | is a file",
    ]),
    *_adding(GAIN, ["info-gain-temperature-negative | --temperature -1 | temperature=-1.0"]),
    Case("info-gain-answer-marker-blank", [*GAIN.split(), "--answer-marker", " "], "answer_marker=' '"),
    # steer vector
    *_replacing(VECTOR, [
        "vector-positive-is-dir | {pos} | {adir} | --positive",
        "vector-positive-not-utf8 | {pos} | {bad_utf8} | line 2 is not UTF-8",
        "vector-positive-missing | {pos} | {t}/nothere.txt | nothere.txt",
        "vector-layer-past-model | --layers 1 | --layers 9 | blocks.9.hook_resid_post",
        "vector-layers-not-ints | --layers 1 | --layers x | integers 'x'",
        "vector-out-is-file | {t}/v | {afile} | is a file",
    ]),
    *_adding(VECTOR, [
        "vector-batch-size-0 | --batch-size 0 | --batch-size 0",
        "vector-position-past-prompt | --positions 99 | outside prompt",
    ]),
    Case("vector-pca-unpaired", VECTOR.replace("{neg}", "{prompts}") + " --method pca", "pca pairs prompts"),
    *_replacing(VECTOR_CACHE, [
        "vector-labels-not-binary | {labels_all} | {labels_bad} | labels must be 0 or 1",
        "vector-labels-wrong-count | {labels_all} | {labels_short} | 2 labels for a cache of",
        "vector-hook-not-cached | --layers 1 | --hooks blocks.0.hook_attn_out | blocks.0.hook_attn_out",
    ]),
    # steer sweep
    *_replacing(SWEEP, [
        "sweep-vector-tensors-missing | {vec} | {vec_nosafe} | vector.safetensors is missing",
        "sweep-neutral-is-dir | --neutral {prompts} | --neutral {adir} | adir",
        "sweep-out-is-file | {t}/s | {afile} | afile",
    ]),
    *_adding(SWEEP, [
        "sweep-scale-nan | --scales 0,nan | nan",
        "sweep-scale-not-a-number | --scales 0,big | scales '0,big'",
        "sweep-layers-not-ints | --layers x | --layers",
        "sweep-two-ways-to-choose-positions | --at-tokens w2 --after-tokens w3 | both choose where to steer",
        "sweep-within-0 | --after-tokens w2 --within 0 | --within",
    ]),
    # sae
    *_adding("sae features", [
        "sae-features-sae-is-file | --sae {afile} --cache {cache} --out {t}/f -q | is not an SAE directory",
    ]),
    *_replacing(SAE_TRAIN, [
        "sae-train-hook-not-cached | blocks.1.hook_resid_post | blocks.0.hook_attn_out"
        " | blocks.0.hook_attn_out",
        "sae-train-out-is-file | {t}/s | {afile} | afile",
    ]),
    *_adding(SAE_TRAIN, [
        "sae-train-k-0 | --k 0 | k must be a positive int",
        "sae-train-lr-nan | --lr nan | lr must be positive, got nan",
        "sae-train-eval-tokens-0 | --eval-tokens 0 | eval",
    ]),
    # decode cot
    *_replacing(COT, [
        "cot-k-0 | --k 2 | --k 0 | k=0",
        "cot-k-above-vocab | --k 2 | --k 100 | k=100 exceeds",
        "cot-n-negative | --n 2 | --n -1 | --n -1",
        "cot-n-0 | --n 2 | --n 0 | --n 0",
        "cot-max-new-tokens-0 | --max-new-tokens 4 | --max-new-tokens 0 | --max-new-tokens 0",
        "cot-out-is-file | {t}/o | {afile} | is a file",
    ]),
    *_adding(COT, ["cot-format-unknown | --format bogus | invalid choice: 'bogus'"]),
    *_adding(COT_TEXT, [
        "cot-prompts-is-dir | --stop w1 --prompts {adir} | --prompts",
        "cot-prompts-not-utf8 | --stop w1 --prompts {bad_utf8} | line 2 is not UTF-8",
        "cot-stop-two-tokens | --stop 'w1 w2' --prompts {prompts} | is 2 tokens",
    ]),
    Case("cot-hf-without-prompts", COT_TEXT, "is not an organism model"),
    # decode proxy
    *_adding(PROXY, [
        "proxy-alpha-nan | --alpha nan | alpha=nan",
        "proxy-alpha-inf | --alpha inf | alpha=inf",
        "proxy-tuned-other-vocabulary | --tuned hf:{gpt2} | --tuned has 64",
    ]),
    *_replacing(PROXY, [
        "proxy-max-new-tokens-0 | --max-new-tokens 3 | --max-new-tokens 0 | --max-new-tokens 0",
        "proxy-n-0 | --n 2 | --n 0 | --n 0",
        "proxy-out-is-file | {t}/o | {afile} | is a file",
    ]),
    *_adding(PROXY.replace("--base organism:base", "--base hf:{gpt2}"), [
        "proxy-vocabularies-differ | --prompts {prompts} | d_vocab differs",
    ]),
    *_adding(PROXY_HF, ["proxy-prompts-blank-file | --prompts {blank} | blank.txt' has no non-"]),
    Case(
        "amplify-alpha-nan",
        "decode amplify --tuned organism:small-tuned --parent organism:small-base --alpha nan --out {t}/a -q",
        "alpha=nan",
    ),
    # model diffing
    Case(
        "diff-crosscoder-not-a-pair",
        "diff crosscoder {adir} --hook blocks.0.hook_resid_post --out {t}/c -q",
        "is not a paired cache (no pair.json)",
    ),
    Case("diff-lens-positions-0", "diff lens {adir} --hook h --positions 0 --out {t}/l", "--positions 0"),
    # the command line itself
    Case("no-command", "", "required"),
    Case("unknown-subcommand", "probe nosuch", "invalid choice: 'nosuch'"),
]


def _argv(case: Case, paths: dict[str, str]) -> list[str]:
    import shlex

    words = list(case.argv) if isinstance(case.argv, list) else shlex.split(case.argv)
    return [w.format(**paths) for w in words]


@pytest.fixture(scope="module")
def mini_zoo(tmp_path_factory) -> Path:
    """Three random organisms in the zoo layout (base; small-base and small-tuned, narrower)."""
    from interp.atomic import atomic_write_json
    from interp.organism.store import save_weights_atomic
    from interp.organism.tokenizer import organism_vocab
    from interp.organism.train import ModelShape, build_model
    from interp.organism.world import WorldConfig, make_world

    zoo = tmp_path_factory.mktemp("zoo")
    world = make_world(WorldConfig(n_nodes=8, out_degree=2, max_id_dist=2, max_ood_dist=3))
    vocab = organism_vocab(world.n_nodes)
    atomic_write_json(zoo / "world.json", {"world": world.to_json(), "vocab": vocab})
    big = ModelShape(n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=64)
    small = ModelShape(n_layers=1, d_model=8, n_heads=2, d_mlp=16, n_ctx=64)
    for name, shape, seed in (("base", big, 0), ("small-base", small, 1), ("small-tuned", small, 2)):
        (zoo / name).mkdir()
        save_weights_atomic(zoo / name / "model.safetensors", build_model(shape, len(vocab), seed))
        atomic_write_json(zoo / name / "config.json", shape.hooked_config(len(vocab)))
        atomic_write_json(zoo / name / "card.json", {"name": name})
    return zoo


@pytest.fixture(scope="module")
def paths(tmp_path_factory, mini_zoo, gpt2_dir, prompts_file, built_cache) -> dict[str, str]:
    """Every fixture path by name, as the ``{name}`` fields of the cases' argv."""
    root = tmp_path_factory.mktemp("bad_inputs")
    files = {
        "afile": "hello\n",
        "pos.txt": "w1 w2 w3\nw4 w5 w6\n",
        "neg.txt": "w7 w8 w9\nw10 w11 w12\n",
        "nonobj.jsonl": '{"text": "w1 w2"}\n[1, 2]\n',
        "blank.txt": "\n  \n",
        "labels_bad.txt": "1\n0\n2\n",
        "labels_short.txt": "1\n0\n",
        "labels_all.txt": "".join(f"{i % 2}\n" for i in range(built_cache.n_positions)),
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "bad_utf8.txt").write_bytes(b"w1 w2\n\xff\xfe w3\n")
    (root / "adir").mkdir()
    (root / "empty_dir").mkdir()
    zoos = {}
    for kind in ("badworld", "trunc", "badcfg", "badcard"):
        zoos[kind] = Path(shutil.copytree(mini_zoo, root / f"zoo_{kind}"))
    (zoos["badworld"] / "world.json").write_text("{not json")
    weights = zoos["trunc"] / "base" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (zoos["badcfg"] / "base" / "config.json").write_text(json.dumps({"n_layers": "two", "d_model": 16}))
    (zoos["badcard"] / "base" / "card.json").write_text("[1,")
    vec = root / "vec"
    argv = [
        "steer",
        "vector",
        "--model",
        f"hf:{gpt2_dir}",
        "--positive",
        str(root / "pos.txt"),
        "--negative",
        str(root / "neg.txt"),
        "--layers",
        "1",
        "--out",
        str(vec),
        "-q",
    ]
    assert main(argv) == 0
    shutil.copytree(vec, root / "vec_nosafe")
    (root / "vec_nosafe" / "vector.safetensors").unlink()
    named = {
        "zoo": mini_zoo,
        "gpt2": gpt2_dir,
        "prompts": prompts_file,
        "cache": built_cache.root,
        "vec": vec,
        "vec_nosafe": root / "vec_nosafe",
        "afile": root / "afile",
        "adir": root / "adir",
        "empty_dir": root / "empty_dir",
        "bad_utf8": root / "bad_utf8.txt",
        "nonobj": root / "nonobj.jsonl",
        "blank": root / "blank.txt",
        "pos": root / "pos.txt",
        "neg": root / "neg.txt",
        "labels_bad": root / "labels_bad.txt",
        "labels_short": root / "labels_short.txt",
        "labels_all": root / "labels_all.txt",
        **{f"zoo_{k}": v for k, v in zoos.items()},
    }
    return {k: str(v) for k, v in named.items()}


def _run(argv: list[str]) -> tuple[object, str]:
    """``main(argv)``'s exit status; an escaping exception becomes the status ``"traceback"``."""
    import sys
    import traceback

    try:
        return main(argv), ""
    except SystemExit as exc:  # argparse refusals
        return exc.code, ""
    except Exception:  # noqa: BLE001 - recorded, and the case fails on it
        return "traceback", "".join(traceback.format_exception(*sys.exc_info()))


def _error_lines(stderr: str) -> list[str]:
    # In-process, tqdm was imported before ``-q`` set TQDM_DISABLE (a fresh ``interp`` process
    # shows no bar), so transformers' weight-loading bar may still appear: it is not a message.
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]
    if lines and lines[0].startswith("usage:"):  # argparse: its usage block, then one error line
        lines = [line for line in lines if ": error: " in line]
    return lines


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c,
            id=c.id,
            marks=[pytest.mark.xfail(strict=True, reason=f"fixed by {c.waits_on}")] if c.waits_on else [],
        )
        for c in CASES
    ],
)
def test_bad_input_gets_one_line(case: Case, paths, tmp_path, monkeypatch, capsys):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    fields = {**paths, "t": str(scratch)}
    monkeypatch.setenv("INTERP_ZOO", case.zoo.format(**fields))
    afile = Path(paths["afile"])

    code, tb = _run(_argv(case, fields))

    stderr = capsys.readouterr().err + tb
    assert "Traceback" not in stderr, stderr
    assert code not in (0, None), f"exit {code}: the bad input was accepted"
    lines = _error_lines(stderr)
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert case.expect in lines[0], lines[0]
    assert sorted(scratch.rglob("*")) == [], "something was left behind"
    assert afile.read_text() == "hello\n"


def test_the_round_covers_every_subcommand():
    """At least 45 cases, and every subcommand of ``interp --help`` has some."""
    from interp.cli import build_parser

    assert len(CASES) >= 45 and len({c.id for c in CASES}) == len(CASES)
    parser = build_parser()
    top = next(a for a in parser._actions if a.dest == "command")
    commands = set()
    for name, sub in top.choices.items():
        actions = [a for a in sub._actions if getattr(a, "choices", None) and a.dest.endswith("command")]
        commands |= {f"{name} {child}" for a in actions for child in a.choices} or {name}
    covered = set()
    for c in CASES:
        words = c.argv.split() if isinstance(c.argv, str) else list(c.argv)
        covered |= {" ".join(words[:2]), words[0] if words else ""}
    assert commands <= covered, sorted(commands - covered)


def test_read_lines_and_output_dir_name_the_flag_and_create_nothing(tmp_path):
    from interp.commands import CommandLineError, output_dir, read_lines

    text = tmp_path / "p.txt"
    text.write_bytes(b"w1 w2\r\n\n  \nw3\n")
    assert read_lines(text, "--prompts") == ["w1 w2", "w3"]
    text.write_bytes(b"w1\nw2\n\x80 w3\n")
    with pytest.raises(CommandLineError, match=r"^--negative '.*p\.txt' line 3 is not UTF-8 \(byte 0x80\)"):
        read_lines(text, "--negative")
    with pytest.raises(CommandLineError, match=r"--out '.*p\.txt/a/b': '.*p\.txt' is a file"):
        output_dir(text / "a" / "b")
    assert output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt"]  # nothing was created


def test_one_experiment_alone_refuses_a_file_as_out(tmp_path, capsys):
    """``python -m experiments.NAME`` checks its arguments as ``interp reproduce`` does."""
    from experiments.reproduce import main_one

    afile = tmp_path / "afile"
    afile.write_text("hello\n")
    with pytest.raises(SystemExit) as exc:
        main_one("experiments.e1_info_gain", ["--out", str(afile), "--no-build", "-q"])
    assert exc.value.code == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "is a file, not a directory" in lines[0]
    assert afile.read_text() == "hello\n" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
