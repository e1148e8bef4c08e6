"""Shared fixtures: a temporary model repository and a real server on a free port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from shipyard.testing import (
    RunningServer,
    add_sub_model,
    identity_model,
    running_server,
    write_model,
)
from shipyard.types import DataType

# Property-based tests (hypothesis) draw the same cases on every `make test` run, so CI fails on
# a change, not on a new random draw; `make fuzz` (SHIPYARD_FUZZ_EXAMPLES set) draws new ones
# each run, and what it finds becomes an @example of its test.
hypothesis_settings.register_profile(
    "shipyard", derandomize=not os.environ.get("SHIPYARD_FUZZ_EXAMPLES")
)
hypothesis_settings.load_profile("shipyard")


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail a green run that skipped anything: `make test` installs every extra, so a skip
    means a broken install hiding tests. Set SHIPYARD_ALLOW_SKIPS=1 to run a partial setup."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = reporter.stats.get("skipped", [])
    if skipped and exitstatus == 0 and not os.environ.get("SHIPYARD_ALLOW_SKIPS"):
        reporter.write_line(
            f"error: {len(skipped)} test(s) or module(s) were skipped; every extra is installed by "
            "`make install`, so a skip hides a broken setup (SHIPYARD_ALLOW_SKIPS=1 allows it)",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
