"""How hard the fuzzers try: a few thousand cases in all within ``make test``, far more in
``make fuzz`` (``SHIPYARD_FUZZ_EXAMPLES`` sets the examples per test; ``make fuzz`` sets it to
``FUZZ_EXAMPLES``, 10,000 unless given)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["fuzz_settings"]


def fuzz_settings(examples: int) -> settings:
    """Settings for one fuzz test: ``examples`` cases, or SHIPYARD_FUZZ_EXAMPLES when set."""
    chosen = int(os.environ.get("SHIPYARD_FUZZ_EXAMPLES") or examples)
    return settings(
        max_examples=chosen,
        deadline=None,  # a shared, loaded machine: time is not the property
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
