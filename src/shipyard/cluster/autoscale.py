"""Ray Serve's autoscaling policy for ``--ingress shipyard`` replicas.

Requests reach those replicas without passing through Ray, so Ray's own count of ongoing
requests stays near zero. Each replica reports the requests it serves as the custom metric
:data:`ONGOING_METRIC` (``ModelReplica.record_autoscaling_stats``); this policy asks for as
many replicas as that total divided by ``target_ongoing_requests``, the rule of Ray's default
policy. Ray applies ``min_replicas``/``max_replicas`` and the upscale and downscale delays
around it.

Ray pickles this function by value into its controller: it imports nothing from Shipyard.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ONGOING_METRIC", "ongoing_requests_policy"]

#: The custom autoscaling metric each replica reports: requests it is serving now.
ONGOING_METRIC = "shipyard_ongoing_requests"


def ongoing_requests_policy(ctx: Any) -> tuple[float, dict[str, Any]]:
    """Desired replicas for ``ctx`` (Ray's AutoscalingContext): ongoing / target."""
    metrics = ctx.aggregated_metrics or {}
    ongoing = sum(metrics.get(ONGOING_METRIC, {}).values())
    if ctx.current_num_replicas == 0:
        return ctx.target_num_replicas, {}
    target = ctx.config.get_target_ongoing_requests()
    return ongoing / target, {}
