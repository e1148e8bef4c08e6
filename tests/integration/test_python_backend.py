"""PythonBackend with real worker processes: loading, running, failing and stopping."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from shipyard.backends.python import PythonBackend, WorkerSpec
from shipyard.errors import InstanceFailedError, InternalError, ModelLoadError
from shipyard.testing import wait_until_blocking
from shipyard.types import DataType, TensorSpec

MODEL = """\
import os
import numpy as np
import shipyard


class Model(shipyard.PythonModel):
    def load(self, context):
        if context.settings.get("fail"):
            raise RuntimeError("cannot find the weights")
        if context.settings.get("crash"):
            os.abort()
        self.context = context

    def predict(self, batch):
        x = batch["x"]
        if x.dtype == np.float32 and x.size and x.flat[0] == -7:
            return {"y": np.ones((x.shape[0], 9), np.float32), "text": batch["text"]}
        return {"y": x * 2, "text": np.array([t.upper() for t in batch["text"]], dtype=object)}
"""

X = TensorSpec("x", DataType.FP32, (-1, -1))
TEXT = TensorSpec("text", DataType.BYTES, (-1,))
Y = TensorSpec("y", DataType.FP32, (-1, -1))


def spec(folder: Path, **changes: object) -> WorkerSpec:
    """A WorkerSpec for MODEL in ``folder``."""
    (folder / "model.py").write_text(MODEL)
    base = WorkerSpec("m", 1, folder, "model:Model", "model.py", (X, TEXT), (Y, TEXT), 8)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("shared_memory_bytes", [64 * 1024 * 1024, 0], ids=["shm", "pipe"])
def test_tensors_round_trip(tmp_path: Path, shared_memory_bytes: int) -> None:
    """Numbers (16 MiB of them) and strings come back computed, over shared memory or pipe."""
    backend = PythonBackend.start(spec(tmp_path, shared_memory_bytes=shared_memory_bytes))
    try:
        x = np.random.default_rng(0).random((4, 1024 * 1024), dtype=np.float32)
        text = np.array([b"a", b"bc", b"", b"\xc3\xa9"], dtype=object)
        y, upper = backend.run({"x": x, "text": text}, ["y", "text"])
        np.testing.assert_array_equal(y, x * 2)
        assert upper.tolist() == [b"A", b"BC", b"", b"\xc3\xa9"]
        (only,) = backend.run({"x": x[:1], "text": text[:1]}, ["y"])
        assert only.shape == (1, 1024 * 1024)
    finally:
        backend.close()


def test_outputs_survive_the_next_batch(tmp_path: Path) -> None:
    """What run() returns is the caller's own copy, not a view the next batch overwrites."""
    backend = PythonBackend.start(spec(tmp_path))
    try:
        text = np.array([b"a"], dtype=object)
        (first,) = backend.run({"x": np.ones((1, 3), np.float32), "text": text}, ["y"])
        backend.run({"x": np.zeros((1, 3), np.float32), "text": text}, ["y"])
        np.testing.assert_array_equal(first, [[2.0, 2.0, 2.0]])
    finally:
        backend.close()


def test_contract_violation_names_the_output(tmp_path: Path) -> None:
    """Outputs of the wrong shape are an InternalError naming the model and the output."""
    backend = PythonBackend.start(
        spec(tmp_path, outputs=(TensorSpec("y", DataType.FP32, (-1, 2)),))
    )
    try:
        x = np.full((1, 2), -7, np.float32)
        with pytest.raises(InternalError, match=r"model 'm': model.py: output 'y' has shape"):
            backend.run({"x": x, "text": np.array([b""], dtype=object)}, ["y"])
    finally:
        backend.close()


def test_load_exception_is_a_load_error_with_the_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """load() raising fails the start with its type and message; the traceback is logged."""
    with caplog.at_level(logging.ERROR), pytest.raises(ModelLoadError) as caught:
        PythonBackend.start(spec(tmp_path, settings=(("fail", True),)))
    assert "RuntimeError: cannot find the weights" in caught.value.message
    assert "model 'm'" in caught.value.message
    assert "Traceback" not in caught.value.message
    assert any("Traceback" in r.getMessage() for r in caught_records(caplog))


def caught_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records logged by the Python backend."""
    return [r for r in caplog.records if r.name == "shipyard.backends.python"]


def test_crash_while_loading_is_a_load_error(tmp_path: Path) -> None:
    """A worker that dies in load() fails the start, saying how it died."""
    with pytest.raises(ModelLoadError, match=r"died \(SIGABRT\) while loading"):
        PythonBackend.start(spec(tmp_path, settings=(("crash", True),)))


def test_missing_class_is_a_load_error(tmp_path: Path) -> None:
    """model.py without Model says what it must define."""
    with pytest.raises(ModelLoadError, match="defines no 'Predictor'"):
        PythonBackend.start(spec(tmp_path, function="model:Predictor"))


def test_slow_load_times_out(tmp_path: Path) -> None:
    """A load() longer than start_timeout_s fails the start, naming the setting."""
    (tmp_path / "slow.py").write_text("import time\ntime.sleep(3600)\n")
    with pytest.raises(ModelLoadError, match=r"python\.start_timeout_s"):
        PythonBackend.start(spec(tmp_path, function="slow:f", start_timeout_s=1.0))


def test_killed_worker_fails_the_run_as_an_instance_failure(tmp_path: Path) -> None:
    """abort() kills the process; the run in progress (or the next) raises
    InstanceFailedError naming the model and the signal."""
    backend = PythonBackend.start(spec(tmp_path))
    try:
        backend.abort()
        with pytest.raises(InstanceFailedError, match=r"model 'm': its Python worker died"):
            backend.run({"x": np.ones((1, 1), np.float32), "text": np.array([b""], object)}, ["y"])
    finally:
        backend.close()


def test_close_ends_the_worker(tmp_path: Path) -> None:
    """close() returns at once and the worker process exits by itself."""
    backend = PythonBackend.start(spec(tmp_path))
    pid = backend.pid
    backend.close()
    wait_until_blocking(lambda: not _alive(pid), "the worker exits", 30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0) until it is reaped; read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
