"""Test helpers that ship with the package: tiny model builders, a real-server fixture, and
waits on a condition with a deadline."""

from shipyard.testing.models import (
    add_sub_model,
    cnn_model,
    identity_model,
    slow_model,
    spin_model,
    write_model,
    write_python_model,
)
from shipyard.testing.process import ServeProcess, serve_process
from shipyard.testing.server import RunningServer, running_server
from shipyard.testing.waiting import wait_until, wait_until_blocking

__all__ = [
    "RunningServer",
    "ServeProcess",
    "add_sub_model",
    "cnn_model",
    "identity_model",
    "running_server",
    "serve_process",
    "slow_model",
    "spin_model",
    "wait_until",
    "wait_until_blocking",
    "write_model",
    "write_python_model",
]
