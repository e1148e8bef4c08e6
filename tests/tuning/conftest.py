"""Fixtures for the tuner's tests: the MNIST-shaped CNN under a hand-written model.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.testing import cnn_model, write_model
from tests.optimize.conftest import CONFIG


@pytest.fixture
def cnn_repo(tmp_path: Path) -> Path:
    """A repository with ``cnn`` version 1 (fp32) and the hand-written model.toml of optimize's."""
    repo = tmp_path / "repo"
    write_model(repo, "cnn", cnn_model(), config=CONFIG)
    return repo
