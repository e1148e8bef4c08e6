"""TLS on a live server, with certificates made by trustme: HTTPS for unmodified
tritonclient.http, gRPC over TLS (ALPN h2) for unmodified tritonclient.grpc, a clean refusal
for plaintext clients, and mutual TLS on both transports."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import trustme
from tritonclient.utils import InferenceServerException

from shipyard.config import ServerConfig
from shipyard.errors import ConfigError
from shipyard.loadgen import grpc as grpc_load
from shipyard.loadgen import http as http_load
from shipyard.loadgen.__main__ import main as loadgen_main
from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.server.tls import server_context
from shipyard.testing import RunningServer, add_sub_model, running_server, write_model
from shipyard.types import DataType

TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Certificates:
    """A CA's certificate, the server's chain and key, and a client's chain and key (PEM)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """Certificates for 127.0.0.1 and a client, from one trustme CA."""
    return make_certificates(tmp_path_factory.mktemp("certs"))


def make_certificates(folder: Path) -> Certificates:
    """Write certificates for 127.0.0.1 and a client, from one new trustme CA, in ``folder``."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@shipyard.test")
    paths = Certificates(*(folder / n for n in ("ca", "s.crt", "s.key", "c.crt", "c.key")))
    ca.cert_pem.write_to_path(paths.ca)
    server.cert_chain_pems[0].write_to_path(paths.server_cert)
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(paths.server_cert, append=True)
    server.private_key_pem.write_to_path(paths.server_key)
    client.cert_chain_pems[0].write_to_path(paths.client_cert)
    client.private_key_pem.write_to_path(paths.client_key)
    return paths


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with the add/sub model ``simple``."""
    path = tmp_path_factory.mktemp("tls-repo")
    write_model(path, "simple", add_sub_model())
    return path


@pytest.fixture(scope="module")
def tls_server(repo: Path, certs: Certificates) -> Iterator[RunningServer]:
    """A server on HTTPS and gRPC over TLS, certificate for 127.0.0.1."""
    with running_server(repo, tls_cert=certs.server_cert, tls_key=certs.server_key) as running:
        yield running


@pytest.fixture(scope="module")
def mtls_server(repo: Path, certs: Certificates) -> Iterator[RunningServer]:
    """A server on both transports that requires a client certificate signed by the CA."""
    with running_server(
        repo,
        tls_cert=certs.server_cert,
        tls_key=certs.server_key,
        tls_client_ca=certs.ca,
    ) as running:
        yield running


def infer_http(client: httpclient.InferenceServerClient) -> np.ndarray:
    """OUTPUT0 of the add/sub model for 0..15 twice."""
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = httpclient.InferInput(name, [1, 16], "FP32")
        tensor.set_data_from_numpy(np.arange(16, dtype=np.float32).reshape(1, 16))
        inputs.append(tensor)
    return client.infer("simple", inputs).as_numpy("OUTPUT0")


def test_server_reports_https(tls_server: RunningServer) -> None:
    """The server's URL says https and its info says TLS."""
    assert tls_server.url.startswith("https://127.0.0.1:")
    assert tls_server.info.tls


def test_unmodified_tritonclient_http_over_tls(
    tls_server: RunningServer, certs: Certificates
) -> None:
    """tritonclient.http with ssl=True and the CA verifies the server and infers."""
    client = httpclient.InferenceServerClient(
        tls_server.address, ssl=True, ssl_options={"ca_certs": str(certs.ca)}
    )
    try:
        assert client.is_server_ready()
        np.testing.assert_array_equal(infer_http(client), 2 * np.arange(16).reshape(1, 16))
    finally:
        client.close()


def test_httpx_verifies_the_certificate(tls_server: RunningServer, certs: Certificates) -> None:
    """An HTTPS client that trusts the CA is served; one that trusts nothing refuses the server."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    with httpx.Client(verify=context, timeout=TIMEOUT_S) as http:
        assert http.get(f"{tls_server.url}/v2/health/ready").status_code == 200
    with httpx.Client(timeout=TIMEOUT_S) as http, pytest.raises(httpx.ConnectError):
        http.get(f"{tls_server.url}/v2/health/ready")


def test_offers_http11_by_alpn(tls_server: RunningServer, certs: Certificates) -> None:
    """The HTTPS port negotiates http/1.1 by ALPN."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.set_alpn_protocols(["h2", "http/1.1"])
    host, port = tls_server.address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"


