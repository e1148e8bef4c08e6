"""API keys with roles on a live server, both transports: unmodified tritonclient passes its
key (``headers=`` on HTTP, metadata on gRPC), health stays open, and each route or RPC answers
401/UNAUTHENTICATED or 403/PERMISSION_DENIED as its role requires. Without a key file,
repository control answers loopback clients only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from shipyard.metrics import ServerMetrics, build_metrics_registry
from shipyard.server.admission import Admission
from shipyard.server.auth import AuthPolicy, hash_key
from shipyard.server.decoding import DecodePool
from shipyard.server.http import HttpLimits, create_http_app
from shipyard.server.observe import Observer
from shipyard.testing import RunningServer, add_sub_model, running_server, write_model

KEYS = {"reader": "sy_reader-key", "root": "sy_root-key", "scraper": "sy_scraper-key"}
ROLES = {"reader": ["infer"], "root": ["admin"], "scraper": ["metrics"]}
TIMEOUT_S = 20.0


def key_file(folder: Path) -> Path:
    """A key file with an infer key, an admin key and a metrics key."""
    path = folder / "keys.toml"
    tables = [
        f'[[key]]\nname = "{name}"\nsha256 = "{hash_key(key)}"\nroles = ["{ROLES[name][0]}"]\n'
        for name, key in KEYS.items()
    ]
    path.write_text("".join(tables))
    return path


def bearer(name: str) -> dict[str, str]:
    """The Authorization header of key ``name``."""
    return {"Authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with ``simple`` and ``spare`` (to unload and load)."""
    path = tmp_path_factory.mktemp("auth-repo")
    write_model(path, "simple", add_sub_model())
    write_model(path, "spare", add_sub_model())
    return path


