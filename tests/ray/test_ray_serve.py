"""`shipyard ray serve` on a real local Ray cluster: a head and a worker node, 1 CPU each, in
Ray's HAProxy mode, deployed with API keys, once per ingress (the ``deployed`` fixture's
parameter): ``ray`` (Ray's HAProxy ingress) and ``shipyard`` (Shipyard's front door). TLS:
test_ray_tls.py."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from shipyard.cluster.deploy import HAPROXY_NO_TLS
from shipyard.cluster.front import _serving_replicas, state_dir
from shipyard.server.auth import hash_key, new_key
from shipyard.testing import cnn_model, slow_model, wait_until_blocking, write_model
from shipyard.testing.process import running
from shipyard.testing.raycluster import RayCluster, free_port, local_ray_cluster
from tests.ray.certificates import Certificates
from tests.ray.cli import run_ray_serve

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

_CNN_TOML = "[scale]\nnum_cpus = 0.25\n"
# One replica at rest, a second one as soon as requests queue (autoscaling).
_SLOW_TOML = (
    "max_batch_size = 0\n[scale]\nmin_replicas = 1\nmax_replicas = 2\n"
    "target_ongoing_requests = 1\nnum_cpus = 0.75\nupscale_delay_s = 0\n"
)


#: The roles of the deployment's API keys, one key each (the key's name is its role).
ROLES = ("infer", "admin", "metrics")


@dataclass
class Deployed:
    """The cluster, the URL of its ingress, the CNN's file (for the oracle), the arguments it
    was deployed with (``shipyard ray serve ARGS``, up to ``--http-port``) and the API keys by
    role."""

    cluster: RayCluster
    url: str
    address: str
    cnn_file: Path
    argv: list[str]
    keys: dict[str, str]
    ingress: str

    def auth(self, role: str = "infer") -> dict[str, str]:
        """The ``Authorization`` header of the key with ``role``."""
        return {"Authorization": f"Bearer {self.keys[role]}"}


def write_keys(path: Path) -> dict[str, str]:
    """Write a key file with one new key per role of ROLES; return the keys by role."""
    keys = {role: new_key() for role in ROLES}
    path.write_text(
        "".join(
            f'[[key]]\nname = "{role}"\nsha256 = "{hash_key(key)}"\nroles = ["{role}"]\n'
            for role, key in keys.items()
        )
    )
    return keys


#: Run only against one ingress (the module runs against both).
ONLY_RAY = pytest.mark.parametrize("deployed", ["ray"], indirect=True)
ONLY_SHIPYARD = pytest.mark.parametrize("deployed", ["shipyard"], indirect=True)


@pytest.fixture(scope="module", params=["ray", "shipyard"])
def deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    """A 2-node cluster with the CNN and the slow model deployed by the CLI (--detach), with
    API keys, through the ingress of the parameter."""
    ingress = request.param
    workdir = tmp_path_factory.mktemp(f"ray-{ingress}")
    keys = write_keys(workdir / "keys.toml")
    repo = workdir / "repo"
    cnn_file = write_model(repo, "cnn", cnn_model(), config=_CNN_TOML)
    write_model(repo, "slow", slow_model(40), config=_SLOW_TOML)
    fast_metrics = {"RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5"}
    with local_ray_cluster(workdir, nodes=2, cpus_per_node=1, extra_env=fast_metrics) as cluster:
        port = free_port()
        argv = [str(repo), "--address", cluster.address, "--detach", "--ingress", ingress]
        argv += ["--api-keys", str(workdir / "keys.toml")]
        done = run_ray_serve([*argv, "--http-port", str(port)], cluster.env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"http://127.0.0.1:{port}" in done.stdout
        assert "API keys: 3 key(s)" in done.stdout
        url = f"http://127.0.0.1:{port}"
        wait_until_blocking(
            lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200,
            "the cluster is ready",
            timeout_s=60,
        )
        argv = [*argv, "--http-port"]
        yield Deployed(cluster, url, f"127.0.0.1:{port}", cnn_file, argv, keys, ingress)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 1, 28, 28), dtype=np.float32)


def _expected(cnn_file: Path, image: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(cnn_file), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, {"input": image})[0]
    return result


def _infer_json(image: np.ndarray) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": [1, 1, 28, 28],
                "datatype": "FP32",
                "data": image.ravel().tolist(),
            }
        ]
    }


def test_tritonclient_http_through_the_cluster(deployed: Deployed) -> None:
    """Unmodified tritonclient with an infer key gets health, metadata and ORT's exact answer
    through Ray."""
    client = triton.InferenceServerClient(deployed.address)
    key = deployed.auth("infer")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("cnn", headers=key)
        metadata = client.get_model_metadata("cnn", headers=key)
        assert metadata["inputs"][0]["shape"] == [-1, 1, 28, 28]
        image = _image(1)
        tensor = triton.InferInput("input", [1, 1, 28, 28], "FP32")
        tensor.set_data_from_numpy(image, binary_data=True)
        got = client.infer("cnn", [tensor], headers=key).as_numpy("probabilities")
    finally:
        client.close()
    np.testing.assert_allclose(got, _expected(deployed.cnn_file, image), rtol=1e-5, atol=1e-6)
    index = httpx.post(f"{deployed.url}/v2/repository/index", headers=deployed.auth("admin")).json()
    assert {(row["name"], row["state"]) for row in index} == {("cnn", "READY"), ("slow", "READY")}


def test_cluster_refuses_what_it_does_not_serve_with_clear_errors(deployed: Deployed) -> None:
    """Unknown models get 404 and repository load gets 501, each with an {"error"} body."""
    unknown = httpx.get(f"{deployed.url}/v2/models/nope", headers=deployed.auth())
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["error"]
    load = httpx.post(
        f"{deployed.url}/v2/repository/models/cnn/load", headers=deployed.auth("admin")
    )
    assert load.status_code == 501
    assert "shipyard ray serve" in load.json()["error"]
    bad = httpx.post(
        f"{deployed.url}/v2/models/cnn/infer", content=b"{not json", headers=deployed.auth()
    )
    assert bad.status_code == 400
    assert "error" in bad.json()


def test_a_call_without_a_key_is_401_with_the_challenge(deployed: Deployed) -> None:
    """Without a key, or with an unknown one, inference (a replica) and server metadata (the
    root) answer 401 with {"error"} and WWW-Authenticate."""
    body = _infer_json(_image(3))
    for headers in ({}, {"Authorization": f"Bearer {new_key()}"}):
        for response in (
            httpx.post(f"{deployed.url}/v2/models/cnn/infer", json=body, headers=headers),
            httpx.get(f"{deployed.url}/v2", headers=headers),
        ):
            assert response.status_code == 401, response.text
            assert "API key" in response.json()["error"]
            assert response.headers["www-authenticate"] == 'Bearer realm="shipyard"'


def test_a_metrics_key_may_not_infer(deployed: Deployed) -> None:
    """A key with role metrics only gets 403 on inference, naming the role it needs."""
    response = httpx.post(
        f"{deployed.url}/v2/models/cnn/infer",
        json=_infer_json(_image(4)),
        headers=deployed.auth("metrics"),
    )
    assert response.status_code == 403
    assert "infer" in response.json()["error"]


def test_health_is_open_without_a_key(deployed: Deployed) -> None:
    """Health (live and ready) answers without a key, for load balancers' probes."""
    assert httpx.get(f"{deployed.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{deployed.url}/v2/health/ready").status_code == 200


