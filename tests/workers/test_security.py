"""``shipyard serve --workers 2`` with TLS and API keys: every worker serves HTTPS and gRPC over
TLS with the same keys, an admin key's repository control reaches every worker and an infer
key's is refused, /metrics for the metrics key is the sum over workers, and a bad key file or
certificate is one clear error before any worker starts."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from shipyard.testing import add_sub_model, write_model
from tests.e2e.test_cli import assert_one_error_line
from tests.integration.test_auth import KEYS, grpc_inputs, grpc_status, key_file, metadata
from tests.integration.test_tls import make_certificates
from tests.workers.serving import SHIPYARD, ServeWorkers, serve_workers

#: Inference requests each worker gets on a connection of its own.
PER_WORKER = 3
BODY = json.dumps(
    {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": list(range(16))},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "FP32", "data": [1] * 16},
        ]
    }
)
SIMPLE = 'model="simple",version="1"'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeWorkers]:
    """Two workers on HTTPS and gRPC over TLS (a trustme CA's certificate for 127.0.0.1),
    with an infer, an admin and a metrics key, /metrics closed; models ``simple`` and
    ``spare``."""
    root = tmp_path_factory.mktemp("secure-workers")
    write_model(root / "repo", "simple", add_sub_model())
    write_model(root / "repo", "spare", add_sub_model())
    (root / "certs").mkdir()
    certs = make_certificates(root / "certs")
    tls = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
    keys = ["--api-keys", str(key_file(root)), "--metrics-auth"]
    with serve_workers(root / "repo", 2, *tls, *keys, ca=certs.ca) as running:
        yield running


def _call(
    connection: http.client.HTTPSConnection, path: str, key: str | None, body: str | None = None
) -> tuple[int, str]:
    """GET ``path`` (POST with ``body``) with key ``key`` (None: no key); status and text."""
    headers = {} if key is None else {"Authorization": f"Bearer {KEYS[key]}"}
    connection.request("GET" if body is None else "POST", path, body, headers)
    answer = connection.getresponse()
    return answer.status, answer.read().decode()


def _refused(answer: tuple[int, str], status: int, fragment: str) -> None:
    """``answer`` is ``status`` with one JSON error that contains ``fragment``."""
    assert answer[0] == status, answer
    error = json.loads(answer[1])
    assert set(error) == {"error"}
    assert fragment in error["error"], answer


def _metric(text: str, name: str, labels: str) -> float:
    """The value of one series in a /metrics text; 0 when it has no sample yet."""
    series = f"{name}{{{labels}}}" if labels else name
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _infer_on_each(server: ServeWorkers) -> list[http.client.HTTPSConnection]:
    """PER_WORKER inferences on ``simple`` with the infer key on a connection to each worker;
    those connections."""
    connections = [server.connection_on(pid) for pid in server.worker_pids()]
    for connection in connections:
        for _ in range(PER_WORKER):
            status, text = _call(connection, "/v2/models/simple/infer", "reader", BODY)
            assert status == 200, text
    return connections


def test_admin_key_control_over_https_reaches_every_worker(server: ServeWorkers) -> None:
    """Over HTTPS, an admin key's unload sent to one worker and load sent to the other are
    done by both before the call returns; the infer key's are 403 and no key is 401, and
    neither changes anything in any worker."""
    stdout, _ = server.output()
    assert "Access: API keys: 3 key(s)" in stdout
    assert server.url.startswith("https://")
    one, two = server.worker_pids()
    first, second = server.connection_on(one), server.connection_on(two)
    both = (first, second)
    unload, load = "/v2/repository/models/spare/unload", "/v2/repository/models/spare/load"
    try:
        _refused(_call(first, unload, "reader", ""), 403, "needs role admin")
        _refused(_call(first, unload, None, ""), 401, "API key")
        for connection in both:
            assert _call(connection, "/v2/models/spare/ready", "reader")[0] == 200
        assert _call(first, unload, "root", "")[0] == 200
        for connection in both:
            assert _call(connection, "/v2/models/spare/ready", "reader")[0] == 503
        _refused(_call(second, load, "reader", ""), 403, "needs role admin")
        for connection in both:
            assert _call(connection, "/v2/models/spare/ready", "reader")[0] == 503
        assert _call(second, load, "root", "")[0] == 200
        for connection in both:
            assert _call(connection, "/v2/models/spare/ready", "reader")[0] == 200
    finally:
        first.close()
        second.close()


def test_metrics_for_the_metrics_key_are_the_sum_over_workers(server: ServeWorkers) -> None:
    """Known inferences on each worker: every worker's /metrics, read with the metrics key,
    counts all of them; the infer key gets 403 and no key 401."""
    probe = server.connection_on(server.worker_pids()[0])
    status, text = _call(probe, "/metrics", "scraper")
    probe.close()
    assert status == 200
    before = _metric(text, "shipyard_inference_request_success_total", SIMPLE)
    connections = _infer_on_each(server)
    try:
        for connection in connections:  # ask each worker in turn
            status, text = _call(connection, "/metrics", "scraper")
            assert status == 200
            total = _metric(text, "shipyard_inference_request_success_total", SIMPLE)
            assert total == before + 2 * PER_WORKER
            assert _metric(text, "shipyard_workers", "") == 2
            _refused(_call(connection, "/metrics", "reader"), 403, "needs role")
            _refused(_call(connection, "/metrics", None), 401, "API key")
    finally:
        for connection in connections:
            connection.close()


def _grpc_success(client: grpcclient.InferenceServerClient) -> int:
    """``simple``'s successful inferences, as gRPC ModelStatistics reports them."""
    answer: Any = client.get_inference_statistics(
        "simple", headers=metadata("reader"), as_json=True
    )
    return int(answer["model_stats"][0]["inference_stats"]["success"]["count"])


def test_grpc_over_tls_with_keys_answers_for_every_worker(server: ServeWorkers) -> None:
    """tritonclient.grpc over TLS with the infer key infers, and its statistics count what
    each worker served; no key is UNAUTHENTICATED, the infer key's unload PERMISSION_DENIED,
    and the admin key's unload reaches every worker."""
    client = grpcclient.InferenceServerClient(
        server.grpc_address, ssl=True, root_certificates=str(server.ca)
    )
    connections: list[http.client.HTTPSConnection] = []
    try:
        before = _grpc_success(client)
        for _ in range(PER_WORKER):
            result = client.infer("simple", grpc_inputs(), headers=metadata("reader"))
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 2.0))
        connections = _infer_on_each(server)
        assert _grpc_success(client) == before + 3 * PER_WORKER
        status = grpc_status(lambda: client.infer("simple", grpc_inputs()))
        assert status == "StatusCode.UNAUTHENTICATED"
        status = grpc_status(lambda: client.unload_model("spare", headers=metadata("reader")))
        assert status == "StatusCode.PERMISSION_DENIED"
        client.unload_model("spare", headers=metadata("root"))
        for connection in connections:
            assert _call(connection, "/v2/models/spare/ready", "reader")[0] == 503
        client.load_model("spare", headers=metadata("root"))
        for connection in connections:
            assert _call(connection, "/v2/models/spare/ready", "reader")[0] == 200
    finally:
        client.close()
        for connection in connections:
            connection.close()


