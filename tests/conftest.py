"""Shared fixtures: a temporary model repository and a real server on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.testing import (
    RunningServer,
    add_sub_model,
    identity_model,
    running_server,
    write_model,
)
from shipyard.types import DataType


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """An empty model repository folder."""
    path = tmp_path / "repo"
    path.mkdir()
    return path


@pytest.fixture
def simple_repository(repository: Path) -> Path:
    """A repository with Triton's add/sub model ``simple`` and a BYTES identity ``strings``."""
    write_model(repository, "simple", add_sub_model())
    write_model(repository, "strings", identity_model(DataType.BYTES))
    return repository


@pytest.fixture
def server(simple_repository: Path) -> Iterator[RunningServer]:
    """A real server on 127.0.0.1 serving ``simple_repository``."""
    with running_server(simple_repository) as running:
        yield running
