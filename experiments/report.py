"""Render REPORT.md from results.json: every number in the report is read from the results."""

from typing import Any

LONG_LIST = 12
"""Lists longer than this (per-problem outcomes, kept for the intervals) show as their length."""
SUMMARISED = {"dose_curves": "fine-tunes' dose curves"}
"""Subtrees a numbers table names with their size instead of listing every point."""


def _is_interval(d: Any) -> bool:
    return isinstance(d, dict) and {"estimate", "low", "high"} <= set(d)


def _fmt(x: Any) -> str:
    if _is_interval(x):  # one cell, as the claims table prints intervals
        return f"{x['estimate']:.3f} [{x['low']:.3f}, {x['high']:.3f}] (n={x.get('n', '?')})"
    if isinstance(x, float):
        return f"{x:.3f}"
    if isinstance(x, list) and len(x) > LONG_LIST:
        return f"{len(x)} values (in results.json)"
    return "-" if x is None else str(x)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return out


def _flat(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict) and not _is_interval(d):
        items = []
        for k in sorted(d):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k in SUMMARISED and isinstance(d[k], dict):
                items.append((key, f"{len(d[k])} {SUMMARISED[k]} (in results.json and the figure)"))
            else:
                items += _flat(d[k], key)
        return items
    return [(prefix, d)]


def render_report(results: dict[str, Any]) -> str:
    """The report: the organism's claims table, zoo and one section per experiment with its figures
    and caches (when the organism suite ran), then the real model's section (when it ran).

    Example:
        >>> r = {"profile": "tiny", "zoo_dir": "z", "seconds": {"total": 1.0}, "experiments": {}}
        >>> render_report(r).splitlines()[0]
        '# interp reproduce: report'
    """
    from experiments.real.report import render_real

    if "zoo_dir" in results:
        lines = _organism_lines(results)
    else:
        lines = [
            "# interp reproduce: report",
            "",
            f"Profile `{results['profile']}`; suite `{results.get('suite', 'real')}`; "
            f"total {results['seconds'].get('total', 0.0):.1f} s. Every number below is in `results.json`.",
            "",
        ]
    if results.get("real"):
        lines += render_real(results["real"], results.get("experiments"))
    return "\n".join(lines) + "\n"


