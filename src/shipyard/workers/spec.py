"""What the supervisor tells a worker it starts: :class:`WorkerSpec`, over the worker's stdin.

The spec is pickled: it holds the supervisor's resolved :class:`~shipyard.config.ServerConfig`
exactly as it is (every setting, present and future, with its own types), and it travels only
from a process to the child it has just started, over an inherited pipe nothing else can
read. After the spec the pipe stays open: when it closes, the supervisor is gone.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from shipyard.config import ServerConfig

__all__ = ["Desired", "WorkerSpec", "read_spec", "write_spec"]

#: Each model's last repository-control action: what a (re)started worker applies too.
Desired = dict[str, Literal["load", "unload"]]

_LENGTH = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One worker process: which one it is, its settings, and where its sockets are."""

    #: The worker's number, 0..workers-1 (its id in logs); kept by its replacements.
    slot: int
    #: How many times this slot has been started (1 for the first process).
    generation: int
    workers: int
    config: ServerConfig
    #: The supervisor's private folder of control sockets.
    folder: Path
    #: The listening HTTP socket (and gRPC one) the worker inherits, by file descriptor.
    http_fd: int
    grpc_fd: int | None = None
    #: Repository control applied since the server started, to apply after loading.
    desired: Desired = field(default_factory=dict)


def write_spec(spec: WorkerSpec) -> bytes:
    """The bytes that carry ``spec`` (a length, then the pickle)."""
    data = pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def read_spec(stream: IO[bytes]) -> WorkerSpec:
    """Read one spec from ``stream`` (what :func:`write_spec` wrote); EOFError if cut short."""
    head = stream.read(_LENGTH.size)
    if len(head) != _LENGTH.size:
        raise EOFError("no worker spec on stdin: the supervisor starts workers")
    (length,) = _LENGTH.unpack(head)
    data = stream.read(length)
    if len(data) != length:
        raise EOFError("the worker spec was cut short")
    spec = pickle.loads(data)
    if not isinstance(spec, WorkerSpec):
        raise TypeError(f"expected a WorkerSpec, got {type(spec).__name__}")
    return spec
