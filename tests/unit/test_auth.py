"""The auth policy's core, in-process: key files, roles, loopback, the route and method tables,
and `shipyard keys new`."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from shipyard.cli import main
from shipyard.errors import ConfigError, PermissionDeniedError, UnauthenticatedError
from shipyard.server.auth import (
    Access,
    ApiKey,
    AuthPolicy,
    Role,
    check_grpc_call,
    grpc_access,
    hash_key,
    http_access,
    is_loopback,
    load_keys,
    new_key,
)


def key(name: str, *roles: Role) -> ApiKey:
    """A key whose secret is ``secret-<name>``."""
    return ApiKey(name, bytes.fromhex(hash_key(f"secret-{name}")), frozenset(roles))


POLICY = AuthPolicy(
    [key("reader", Role.INFER), key("root", Role.ADMIN), key("scraper", Role.METRICS)],
    metrics_auth=True,
)


def write(tmp_path: Path, text: str) -> Path:
    """``text`` as a key file."""
    path = tmp_path / "keys.toml"
    path.write_text(text)
    return path


GOOD = f'[[key]]\nname = "ci"\nsha256 = "{hash_key("k")}"\nroles = ["infer", "admin"]\n'


def test_key_file_round_trip(tmp_path: Path) -> None:
    """A key file's tables become keys with their digest and roles."""
    (loaded,) = load_keys(write(tmp_path, GOOD))
    assert loaded.name == "ci"
    assert loaded.digest.hex() == hash_key("k")
    assert loaded.roles == {Role.INFER, Role.ADMIN}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[key]\n", "cannot read API keys"),
        ('key = "x"\n', "holds \\[\\[key\\]\\] tables only"),
        ("[other]\n", "holds \\[\\[key\\]\\] tables only"),
        (GOOD.replace('name = "ci"', 'name = ""'), "'name' must be a non-empty string"),
        (GOOD.replace(hash_key("k"), "abc"), "64 hex digits"),
        (GOOD.replace(hash_key("k"), "z" * 64), "not hexadecimal"),
        (GOOD.replace('["infer", "admin"]', "[]"), "non-empty list"),
        (GOOD.replace('["infer", "admin"]', '["root"]'), "unknown role"),
        (GOOD + 'colour = "red"\n', "unknown key\\(s\\) colour"),
        (GOOD + GOOD.replace(hash_key("k"), hash_key("j")), "used twice: ci"),
        (GOOD + GOOD.replace('"ci"', '"cd"'), "same sha256 appears twice"),
    ],
)
def test_bad_key_files_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    """Each mistake in a key file is a ConfigError naming the file and what is wrong."""
    with pytest.raises(ConfigError, match=message) as caught:
        load_keys(write(tmp_path, text))
    assert "keys.toml" in caught.value.message


def test_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    """A key file that does not exist is a ConfigError, not a crash."""
    with pytest.raises(ConfigError, match="cannot read API keys"):
        load_keys(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("access", "who", "allowed"),
    [
        (Access.OPEN, None, True),
        (Access.INFER, "reader", True),
        (Access.INFER, "root", True),
        (Access.INFER, "scraper", False),
        (Access.ADMIN, "reader", False),
        (Access.ADMIN, "root", True),
        (Access.CONTROL, "reader", False),
        (Access.CONTROL, "root", True),
        (Access.METRICS, "scraper", True),
        (Access.METRICS, "root", True),
        (Access.METRICS, "reader", False),
    ],
)
def test_roles_grant_their_access(access: Access, who: str | None, allowed: bool) -> None:
    """Each role reaches what the issue defines: infer, admin (everything), metrics."""
    authorization = None if who is None else f"Bearer secret-{who}"
    assert POLICY.allows(access, authorization, loopback=False) is allowed


def test_errors_say_what_is_missing() -> None:
    """No key and an unknown key are Unauthenticated; a key without the role names both."""
    with pytest.raises(UnauthenticatedError, match="Authorization: Bearer KEY"):
        POLICY.authorize(Access.INFER, None, loopback=True)
    with pytest.raises(UnauthenticatedError, match="not valid"):
        POLICY.authorize(Access.INFER, "Bearer secret-nobody", loopback=True)
    with pytest.raises(PermissionDeniedError, match=r"'reader' \(roles: infer\).*role admin"):
        POLICY.authorize(Access.CONTROL, "bearer secret-reader", loopback=True)


def test_keys_apply_to_loopback_clients_too() -> None:
    """With a key file, coming from loopback grants nothing."""
    assert not POLICY.allows(Access.CONTROL, None, loopback=True)


def test_without_keys_only_repository_control_is_limited_to_loopback() -> None:
    """No key file: everything is open, but control only from loopback."""
    policy = AuthPolicy(None)
    for access in Access:
        assert policy.allows(access, None, loopback=True)
        assert policy.allows(access, None, loopback=False) is (access is not Access.CONTROL)