def test_plaintext_client_is_refused_cleanly(
    tls_server: RunningServer, certs: Certificates
) -> None:
    """Plain HTTP to the HTTPS port is closed at once (no answer, no hang), and the server
    goes on serving HTTPS clients."""
    plain = tls_server.url.replace("https://", "http://")
    with httpx.Client(timeout=TIMEOUT_S) as http, pytest.raises(httpx.TransportError) as caught:
        http.get(f"{plain}/v2/health/ready")
    assert not isinstance(caught.value, httpx.TimeoutException)  # closed, not left hanging
    context = ssl.create_default_context(cafile=str(certs.ca))
    with httpx.Client(verify=context, timeout=TIMEOUT_S) as http:
        assert http.get(f"{tls_server.url}/v2/health/ready").status_code == 200


def test_mutual_tls_serves_a_client_with_a_certificate(
    mtls_server: RunningServer, certs: Certificates
) -> None:
    """With a client CA, tritonclient.http presenting a certificate the CA signed is served."""
    client = httpclient.InferenceServerClient(
        mtls_server.address,
        ssl=True,
        ssl_options={
            "ca_certs": str(certs.ca),
            "certfile": str(certs.client_cert),
            "keyfile": str(certs.client_key),
        },
    )
    try:
        np.testing.assert_array_equal(infer_http(client), 2 * np.arange(16).reshape(1, 16))
    finally:
        client.close()


def test_mutual_tls_refuses_a_client_without_a_certificate(
    mtls_server: RunningServer, certs: Certificates
) -> None:
    """A client that presents no certificate is refused during the handshake."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    with (
        httpx.Client(verify=context, timeout=TIMEOUT_S) as http,
        pytest.raises(httpx.TransportError) as caught,
    ):
        http.get(f"{mtls_server.url}/v2/health/ready")
    assert not isinstance(caught.value, httpx.TimeoutException)


def test_bad_certificate_files_are_config_errors(tmp_path: Path, certs: Certificates) -> None:
    """A missing or malformed certificate, key or CA is a ConfigError naming the file."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        server_context(tmp_path / "nope.pem", certs.server_key, None, ["h2"])
    with pytest.raises(ConfigError, match=r"garbage\.pem"):
        server_context(certs.server_cert, garbage, None, ["h2"])
    with pytest.raises(ConfigError, match="client CA"):
        server_context(certs.server_cert, certs.server_key, garbage, ["h2"])


def test_tls_settings_must_go_together(certs: Certificates) -> None:
    """A certificate without its key, or a client CA without TLS, is refused up front."""
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        ServerConfig.resolve(env={}, flags={"tls_cert": str(certs.server_cert)})
    with pytest.raises(ConfigError, match="needs TLS itself"):
        ServerConfig.resolve(env={}, flags={"tls_client_ca": str(certs.ca)})
    config = ServerConfig.resolve(
        env={"SHIPYARD_TLS_CERT": str(certs.server_cert), "SHIPYARD_TLS_KEY": str(certs.server_key)}
    )
    assert config.tls_cert == certs.server_cert


def test_tritonclient_refuses_a_server_its_ca_did_not_sign(tls_server: RunningServer) -> None:
    """The CA option is really used: trusting another CA, tritonclient.http refuses the server."""
    other = trustme.CA()
    with other.cert_pem.tempfile() as other_ca:
        client = httpclient.InferenceServerClient(
            tls_server.address, ssl=True, ssl_options={"ca_certs": other_ca}
        )
        try:
            with pytest.raises(ssl.SSLError):
                client.is_server_ready()
        finally:
            client.close()


# -- gRPC ----------------------------------------------------------------------------------------


