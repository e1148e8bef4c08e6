"""A load generator for Open Inference Protocol servers, efficient enough to share two cores.

* :mod:`~shipyard.loadgen.http`: raw keep-alive HTTP/1.1 connections writing one pre-encoded
  request (JSON or binary tensors);
* :mod:`~shipyard.loadgen.grpc`: ``ModelInfer`` calls with a pre-serialized request, multiplexed
  on one HTTP/2 connection by Shipyard's own client (needs the ``grpc`` extra; imported only
  when used);
* :mod:`~shipyard.loadgen.runner`: closed loop at a concurrency, or open loop at a rate with a
  max outstanding limit, over a warm-up and a measured window;
* :mod:`~shipyard.loadgen.stats`: latency percentiles, throughput, errors by status;
* :mod:`~shipyard.loadgen.bench`: ``shipyard bench``, which builds the request from the model's
  metadata. ``python -m shipyard.loadgen`` sends a request prepared by the caller.

See docs/bench.md for the design.
"""

from shipyard.loadgen.bench import BenchPlan, BenchResult, run_bench
from shipyard.loadgen.runner import measure, run
from shipyard.loadgen.stats import Summary, percentile

__all__ = ["BenchPlan", "BenchResult", "Summary", "measure", "percentile", "run", "run_bench"]
