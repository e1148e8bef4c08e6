"""`shipyard ray serve --tls-cert/--tls-key` on a real 1-node Ray cluster without Ray's HAProxy
mode, once per ingress: Ray's own proxy (``--ingress ray``) and Shipyard's front door
(``--ingress shipyard``: HAProxy terminates TLS) serve HTTPS with the certificate."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from shipyard.testing import cnn_model, wait_until_blocking, write_model
from shipyard.testing.raycluster import free_port, local_ray_cluster
from tests.ray.certificates import Certificates, write_certificates
from tests.ray.cli import run_ray_serve

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


@dataclass
class Deployed:
    """The URL and address of the cluster's HTTPS ingress, the CNN's file, the CA, and the
    command's arguments and environment (to deploy again)."""

    url: str
    address: str
    cnn_file: Path
    ca: Path
    argv: list[str]
    env: dict[str, str]

    def verified(self) -> ssl.SSLContext:
        """A client context that trusts the test CA only."""
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="module", params=["ray", "shipyard"])
def deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, certs: Certificates
) -> Iterator[Deployed]:
    """A 1-node cluster (no Ray HAProxy mode) with the CNN deployed over HTTPS through the
    ingress of the parameter."""
    workdir = tmp_path_factory.mktemp(f"ray-tls-{request.param}")
    cnn_file = write_model(workdir / "repo", "cnn", cnn_model(), config="[scale]\nnum_cpus = 0.5\n")
    with local_ray_cluster(workdir, nodes=1, cpus_per_node=1, haproxy=False) as cluster:
        port = free_port()
        argv = [str(workdir / "repo"), "--address", cluster.address]
        argv += ["--http-port", str(port), "--detach", "--ingress", request.param]
        argv += ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]
        done = run_ray_serve(argv, cluster.env)
        assert done.returncode == 0, done.stdout + done.stderr
        url = f"https://127.0.0.1:{port}"
        assert url in done.stdout
        running = Deployed(url, f"127.0.0.1:{port}", cnn_file, certs.ca, argv, cluster.env)

        def ready() -> bool:  # the ingress learns the routes a moment after the deployment
            with httpx.Client(verify=running.verified(), timeout=10) as http:
                return http.get(f"{url}/v2/health/ready").status_code == 200

        wait_until_blocking(ready, "the ingress serves the models over HTTPS", timeout_s=60)
        yield running


def test_unmodified_tritonclient_over_https_through_the_ingress(deployed: Deployed) -> None:
    """tritonclient.http with ssl=True and the CA verifies the ingress and gets ORT's answer."""
    client = triton.InferenceServerClient(
        deployed.address, ssl=True, ssl_options={"ca_certs": str(deployed.ca)}
    )
    image = np.random.default_rng(5).random((1, 1, 28, 28), dtype=np.float32)
    try:
        assert client.is_server_ready()
        tensor = triton.InferInput("input", [1, 1, 28, 28], "FP32")
        tensor.set_data_from_numpy(image, binary_data=True)
        got = client.infer("cnn", [tensor]).as_numpy("probabilities")
    finally:
        client.close()
    session = ort.InferenceSession(str(deployed.cnn_file), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": image})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_the_certificate_is_the_one_given(deployed: Deployed) -> None:
    """A client trusting the test CA gets JSON answers; one trusting only the system's CAs
    refuses the certificate."""
    with httpx.Client(verify=deployed.verified(), timeout=30) as http:
        assert http.get(f"{deployed.url}/v2/models/cnn").json()["name"] == "cnn"
    with httpx.Client(timeout=30) as http, pytest.raises(httpx.ConnectError):
        http.get(f"{deployed.url}/v2/health/ready")


def test_plain_http_is_refused(deployed: Deployed) -> None:
    """Plain HTTP to the HTTPS ingress gets no answer: the connection closes, it does not hang."""
    plain = deployed.url.replace("https://", "http://")
    with httpx.Client(timeout=30) as http, pytest.raises(httpx.TransportError) as caught:
        http.get(f"{plain}/v2/health/ready")
    assert not isinstance(caught.value, httpx.TimeoutException)


@pytest.mark.parametrize("deployed", ["shipyard"], indirect=True)
def test_mutual_tls_through_the_front_door(deployed: Deployed, tmp_path: Path) -> None:
    """Deploying again with --tls-client-ca (a rollout of the front door): a client without a
    certificate that CA signed fails the handshake, one with it gets answers, tritonclient
    included. (Last in the module: the deployment keeps requiring client certificates.)"""
    client = write_certificates(tmp_path)  # a CA of the clients, and a certificate it signed
    done = run_ray_serve([*deployed.argv, "--tls-client-ca", str(client.ca)], deployed.env)
    assert done.returncode == 0, done.stdout + done.stderr

    def refused_without_certificate() -> bool:
        with httpx.Client(verify=deployed.verified(), timeout=10) as http:
            try:
                http.get(f"{deployed.url}/v2/health/ready")
            except httpx.TransportError:
                return True
            return False

    wait_until_blocking(refused_without_certificate, "mutual TLS is required", timeout_s=60)
    mutual = deployed.verified()
    mutual.load_cert_chain(client.cert, client.key)
    with httpx.Client(verify=mutual, timeout=30) as http:
        assert http.get(f"{deployed.url}/v2/models/cnn").json()["name"] == "cnn"
    triton_client = triton.InferenceServerClient(
        deployed.address,
        ssl=True,
        ssl_options={
            "ca_certs": str(deployed.ca),
            "certfile": str(client.cert),
            "keyfile": str(client.key),
        },
    )
    try:
        assert triton_client.is_model_ready("cnn")
    finally:
        triton_client.close()
