"""The main job, ``interp reproduce``: build or reuse the zoo, run every experiment, write the report.

Two suites: ``organism`` (the zoo and the experiments ``experiments/eN_*.py``) and ``real`` (a
real model and its CPU fine-tunes, :mod:`experiments.real`); ``all`` runs both into one report.
A failed experiment or stage is reported (with its error) in REPORT.md and results.json, and the
run goes on. A rerun reuses the zoo, every activation cache whose settings match and every
fine-tuned checkpoint.
"""

import argparse
import importlib
import logging
import os
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments import EXPERIMENTS
from experiments.context import Context, write_json
from experiments.report import render_report

log = logging.getLogger(__name__)

CARD_METRICS = (
    "fact_recall",
    "solve_rate_id",
    "solve_rate_ood",
    "answer_accuracy_id",
    "answer_accuracy_ood",
    "answer_only_accuracy",
    "trace_validity",
    "markers_per_response",
    "build_seconds",
)
SUITES = ("organism", "real", "all")
REAL_MODEL_ENV = "INTERP_REAL_MODEL"
TINY_REAL_SKIP = (
    "skipped: profile tiny runs the real suite only on a model named by --real-model (a tiny hf: "
    "checkpoint); smollm2 runs on the quick and full profiles"
)


def reproduce(
    profile: str = "quick",
    out_dir: str | Path = "runs/reproduce",
    progress: bool = True,
    only: Sequence[str] | None = None,
    build: bool = True,
    suite: str = "all",
    real_model: str | None = None,
) -> int:
    """Run the main job and write ``REPORT.md``, ``results.json`` and the figures into ``out_dir``.

    The zoo lives in ``$INTERP_ZOO`` when set, else in ``out_dir/zoo``; the real suite's
    checkpoints in ``out_dir/real``.

    Args:
        profile: ``tiny`` (CI), ``quick`` (2 CPU cores) or ``full``.
        out_dir: the run folder.
        progress: one progress bar over the experiments (plus the zoo build's own bars).
        only: run these experiments (module names of ``experiments``) instead of all.
        build: build or update the zoo first (``False``: use the zoo as it is, even if it was
            built by an older version or another profile; its cards say so).
        suite: ``organism``, ``real`` (no zoo is built) or ``all``.
        real_model: the real suite's model (default ``$INTERP_REAL_MODEL``, else ``smollm2``
            on the quick and full profiles; the tiny profile skips the real suite without one).

    Returns:
        0 when every step ran (or the real suite was skipped because its model is not
        installed), 1 when one failed (the report says which and why).

    Raises:
        ValueError: an unknown profile, suite or experiment name.
    """
    if suite not in SUITES:
        raise ValueError(f"suite={suite!r}; expected one of {SUITES}")
    names = list(EXPERIMENTS if only is None else only)
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"unknown experiments {unknown}; expected some of {list(EXPERIMENTS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if suite == "real":
        results: dict[str, Any] = {"suite": "real", "profile": profile, "seconds": {}, "failures": {}}
    else:
        previous = os.environ.get("INTERP_ZOO")
        zoo = Path(previous or out / "zoo")
        os.environ["INTERP_ZOO"] = str(zoo)  # so that organism:NAME specs resolve to this zoo
        try:
            results = _run(profile, out, zoo, progress, names, build)
        finally:  # a temporary change: restore the caller's environment
            if previous is None:
                os.environ.pop("INTERP_ZOO", None)
            else:
                os.environ["INTERP_ZOO"] = previous
        results["suite"] = suite
    if suite != "organism":
        results["real"] = _run_real(profile, out, progress, real_model)
        for stage, error in results["real"].get("failures", {}).items():
            results["failures"][f"real:{stage}"] = error
        results["seconds"]["real"] = results["real"].get("seconds", {}).get("total", 0.0)
        results["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    write_json(out / "results.json", results)
    (out / "REPORT.md").write_text(render_report(results))
    log.info("wrote %s and %s", out / "REPORT.md", out / "results.json")
    return 1 if results["failures"] else 0


def _run_real(profile: str, out: Path, progress: bool, real_model: str | None) -> dict[str, Any]:
    from experiments.real import run_real_suite

    spec = real_model or os.environ.get(REAL_MODEL_ENV) or (None if profile == "tiny" else "smollm2")
    if spec is None:
        return {"status": TINY_REAL_SKIP, "model": None, "profile": profile, "seconds": {}}
    try:
        return run_real_suite(out / "real", profile, model_spec=spec, progress=progress)
    except Exception as exc:  # noqa: BLE001 - reported, and the organism's report is still written
        log.error("the real suite failed:\n%s", traceback.format_exc())
        return {"status": "failed", "model": spec, "profile": profile, "seconds": {},
                "failures": {"suite": f"{type(exc).__name__}: {exc}"}}


def _run(profile: str, out: Path, zoo: Path, progress: bool, names: list[str], build: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from interp.organism import available_organisms, build_zoo, read_card

    results: dict[str, Any] = {"profile": profile, "zoo_dir": str(zoo), "seconds": {}, "failures": {}}
    t0 = time.perf_counter()
    try:
        if build:
            cards = build_zoo(profile, zoo, progress=progress)
        else:
            cards = [read_card(n, zoo) for n in available_organisms(zoo, doses=False)]
    except Exception as exc:  # noqa: BLE001 - reported, and nothing else can run
        results["failures"]["zoo"] = f"{type(exc).__name__}: {exc}"
        cards = []
    results["seconds"]["zoo"] = round(time.perf_counter() - t0, 2)
    results["zoo"] = {c["name"]: {k: c.get(k) for k in CARD_METRICS} for c in cards}
    ctx = Context(profile, out, zoo, progress)
    exps: dict[str, Any] = {}
    bar = tqdm(names, desc="experiments", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        exps[name] = _run_one(name, ctx) if cards else {"status": "failed", "error": "no zoo"}
        if exps[name]["status"] != "ok":
            results["failures"][name] = exps[name]["error"].strip().splitlines()[-1]
        results["seconds"][name] = exps[name].get("seconds", 0.0)
    results["experiments"] = exps
    results["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    return results


def _run_one(name: str, ctx: Context) -> dict[str, Any]:
    sub = ctx.for_experiment(name)
    t = time.perf_counter()
    entry: dict[str, Any] = {}
    try:
        mod = importlib.import_module(f"experiments.{name}")
        entry.update(finding=mod.FINDING, title=mod.TITLE)
        numbers = mod.run(sub)
        claim = mod.claim(numbers)
        entry.update(status="ok", results=numbers, claim=claim.to_dict())
    except Exception:  # noqa: BLE001 - a failed experiment is reported and the run goes on
        log.error("experiment %s failed:\n%s", name, traceback.format_exc())
        entry.update(status="failed", error=traceback.format_exc(limit=4))
    entry.update(
        seconds=round(time.perf_counter() - t, 2),
        figures=sub.figures,
        caches=sub.caches,
        evaluations=sub.evaluations,
    )
    write_json(ctx.out / "experiments" / f"{name}.json", entry)
    return entry


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add ``reproduce`` to the ``interp`` command line (registered through an entry point)."""
    r = subparsers.add_parser("reproduce", help="the main job: zoo, every experiment, REPORT.md")
    _add_args(r, default_out="runs/reproduce")
    r.add_argument("--only", nargs="+", default=None, metavar="EXPERIMENT", help="run only these")
    r.add_argument(
        "--suite",
        default="all",
        choices=SUITES,
        help="organism (the zoo's experiments), real (a real model and its fine-tunes) or all",
    )
    r.add_argument(
        "--real-model",
        default=None,
        metavar="SPEC",
        help=f"the real suite's model (default ${REAL_MODEL_ENV}, else smollm2; the tiny profile needs one)",
    )
    r.set_defaults(func=_cli)
    return r


def _add_args(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--profile", default="quick", choices=["tiny", "quick", "full"])
    p.add_argument("--out", default=default_out)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument(
        "--no-build",
        dest="build",
        action="store_false",
        help="use the zoo as it is instead of building or updating it first",
    )


def _check_args(args: argparse.Namespace) -> None:
    """Refuse an unusable ``--out``, and ``--no-build`` with no zoo, before anything is written."""
    from interp.commands import CommandLineError, output_dir
    from interp.organism.store import WORLD_FILE, ZOO_ENV

    output_dir(args.out)
    if getattr(args, "suite", "organism") == "real":
        return
    zoo = Path(os.environ.get(ZOO_ENV) or Path(args.out) / "zoo").expanduser()
    if not args.build and not (zoo / WORLD_FILE).is_file():
        raise CommandLineError(
            f"--no-build: no zoo at {str(zoo)!r} (${ZOO_ENV}, else OUT/zoo); expected a zoo built by "
            f"`interp organism build --profile {args.profile} --out DIR`, or leave out --no-build"
        )


def _cli(args: argparse.Namespace) -> int:
    _check_args(args)
    code = reproduce(
        args.profile,
        args.out,
        progress=not args.quiet,
        only=args.only,
        build=args.build,
        suite=args.suite,
        real_model=args.real_model,
    )
    print(f"{Path(args.out) / 'REPORT.md'}" + ("" if code == 0 else "  (some steps failed: see the report)"))
    return code


def main_one(module_name: str, argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.NAME``: run one experiment (and the zoo it needs) alone."""
    name = module_name.rsplit(".", 1)[-1]
    p = argparse.ArgumentParser(prog=f"python -m experiments.{name}")
    _add_args(p, default_out=f"runs/{name}")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from interp.errors import InterpError

    try:
        _check_args(args)
    except InterpError as exc:
        p.error(str(exc))  # one line and exit status 2, as ``interp reproduce`` gives
    code = reproduce(
        args.profile, args.out, progress=not args.quiet, only=[name], build=args.build, suite="organism"
    )
    print(Path(args.out) / "experiments" / f"{name}.json")
    return code
