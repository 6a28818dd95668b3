"""Write ``notebooks/NAME.ipynb`` from ``notebooks/src/NAME.py`` (percent format: ``# %%`` starts a
code cell, ``# %% [markdown]`` a markdown cell whose lines begin with ``# ``).

Run ``python notebooks/make_notebooks.py`` after editing a source; outputs are not committed.
Each notebook reads ``INTERP_PROFILE`` (default ``quick``) and ``INTERP_ZOO`` from the environment,
so the test suite executes them on the tiny profile.
"""

import sys
from pathlib import Path

import nbformat

SRC = Path(__file__).parent / "src"


def parse(text: str) -> list[tuple[str, str]]:
    """Split a percent-format source into ``(kind, source)`` cells."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            cells.append(("md" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"text before the first '# %%' marker: {line!r}")
    out = []
    for kind, lines in cells:
        if kind == "md":
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        out.append((kind, "\n".join(lines).strip("\n")))
    return out


def write(folder: Path) -> list[Path]:
    paths = []
    for src in sorted(SRC.glob("*.py")):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [
            nbformat.v4.new_markdown_cell(s) if kind == "md" else nbformat.v4.new_code_cell(s)
            for kind, s in parse(src.read_text())
        ]
        for i, cell in enumerate(nb.cells):
            cell.id = f"cell-{i:02d}"  # stable ids: regenerating leaves unchanged notebooks unchanged
        path = folder / f"{src.stem}.ipynb"
        nbformat.write(nb, str(path))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent):
        print(p)
