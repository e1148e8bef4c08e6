"""The Python backend: one instance is one worker process running the user's code.

:meth:`PythonBackend.start` spawns ``python -m shipyard.backends.python_worker`` with a Unix
socket and a shared-memory arena (:mod:`~shipyard.backends.python_ipc`), has it import and
``load`` the model, and returns once it is ready. :meth:`~PythonBackend.run` is called from the
batcher's worker thread for one batch at a time; it blocks on the socket (releasing the GIL)
and never runs user code in the server's process.

What can go wrong, and what the client sees:

* ``predict`` raises: the traceback is logged here; the batch's requests get an
  :class:`~shipyard.errors.InternalError` naming the model (500), and the worker serves on.
  An :class:`~shipyard.errors.InvalidInputError` raised on purpose is a 400 with its message
  (the batcher then retries the batch's requests one by one, so only the culprit fails).
* ``predict`` returns the wrong outputs: the same, with the contract broken in the message.
* the process dies (``os.abort()``, a segfault, the OOM killer): the batch's requests get an
  :class:`~shipyard.errors.InstanceFailedError` (500); the batcher replaces the instance.
* ``predict`` hangs: the batcher's ``execution_timeout_s`` calls :meth:`~PythonBackend.abort`,
  which kills the process (the requests get 504), and replaces the instance.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt

from shipyard.backends.python_ipc import Arena, Channel, PeerClosedError, pack, unpack
from shipyard.errors import (
    InstanceFailedError,
    InternalError,
    InvalidInputError,
    ModelLoadError,
    ShipyardError,
)
from shipyard.types import TensorSpec

__all__ = ["PythonBackend", "WorkerSpec"]

log = logging.getLogger(__name__)

#: Seconds a closed worker gets to exit by itself before it is killed.
EXIT_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What one worker process runs: a function of a version folder, and its signature."""

    #: The model's name (every error message names it).
    model: str
    version: int
    version_dir: Path
    #: ``"module:name"`` in the version folder (``"model:Model"`` for a model.py).
    function: str
    #: What it is, for messages: ``model.py``, ``preprocess[0] (recommend:candidates)``.
    role: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    settings: tuple[tuple[str, Any], ...] = ()
    start_timeout_s: float = 120.0
    shared_memory_bytes: int = 64 * 1024 * 1024
    #: Which worker of the pool (``ModelContext.worker``).
    worker: int = 0
    #: The interpreter that runs the worker.
    python: str = field(default_factory=lambda: sys.executable)


def _describe(returncode: int | None) -> str:
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            return f"died ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"died (signal {-returncode})"
    return f"exited with status {returncode}"


