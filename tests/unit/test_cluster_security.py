"""Keys and TLS of `shipyard ray serve`, in-process: the root ingress's checks, what travels to
the replicas, and the CLI's checks before it reaches a cluster (the real cluster: tests/ray)."""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from shipyard.cli import main
from shipyard.cluster.deploy import ClusterSettings, unreachable_replicas
from shipyard.cluster.replica import ReplicaSpec, RootIngress, no_repository_control
from shipyard.server.auth import Access, ApiKey, AuthPolicy, Role, hash_key, new_key

KEYS = {name: new_key() for name in ("infer", "admin", "metrics")}
POLICY = AuthPolicy(
    [
        ApiKey(name, bytes.fromhex(hash_key(key)), frozenset({Role(name)}))
        for name, key in KEYS.items()
    ]
)


def root_call(
    auth: AuthPolicy | None, method: str, path: str, key: str | None = None
) -> httpx.Response:
    """Call the root ingress's ASGI app in-process, as a client at 203.0.113.9 would."""
    app = RootIngress({}, auth=auth).__serve_build_asgi_app__()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    headers = {} if key is None else {"authorization": f"Bearer {KEYS[key]}"}

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://ray") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(call())


def test_root_without_a_key_answers_401_with_the_challenge() -> None:
    """With keys, the root's server metadata without a key is 401, {"error"} and the challenge."""
    response = root_call(POLICY, "GET", "/v2")
    assert response.status_code == 401
    assert "API key" in response.json()["error"]
    assert response.headers["www-authenticate"] == 'Bearer realm="shipyard"'


def test_root_health_stays_open_with_keys() -> None:
    """With keys, health needs none (load balancers probe it)."""
    assert root_call(POLICY, "GET", "/v2/health/live").status_code == 200


def test_root_roles_are_those_of_shipyard_serve() -> None:
    """Infer reads metadata but not the repository; metrics reads neither; admin reaches both."""
    assert root_call(POLICY, "GET", "/v2", "infer").json()["name"] == "shipyard"
    assert root_call(POLICY, "GET", "/v2", "metrics").status_code == 403
    refused = root_call(POLICY, "POST", "/v2/repository/index", "infer")
    assert refused.status_code == 403
    assert "admin" in refused.json()["error"]
    assert root_call(POLICY, "GET", "/v2/models/stats", "infer").status_code == 403
    control = root_call(POLICY, "POST", "/v2/repository/models/cnn/load", "admin")
    assert control.status_code == 501  # past the key check, to the cluster's own answer


def test_root_without_keys_keeps_no_loopback_rule() -> None:
    """Without a key file, a client that is not on loopback still gets the cluster's answers
    (behind HAProxy every peer is loopback, so Shipyard's loopback rule would mean nothing)."""
    assert root_call(None, "GET", "/v2").status_code == 200
    assert root_call(None, "POST", "/v2/repository/models/cnn/load").status_code == 501


def test_replica_spec_policy_survives_the_trip_to_a_replica() -> None:
    """The policy pickled to each replica (digests only: the key file holds no clear key)
    checks the same keys and roles there."""
    spec = ReplicaSpec("repo", "cnn", auth=POLICY)
    received = pickle.loads(pickle.dumps(spec))
    assert received.auth is not None
    assert (
        received.auth.authorize(Access.INFER, f"Bearer {KEYS['infer']}", loopback=False).name
        == "infer"
    )


