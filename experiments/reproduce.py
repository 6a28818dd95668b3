"""The main job, ``interp reproduce``: build or reuse the zoo, run every experiment, write the report.

Two suites: ``organism`` (the zoo and the experiments ``experiments/eN_*.py``) and ``real`` (a
real model and its CPU fine-tunes, :mod:`experiments.real`); ``all`` runs both into one report.
A failed experiment or stage is reported (with its error) in REPORT.md and results.json, and the
run goes on. A rerun reuses the zoo, every activation cache whose settings match and every
fine-tuned checkpoint.

Seeds: the organism suite runs once per ``(world seed, model seed)`` combination, the profile's
``world_seeds`` x ``model_seeds`` (``full``: 3 x 2; ``tiny`` and ``quick``: one) or the
combinations ``--seeds W:M,W:M`` names. The first combination is the main run, exactly what a
single-seed run is: its zoo is ``$INTERP_ZOO`` or ``OUT/zoo``, its results are ``OUT`` and its
claims make the report's claims table. Each other combination builds its zoo in
``OUT/zoo-w{W}-m{M}`` and runs the suite into ``OUT/seeds/w{W}-m{M}/`` (its own results.json and
REPORT.md); the report's "Seed spread" section and ``results.json["seed_spread"]`` give every
combination's verdict per finding and the mean, min and max of the card metrics per model. A
failed combination is reported as a failed step, and the other combinations still run.
"""

import argparse
import importlib
import logging
import os
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from experiments import EXPERIMENTS
from experiments.context import Context, write_json
from experiments.report import render_report

log = logging.getLogger(__name__)

CARD_METRICS = (
    "fact_recall",
    "attr_recall",
    "solve_rate_id",
    "solve_rate_ood",
    "answer_accuracy_id",
    "answer_accuracy_ood",
    "answer_only_accuracy",
    "trace_validity",
    "markers_per_response",
    "build_seconds",
)
SPREAD_METRICS = (
    "solve_rate_id",
    "solve_rate_ood",
    "answer_accuracy_id",
    "markers_per_response",
    "fact_recall",
    "attr_recall",
)
"""Card metrics whose mean, min and max over seed combinations the report gives per model."""
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
    seeds: Sequence[tuple[int, int]] | None = None,
) -> int:
    """Run the main job and write ``REPORT.md``, ``results.json`` and the figures into ``out_dir``.

    The zoo lives in ``$INTERP_ZOO`` when set, else in ``out_dir/zoo``; the real suite's
    checkpoints in ``out_dir/real``. With several seed combinations, the first uses that zoo
    and ``out_dir``; each other one ``out_dir/zoo-w{W}-m{M}`` and ``out_dir/seeds/w{W}-m{M}``.

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
        seeds: the ``(world_seed, model_seed)`` combinations of the organism suite, the first
            being the main run (default: the profile's ``world_seeds`` x ``model_seeds``).

    Returns:
        0 when every step ran (or the real suite was skipped because its model is not
        installed), 1 when one failed (the report says which and why).

    Raises:
        ValueError: an unknown profile, suite or experiment name, or unusable ``seeds``.
    """
    if suite not in SUITES:
        raise ValueError(f"suite={suite!r}; expected one of {SUITES}")
    from interp.organism.profiles import profile_config

    combos = check_seeds(profile_config(profile).seed_combinations() if seeds is None else seeds)
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
        zoo = Path(os.environ.get("INTERP_ZOO") or out / "zoo")
        with _zoo_env(zoo):
            results = _run(profile, out, zoo, progress, names, build, combos[0])
        if len(combos) > 1:
            results["seed_spread"] = _other_seeds(profile, out, progress, names, build, combos, results)
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
        return {
            "status": "failed",
            "model": spec,
            "profile": profile,
            "seconds": {},
            "failures": {"suite": f"{type(exc).__name__}: {exc}"},
        }


