import pytest


@pytest.fixture(scope="session")
def world():
    from interp.organism.world import make_world

    return make_world()
