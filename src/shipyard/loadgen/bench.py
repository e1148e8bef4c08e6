"""``shipyard bench``: measure any Open Inference Protocol server with a model's own request.

Reads the model's metadata (HTTP ``GET /v2/models/NAME`` or gRPC ``ModelMetadata``), builds one
request from it (see :mod:`shipyard.loadgen.inputs`), encodes it once for the chosen protocol
and drives one measurement per concurrency (and rate) with :func:`shipyard.loadgen.runner.measure`
on one event loop.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipyard import eventloop
from shipyard.errors import LoadGeneratorError
from shipyard.loadgen.inputs import Input, build_inputs
from shipyard.loadgen.runner import Transport, measure
from shipyard.loadgen.stats import Summary

__all__ = ["BenchPlan", "BenchResult", "run_bench"]


@dataclasses.dataclass(frozen=True)
class BenchPlan:
    """What to measure: the server, the model, the request and the load."""

    url: str
    model: str
    version: str | None = None
    protocol: str = "http"  # "http" or "grpc"
    binary: bool = False
    concurrency: tuple[int, ...] = (1, 8, 64)
    rates: tuple[float, ...] = ()  # empty: closed loop
    #: Open loop: wake at most once per tick and send what is due (0: each at its time).
    tick_ms: float = 0.0
    duration_s: float = 10.0
    warmup_s: float = 1.0
    arrays_file: Path | None = None
    shapes: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    @property
    def encoding(self) -> str:
        """How tensors travel: ``json`` or ``binary`` over HTTP, ``raw`` over gRPC."""
        if self.protocol == "grpc":
            return "raw"
        return "binary" if self.binary else "json"


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """The plan as run and one summary per measurement."""

    plan: BenchPlan
    target: str
    inputs: list[Input]
    rows: list[Summary]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``shipyard bench --json`` prints."""
        return {
            "url": self.target,
            "protocol": self.plan.protocol,
            "encoding": self.plan.encoding,
            "model": self.plan.model,
            "version": self.plan.version,
            "inputs": [
                {"name": name, "datatype": datatype.value, "shape": list(array.shape)}
                for name, datatype, array in self.inputs
            ],
            "warmup_s": self.plan.warmup_s,
            "duration_s": self.plan.duration_s,
            "mode": "open" if self.plan.rates else "closed",
            "tick_ms": self.plan.tick_ms,
            "rows": [row.to_dict() for row in self.rows],
        }


def _check(plan: BenchPlan) -> None:
    if plan.protocol not in ("http", "grpc"):
        raise LoadGeneratorError(f"--protocol must be http or grpc, not {plan.protocol!r}")
    if plan.protocol == "grpc" and plan.binary:
        raise LoadGeneratorError("--binary is for HTTP; gRPC always sends raw tensor contents")
    if not plan.concurrency or any(c < 1 for c in plan.concurrency):
        raise LoadGeneratorError("--concurrency takes positive integers, e.g. 1,8,64")
    if any(not r > 0 for r in plan.rates):
        raise LoadGeneratorError("--rate takes positive requests/s, e.g. 100 or 100,500")
    if not plan.duration_s > 0 or plan.warmup_s < 0:
        raise LoadGeneratorError("--duration must be positive and --warmup not negative")
    if not 0 <= plan.tick_ms <= 1000:
        raise LoadGeneratorError(f"--tick takes 0 to 1000 ms, not {plan.tick_ms:g}")


def _prepare(plan: BenchPlan) -> tuple[str, list[Input], Callable[[], Transport]]:
    """Metadata, the inputs and a factory of transports sending the encoded request."""
    if plan.protocol == "grpc":
        from shipyard.loadgen import grpc as grpc_load

        address = grpc_load.parse_address(plan.url)
        metadata = grpc_load.fetch_metadata(address, plan.model, plan.version)
        inputs = build_inputs(metadata, plan.arrays_file, plan.shapes)
        payload = grpc_load.encode_request(plan.model, plan.version, inputs)
        return f"grpc://{address}", inputs, lambda: grpc_load.GrpcTransport(address, payload)

    from shipyard.loadgen import http as http_load

    target = http_load.HttpTarget(plan.url)
    metadata = http_load.fetch_metadata(target, plan.model, plan.version)
    inputs = build_inputs(metadata, plan.arrays_file, plan.shapes)
    body, headers = http_load.encode_request(inputs, plan.binary)
    path = f"{target.model_path(plan.model, plan.version)}/infer"
    request = http_load.raw_request(target.host, target.port, path, body, headers)
    return (
        target.url,
        inputs,
        lambda: http_load.HttpTransport(target.host, target.port, request),
    )


def run_bench(plan: BenchPlan, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Measure every concurrency (x rate) of ``plan``; raise LoadGeneratorError on failure."""
    _check(plan)
    target, inputs, transport = _prepare(plan)
    rates: list[float | None] = list(plan.rates) or [None]
    steps = list(itertools.product(rates, plan.concurrency))

    async def measure_all() -> list[Summary]:
        rows = []
        for rate, concurrency in steps:
            if progress is not None:
                load = (
                    f"{rate:g} req/s, at most {concurrency} outstanding"
                    if rate
                    else (f"concurrency {concurrency}")
                )
                progress(f"{target}: {load}")
            rows.append(
                await measure(
                    transport(),
                    concurrency,
                    plan.warmup_s,
                    plan.duration_s,
                    rate,
                    plan.tick_ms / 1000,
                )
            )
        return rows

    return BenchResult(plan, target, inputs, eventloop.run(measure_all()))
