"""Saving and printing the small result objects that probes and steering return.

Every public result (a metric, a battery, a sweep) is a frozen dataclass with ``to_dict()``; these
helpers give it the same three outputs: an aligned text table, an atomically written JSON file,
and an atomically written PNG.
"""

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interp.atomic import atomic_open, atomic_write_json


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    """An aligned text table; floats get ``digits`` decimals, ``None`` prints as ``-``.

    Example:
        >>> print(format_table(["model", "acc"], [["base", 0.5], ["sft", None]]))
        model    acc
         base  0.500
          sft      -
    """

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return str(v)

    table = [[str(h) for h in header]] + [[cell(v) for v in r] for r in rows]
    for i, r in enumerate(table):
        if len(r) != len(header):
            raise ValueError(f"row {i - 1} has {len(r)} cells; the header has {len(header)}")
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in table)


def save_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj.to_dict()`` (or ``obj`` itself, a dict) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj.to_dict() if hasattr(obj, "to_dict") else obj)
    return path


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically and close it; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
