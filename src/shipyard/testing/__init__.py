"""Test helpers that ship with the package: tiny model builders and a real-server fixture."""

from shipyard.testing.models import (
    add_sub_model,
    cnn_model,
    identity_model,
    slow_model,
    write_model,
)
from shipyard.testing.server import RunningServer, running_server

__all__ = [
    "RunningServer",
    "add_sub_model",
    "cnn_model",
    "identity_model",
    "running_server",
    "slow_model",
    "write_model",
]