def test_is_open_agrees_with_authorize() -> None:
    """is_open() holds only where authorize() lets anyone through, without a key, from
    anywhere; and wherever it does not hold, a remote client without a key is refused."""
    for policy in (POLICY, AuthPolicy(None), AuthPolicy([key("r", Role.INFER)])):
        for access in Access:
            assert policy.is_open(access) is policy.allows(access, None, loopback=False)


def test_metrics_open_unless_metrics_auth() -> None:
    """/metrics needs no key unless metrics_auth."""
    assert AuthPolicy([key("reader", Role.INFER)]).allows(Access.METRICS, None, False)
    assert not POLICY.allows(Access.METRICS, None, False)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2001:db8::1", False),
        ("testclient", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_addresses(host: str | None, loopback: bool) -> None:
    """127.0.0.0/8, ::1 and their IPv4-mapped forms are loopback; names and others are not."""
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("path", "access"),
    [
        ("/v2/health/live", Access.OPEN),
        ("/v2/health/ready", Access.OPEN),
        ("/metrics", Access.METRICS),
        ("/v2", Access.INFER),
        ("/v2/models/m", Access.INFER),
        ("/v2/models/m/versions/2/infer", Access.INFER),
        ("/v2/models/m/stats", Access.INFER),
        ("/v2/models/stats", Access.ADMIN),
        ("/v2/repository/index", Access.CONTROL),
        ("/v2/repository/models/m/load", Access.CONTROL),
        ("/v2/health/other", Access.ADMIN),
        ("/v2/logging", Access.ADMIN),
        ("/ui/", Access.OPEN),
        ("/ui/app.js", Access.OPEN),
        ("/ui/api/session", Access.OPEN),
        ("/ui/api/models", Access.INFER),
        ("/ui/api/models/m/versions/1/report", Access.INFER),
        ("/ui/api/server", Access.ADMIN),
        ("/ui/api/other", Access.ADMIN),
        ("/", Access.OPEN),
    ],
)
def test_http_routes_and_their_access(path: str, access: Access) -> None:
    """Each route needs what the issue says; an unknown /v2 route needs admin."""
    assert http_access(path) is access


@pytest.mark.parametrize(
    ("method", "name", "access"),
    [
        ("/inference.GRPCInferenceService/ServerLive", "", Access.OPEN),
        ("/inference.GRPCInferenceService/ModelInfer", "", Access.INFER),
        ("/inference.GRPCInferenceService/ModelStatistics", "m", Access.INFER),
        ("/inference.GRPCInferenceService/ModelStatistics", "", Access.ADMIN),
        ("/inference.GRPCInferenceService/RepositoryModelLoad", "", Access.CONTROL),
        ("/grpc.health.v1.Health/Check", "", Access.OPEN),
        ("/inference.GRPCInferenceService/Future", "", Access.ADMIN),
    ],
)
def test_grpc_methods_and_their_access(method: str, name: str, access: Access) -> None:
    """Each RPC needs what its HTTP route needs; statistics of every model need admin."""
    assert grpc_access(method, SimpleNamespace(name=name)) is access


def test_grpc_call_reads_the_authorization_metadata() -> None:
    """A gRPC call's ``authorization`` metadata is its key."""
    method = "/inference.GRPCInferenceService/ModelInfer"
    request = SimpleNamespace(name="")
    metadata = [(b":path", method.encode()), (b"authorization", b"Bearer secret-reader")]
    found = check_grpc_call(POLICY, method, request, metadata, "10.0.0.1")
    assert found is not None
    assert found.name == "reader"
    with pytest.raises(UnauthenticatedError):
        check_grpc_call(POLICY, method, request, metadata[:1], "127.0.0.1")


def test_new_keys_are_random_and_prefixed() -> None:
    """Keys are 'sy_' and 256 random bits; no two alike."""
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(re.fullmatch(r"sy_[A-Za-z0-9_-]{43}", k) for k in keys)


def test_keys_new_prints_a_key_and_its_table(tmp_path: Path) -> None:
    """`shipyard keys new` prints a key and a [[key]] table that, in a key file, admits it."""
    result = CliRunner().invoke(main, ["keys", "new", "--name", "ci", "--role", "infer"])
    assert result.exit_code == 0, result.output
    printed = re.search(r"^  (sy_\S+)$", result.output, re.MULTILINE)
    assert printed is not None
    table = result.output[result.output.index("[[key]]") :]
    policy = AuthPolicy(load_keys(write(tmp_path, table)))
    assert policy.allows(Access.INFER, f"Bearer {printed.group(1)}", loopback=False)
    assert not policy.allows(Access.ADMIN, f"Bearer {printed.group(1)}", loopback=False)


def test_keys_new_refuses_a_name_that_would_break_the_file() -> None:
    """A name with quotes or spaces is refused (exit 2) rather than written into TOML."""
    result = CliRunner().invoke(main, ["keys", "new", "--name", 'a"b', "--role", "admin"])
    assert result.exit_code == 2
    assert "--name" in result.output