class PythonBackend:
    """One worker process running a model.py (or a Python step) for the batcher."""

    platform = "python"

    def __init__(
        self, spec: WorkerSpec, process: subprocess.Popen[bytes], channel: Channel, arena: Arena
    ) -> None:
        self.spec = spec
        self.inputs = spec.inputs
        self.outputs = spec.outputs
        self._process = process
        self._channel = channel
        self._arena = arena
        self._closed = False

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self._process.pid

    @classmethod
    def start(cls, spec: WorkerSpec) -> PythonBackend:
        """Start a worker and load the code in it; raise ModelLoadError if that fails.

        Blocking (a new interpreter imports NumPy and the user's module): call it off the
        event loop.
        """
        where = f"{spec.role} of model {spec.model!r}"
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        arena = Arena.create(f"shipyard-{spec.model}", spec.shared_memory_bytes)
        passed = [theirs.fileno()] + ([arena.fd] if arena.fd >= 0 else [])
        try:
            process = subprocess.Popen(
                [spec.python, "-m", "shipyard.backends.python_worker", str(theirs.fileno())],
                pass_fds=passed,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            ours.close()
            theirs.close()
            arena.close()
            raise ModelLoadError(f"{where}: cannot start a worker process: {exc}") from exc
        theirs.close()
        backend = cls(spec, process, Channel(ours), arena)
        try:
            backend._load(where)
        except BaseException:
            backend.abort()
            backend.close()
            raise
        return backend

    def _load(self, where: str) -> None:
        spec = self.spec
        context = {
            "name": spec.model,
            "version": spec.version,
            "version_dir": str(spec.version_dir),
            "inputs": [s.to_dict() for s in spec.inputs],
            "outputs": [s.to_dict() for s in spec.outputs],
            "max_batch_size": spec.max_batch_size,
            "settings": dict(spec.settings),
            "worker": spec.worker,
        }
        sock = self._channel.sock
        sock.settimeout(spec.start_timeout_s)
        try:
            self._channel.send(
                {
                    "op": "load",
                    "function": spec.function,
                    "context": context,
                    "memory_fd": self._arena.fd,
                    "memory_bytes": self._arena.size,
                }
            )
            reply, _ = self._channel.recv()
        except TimeoutError as exc:
            raise ModelLoadError(
                f"{where}: the worker did not load within {spec.start_timeout_s:g} s "
                "(python.start_timeout_s)"
            ) from exc
        except PeerClosedError as exc:
            raise ModelLoadError(
                f"{where}: the worker {_describe(self._wait(1.0))} while loading"
            ) from exc
        sock.settimeout(None)
        if reply.get("ok"):
            return
        if reply.get("kind") == "contract":
            raise ModelLoadError(f"{where}: {reply['message']}")
        log.error("%s: load failed:\n%s", where, reply.get("traceback", ""))
        detail = f": {reply['message']}" if reply.get("message") else ""
        raise ModelLoadError(f"{where}: loading raised {reply['type']}{detail} (see the log)")

    def run(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str]
    ) -> list[npt.NDArray[Any]]:
        """Send one batch to the worker and wait for its outputs (blocks this thread)."""
        described, buffers, free = pack(inputs, self._arena, 0)
        try:
            self._channel.send(
                {"op": "run", "inputs": described, "outputs": list(outputs), "free": free},
                buffers,
            )
            reply, payload = self._channel.recv()
        except (PeerClosedError, OSError) as exc:
            how = _describe(self._wait(1.0))
            raise InstanceFailedError(
                f"model {self.spec.model!r}: its Python worker {how} while running this batch "
                "(see the server log); the worker is restarted"
            ) from exc
        if not reply.get("ok"):
            raise self._failure(reply)
        arrays = unpack(reply["outputs"], self._arena, payload, copy=True)
        return [arrays[name] for name in outputs]

    def _failure(self, reply: Mapping[str, Any]) -> ShipyardError:
        name = self.spec.model
        if reply.get("kind") == "invalid":
            return InvalidInputError(f"model {name!r}: {reply['message']}")
        if reply.get("kind") == "contract":
            return InternalError(f"model {name!r}: {self.spec.role}: {reply['message']}")
        log.error(
            "model %s: %s raised %s:\n%s",
            name,
            self.spec.role,
            reply.get("type"),
            reply.get("traceback", "").rstrip(),
        )
        return InternalError(
            f"model {name!r} failed: its Python code raised {reply.get('type')} "
            "(the traceback is in the server log)"
        )

    def _wait(self, timeout_s: float) -> int | None:
        try:
            return self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def abort(self) -> None:
        """Kill the worker now (a batch overran ``execution_timeout_s``); ``run`` then fails."""
        if self._process.poll() is None:
            self._process.kill()

    def close(self) -> None:
        """Close the socket (the worker exits by itself) and reap it; never blocks the caller."""
        if self._closed:
            return
        self._closed = True
        self._channel.close()
        self._arena.close()
        process = self._process
        if process.poll() is not None:
            return

        def reap() -> None:
            try:
                process.wait(EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning(
                    "model %s: Python worker %d did not exit; killing it",
                    self.spec.model,
                    process.pid,
                )
                process.kill()
                process.wait()

        threading.Thread(target=reap, name=f"shipyard-reap-{process.pid}", daemon=True).start()