def test_repository_index_needs_an_admin_key(deployed: Deployed) -> None:
    """The repository index and server-wide statistics refuse an infer key (403) and answer an
    admin key."""
    for method, path in (("POST", "/v2/repository/index"), ("GET", "/v2/models/stats")):
        url = f"{deployed.url}{path}"
        refused = httpx.request(method, url, headers=deployed.auth("infer"))
        assert refused.status_code == 403
        assert "admin" in refused.json()["error"]
        assert httpx.request(method, url, headers=deployed.auth("admin")).status_code == 200


def replica_addresses(deployed: Deployed, model: str) -> list[str]:
    """``host:port`` of each replica of ``model`` that the ingress's HAProxy sends requests to:
    from Ray's HAProxy configuration, or from the front door's HAProxy (its admin socket)."""
    port = int(deployed.address.rsplit(":", 1)[1])
    if deployed.ingress == "ray":
        state = Path(deployed.cluster.env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]).parent
        config = "".join(path.read_text() for path in state.glob("*/haproxy.cfg"))
        return re.findall(rf"server SERVE_REPLICA_shipyard_{model}-\S+ ([\d.]+:\d+)", config)
    (socket_path,) = state_dir(port).glob("*/admin.sock")
    return [f"{h}:{p}" for m, (h, p) in _serving_replicas(socket_path.parent) if m == model]