def test_tls_paths_reach_ray_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray reads the certificate on the head node, elsewhere than here: its paths go absolute;
    without TLS the options carry none."""
    monkeypatch.chdir(tmp_path)
    plain = ClusterSettings(http_port=8123).http_options()
    assert plain == {"host": "127.0.0.1", "port": 8123, "ssl_certfile": None, "ssl_keyfile": None}
    tls = ClusterSettings(tls_cert=Path("c.pem"), tls_key=Path("k.pem")).http_options()
    assert tls["ssl_certfile"] == str(tmp_path / "c.pem")
    assert tls["ssl_keyfile"] == str(tmp_path / "k.pem")


def ray_serve(*args: str) -> tuple[int, str]:
    """Run ``shipyard ray serve`` on a cluster address where nothing listens."""
    result = CliRunner().invoke(
        main, ["ray", "serve", "no-such-repo", "--address", "127.0.0.1:9", *args]
    )
    return result.exit_code, result.output


def test_cli_names_a_bad_key_file_before_reaching_the_cluster(tmp_path: Path) -> None:
    """A key file that does not parse fails the command with the file named, before the
    repository or the cluster are looked at."""
    bad = tmp_path / "keys.toml"
    bad.write_text("[[key]]\nname = 'x'\n")
    code, output = ray_serve("--api-keys", str(bad))
    assert code == 2
    assert str(bad) in output
    assert "no-such-repo" not in output


def test_cli_names_a_certificate_that_does_not_load(tmp_path: Path) -> None:
    """A certificate that is not PEM fails the command with the file named."""
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    code, output = ray_serve("--tls-cert", str(cert), "--tls-key", str(key))
    assert code == 2
    assert str(cert) in output
    assert "no-such-repo" not in output


MUTUAL_TLS_THROUGH_RAY = (
    *("--tls-cert", "c.pem", "--tls-key", "k.pem"),
    *("--tls-client-ca", "ca.pem", "--ingress", "ray"),
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tls-cert", "c.pem"), "--tls-cert and --tls-key go together"),
        (("--metrics-auth",), "--metrics-auth needs API keys"),
        (("--tls-client-ca", "ca.pem"), "--tls-client-ca (mutual TLS) needs TLS itself"),
        (MUTUAL_TLS_THROUGH_RAY, "--tls-client-ca needs --ingress shipyard"),
    ],
)
def test_cli_refuses_flags_that_cannot_work(args: tuple[str, ...], message: str) -> None:
    """A certificate without a key, --metrics-auth without keys, a client CA without TLS and
    mutual TLS through Ray's ingress (which would not require client certificates) are refused
    with a one-line error."""
    code, output = ray_serve(*args)
    assert code == 2
    assert message in output


def test_one_nodes_address_on_a_multi_node_haproxy_cluster_is_refused() -> None:
    """--host set to one node's address: HAProxy reaches that node's replicas over loopback
    and the others' replicas cannot listen there; refused with the same fix."""
    problem = unreachable_replicas("10.0.0.5", True, {"10.0.0.5", "10.0.0.6"})
    assert problem is not None
    assert "10.0.0.5 only" in problem
    assert "--host 0.0.0.0" in problem


def test_loopback_host_on_a_multi_node_haproxy_cluster_is_refused_with_the_fix() -> None:
    """--host 127.0.0.1 with HAProxy and nodes at two addresses: replicas on the other node
    would listen on loopback where HAProxy cannot reach them; the message says what to pass."""
    problem = unreachable_replicas("127.0.0.1", True, {"10.0.0.5", "10.0.0.6"})
    assert problem is not None
    assert "--host 0.0.0.0" in problem
    assert "10.0.0.6" in problem


@pytest.mark.parametrize(
    ("host", "haproxy", "nodes"),
    [
        ("127.0.0.1", True, {"127.0.0.1"}),  # every node on this machine (the tests' cluster)
        ("127.0.0.1", True, {"10.0.0.5"}),  # one node: HAProxy reaches it over loopback
        ("127.0.0.1", False, {"10.0.0.5", "10.0.0.6"}),  # Ray's proxy calls replicas over Ray
        ("0.0.0.0", True, {"10.0.0.5", "10.0.0.6"}),
        ("::", True, {"10.0.0.5", "10.0.0.6"}),
    ],
)
def test_reachable_replicas_are_not_refused(host: str, haproxy: bool, nodes: set[str]) -> None:
    """Only a host short of every interface, with HAProxy and several addresses, is refused."""
    assert unreachable_replicas(host, haproxy, nodes) is None


def test_a_replica_refuses_repository_control_on_its_own_port() -> None:
    """A replica's app answers load/unload with the cluster's 501 (a replica's model changes
    only by a rollout) and passes every other request to Shipyard's app."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=no_repository_control(app))

    async def call(path: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
            return await client.post(path)

    for action in ("load", "unload"):
        refused = asyncio.run(call(f"/v2/repository/models/cnn/{action}"))
        assert refused.status_code == 501
        assert f"repository {action} of 'cnn'" in refused.json()["error"]
    assert asyncio.run(call("/v2/models/cnn/infer")).status_code == 200
    assert seen == ["/v2/models/cnn/infer"]


def test_a_policys_repr_is_stable_and_holds_no_key() -> None:
    """`shipyard ray serve` compares deployments by repr: equal policies give equal reprs
    whatever the order of a key's roles, with digests but no object address or key."""
    from shipyard.server.auth import ApiKey, AuthPolicy, Role, hash_key, new_key

    key = new_key()
    digest = bytes.fromhex(hash_key(key))
    roles = (Role.METRICS, Role.ADMIN, Role.INFER)
    one = AuthPolicy([ApiKey("ci", digest, frozenset(roles))])
    other = AuthPolicy([ApiKey("ci", digest, frozenset(reversed(roles)))])
    assert repr(one) == repr(other)
    assert "['admin', 'infer', 'metrics']" in repr(one)
    assert " at 0x" not in repr(one)
    assert key not in repr(one)
    assert repr(AuthPolicy(None)) == "AuthPolicy(keys=None, metrics_auth=False)"
