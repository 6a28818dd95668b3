"""The notebooks execute top to bottom on the tiny profile, so they cannot rot."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_are_generated_from_make_notebooks(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOKS[0].parent / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fresh = {p.name: nbformat.read(str(p), as_version=4) for p in mod.write(tmp_path)}
    assert sorted(fresh) == [p.name for p in NOTEBOOKS]
    for p in NOTEBOOKS:
        committed = nbformat.read(str(p), as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in fresh[p.name].cells], p.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tiny_zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_PROFILE", "tiny")
    monkeypatch.setenv("INTERP_ZOO", str(tiny_zoo))
    monkeypatch.setenv("INTERP_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