def test_a_replicas_own_port_needs_a_key_too(deployed: Deployed) -> None:
    """The CNN replica's own HTTP port (HAProxy's backend, reachable inside the cluster) checks
    keys itself: 401 without one, served with one. Repository unload there, even with an admin
    key, is refused (404 from Ray's routing, 501 from Shipyard's server) and the model keeps
    serving."""
    backends = replica_addresses(deployed, "cnn")
    assert len(backends) == 1, backends
    url = f"http://{backends[0]}/v2/models/cnn/infer"
    body = _infer_json(_image(6))
    refused = httpx.post(url, json=body)
    assert refused.status_code == 401
    assert "API key" in refused.json()["error"]
    assert httpx.post(url, json=body, headers=deployed.auth()).status_code == 200
    unload = f"http://{backends[0]}/v2/repository/models/cnn/unload"
    answer = httpx.post(unload, headers=deployed.auth("admin"))
    assert answer.status_code == (404 if deployed.ingress == "ray" else 501), answer.text
    if deployed.ingress == "ray":  # Ray's routing serves only the model's routes there
        metrics = httpx.get(f"http://{backends[0]}/metrics", headers=deployed.auth("admin"))
        assert metrics.status_code == 404
    assert httpx.post(url, json=body, headers=deployed.auth()).status_code == 200


