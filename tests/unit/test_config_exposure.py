"""ServerConfig's exposure settings: HTTP connection limits, TLS files, API keys, metrics_auth."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config import ServerConfig
from shipyard.errors import ConfigError


def test_defaults() -> None:
    """The documented defaults: 10 s headers, 60 s body, 30 s idle, 1000 connections, no TLS,
    no keys, /metrics open."""
    config = ServerConfig()
    assert (config.http_header_timeout_s, config.http_body_timeout_s) == (10.0, 60.0)
    assert (config.http_idle_timeout_s, config.http_max_connections) == (30.0, 1000)
    assert config.http_max_header_bytes == 65536
    assert (config.tls_cert, config.tls_key, config.tls_client_ca, config.api_keys) == (None,) * 4
    assert config.metrics_auth is False


def test_environment_strings_are_coerced() -> None:
    """Environment values become floats, integers, paths and booleans."""
    env = {
        "SHIPYARD_HTTP_HEADER_TIMEOUT_S": "2.5",
        "SHIPYARD_HTTP_BODY_TIMEOUT_S": "5",
        "SHIPYARD_HTTP_IDLE_TIMEOUT_S": "7",
        "SHIPYARD_HTTP_MAX_CONNECTIONS": "12",
        "SHIPYARD_HTTP_MAX_HEADER_BYTES": "2048",
        "SHIPYARD_TLS_CERT": "/certs/s.pem",
        "SHIPYARD_TLS_KEY": "/certs/s.key",
        "SHIPYARD_TLS_CLIENT_CA": "/certs/ca.pem",
        "SHIPYARD_API_KEYS": "keys.toml",
        "SHIPYARD_METRICS_AUTH": "Yes",
    }
    config = ServerConfig.resolve(env=env)
    assert (config.http_header_timeout_s, config.http_body_timeout_s) == (2.5, 5.0)
    assert (config.http_idle_timeout_s, config.http_max_connections) == (7.0, 12)
    assert config.http_max_header_bytes == 2048
    assert config.tls_cert == Path("/certs/s.pem")
    assert config.tls_client_ca == Path("/certs/ca.pem")
    assert config.api_keys == Path("keys.toml")
    assert config.metrics_auth is True


def test_file_values(tmp_path: Path) -> None:
    """The [server] table takes the same settings, TOML booleans included."""
    file = tmp_path / "server.toml"
    file.write_text(
        '[server]\napi_keys = "k.toml"\nmetrics_auth = true\nhttp_max_connections = 5\n'
        'tls_cert = "c.pem"\ntls_key = "k.pem"\n'
    )
    config = ServerConfig.resolve(file, env={})
    assert (config.api_keys, config.metrics_auth) == (Path("k.toml"), True)
    assert (config.tls_cert, config.tls_key, config.http_max_connections) == (
        Path("c.pem"),
        Path("k.pem"),
        5,
    )


@pytest.mark.parametrize("text", ["0", "false", "No", "off"])
def test_false_booleans(text: str) -> None:
    """The usual words for false are false."""
    env = {"SHIPYARD_METRICS_AUTH": text}
    assert ServerConfig.resolve(env=env).metrics_auth is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHIPYARD_HTTP_HEADER_TIMEOUT_S": "0"}, "http_header_timeout_s must be a finite"),
        ({"SHIPYARD_HTTP_BODY_TIMEOUT_S": "-1"}, "http_body_timeout_s must be a finite"),
        ({"SHIPYARD_HTTP_IDLE_TIMEOUT_S": "nan"}, "http_idle_timeout_s must be a finite"),
        ({"SHIPYARD_HTTP_IDLE_TIMEOUT_S": "inf"}, "http_idle_timeout_s must be a finite"),
        ({"SHIPYARD_HTTP_HEADER_TIMEOUT_S": "soon"}, "invalid http_header_timeout_s 'soon'"),
        ({"SHIPYARD_HTTP_MAX_CONNECTIONS": "0"}, "http_max_connections must be in 1.."),
        ({"SHIPYARD_HTTP_MAX_HEADER_BYTES": "100"}, "http_max_header_bytes must be in 1024.."),
        ({"SHIPYARD_METRICS_AUTH": "maybe"}, "metrics_auth must be true or false"),
        ({"SHIPYARD_METRICS_AUTH": "1"}, "metrics_auth needs API keys"),
        ({"SHIPYARD_TLS_KEY": "k.pem"}, "tls_cert and tls_key go together"),
        ({"SHIPYARD_TLS_CLIENT_CA": "ca.pem"}, "needs TLS itself"),
    ],
)
def test_bad_values_are_config_errors(env: dict[str, str], message: str) -> None:
    """Each bad exposure setting is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=message):
        ServerConfig.resolve(env=env)


def test_empty_path_means_none() -> None:
    """An empty environment value turns a file setting off (as if not given)."""
    assert ServerConfig.resolve(env={"SHIPYARD_API_KEYS": ""}).api_keys is None