def check_seeds(seeds: Sequence[Any]) -> list[tuple[int, int]]:
    """``seeds`` as a list of ``(world_seed, model_seed)`` pairs of ints >= 0, none repeated.

    Raises:
        ZooConfigError: an empty list, a pair that is not two ints >= 0, or a repeated pair.

    Example:
        >>> check_seeds([(0, 0), [1, 0]])
        [(0, 0), (1, 0)]
    """
    from interp.organism.profiles import ZooConfigError

    out: list[tuple[int, int]] = []
    for pair in seeds:
        ok = isinstance(pair, tuple | list) and len(pair) == 2
        ok = ok and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in pair)
        if not ok:
            raise ZooConfigError(f"seeds: {pair!r}; expected (world_seed, model_seed), two ints >= 0")
        if tuple(pair) in out:
            raise ZooConfigError(f"seeds: {tuple(pair)!r} is listed twice; expected distinct combinations")
        out.append((pair[0], pair[1]))
    if not out:
        raise ZooConfigError("seeds: an empty list; expected at least one (world_seed, model_seed) pair")
    return out


def parse_seeds(text: str) -> list[tuple[int, int]]:
    """``--seeds 0:0,1:0`` as ``[(0, 0), (1, 0)]`` (world seed, then model seed).

    Raises:
        CommandLineError: text that is not ``W:M`` pairs of ints >= 0 separated by commas.

    Example:
        >>> parse_seeds("0:0, 1:0,2:1")
        [(0, 0), (1, 0), (2, 1)]
    """
    from interp.commands import CommandLineError
    from interp.organism.profiles import ZooConfigError

    pairs = []
    for item in text.split(","):
        w, sep, m = item.strip().partition(":")
        if not (sep and w.isdigit() and m.isdigit()):
            raise CommandLineError(
                f"--seeds {text!r}: {item.strip()!r} is not W:M; expected world:model seed pairs "
                "of ints >= 0 separated by commas, e.g. 0:0,1:0"
            )
        pairs.append((int(w), int(m)))
    try:
        return check_seeds(pairs)
    except ZooConfigError as exc:
        raise CommandLineError(f"--{exc}") from None


def seed_label(world_seed: int, model_seed: int) -> str:
    """``w1-m0``: how a seed combination names its zoo (``zoo-w1-m0``) and run folder."""
    return f"w{world_seed}-m{model_seed}"


@contextmanager
def _zoo_env(zoo: Path) -> Iterator[None]:
    """``$INTERP_ZOO`` set to ``zoo`` inside (so that ``organism:NAME`` specs resolve to it)."""
    previous = os.environ.get("INTERP_ZOO")
    os.environ["INTERP_ZOO"] = str(zoo)
    try:
        yield
    finally:  # a temporary change: restore the caller's environment
        if previous is None:
            os.environ.pop("INTERP_ZOO", None)
        else:
            os.environ["INTERP_ZOO"] = previous


def _other_seeds(
    profile: str,
    out: Path,
    progress: bool,
    names: list[str],
    build: bool,
    combos: list[tuple[int, int]],
    main: dict[str, Any],
) -> dict[str, Any]:
    """Run the suite for every combination after the first; each one's failures join ``main``'s."""
    runs = [(combos[0], ".", {**main, "failures": dict(main["failures"])})]
    for w, m in combos[1:]:
        label = seed_label(w, m)
        zoo, sub_out = out / f"zoo-{label}", out / "seeds" / label
        log.info("seed combination %s: zoo %s, run %s", label, zoo, sub_out)
        try:
            sub_out.mkdir(parents=True, exist_ok=True)
            with _zoo_env(zoo):
                sub = _run(profile, sub_out, zoo, progress, names, build, (w, m))
            sub["suite"] = "organism"
            write_json(sub_out / "results.json", sub)
            (sub_out / "REPORT.md").write_text(render_report(sub))
        except Exception as exc:  # noqa: BLE001 - a failed combination is reported and the run goes on
            log.error("seed combination %s failed:\n%s", label, traceback.format_exc())
            sub = {
                "zoo_dir": str(zoo),
                "seeds": {"world": w, "model": m},
                "experiments": {},
                "zoo": {},
                "failures": {"combination": f"{type(exc).__name__}: {exc}"},
            }
        for key, error in sub["failures"].items():
            main["failures"][f"seeds:{label}:{key}"] = error
        runs.append(((w, m), str(sub_out.relative_to(out)), sub))
    return seed_spread(runs)


