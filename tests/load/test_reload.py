"""Hot reload under steady load: the repository poller swaps versions with no failed request,
and a broken new version leaves the old one serving with the reason reported."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import httpx

from shipyard.testing import identity_model, serve_process, wait_until_blocking, write_model
from tests.load.clients import Load, Outcome

ROW = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [7.0] * 4}]}


def _publish(repository: Path, version: int, payload: bytes | None = None) -> None:
    """Publish ``version`` of ``model`` atomically: written under a dot name, then renamed."""
    staging = repository / "model" / f".staging-{version}"
    staging.mkdir()
    data = payload if payload is not None else identity_model().SerializeToString()
    (staging / "model.onnx").write_bytes(data)
    os.rename(staging, repository / "model" / str(version))


def _echoed(answer: dict[str, Any]) -> bool:
    """The identity model's answer is the request's data."""
    return bool(answer["outputs"][0]["data"] == [7.0] * 4)


def _wait_served(load: Load, version: str, after: int, what: str) -> None:
    """Wait until a request answered after the first ``after`` came from ``version``."""
    wait_until_blocking(lambda: any(o.version == version for o in load.outcomes[after:]), what, 60)


def _failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status != 200]


def test_three_version_swaps_under_load_fail_nothing(repository: Path) -> None:
    """Three version swaps by the poller during steady load: >= 2,000 requests, 0 failures."""
    write_model(repository, "model", identity_model())
    with serve_process(repository, "--poll-interval", "0.1") as server:
        load = Load(server.url, "/v2/models/model/infer", ROW, threads=4, expect=_echoed).start()
        wait_until_blocking(lambda: load.sent >= 200, "the load runs", 60)
        for step, (action, version) in enumerate([("add", 2), ("add", 3), ("remove", 3)], start=1):
            mark = len(load.outcomes)
            if action == "add":
                _publish(repository, version)
                serving = str(version)
            else:
                shutil.rmtree(repository / "model" / str(version))
                serving = str(version - 1)
            _wait_served(load, serving, mark, f"swap {step} serves version {serving}")
        wait_until_blocking(lambda: load.sent >= 2000, "2,000 requests are sent", 120)
        outcomes = load.stop()
        index = httpx.post(f"{server.url}/v2/repository/index", json={}, timeout=10).json()
    assert len(outcomes) == load.sent >= 2000
    assert _failures(outcomes) == []
    versions = {o.version for o in outcomes}
    assert versions == {"1", "2", "3"}, versions
    assert index == [{"name": "model", "version": "2", "state": "READY", "reason": ""}]


def test_broken_new_version_keeps_the_old_one_serving(repository: Path) -> None:
    """A broken new version fails to load; the old one serves on and the index says why."""
    write_model(repository, "model", identity_model())
    with serve_process(repository, "--poll-interval", "0.1") as server:
        load = Load(server.url, "/v2/models/model/infer", ROW, threads=2).start()
        wait_until_blocking(lambda: load.sent >= 100, "the load runs", 60)
        _publish(repository, 2, b"this is not an ONNX model")

        def reason() -> str:
            rows = httpx.post(f"{server.url}/v2/repository/index", json={}, timeout=10).json()
            return str(rows[0]["reason"])

        wait_until_blocking(lambda: "reload failed" in reason(), "the reload fails", 60)
        mark = load.sent
        wait_until_blocking(lambda: load.sent >= mark + 100, "the load runs on", 60)
        outcomes = load.stop()
        why = reason()
        ready = httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code
    assert _failures(outcomes) == []
    assert {o.version for o in outcomes} == {"1"}
    assert why.startswith("reload failed, still serving version(s) 1:"), why
    assert "model.onnx" in why or "ONNX" in why, why
    assert ready == 200
