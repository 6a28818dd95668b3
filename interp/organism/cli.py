"""``interp organism build`` and ``interp organism list``; torch is imported inside the commands.

Both print the zoo's models as a table, then a line per fine-tune with its doses (the same
run saved after fewer steps, loadable as ``organism:NAME@STEPS``).
"""

import argparse
import logging

PROFILE_CHOICES = ("tiny", "quick", "full")
TABLE_COLUMNS = (
    ("name", "name"),
    ("steps", "steps"),
    ("build_seconds", "secs"),
    ("fact_recall", "facts"),
    ("solve_rate_id", "solve_id"),
    ("solve_rate_ood", "solve_ood"),
    ("answer_accuracy_id", "ans_id"),
    ("answer_accuracy_ood", "ans_ood"),
    ("answer_only_accuracy", "ans_only"),
    ("trace_validity", "valid"),
    ("markers_per_response", "markers"),
)


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add the ``organism`` subcommand (``build``, ``list``) to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("organism", help="build or list the built-in model organism zoo")
    sub = p.add_subparsers(dest="organism_command", metavar="{build,list}")
    sub.required = True
    b = sub.add_parser("build", help="train (or reuse) every model of the zoo")
    b.add_argument("--profile", choices=PROFILE_CHOICES, default="quick")
    b.add_argument("--out", default=None, help="zoo directory (default: $INTERP_ZOO or ~/.cache/interp/zoo)")
    b.add_argument("--seed", type=int, default=0, help="seed of every model (and of the world, by default)")
    b.add_argument("--world-seed", type=int, default=None, help="seed of the world (default: --seed)")
    b.add_argument("--threads", type=int, default=2, help="torch CPU threads while building (default 2)")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bars or per-model log lines")
    b.set_defaults(func=_build)
    ls = sub.add_parser("list", help="print the zoo as a table of its cards' metrics")
    ls.add_argument("--zoo", default=None, help="zoo directory (default: $INTERP_ZOO or ~/.cache/interp/zoo)")
    ls.set_defaults(func=_list)
    return p


def _build(args: argparse.Namespace) -> int:
    from interp.commands import output_dir, require_at_least

    require_at_least("--threads", args.threads)
    if args.out is not None:
        output_dir(args.out)

    from interp.organism.zoo import build_zoo

    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        logging.getLogger("interp.organism").setLevel(logging.INFO)
    cards = build_zoo(
        args.profile,
        args.out,
        seed=args.seed,
        world_seed=args.world_seed,
        progress=not args.quiet,
        threads=args.threads,
    )
    print(format_table(cards))
    print(format_doses(cards, args.out))
    return 0


def _list(args: argparse.Namespace) -> int:
    from interp.organism.store import available_organisms, load_world, read_card, resolve_zoo_dir

    zoo = resolve_zoo_dir(args.zoo)
    load_world(zoo)  # raises SpecError with the "run interp organism build" hint
    cards = [read_card(n, zoo) for n in available_organisms(zoo, doses=False)]
    print(f"zoo: {zoo}")
    print(format_table(cards))
    print(format_doses(cards, zoo))
    return 0


def format_table(cards: list[dict]) -> str:
    """The cards as an aligned text table (one row per model)."""
    rows = [[title for _, title in TABLE_COLUMNS]]
    for c in cards:
        row = []
        for key, _ in TABLE_COLUMNS:
            v = c.get(key, "")
            row.append(f"{v:.2f}" if isinstance(v, float) else str(v))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_COLUMNS))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows)


def format_doses(cards: list[dict], zoo_dir: object = None) -> str:
    """A line per model that has doses: its parent (dose 0), each saved dose with its relative
    weight change from the parent, then the final model (the last dose)."""
    from interp.organism.store import read_card

    lines = ["doses (steps, relative weight change from the parent; load one as organism:NAME@STEPS):"]
    for c in cards:
        asked, saved = c.get("doses_asked") or [], c.get("doses") or []
        if not asked:
            continue
        points = [f"0 = {c.get('parent')}"]
        for d in saved:
            dose = read_card(f"{c['name']}@{d}", zoo_dir)
            points.append(f"{d} ({_change(dose)})")
        points.append(f"final {c.get('steps')} ({_change(c)})")
        missing = [d for d in asked if d not in saved]
        tail = f"; not reached: {', '.join(map(str, missing))}" if missing else ""
        lines.append(f"  {c['name']}: {', '.join(points)}{tail}")
    return "\n".join(lines) if len(lines) > 1 else "doses: none"


def _change(card: dict) -> str:
    v = card.get("relative_weight_change")
    return f"{v:.4f}" if isinstance(v, int | float) else "?"
