"""``execution_timeout_s`` on an ONNX Runtime model: 504, a new session, the others serve.

``spin_model`` runs as long as its ITERATIONS input asks (10**15: days, on any CPU), so a
request can block its instance until the timeout ends the run.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from shipyard.backends.onnxruntime import OnnxRuntimeBackend
from shipyard.batching import DynamicBatcher
from shipyard.testing import (
    RunningServer,
    running_server,
    spin_model,
    wait_until_blocking,
    write_model,
)
from tests.integration.transports import (
    TRANSPORTS,
    expected_status,
    infer_input,
    make_client,
    output_array,
)

CONFIG = """\
instance_count = 2
max_batch_size = 4
dynamic_batching = false
execution_timeout_s = 2
"""

FOREVER = 10**15


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with the spinning model, two instances, a 2 s execution timeout."""
    repo = tmp_path_factory.mktemp("timeout")
    write_model(repo, "spin", spin_model(), config=CONFIG)
    with running_server(repo) as running:
        yield running


def batcher(server: RunningServer) -> DynamicBatcher:
    """The spinning model's batcher."""
    assert server.server.service is not None
    found = server.server.service.registry.get("spin").batcher
    assert isinstance(found, DynamicBatcher)
    return found


def spin(transport: str, server: RunningServer, iterations: int) -> np.ndarray:
    """One request; returns OUTPUT0 (raises InferenceServerException on an error)."""
    x = np.array([[1, 2, 3, 4]], dtype=np.float32)
    client = make_client(transport, server)
    try:
        result = client.infer(
            "spin",
            [
                infer_input(transport, "INPUT0", x),
                infer_input(transport, "ITERATIONS", np.array([[iterations]], dtype=np.int64)),
            ],
        )
    finally:
        client.close()
    out = output_array(transport, result, "OUTPUT0")
    assert out is not None
    np.testing.assert_array_equal(out, x)
    return out


def outcome(transport: str, server: RunningServer, iterations: int) -> str:
    """``"ok"`` or the error status of one request."""
    from tritonclient.utils import InferenceServerException

    try:
        spin(transport, server, iterations)
    except InferenceServerException as exc:
        return f"{exc.status()}: {exc}"
    return "ok"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_overrun_is_cut_and_the_session_replaced(transport: str, server: RunningServer) -> None:
    """A run past execution_timeout_s fails with 504 / DEADLINE_EXCEEDED naming the limit;
    the other instance serves meanwhile; the instance gets a new ONNX Runtime session."""
    pool = batcher(server).instances
    wait_until_blocking(lambda: pool.size == 2 and not pool.busy, "both instances are idle", 60)
    retired = pool.retired_count
    before = [slot.backend for slot in pool.free]
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        stuck = executor.submit(outcome, transport, server, FOREVER)
        wait_until_blocking(lambda: pool.busy == 1, "the endless run starts")
        for _ in range(3):
            spin(transport, server, 0)  # the other instance answers at once
        status = stuck.result(timeout=60)
    assert status.startswith(expected_status(transport, "deadline"))
    assert "execution_timeout_s" in status
    assert "'spin'" in status
    assert pool.retired_count == retired + 1
    wait_until_blocking(lambda: pool.size == 2, "the replacement session is loaded", 60)
    after = [slot.backend for slot in pool.free]
    assert all(isinstance(b, OnnxRuntimeBackend) for b in after)
    assert len(set(map(id, after)) - set(map(id, before))) == 1  # one new session
    with concurrent.futures.ThreadPoolExecutor(2) as executor:
        assert list(executor.map(lambda _: outcome(transport, server, 0), range(4))) == ["ok"] * 4
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/health/ready").status_code == 200


def test_the_stuck_run_is_ended_not_left_spinning(server: RunningServer) -> None:
    """After an overrun, ONNX Runtime's run is terminated: no instance stays busy."""
    pool = batcher(server).instances
    wait_until_blocking(lambda: pool.size == 2 and not pool.busy, "both instances are idle", 60)
    status = outcome("http", server, FOREVER)
    assert status.startswith("504")
    # The retired instance is closed when its run returns: that happens because the run was
    # told to terminate, not because it finished its 10**15 iterations.
    wait_until_blocking(lambda: pool.stuck == 0, "the terminated run returns", 30)
