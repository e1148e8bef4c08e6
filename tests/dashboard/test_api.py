"""The dashboard's HTTP side against a real server: redirects, static files with cache
headers, the read-only ``/ui/api`` routes (report.json, tuning report, session, server) and
their refusals, and ``ui = false``."""

from __future__ import annotations

import http.client as http_client
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shipyard.testing import RunningServer, add_sub_model, running_server, write_model


@pytest.fixture
def http(served: RunningServer) -> Iterator[httpx.Client]:
    """An HTTP client of the served dashboard repository (redirects not followed)."""
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def _raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (httpx would normalise ``..`` away)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http_client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_root_and_ui_redirect_to_the_dashboard(http: httpx.Client) -> None:
    """``/`` and ``/ui`` answer 307 to ``/ui/``; each page path serves the same index.html."""
    for path in ("/", "/ui"):
        response = http.get(path)
        assert (response.status_code, response.headers["location"]) == (307, "/ui/")
    index = http.get("/ui/")
    assert index.status_code == 200
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    for page in ("models", "live", "playground", "server"):
        assert http.get(f"/ui/{page}").content == index.content


def test_static_files_have_an_etag_and_revalidate(http: httpx.Client) -> None:
    """Files carry a content ETag and ``Cache-Control: no-cache``; a current copy gets 304;
    the HTML page forbids scripts and requests from anywhere but the server."""
    script = http.get("/ui/js/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["cache-control"] == "no-cache"
    assert script.headers["x-content-type-options"] == "nosniff"
    etag = script.headers["etag"]
    again = http.get("/ui/js/app.js", headers={"If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")
    assert http.get("/ui/js/app.js", headers={"If-None-Match": '"stale"'}).status_code == 200
    policy = http.get("/ui/").headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy


def test_no_file_outside_the_static_folder_is_served(served: RunningServer) -> None:
    """Unknown files and path tricks get 404 with ``{"error"}``, never a file."""
    for path in (
        "/ui/nope.js",
        "/ui/../pyproject.toml",
        "/ui/%2e%2e/%2e%2e/pyproject.toml",
        "/ui/js/../../routes.py",
        "/ui/..%2Froutes.py",
    ):
        status, body = _raw_get(served.url, path)
        assert status == 404, path
        assert "error" in json.loads(body), path


def test_report_route_returns_the_versions_report_json(
    http: httpx.Client, dashboard_repo: Path
) -> None:
    """The report of each version is report.json as stored by convert and optimize."""
    for version in ("1", "2"):
        response = http.get(f"/ui/api/models/mnist/versions/{version}/report")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        stored = json.loads((dashboard_repo / "mnist" / version / "report.json").read_text())
        assert response.json() == stored
    assert http.get("/ui/api/models/mnist/versions/2/report").json()["optimization"]["int8"]


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/ui/api/models/simple/versions/1/report", 404, "version 1 has no report.json"),
        ("/ui/api/models/mnist/versions/9/report", 404, "version 9 has no report.json"),
        ("/ui/api/models/mnist/versions/0/report", 404, "positive integers"),
        ("/ui/api/models/mnist/versions/01/report", 404, "positive integers"),
        ("/ui/api/models/nope/versions/1/report", 404, "not in the repository"),
        ("/ui/api/models/..%2F..%2Fetc/versions/1/report", 404, "no file"),
        ("/ui/api/models/%2e%2e/versions/1/report", 400, "invalid model name"),
        ("/ui/api/models/a%20b/versions/1/report", 400, "invalid model name"),
        ("/ui/api/models/mnist/versions/1/report/../../../../model.toml", 404, "no file"),
    ],
)
def test_report_route_refuses_absent_reports_and_path_tricks(
    served: RunningServer, path: str, status: int, words: str
) -> None:
    """A version without report.json, an unknown model or version, and any path trick get
    a 4xx ``{"error"}`` naming the problem."""
    got, body = _raw_get(served.url, path)
    assert got == status, body
    assert words in json.loads(body)["error"]


