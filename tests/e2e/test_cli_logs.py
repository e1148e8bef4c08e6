"""``shipyard serve --log-format json --access-log``: what the log lines hold, and never hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from shipyard.testing import serve_process

SECRET_VALUE = 987654.25
ROW = {
    "inputs": [
        {"name": name, "datatype": "FP32", "shape": [1, 16], "data": [SECRET_VALUE] * 16}
        for name in ("INPUT0", "INPUT1")
    ]
}
FIELDS = {"timestamp", "level", "logger", "message", "request_id", "model", "version"}


def _json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_json_logs_with_access_log(simple_repository: Path) -> None:
    """JSON lines carry the standard fields; the access log has status, duration and bytes per
    request, a log line inside a request has its request_id, and no secret or tensor value
    is ever written."""
    with serve_process(simple_repository, "--log-format", "json", "--access-log") as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answer = client.post(
                "/v2/models/simple/infer?api_key=hunter2",
                json=ROW,
                headers={"x-request-id": "trace-me", "authorization": "Bearer s3cr3t-token"},
            )
            assert answer.status_code == 200
            load = client.post(
                "/v2/repository/models/simple/load", json={}, headers={"x-request-id": "load-1"}
            )
            assert load.status_code == 200
            client.post("/v2/models/simple/infer", json={"inputs": []})
        server.stop()
        _, stderr = server.output()
    lines = _json_lines(stderr)
    assert all(line.keys() >= FIELDS for line in lines)
    access = [line for line in lines if line["logger"] == "shipyard.access"]
    infer = next(line for line in access if line["request_id"] == "trace-me")
    assert infer["status"] == "200"
    assert infer["method"] == "POST"
    assert infer["path"] == "/v2/models/simple/infer"  # the query string is never logged
    assert infer["bytes_in"] > 0
    assert infer["bytes_out"] > 0
    assert infer["duration_ms"] > 0
    assert (infer["model"], infer["version"]) == ("simple", "1")
    assert infer["transport"] == "http"
    assert any(line["status"] == "400" for line in access)
    start, reload = [line for line in lines if "model simple ready" in line["message"]]
    assert start["request_id"] is None  # loaded at start, outside any request
    assert reload["request_id"] == "load-1"  # a line logged while serving that request
    for secret in ("hunter2", "s3cr3t", str(SECRET_VALUE), "987654"):
        assert secret not in stderr


def test_access_log_is_off_by_default_and_sampled(simple_repository: Path) -> None:
    """Without --access-log no access line is written; with a sample of 0.5, about half are."""
    with serve_process(simple_repository, "--log-format", "json") as quiet:
        with httpx.Client(base_url=quiet.url, timeout=30) as client:
            for _ in range(20):
                client.get("/v2/health/live")
        quiet.stop()
        _, stderr = quiet.output()
    assert not [line for line in _json_lines(stderr) if line["logger"] == "shipyard.access"]
    with serve_process(
        simple_repository, "--log-format", "json", "--access-log", "--access-log-sample", "0.5"
    ) as sampled:
        with httpx.Client(base_url=sampled.url, timeout=30) as client:
            for _ in range(200):
                client.get("/v2/health/live")
        sampled.stop()
        _, stderr = sampled.output()
    written = [line for line in _json_lines(stderr) if line["logger"] == "shipyard.access"]
    assert 60 <= len(written) <= 140, len(written)  # binomial(200, 0.5): 6 sd either side
