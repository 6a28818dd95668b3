from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> Path:
    """The whole tiny-profile zoo, built once per test session."""
    from interp.organism import build_zoo

    out = tmp_path_factory.mktemp("zoo")
    build_zoo("tiny", out, seed=0, progress=False, threads=1)
    return out


@pytest.fixture(scope="session")
def world():
    from interp.organism.world import make_world

    return make_world()
