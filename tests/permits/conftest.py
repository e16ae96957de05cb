from __future__ import annotations

import pytest

from tests.permits.helpers import World, build_world


@pytest.fixture
def world() -> World:
    return build_world()


@pytest.fixture
def cross_world() -> World:
    return build_world(cross_border=True)
