"""Shared fixtures: a real MRML scene (slicer-core) with the module logics registered, built by the same
code the CLI uses (LandmarkInitLib.io.scene.create_context), and a tiny phantom dataset."""

from __future__ import annotations

import numpy as np
import pytest

from LandmarkInitLib.io.scene import create_context


@pytest.fixture
def context():
    ctx = create_context()
    yield ctx
    ctx.clear()


@pytest.fixture
def rng():
    return np.random.default_rng(20261121)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Four phantom cases (seed 101), shared by the training, export and runtime tests."""
    from LandmarkInitResearch.phantom.generator import generate_dataset

    out = tmp_path_factory.mktemp("tiny") / "data"
    generate_dataset(out, 4, 101, workers=2, progress=False)
    return out