@pytest.fixture(scope="module")
def keyed(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with the key file, /metrics closed."""
    keys = key_file(tmp_path_factory.mktemp("keys"))
    with running_server(repo, api_keys=keys, metrics_auth=True) as running:
        yield running


@pytest.fixture
def http(keyed: RunningServer) -> Iterator[httpx.Client]:
    """An httpx client of the keyed server."""
    with httpx.Client(base_url=keyed.url, timeout=TIMEOUT_S) as client:
        yield client


def inputs() -> list[httpclient.InferInput]:
    """INPUT0 and INPUT1 of the add/sub model."""
    tensors = []
    for name in ("INPUT0", "INPUT1"):
        tensor = httpclient.InferInput(name, [1, 16], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 16), np.float32))
        tensors.append(tensor)
    return tensors


def assert_refused(response: httpx.Response, status: int, fragment: str) -> None:
    """``response`` is ``status`` with a JSON error containing ``fragment`` (and a challenge
    when it is a 401)."""
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert fragment in response.json()["error"]
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="shipyard"'


def test_tritonclient_http_passes_its_key_in_headers(keyed: RunningServer) -> None:
    """tritonclient.http's ``headers=`` carries the key: an infer key infers, an admin key
    unloads and loads."""
    client = httpclient.InferenceServerClient(keyed.address)
    try:
        result = client.infer("simple", inputs(), headers=bearer("reader"))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 2.0))
        assert client.get_model_metadata("simple", headers=bearer("reader"))["name"] == "simple"
        client.unload_model("spare", headers=bearer("root"))
        assert not client.is_model_ready("spare", headers=bearer("root"))
        client.load_model("spare", headers=bearer("root"))
        assert client.is_model_ready("spare", headers=bearer("reader"))
    finally:
        client.close()


def test_tritonclient_http_without_its_key_gets_401_and_403(keyed: RunningServer) -> None:
    """No key is 401; the infer key on repository control is 403, both as tritonclient errors."""
    client = httpclient.InferenceServerClient(keyed.address)
    try:
        with pytest.raises(InferenceServerException) as missing:
            client.infer("simple", inputs())
        assert missing.value.status() == "401"
        with pytest.raises(InferenceServerException) as denied:
            client.unload_model("spare", headers=bearer("reader"))
        assert denied.value.status() == "403"
        assert "needs role admin" in str(denied.value)
    finally:
        client.close()


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic cm9vdDpyb290", "Bearer sy_wrong", "sy_root-key", "Bearer  x"],
)
def test_missing_or_wrong_key_is_401(http: httpx.Client, authorization: str | None) -> None:
    """No key, another scheme, or an unknown key: 401 with WWW-Authenticate and a JSON error."""
    headers = {} if authorization is None else {"Authorization": authorization}
    response = http.get("/v2/models/simple", headers=headers)
    assert_refused(response, 401, "API key")


@pytest.mark.parametrize(
    ("method", "path", "allowed", "denied"),
    [
        ("GET", "/v2", ["reader", "root"], ["scraper"]),
        ("GET", "/v2/models/simple", ["reader", "root"], ["scraper"]),
        ("GET", "/v2/models/simple/ready", ["reader", "root"], ["scraper"]),
        ("GET", "/v2/models/simple/versions/1/config", ["reader", "root"], ["scraper"]),
        ("GET", "/v2/models/simple/stats", ["reader", "root"], ["scraper"]),
        ("GET", "/v2/models/stats", ["root"], ["reader", "scraper"]),
        ("POST", "/v2/repository/index", ["root"], ["reader", "scraper"]),
        ("GET", "/metrics", ["root", "scraper"], ["reader"]),
        ("GET", "/ui/api/models", ["reader", "root"], ["scraper"]),
        ("GET", "/ui/api/server", ["root"], ["reader", "scraper"]),
    ],
)
def test_each_route_needs_its_role(
    http: httpx.Client, method: str, path: str, allowed: list[str], denied: list[str]
) -> None:
    """Each key gets 200 where its role reaches and 403 naming the needed role elsewhere."""
    for name in allowed:
        response = http.request(method, path, headers=bearer(name))
        assert response.status_code == 200, (name, response.text)
    for name in denied:
        assert_refused(http.request(method, path, headers=bearer(name)), 403, "needs role")


def test_health_and_dashboard_pages_are_open(http: httpx.Client) -> None:
    """Liveness, readiness, the dashboard's pages and its session answer need no key."""
    assert http.get("/v2/health/live").status_code == 200
    assert http.get("/v2/health/ready").status_code == 200
    assert http.get("/ui/").status_code == 200
    assert http.get("/ui/api/session").status_code == 200
    assert_refused(http.get("/ui/api/models"), 401, "API key")


def test_metrics_auth_closes_metrics(http: httpx.Client) -> None:
    """With metrics_auth, /metrics without a key is 401."""
    assert_refused(http.get("/metrics"), 401, "API key")


def test_banner_line_says_keys_are_needed(keyed: RunningServer) -> None:
    """The startup banner's access line says how many keys and that /metrics is closed."""
    assert keyed.info.access.startswith("API keys: 3 key(s)")
    assert "/metrics a key" in keyed.info.access


@pytest.fixture(scope="module")
def keyless(repo: Path) -> Iterator[RunningServer]:
    """A server without a key file."""
    with running_server(repo) as running:
        yield running


def test_without_keys_loopback_may_control_the_repository(keyless: RunningServer) -> None:
    """Without a key file, everything is open to a loopback client, repository control too."""
    with httpx.Client(base_url=keyless.url, timeout=TIMEOUT_S) as http:
        assert http.post("/v2/repository/index").status_code == 200
        assert http.post("/v2/repository/models/spare/unload").status_code == 200
        assert http.post("/v2/repository/models/spare/load").status_code == 200
        assert http.get("/metrics").status_code == 200
    assert "loopback clients only" in keyless.info.access


def from_remote(server: RunningServer, method: str, path: str) -> httpx.Response:
    """Call ``server``'s HTTP application in-process, as a client at 203.0.113.9 would."""
    service = server.server.service
    assert service is not None
    limits = HttpLimits(1 << 20, Admission(), DecodePool(0, 1 << 20))
    metrics = build_metrics_registry(lambda: [])
    observer = Observer(ServerMetrics())
    app = create_http_app(service, limits, metrics, observer, auth=AuthPolicy(None))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://shipyard") as client:
            return await client.request(method, path)

    return asyncio.run(call())


@pytest.mark.parametrize(
    "path",
    ["/v2/repository/index", "/v2/repository/models/spare/load", "/v2/repository/models/x/unload"],
)
def test_without_keys_remote_clients_may_not_control_the_repository(
    keyless: RunningServer, path: str
) -> None:
    """Without a key file, repository control from a client not on loopback is 403."""
    assert_refused(from_remote(keyless, "POST", path), 403, "loopback clients only")


def test_without_keys_remote_clients_may_read(keyless: RunningServer) -> None:
    """Without a key file, a remote client still reads health and metadata."""
    assert from_remote(keyless, "GET", "/v2/health/live").status_code == 200
    assert from_remote(keyless, "GET", "/v2").json()["name"] == "shipyard"


# -- gRPC ----------------------------------------------------------------------------------------


def metadata(name: str) -> dict[str, str]:
    """The ``authorization`` metadata of key ``name`` (gRPC metadata keys are lowercase)."""
    return {"authorization": f"Bearer {KEYS[name]}"}


def grpc_inputs() -> list[grpcclient.InferInput]:
    """INPUT0 and INPUT1 of the add/sub model, for tritonclient.grpc."""
    tensors = []
    for name in ("INPUT0", "INPUT1"):
        tensor = grpcclient.InferInput(name, [1, 16], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 16), np.float32))
        tensors.append(tensor)
    return tensors