def _organism_lines(results: dict[str, Any]) -> list[str]:
    exps = results.get("experiments", {})
    spread = results.get("seed_spread")
    lines = [
        "# interp reproduce: report",
        "",
        f"Profile `{results['profile']}`; zoo `{results['zoo_dir']}`; "
        f"total {results['seconds'].get('total', 0.0):.1f} s "
        f"(zoo {results['seconds'].get('zoo', 0.0):.1f} s). Every number below is in `results.json`.",
        "",
        "## Claims",
        "",
        "Each comparison carries a bootstrap 95% interval over problems (paired where the problems "
        "are shared), printed as `estimate [low, high]`; a comparison counts only when its interval "
        "excludes zero on the paper's side. A claim whose precondition failed is **not testable**, "
        'never "not reproduced".',
        *(
            [
                "",
                f"This table is that of the first seed combination, `{spread['first']}`, only; "
                "every combination's verdicts are under **Seed spread** below.",
            ]
            if spread
            else []
        ),
        "",
        "| # | finding (PAPERS.md) | paper | organism (95% intervals) | precondition | verdict | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, exp in sorted(exps.items(), key=lambda kv: kv[1].get("finding", 99)):
        c = exp.get("claim")
        if c:
            lines.append(
                f"| {c['finding']} | {c['title']} | {c['paper']} | {c['organism']} | "
                f"{c.get('precondition') or '-'} | **{c['verdict']}** | {c['explanation']} |"
            )
        else:
            lines.append(
                f"| {exp.get('finding', '?')} | {exp.get('title', name)} | - | - | - | **failed** | "
                f"{exp.get('error', 'no claim')} |"
            )
    lines.append("")
    if spread:
        lines += seed_spread_lines(spread)
    if results.get("failures"):
        lines += ["## Failed steps", ""]
        lines += [f"- `{k}`: {v}" for k, v in sorted(results["failures"].items())]
        lines.append("")
    if results.get("zoo"):
        cols = ["model", *sorted({k for m in results["zoo"].values() for k in m})]
        rows = [{"model": n, **m} for n, m in results["zoo"].items()]
        lines += ["## The zoo", "", "Cards of the organism models (held-out problems, greedy).", ""]
        lines += _table(rows, cols) + [""]
    for name, exp in sorted(exps.items(), key=lambda kv: kv[1].get("finding", 99)):
        lines += [f"## {exp.get('finding', '?')}. {exp.get('title', name)}", ""]
        lines.append(f"`experiments/{name}.py`, {exp.get('seconds', 0.0):.1f} s, status **{exp['status']}**.")
        lines.append("")
        if exp["status"] != "ok":
            lines += ["```", exp.get("error", ""), "```", ""]
            continue
        for fig in exp.get("figures", []):
            lines += [f"![{name}]({fig})", ""]
        for key, cache in sorted(exp.get("caches", {}).items()):
            lines.append(
                f"- cache `{key}` ({cache['used_for']}): `{cache['id']}` in `{cache['dir']}`, "
                f"{cache['n_rows']} rows, model `{cache['model_fingerprint'][:23]}...`"
            )
        if exp.get("evaluations"):
            lines.append(
                "- model metrics: "
                + ", ".join(
                    f"`{m}` ({e['source']}, `{e.get('fingerprint', '')[:23]}...`)"
                    for m, e in sorted(exp["evaluations"].items())
                )
            )
        if exp.get("caches") or exp.get("evaluations"):
            lines.append("")
        numbers = _flat(exp.get("results", {}))
        if numbers:
            lines += ["<details><summary>numbers</summary>", "", "| key | value |", "|---|---|"]
            lines += [f"| `{k}` | {_fmt(v)} |" for k, v in numbers]
            lines += ["", "</details>", ""]
    return lines


def seed_spread_lines(spread: dict[str, Any]) -> list[str]:
    """The "Seed spread" section: each combination's verdict per finding, and the card metrics'
    mean [min, max] per model over the combinations.

    Example:
        >>> s = {"first": "w0-m0", "combinations": [], "findings": {}, "card_metrics": {}}
        >>> seed_spread_lines(s)[0]
        '## Seed spread'
    """
    combos = spread["combinations"]
    labels = [c["label"] for c in combos]
    lines = [
        "## Seed spread",
        "",
        f"The organism suite on {len(combos)} combinations of world seed x model seed. The claims "
        f"table above is `{spread['first']}`'s; each other combination has its own zoo "
        "(`zoo-wW-mM`) and run folder (`seeds/wW-mM/`, with its REPORT.md and results.json).",
        "",
        "| combination | world seed | model seed | zoo | run folder | status |",
        "|---|---|---|---|---|---|",
    ]
    for c in combos:
        status = c["status"] + (f" ({', '.join(c['failed_steps'])})" if c.get("failed_steps") else "")
        seeds = f"{c['world_seed']} | {c['model_seed']}"
        lines.append(f"| `{c['label']}` | {seeds} | `{c['zoo']}` | `{c['dir']}` | {status} |")
    lines += ["", "Verdict of each finding per combination.", ""]
    lines += [
        "| # | finding | " + " | ".join(f"`{x}`" for x in labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for entry in sorted(spread["findings"].values(), key=lambda e: e.get("finding") or 99):
        cells = " | ".join(entry["verdicts"].get(x, "-") for x in labels)
        lines.append(f"| {entry.get('finding', '?')} | {entry['title']} | {cells} |")
    metrics = spread["card_metrics"]
    if metrics:
        keys = list(dict.fromkeys(k for per in metrics.values() for k in per))  # the order measured
        lines += [
            "",
            "Card metrics: mean [min, max] over the combinations whose card has the metric (n of them).",
            "",
        ]
        rows = [
            {
                "model": model,
                **{
                    k: f"{v['mean']:.3f} [{v['min']:.3f}, {v['max']:.3f}] (n={v['n']})"
                    for k, v in per.items()
                },
            }
            for model, per in metrics.items()
        ]
        lines += _table(rows, ["model", *keys])
    return [*lines, ""]