@ONLY_RAY
def test_tls_on_the_haproxy_ingress_is_refused(deployed: Deployed, certs: Certificates) -> None:
    """--tls-cert on a cluster whose ingress is HAProxy fails with the way out, no traceback."""
    port = deployed.address.rsplit(":", 1)[1]
    tls = ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]
    done = run_ray_serve([*deployed.argv, port, *tls], deployed.cluster.env, timeout_s=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert HAPROXY_NO_TLS in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


@ONLY_RAY
def test_other_http_options_on_a_running_cluster_are_refused(deployed: Deployed) -> None:
    """Serve's HTTP options are fixed once it runs: another port fails clearly (Ray would
    ignore it and the command would print a URL nobody serves), and the cluster serves on."""
    done = run_ray_serve([*deployed.argv, str(free_port())], deployed.cluster.env, timeout_s=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"already runs on this cluster on {deployed.address}" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert httpx.get(f"{deployed.url}/v2/health/ready").status_code == 200


@ONLY_RAY
def test_the_front_door_on_a_cluster_serving_rays_proxy_is_refused(deployed: Deployed) -> None:
    """--ingress shipyard where Serve runs with Ray's proxies (they would share its port) fails
    with the way out, and Ray's ingress serves on."""
    port = deployed.address.rsplit(":", 1)[1]
    argv = [*deployed.argv, port, "--ingress", "shipyard"]  # the last --ingress counts
    done = run_ray_serve(argv, deployed.cluster.env, timeout_s=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "with its own HTTP proxies" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert httpx.get(f"{deployed.url}/v2/health/ready").status_code == 200


@ONLY_SHIPYARD
def test_rays_ingress_on_a_cluster_serving_the_front_door_is_refused(deployed: Deployed) -> None:
    """--ingress ray where Serve runs without its proxy (the front door's) fails with the way
    out, and the front door serves on."""
    port = deployed.address.rsplit(":", 1)[1]
    argv = [*deployed.argv, port, "--ingress", "ray"]  # the last --ingress counts
    done = run_ray_serve(argv, deployed.cluster.env, timeout_s=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "without its HTTP proxy" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert httpx.get(f"{deployed.url}/v2/health/ready").status_code == 200


def test_killed_replica_is_replaced_and_every_request_is_answered(deployed: Deployed) -> None:
    """Killing the CNN's replica under load: Ray starts another; each request gets an answer
    (correct output) or a clean error, none hangs, and requests succeed again afterwards."""
    title = "ServeReplica:shipyard:cnn"
    before = deployed.cluster.process_ids(title)
    assert len(before) == 1, before
    image = _image(2)
    expected = _expected(deployed.cnn_file, image)
    body = _infer_json(image)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30, headers=deployed.auth()) as http:
            while not stop.is_set():
                try:
                    response = http.post(f"{deployed.url}/v2/models/cnn/infer", json=body)
                except httpx.TimeoutException:
                    kind = "timeout"
                except httpx.TransportError:
                    kind = "connection error"
                else:
                    if response.status_code == 200:
                        data = np.asarray(response.json()["outputs"][0]["data"], np.float32)
                        ok = np.allclose(data, expected.ravel(), atol=1e-5)
                        kind = "ok" if ok else "wrong answer"
                    else:
                        kind = f"HTTP {response.status_code}"
                        if "error" not in _json_or_empty(response):
                            kind += " without an {error} body"
                with lock:
                    outcomes[kind] += 1

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(client)
        wait_until_blocking(lambda: outcomes["ok"] >= 20, "requests succeed", timeout_s=60)
        os.kill(before[0], signal.SIGKILL)
        killed_at = sum(outcomes.values())

        def replaced() -> bool:
            now = deployed.cluster.process_ids(title)
            return bool(now) and now != before

        wait_until_blocking(replaced, "Ray starts a new CNN replica", timeout_s=120)
        wait_until_blocking(
            lambda: sum(outcomes.values()) >= killed_at + 50 and outcomes["ok"] > killed_at,
            "requests succeed on the new replica",
            timeout_s=120,
        )
        ok_before_stop = outcomes["ok"]
        wait_until_blocking(
            lambda: outcomes["ok"] >= ok_before_stop + 20, "the new replica serves", 60
        )
        stop.set()
    assert outcomes["timeout"] == 0, outcomes
    assert outcomes["wrong answer"] == 0, outcomes
    clean_errors = {k for k in outcomes if k.startswith(("HTTP 5", "connection"))}
    assert set(outcomes) <= {"ok", *clean_errors}, outcomes
    if deployed.ingress == "shipyard":  # HAProxy's own errors carry JSON, as Shipyard's do
        assert not any("without" in kind for kind in outcomes), outcomes


def _json_or_empty(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def test_autoscaling_adds_a_replica_under_load(deployed: Deployed) -> None:
    """The slow model ([scale] min 1, max 2, target 1) gets a second replica under load."""
    title = "ServeReplica:shipyard:slow"
    assert len(deployed.cluster.process_ids(title)) == 1
    body = {
        "inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]
    }
    stop = threading.Event()
    answered: Counter[int] = Counter()

    def client() -> None:
        with httpx.Client(timeout=60, headers=deployed.auth()) as http:
            while not stop.is_set():
                answered[
                    http.post(f"{deployed.url}/v2/models/slow/infer", json=body).status_code
                ] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        for _ in range(6):
            pool.submit(client)
        try:
            wait_until_blocking(
                lambda: len(deployed.cluster.process_ids(title)) == 2,
                "autoscaling starts a second replica",
                timeout_s=150,
            )
        finally:
            stop.set()
    assert answered[200] > 0
    assert set(answered) == {200}, answered
    assert time.monotonic() - started < 150


def test_deploying_again_unchanged_leaves_every_replica_serving(deployed: Deployed) -> None:
    """Running the same command again changes nothing: no replica (front door included) is
    replaced (Ray 2.60 would replace them all on every serve.run). (After the autoscaling
    test: Ray's handle calls count as ongoing requests of the slow model, target 1.)"""
    port = deployed.address.rsplit(":", 1)[1]
    before = sorted(deployed.cluster.process_ids("ServeReplica:shipyard"))
    assert before
    done = run_ray_serve([*deployed.argv, port], deployed.cluster.env, timeout_s=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(deployed.cluster.process_ids("ServeReplica:shipyard")) == before
    assert httpx.get(f"{deployed.url}/v2/health/ready").status_code == 200


@ONLY_SHIPYARD
def test_a_killed_front_door_is_replaced_and_its_haproxy_stopped(deployed: Deployed) -> None:
    """kill -9 of the front door's replica: Ray starts another on the head node, which takes
    the port over from the HAProxy the killed one left (if it still runs), stops it softly and
    serves the cluster URL again, keys and all. (Last in the module: the URL may fail a while.)"""
    title = "ServeReplica:shipyard-front:front"
    (front,) = deployed.cluster.process_ids(title)
    pid_file = state_dir(int(deployed.address.rsplit(":", 1)[1])) / "haproxy.pid"
    old_haproxy = int(pid_file.read_text())
    assert running(old_haproxy)
    os.kill(front, signal.SIGKILL)
    wait_until_blocking(
        lambda: deployed.cluster.process_ids(title) not in ([], [front]),
        "Ray starts another front door",
        timeout_s=120,
    )

    def serves() -> bool:
        try:
            answer = httpx.get(f"{deployed.url}/v2/health/ready", timeout=5)
        except httpx.TransportError:
            return False
        return answer.status_code == 200

    wait_until_blocking(serves, "the new front door serves the cluster URL", timeout_s=120)
    assert int(pid_file.read_text()) != old_haproxy
    wait_until_blocking(  # stopped softly: it exits once its connections are done
        lambda: not running(old_haproxy), "the old HAProxy exits", timeout_s=30
    )
    body = _infer_json(_image(7))
    answer = httpx.post(f"{deployed.url}/v2/models/cnn/infer", json=body, headers=deployed.auth())
    assert answer.status_code == 200, answer.text
    assert httpx.post(f"{deployed.url}/v2/models/cnn/infer", json=body).status_code == 401
