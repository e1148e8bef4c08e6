"""``python -m shipyard.tuning.loadworker``: the tuner's load generator, in its own process.

The tuner serves each candidate in its own process (a server thread with its own event loop)
and drives it from this one, so the load generator never competes with the server for the
GIL. The worker starts once per tuning run (saving an interpreter start per measurement) and
reads one JSON job per line on stdin::

    {"host": "127.0.0.1", "port": 8123, "request": "<base64 of the whole HTTP request>",
     "concurrency": 8, "warmup_s": 0.2, "duration_s": 1.0}

For each it runs one closed-loop measurement with :func:`shipyard.loadgen.runner.run` over
:class:`shipyard.loadgen.http.HttpTransport` (exactly what ``shipyard bench`` runs) and writes
one JSON line: ``{"summary": {...}}`` (the fields of :class:`~shipyard.loadgen.stats.Summary`)
or ``{"error": "..."}``. It exits when stdin closes.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from shipyard.errors import LoadGeneratorError
from shipyard.loadgen.http import HttpTransport
from shipyard.loadgen.runner import run

__all__ = ["main", "run_job"]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement job; the answer as a JSON-ready dictionary."""
    try:
        transport = HttpTransport(
            str(job["host"]), int(job["port"]), base64.b64decode(job["request"])
        )
        summary = run(
            transport, int(job["concurrency"]), float(job["warmup_s"]), float(job["duration_s"])
        )
    except LoadGeneratorError as exc:
        return {"error": exc.message}
    except (KeyError, TypeError, ValueError) as exc:
        return {"error": f"bad job: {exc!r}"}
    return {"summary": summary.to_dict()}


def main() -> int:
    """Answer jobs from stdin until it closes."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except ValueError as exc:
            answer: dict[str, Any] = {"error": f"bad job: {exc}"}
        else:
            answer = run_job(job)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