def grpc_status(call: Any) -> str:
    """The status tritonclient.grpc reports for ``call``'s failure."""
    with pytest.raises(InferenceServerException) as caught:
        call()
    return str(caught.value.status())


def test_tritonclient_grpc_passes_its_key_as_metadata(keyed: RunningServer) -> None:
    """tritonclient.grpc's ``headers=`` become the call's metadata: the infer key infers, the
    admin key controls the repository and reads every model's statistics."""
    client = grpcclient.InferenceServerClient(keyed.grpc_address)
    try:
        result = client.infer("simple", grpc_inputs(), headers=metadata("reader"))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 2.0))
        assert client.get_model_metadata("simple", headers=metadata("reader")).name == "simple"
        assert client.get_inference_statistics("simple", headers=metadata("reader"))
        client.unload_model("spare", headers=metadata("root"))
        client.load_model("spare", headers=metadata("root"))
        assert client.get_inference_statistics(headers=metadata("root"))
    finally:
        client.close()


def test_grpc_without_a_key_is_unauthenticated(keyed: RunningServer) -> None:
    """No key, or an unknown one: UNAUTHENTICATED with the same message as HTTP's 401."""
    client = grpcclient.InferenceServerClient(keyed.grpc_address)
    try:
        status = grpc_status(lambda: client.infer("simple", grpc_inputs()))
        assert status == "StatusCode.UNAUTHENTICATED"
        wrong = {"authorization": "Bearer sy_wrong"}
        status = grpc_status(lambda: client.get_model_metadata("simple", headers=wrong))
        assert status == "StatusCode.UNAUTHENTICATED"
    finally:
        client.close()


def test_grpc_wrong_role_is_permission_denied(keyed: RunningServer) -> None:
    """The infer key may not unload or read every model's statistics; the metrics key may not
    infer: PERMISSION_DENIED."""
    client = grpcclient.InferenceServerClient(keyed.grpc_address)
    try:
        for call in (
            lambda: client.unload_model("spare", headers=metadata("reader")),
            lambda: client.get_model_repository_index(headers=metadata("reader")),
            lambda: client.get_inference_statistics(headers=metadata("reader")),
            lambda: client.infer("simple", grpc_inputs(), headers=metadata("scraper")),
        ):
            assert grpc_status(call) == "StatusCode.PERMISSION_DENIED"
        assert client.is_model_ready("spare", headers=metadata("reader"))  # nothing unloaded
    finally:
        client.close()


def test_grpc_health_is_open(keyed: RunningServer) -> None:
    """ServerLive, ServerReady and grpc.health.v1 Check need no key."""
    client = grpcclient.InferenceServerClient(keyed.grpc_address)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
    finally:
        client.close()
    with grpc.insecure_channel(keyed.grpc_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_without_keys_loopback_may_control(keyless: RunningServer) -> None:
    """Without a key file, a loopback gRPC client may unload and load."""
    client = grpcclient.InferenceServerClient(keyless.grpc_address)
    try:
        client.unload_model("spare")
        client.load_model("spare")
        assert client.is_model_ready("spare")
    finally:
        client.close()