def test_tune_report_is_served_sandboxed_when_present(
    http: httpx.Client, dashboard_repo: Path
) -> None:
    """The model's tune-report.html is served as HTML that may run nothing (sandboxed, no
    script); a model without one gets 404."""
    assert http.get("/ui/api/models/simple/tune-report").status_code == 404
    page = dashboard_repo / "sentences" / "tune-report.html"
    page.write_text("<!DOCTYPE html><title>tuned</title><p>report</p>", encoding="utf-8")
    try:
        response = http.get("/ui/api/models/sentences/tune-report")
        assert response.status_code == 200
        assert response.text.endswith("<p>report</p>")
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert "sandbox" in response.headers["content-security-policy"]
        assert "script-src" not in response.headers["content-security-policy"]
        models = {m["name"]: m for m in http.get("/ui/api/models").json()["models"]}
        assert models["sentences"]["tune_report"] is True
        assert models["simple"]["tune_report"] is False
    finally:
        page.unlink()


def test_models_route_describes_every_model(http: httpx.Client) -> None:
    """State, default version, client and model signatures, processing, what the playground
    offers, and which versions carry a report."""
    models = {m["name"]: m for m in http.get("/ui/api/models").json()["models"]}
    assert set(models) == {"broken", "mnist", "sentences", "simple"}
    broken = models["broken"]
    assert (broken["state"], broken["default_version"]) == ("UNAVAILABLE", None)
    assert "bogus" in broken["reason"]
    assert broken["versions"] == [
        {"version": "1", "loaded": False, "default": False, "report": False, "warnings": []}
    ]
    mnist = models["mnist"]
    assert (mnist["state"], mnist["default_version"]) == ("READY", "2")
    assert [(v["version"], v["loaded"], v["default"], v["report"]) for v in mnist["versions"]] == [
        ("2", True, True, True),
        ("1", True, False, True),
    ]
    assert mnist["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert mnist["model_inputs"][0]["shape"] == [-1, 1, 28, 28]
    assert mnist["predict"] == {"input": "image", "output": "classifier"}
    assert [s["op"] for s in mnist["processing"]["preprocess"][0]["steps"]][:2] == [
        "decode_image",
        "resize",
    ]
    assert mnist["processing"]["postprocess"][0]["labels"] == "labels.txt"
    assert models["sentences"]["predict"] == {"input": "text", "output": "embedding"}
    assert models["simple"]["predict"] == {"input": None, "output": "raw"}
    assert models["simple"]["processing"] is None
    assert models["simple"]["batching"]["max_batch_size"] == 32


def test_session_offers_control_to_a_loopback_client(http: httpx.Client) -> None:
    """A client on 127.0.0.1 may control models (on a server without API keys)."""
    answer = http.get("/ui/api/session").json()
    assert answer["can_control"] is True
    assert "loopback" in answer["reason"]


def test_server_route_reports_version_settings_and_hardware(
    http: httpx.Client, served: RunningServer
) -> None:
    """Version and uptime, every server setting in force, and shipyard hw's report."""
    info = http.get("/ui/api/server").json()
    assert info["version"] == http.get("/v2").json()["version"]
    assert info["uptime_s"] >= 0
    assert info["settings"]["ui"] is True
    assert info["settings"]["repository"] == str(served.server.config.repository)
    assert info["hardware"]["schema"] == "shipyard.hardware/1"
    assert info["hardware"]["cpu"]["logical_cores"] >= 1
    assert http.get("/ui/api/server").json()["hardware"] == info["hardware"]  # probed once


def test_no_ui_turns_the_dashboard_off(tmp_path: Path) -> None:
    """With ``ui = false`` neither ``/`` nor ``/ui/...`` exist; the API is unchanged."""
    write_model(tmp_path / "repo", "simple", add_sub_model())
    with running_server(tmp_path / "repo", grpc=False, ui=False) as running:
        for path in ("/", "/ui/", "/ui/js/app.js", "/ui/api/session", "/ui/api/models"):
            response = httpx.get(running.url + path)
            assert response.status_code == 404, path
            assert response.json()["error"].startswith("no route GET")
        assert httpx.get(running.url + "/v2/health/ready").status_code == 200