@pytest.mark.parametrize(
    ("files", "args", "fragments"),
    [
        pytest.param(
            {"keys.toml": "[[key]\n"},
            ["--api-keys", "keys.toml"],
            ["keys.toml", "cannot read API keys"],
            id="key-file-not-toml",
        ),
        pytest.param(
            {"keys.toml": '[[key]]\nname = "x"\nroles = ["admin"]\n'},
            ["--api-keys", "keys.toml"],
            ["keys.toml", "'sha256' must be"],
            id="key-without-digest",
        ),
        pytest.param(
            {},
            ["--api-keys", "absent.toml"],
            ["absent.toml", "API keys"],
            id="no-key-file",
        ),
        pytest.param(
            {"cert.pem": "not a certificate\n", "key.pem": "not a key\n"},
            ["--tls-cert", "cert.pem", "--tls-key", "key.pem"],
            ["cert.pem", "key.pem", "TLS certificate"],
            id="not-a-certificate",
        ),
        pytest.param(
            {},
            ["--tls-cert", "certs/s.crt", "--tls-key", "certs/c.key"],
            ["certs/s.crt", "certs/c.key", "TLS certificate"],
            id="key-of-another-certificate",
        ),
        pytest.param(
            {},
            ["--tls-cert", "certs/s.crt", "--tls-key", "certs/s.key", "--tls-client-ca", "ca"],
            ["client CA ca", "tls_client_ca"],
            id="no-client-ca",
        ),
    ],
)
def test_a_bad_key_file_or_certificate_fails_before_any_worker_starts(
    tmp_path: Path, files: dict[str, str], args: list[str], fragments: list[str]
) -> None:
    """A key file or TLS file that cannot be used: exit 2 with one 'error:' line naming it,
    and nothing else on stderr (no worker started, so none logged a line)."""
    write_model(tmp_path / "repo", "simple", add_sub_model())
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "certs").mkdir()
    make_certificates(tmp_path / "certs")
    command = [SHIPYARD, "serve", "repo", "--workers", "2", "--http-port", "0"]
    result = subprocess.run(
        [*command, "--grpc-port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr, *fragments)
