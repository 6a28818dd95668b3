"""The main job, ``interp reproduce``: build or reuse the zoo, cache activations, write a report.

The experiments that reproduce the findings of PAPERS.md are not implemented yet. Until they
are, this runs what exists (the model organism zoo, paired activation caches of the base model
and its accuracy-optimized fine-tunes, their verification) and says in REPORT.md, claim by
claim, that the experiment was not run.
"""

import json
import logging
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TUNED = ("sft-answer", "sft-clean", "rl-answer", "rl-fork")
CARD_METRICS = (
    "fact_recall", "solve_rate_id", "solve_rate_ood", "answer_accuracy_id", "answer_accuracy_ood",
    "answer_only_accuracy", "trace_validity", "markers_per_response", "build_seconds",
)
# The findings of PAPERS.md and the experiment that will test each (issue #6).
CLAIMS = (
    ("1", "SFT raises accuracy but cuts Information Gain", "-38.9% InfoGain"),
    ("2", "Fine-tuning makes chain of thought less load-bearing", "AOC 0.44 vs 0.02; invariance rises"),
    ("3", "Irrelevant (swapped) traces train about as well as correct ones", "accuracy matches"),
    ("4", "Post-training suppresses epistemic verbalization", "up to 40% OOD drop"),
    ("5", "Proxy-tuning keeps knowledge that fine-tuning damages", "91% / 88% gap closed"),
    ("6", "Base models already hold the reasoning; post-training selects it", "base wins pass@k at large k"),
    ("7", "Reasoning decisions live in high-entropy forking tokens", "top-20% updates match full"),
    ("8", "Backward reasoning as an extra objective helps forward reasoning", "+13.53%"),
    ("9", "More thinking is not always better", "87.3% -> 70.3% when forced longer"),
)


def _step(name: str, fn: Callable[[], Any], results: dict, failures: dict) -> Any:
    t = time.perf_counter()
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - a failed step is reported and the run goes on
        failures[name] = f"{type(exc).__name__}: {exc}"
        log.error("step %s failed:\n%s", name, traceback.format_exc())
        value = None
    results["seconds"][name] = round(time.perf_counter() - t, 2)
    return value


def reproduce(profile: str = "quick", out_dir: str | Path = "runs/reproduce", progress: bool = True) -> int:
    """Run the main job and write ``REPORT.md`` and ``results.json`` into ``out_dir``.

    The zoo lives in ``$INTERP_ZOO`` when set, else in ``out_dir/zoo``; a rerun reuses it and
    the caches.

    Returns:
        0 when every step ran, 1 when a step failed (the report says which).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    zoo = Path(os.environ.get("INTERP_ZOO") or out / "zoo")
    previous = os.environ.get("INTERP_ZOO")
    os.environ["INTERP_ZOO"] = str(zoo)  # so that organism:NAME specs resolve to this zoo
    try:
        failures = _run(profile, out, zoo, progress)
    finally:  # a temporary change: restore the caller's environment
        if previous is None:
            os.environ.pop("INTERP_ZOO", None)
        else:
            os.environ["INTERP_ZOO"] = previous
    return 1 if failures else 0


def _run(profile: str, out: Path, zoo: Path, progress: bool) -> dict[str, str]:
    results: dict[str, Any] = {"profile": profile, "zoo_dir": str(zoo), "seconds": {}}
    failures: dict[str, str] = {}
    t0 = time.perf_counter()

    from interp.organism import build_zoo

    cards = _step("zoo", lambda: build_zoo(profile, zoo, progress=progress), results, failures)
    if cards:
        results["zoo"] = {c["name"]: {k: c.get(k) for k in CARD_METRICS} for c in cards}
    caches = _step("caches", lambda: _caches(out, progress), results, failures) if cards else None
    if caches:
        results["caches"] = caches
    results["experiments"] = {
        n: {"status": "not run", "reason": "experiment not implemented yet (issue #6)"}
        for n, _, _ in CLAIMS
    }
    results["failures"] = failures
    results["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (out / "REPORT.md").write_text(render_report(results))
    log.info("wrote %s and %s", out / "REPORT.md", out / "results.json")
    return failures


def _caches(out: Path, progress: bool) -> dict[str, Any]:
    from interp.cache import CacheConfig, build_paired_cache, verify_cache

    cfg = CacheConfig(hooks=("blocks.*.hook_resid_post",), positions="all", batch_size=64)
    models = {name: f"organism:{name}" for name in ("base", *TUNED)}
    pair = build_paired_cache(models, "organism:test_id", out / "caches" / "test_id_resid", cfg, progress)
    info = {}
    for label, cache in pair.caches.items():
        report = verify_cache(cache.root, recompute=4, progress=False)
        info[label] = {
            "id": cache.id,
            "dir": str(cache.root.relative_to(out)),
            "model_fingerprint": cache.model_fingerprint,
            "n_rows": cache.n_rows,
            "n_positions": cache.n_positions,
            "hooks": cache.hooks,
            "verified": report.ok,
            "verify_max_rel_error": max(report.max_rel_error.values(), default=0.0),
        }
    return info


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.3f}"
    return "—" if x is None else str(x)


def render_report(results: dict[str, Any]) -> str:
    """Render REPORT.md from a results dict (as written to results.json)."""
    lines = [
        "# interp reproduce: report",
        "",
        f"Profile `{results['profile']}`; zoo `{results['zoo_dir']}`; "
        f"total {results['seconds'].get('total', 0):.1f} s.",
        "",
        "## Claims",
        "",
        "| # | finding (PAPERS.md) | paper | organism | verdict |",
        "|---|---|---|---|---|",
    ]
    for n, claim, paper in CLAIMS:
        exp = results["experiments"][n]
        lines.append(f"| {n} | {claim} | {paper} | — | {exp['status']}: {exp['reason']} |")
    lines += ["", "No finding is claimed as reproduced: the experiments do not exist yet.", ""]
    if results["failures"]:
        lines += ["## Failed steps", ""]
        lines += [f"- `{k}`: {v}" for k, v in results["failures"].items()]
        lines.append("")
    if "zoo" in results:
        took = results["seconds"]["zoo"]
        lines += ["## The model organism zoo", "", f"Built or reused in {took:.1f} s.", ""]
        lines.append("| model | " + " | ".join(CARD_METRICS) + " |")
        lines.append("|---" * (len(CARD_METRICS) + 1) + "|")
        for name, card in results["zoo"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(card.get(k)) for k in CARD_METRICS) + " |")
        lines.append("")
    if "caches" in results:
        lines += [
            "## Activation caches",
            "",
            "Residual stream after every block, every position of the in-distribution test "
            "prompts, one cache per model over the same token rows "
            f"({results['seconds']['caches']:.1f} s, verified by checksums and 4 recomputed rows).",
            "",
            "| model | cache ID | rows | positions | verified |",
            "|---|---|---|---|---|",
        ]
        for label, c in results["caches"].items():
            lines.append(
                f"| {label} | `{c['id']}` | {c['n_rows']} | {c['n_positions']} | "
                f"{'yes' if c['verified'] else 'NO'} (max rel. err. {c['verify_max_rel_error']:.1e}) |"
            )
        lines.append("")
    lines += ["## Time per step", ""]
    lines += [f"- {k}: {v:.1f} s" for k, v in results["seconds"].items()]
    return "\n".join(lines) + "\n"
