"""``shipyard keys new`` and ``shipyard serve --api-keys/--tls-*`` as a user runs them."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shipyard.testing import add_sub_model, write_model
from tests.e2e.test_cli import Serve, assert_one_error_line, run_cli


@pytest.fixture
def served(repository: Path) -> Iterator[list[Serve]]:
    """Every Serve started by a test, stopped at the end whatever happened."""
    write_model(repository, "simple", add_sub_model())
    started: list[Serve] = []
    yield started
    for process in started:
        process.stop()


def new_key(folder: Path, role: str) -> tuple[str, Path]:
    """Run `shipyard keys new`; return the key it printed and a key file holding its table."""
    result = run_cli("keys", "new", "--name", "e2e", "--role", role)
    assert result.returncode == 0, result.stderr
    key = re.search(r"^  (sy_\S+)$", result.stdout, re.MULTILINE)
    assert key is not None, result.stdout
    path = folder / "keys.toml"
    path.write_text(result.stdout[result.stdout.index("[[key]]") :])
    return key.group(1), path


def test_serve_with_a_key_from_keys_new(
    repository: Path, tmp_path: Path, served: list[Serve]
) -> None:
    """A key made by `shipyard keys new` opens the server it was added to; the banner says
    keys are needed, and calls without one get 401."""
    key, keys = new_key(tmp_path, "admin")
    server = Serve(repository, "--api-keys", str(keys), "--metrics-auth")
    served.append(server)
    url = server.wait_for_url()
    stdout, _ = server.output()
    assert "Access: API keys: 1 key(s); every call but health needs one; /metrics a key" in stdout
    assert key not in stdout  # never printed or logged by the server
    assert httpx.get(f"{url}/v2/models/simple", timeout=5).status_code == 401
    authorized = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{url}/v2/models/simple", headers=authorized, timeout=5).status_code == 200
    assert httpx.get(f"{url}/metrics", headers=authorized, timeout=5).status_code == 200
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    _, stderr = server.output()
    assert key not in stderr


def test_serve_without_keys_says_control_is_loopback_only(
    repository: Path, served: list[Serve]
) -> None:
    """Without --api-keys the banner says repository control answers loopback clients only."""
    server = Serve(repository)
    served.append(server)
    server.wait_for_url()
    stdout, _ = server.output()
    assert "repository control (index, load, unload) answers loopback clients only" in stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        pytest.param(["--tls-cert", "cert.pem"], ["tls_cert and tls_key go together"], id="no-key"),
        pytest.param(
            ["--tls-cert", "missing.pem", "--tls-key", "missing.key"],
            ["missing.pem", "TLS certificate"],
            id="missing-certificate",
        ),
        pytest.param(["--api-keys", "absent.toml"], ["absent.toml", "API keys"], id="no-key-file"),
        pytest.param(["--metrics-auth"], ["metrics_auth needs API keys"], id="metrics-auth-alone"),
        pytest.param(["--http-header-timeout", "0"], ["http_header_timeout_s"], id="timeout-0"),
    ],
)
def test_bad_security_arguments_are_one_clear_line(
    repository: Path, served: list[Serve], args: list[str], fragments: list[str]
) -> None:
    """Bad TLS, key or limit arguments: one 'error:' line saying what is wrong, exit 2."""
    result = run_cli("serve", str(repository), "--grpc-port", "0", *args)
    assert result.returncode == 2
    assert_one_error_line(result.stderr, *fragments)
