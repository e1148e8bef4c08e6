"""`[scale]` in model.toml and the Ray Serve deployment options it becomes (Ray only checks
one autoscaling config)."""

from __future__ import annotations

import warnings

import pytest

from shipyard.cluster.deploy import deployment_options
from shipyard.config import parse_model_config
from shipyard.errors import ConfigError


def test_scale_defaults_to_one_fixed_replica() -> None:
    """Without [scale] a model has one replica of one CPU (what `ray serve` deploys)."""
    config = parse_model_config("m", {})
    assert config.scale.min_replicas == config.scale.max_replicas == 1
    options = deployment_options(config.scale)
    assert options["num_replicas"] == 1
    assert "autoscaling_config" not in options
    assert options["ray_actor_options"]["num_cpus"] == 1.0
    # Every replica in Ray's throughput mode, without Ray's per-request access log.
    # (Throughput mode would also open an HTTP port on every replica behind Ray's proxy: off.)
    assert options["ray_actor_options"]["runtime_env"] == {
        "env_vars": {
            "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
        }
    }
    assert options["logging_config"] == {"enable_access_log": False}


def test_scale_with_a_range_autoscales() -> None:
    """min_replicas < max_replicas becomes Ray Serve's autoscaling config."""
    table = {
        "scale": {
            "min_replicas": 1,
            "max_replicas": 3,
            "target_ongoing_requests": 4,
            "num_cpus": 0.5,
            "upscale_delay_s": 0,
        }
    }
    options = deployment_options(parse_model_config("m", table).scale)
    assert options["autoscaling_config"]["max_replicas"] == 3
    assert options["autoscaling_config"]["target_ongoing_requests"] == 4.0
    assert options["autoscaling_config"]["upscale_delay_s"] == 0.0
    assert options["ray_actor_options"]["num_cpus"] == 0.5
    assert "policy" not in options["autoscaling_config"]  # Ray's default policy
    # Ray kills a stopping replica only after its drain and Ray's own steps (HAProxy mode: 30 s).
    assert options["graceful_shutdown_timeout_s"] == 30.0 + 40.0
    drained = deployment_options(parse_model_config("m", table).scale, drain_timeout_s=5.0)
    assert drained["graceful_shutdown_timeout_s"] == 45.0


def test_own_metric_autoscaling_uses_shipyards_policy_that_ray_can_load() -> None:
    """With --ingress shipyard (own_metric) the autoscaling config names Shipyard's policy by
    an import path Ray's config accepts; fixed replica counts need no policy."""
    with warnings.catch_warnings():  # Ray's own pydantic models warn on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ray.serve.config import AutoscalingConfig

    table = {"scale": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2}}
    options = deployment_options(parse_model_config("m", table).scale, own_metric=True)
    policy = options["autoscaling_config"]["policy"]
    assert policy == {"policy_function": "shipyard.cluster.autoscale:ongoing_requests_policy"}
    config = AutoscalingConfig(**options["autoscaling_config"])  # Ray imports and pickles it
    assert config.policy.policy_function == policy["policy_function"]
    fixed = deployment_options(parse_model_config("m", {}).scale, own_metric=True)
    assert "autoscaling_config" not in fixed


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        ({"min_replicas": 0}, "scale.min_replicas"),
        ({"min_replicas": 3, "max_replicas": 2}, "below scale.min_replicas"),
        ({"num_cpus": 0}, "scale.num_cpus"),
        ({"target_ongoing_requests": True}, "scale.target_ongoing_requests"),
        ({"upscale_delay_s": -1}, "scale.upscale_delay_s"),
        ({"replicas": 2}, "replicas"),
    ],
)
def test_bad_scale_is_refused_naming_the_key(scale: dict[str, object], message: str) -> None:
    """A bad [scale] value fails to load with a message naming the key."""
    with pytest.raises(ConfigError, match=message):
        parse_model_config("m", {"scale": scale})
