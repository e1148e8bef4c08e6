"""The operations settings of ServerConfig: limits, logs, metrics buckets, tracing, polling."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config import ServerConfig
from shipyard.errors import ConfigError


def test_operations_defaults() -> None:
    """A byte limit in flight by default; no request limit, polling, access log or tracing."""
    config = ServerConfig.resolve(env={})
    assert config.max_inflight_bytes == 256 * 1024 * 1024
    assert config.max_inflight_requests == 0
    assert config.retry_after_s == 1
    assert (config.decode_workers, config.decode_inline_bytes) == (1, 64 * 1024)
    assert (config.log_format, config.access_log, config.access_log_sample) == ("text", False, 1)
    assert config.metrics_buckets_s == ()
    assert (config.otel, config.poll_interval_s) == (False, 0.0)


def test_operations_from_env_and_file(tmp_path: Path) -> None:
    """Every operations setting reads from SHIPYARD_* strings and from TOML values."""
    env = {
        "SHIPYARD_ACCESS_LOG": "yes",
        "SHIPYARD_ACCESS_LOG_SAMPLE": "0.25",
        "SHIPYARD_METRICS_BUCKETS_S": "0.001, 0.01,0.1",
        "SHIPYARD_OTEL": "0",
        "SHIPYARD_POLL_INTERVAL_S": "2.5",
        "SHIPYARD_LOG_FORMAT": "json",
    }
    file = tmp_path / "server.toml"
    file.write_text("[server]\nmax_inflight_requests = 100\nmetrics_buckets_s = [0.5, 1]\n")
    config = ServerConfig.resolve(file, env=env)
    assert config.access_log is True
    assert config.access_log_sample == 0.25
    assert config.metrics_buckets_s == (0.001, 0.01, 0.1)  # the environment wins over the file
    assert (config.otel, config.poll_interval_s, config.log_format) == (False, 2.5, "json")
    assert config.max_inflight_requests == 100


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"max_inflight_bytes": 1024}, "at least max_request_bytes"),
        ({"max_inflight_requests": -1}, "max_inflight_requests must be >= 0"),
        ({"retry_after_s": 0}, "retry_after_s must be an integer >= 1"),
        ({"retry_after_s": 1.5}, "invalid retry_after_s"),
        ({"decode_workers": -2}, "decode_workers must be >= 0"),
        ({"log_format": "xml"}, "log_format must be one of text, json"),
        ({"access_log": "maybe"}, "access_log must be true or false"),
        ({"access_log_sample": 0}, "access_log_sample must be in (0, 1]"),
        ({"poll_interval_s": -1}, "poll_interval_s must be >= 0"),
        ({"metrics_buckets_s": "0.1,0.01"}, "increasing"),
        ({"metrics_buckets_s": "0,1"}, "positive"),
        ({"metrics_buckets_s": "fast"}, "invalid metrics_buckets_s"),
    ],
)
def test_bad_operations_settings(flags: dict[str, object], message: str) -> None:
    """Each bad operations setting is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ServerConfig.resolve(env={}, flags=flags)


def test_no_inflight_limit_is_allowed() -> None:
    """max_inflight_bytes = 0 turns the limit off."""
    assert ServerConfig.resolve(env={}, flags={"max_inflight_bytes": 0}).max_inflight_bytes == 0