def infer_grpc(client: grpcclient.InferenceServerClient) -> np.ndarray:
    """OUTPUT0 of the add/sub model for 0..15 twice, over gRPC."""
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = grpcclient.InferInput(name, [1, 16], "FP32")
        tensor.set_data_from_numpy(np.arange(16, dtype=np.float32).reshape(1, 16))
        inputs.append(tensor)
    return client.infer("simple", inputs, client_timeout=TIMEOUT_S).as_numpy("OUTPUT0")


def test_unmodified_tritonclient_grpc_over_tls(
    tls_server: RunningServer, certs: Certificates
) -> None:
    """tritonclient.grpc with ssl=True and the CA as root certificate negotiates h2 and infers."""
    client = grpcclient.InferenceServerClient(
        tls_server.grpc_address, ssl=True, root_certificates=str(certs.ca)
    )
    try:
        assert client.is_server_live()
        np.testing.assert_array_equal(infer_grpc(client), 2 * np.arange(16).reshape(1, 16))
    finally:
        client.close()


def test_grpc_port_negotiates_h2_by_alpn(tls_server: RunningServer, certs: Certificates) -> None:
    """The gRPC port offers h2, and only h2, by ALPN."""
    host, port = tls_server.grpc_address.rsplit(":", 1)
    for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], None)):
        context = ssl.create_default_context(cafile=str(certs.ca))
        context.set_alpn_protocols(offered)
        with (
            socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            assert tls.selected_alpn_protocol() == chosen


def test_plaintext_grpc_client_is_refused_cleanly(
    tls_server: RunningServer, certs: Certificates
) -> None:
    """A cleartext gRPC client gets UNAVAILABLE at once, and TLS clients are still served."""
    client = grpcclient.InferenceServerClient(tls_server.grpc_address)
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.is_server_live(client_timeout=TIMEOUT_S)
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
    finally:
        client.close()
    test_unmodified_tritonclient_grpc_over_tls(tls_server, certs)


def test_mutual_tls_over_grpc(mtls_server: RunningServer, certs: Certificates) -> None:
    """With a client CA, gRPC serves a client presenting a signed certificate and refuses one
    that presents none (UNAVAILABLE: the handshake fails)."""
    client = grpcclient.InferenceServerClient(
        mtls_server.grpc_address,
        ssl=True,
        root_certificates=str(certs.ca),
        private_key=str(certs.client_key),
        certificate_chain=str(certs.client_cert),
    )
    try:
        np.testing.assert_array_equal(infer_grpc(client), 2 * np.arange(16).reshape(1, 16))
    finally:
        client.close()
    credentials = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
    with grpc.secure_channel(mtls_server.grpc_address, credentials) as channel:
        live = channel.unary_unary(
            "/inference.GRPCInferenceService/ServerLive",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=lambda data: data,
        )
        with pytest.raises(grpc.RpcError) as caught:
            live(pb.ServerLiveRequest(), timeout=TIMEOUT_S)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


# -- the load generator ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_load_generator_over_tls(
    tls_server: RunningServer,
    certs: Certificates,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    protocol: str,
) -> None:
    """`python -m shipyard.loadgen --tls-ca` drives HTTPS and gRPC over TLS without errors."""
    array = np.ones((1, 16), np.float32)
    inputs = [("INPUT0", DataType.FP32, array), ("INPUT1", DataType.FP32, array)]
    if protocol == "grpc":
        host, port = tls_server.grpc_address.rsplit(":", 1)
        request = grpc_load.encode_request("simple", None, inputs)
    else:
        host, port = tls_server.address.rsplit(":", 1)
        body, headers = http_load.encode_request(inputs, binary=True)
        request = http_load.raw_request(host, int(port), "/v2/models/simple/infer", body, headers)
    path = tmp_path / "request.bin"
    path.write_bytes(request)
    argv = ["--host", host, "--port", port, "--protocol", protocol, "--request", str(path)]
    argv += ["--tls-ca", str(certs.ca), "--concurrency", "4", "--warmup", "0.1"]
    assert loadgen_main([*argv, "--duration", "0.5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["error_count"] == 0, summary
    assert summary["requests"] > 0
