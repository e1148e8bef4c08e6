"""The adversarial suite's repository: a model for the legitimate client, one for attackers."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.testing import add_sub_model, identity_model, slow_model, write_model
from shipyard.types import DataType


@pytest.fixture(scope="module")
def hostile_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``simple`` (add/sub) for the legitimate client; ``victim`` (slow) and ``mirror``
    (an identity of any width) for the attackers, so their statistics count only attacks."""
    repo = tmp_path_factory.mktemp("hostile")
    write_model(repo, "simple", add_sub_model())
    write_model(repo, "victim", slow_model(20))
    write_model(repo, "mirror", identity_model(DataType.FP32, [1, "n"]))
    return repo