def seed_spread(runs: list[tuple[tuple[int, int], str, dict[str, Any]]]) -> dict[str, Any]:
    """Every combination's verdict per finding, and the spread of the card metrics per model.

    Args:
        runs: ``((world_seed, model_seed), run folder relative to OUT, results)`` per combination,
            the main run first.

    Returns:
        ``combinations`` (label, seeds, zoo, folder, status, failed steps), ``findings``
        (experiment -> finding, title and ``verdicts`` by label: a claim's verdict, or
        ``failed``) and ``card_metrics`` (model -> metric -> ``mean``, ``min``, ``max``, ``n``
        and ``values`` by label, over the combinations whose card has the metric).
    """
    combos, findings, values = [], {}, {}
    for (w, m), folder, res in runs:
        label = seed_label(w, m)
        combos.append(
            {
                "label": label,
                "world_seed": w,
                "model_seed": m,
                "zoo": res.get("zoo_dir"),
                "dir": folder,
                "status": _status(res.get("failures", {})),
                "failed_steps": sorted(res.get("failures", {})),
            }
        )
        for name, exp in res.get("experiments", {}).items():
            entry = findings.setdefault(
                name, {"finding": exp.get("finding"), "title": exp.get("title", name), "verdicts": {}}
            )
            entry["verdicts"][label] = exp["claim"]["verdict"] if exp.get("claim") else "failed"
        for model, card in res.get("zoo", {}).items():
            for k in SPREAD_METRICS:
                if isinstance(card.get(k), int | float):
                    values.setdefault(model, {}).setdefault(k, {})[label] = float(card[k])
    for entry in findings.values():  # a combination where the experiment did not run at all
        for c in combos:
            entry["verdicts"].setdefault(c["label"], "failed")
    metrics = {
        model: {
            k: {
                "mean": round(sum(v.values()) / len(v), 4),
                "min": min(v.values()),
                "max": max(v.values()),
                "n": len(v),
                "values": v,
            }
            for k, v in per.items()
        }
        for model, per in values.items()
    }
    return {
        "first": combos[0]["label"],
        "combinations": combos,
        "findings": findings,
        "card_metrics": metrics,
    }


def _status(failures: dict[str, str]) -> str:
    if {"zoo", "combination"} & set(failures):
        return "failed"
    return "some steps failed" if failures else "ok"


def _run(
    profile: str,
    out: Path,
    zoo: Path,
    progress: bool,
    names: list[str],
    build: bool,
    seeds: tuple[int, int] = (0, 0),
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from interp.organism import available_organisms, build_zoo, load_world, read_card

    world_seed, model_seed = seeds
    results: dict[str, Any] = {
        "profile": profile,
        "zoo_dir": str(zoo),
        "seeds": {"world": world_seed, "model": model_seed},
        "seconds": {},
        "failures": {},
    }
    t0 = time.perf_counter()
    try:
        if build:
            cards = build_zoo(profile, zoo, seed=model_seed, world_seed=world_seed, progress=progress)
        else:
            load_world(zoo)  # no zoo there: a failed step that says so, not an empty one
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
        "--seeds",
        default=None,
        metavar="W:M,W:M",
        help="(world seed, model seed) combinations of the organism suite, the first the main run "
        "(default: the profile's, 3 x 2 for full, 0:0 otherwise); each other one gets OUT/zoo-wW-mM",
    )
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
    if args.seeds is not None:
        parse_seeds(args.seeds)
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
        seeds=None if args.seeds is None else parse_seeds(args.seeds),
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
        args.profile,
        args.out,
        progress=not args.quiet,
        only=[name],
        build=args.build,
        suite="organism",
        seeds=None if args.seeds is None else parse_seeds(args.seeds),
    )
    print(Path(args.out) / "experiments" / f"{name}.json")
    return code
