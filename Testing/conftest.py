"""Shared fixtures: a real MRML scene (slicer-core) with the module logics registered, built by the same
code the CLI uses (LandmarkInitLib.scene.create_context)."""

from __future__ import annotations

import numpy as np
import pytest

from LandmarkInitLib.scene import create_context


@pytest.fixture
def context():
    ctx = create_context()
    yield ctx
    ctx.clear()


@pytest.fixture
def rng():
    return np.random.default_rng(20261121)
