"""Soak: hours of traffic in minutes. Does the server stay flat under steady load?

Serves an MNIST-sized CNN with ``shipyard serve`` (HTTP and gRPC) in a subprocess, measures
its capacity for the mix it offers (closed loop, concurrency 32, HTTP binary and gRPC at the
same time, each from its own process), then what of it an open loop sustains (steps of 40% to
100% of it, see :func:`open_loop_share`), then drives both transports at once, open loop, each at
``--load`` (70%) of its share of that open-loop capacity, for
``--minutes`` (10), in windows of ``--window`` seconds. Each window is one ``shipyard bench``
run per transport (separate processes, so the load generator never shares the server's
CPU accounting) and one reading of the server's resident memory and CPU time.

The server and the load generators run on separate cores (``--server-cpus``, ``--client-cpus``;
by default the last quarter of this process's CPUs, at least one, drive the load, and the rest
serve). Sharing cores, the generators take CPU from the server as the load grows, so the
capacity measured in a closed loop is not what the server can sustain under an open loop, and
"70% of capacity" would saturate the machine, not the server. Each window records how busy the
server's cores were (``server CPU``: CPU seconds per second, 1.0 = one core); it is not
proportional to the load, since a server with time to spare runs smaller batches, which cost
more per request. The open-loop generators send on a 1 ms tick
(``--tick``): without one they spin between sends, keeping a core busy (docs/bench.md).

It checks, and exits 1 when one fails:

* 0 errors, and after the first window 0 requests the load generator could not send in time
  (missed: 64 outstanding at once, a server that stalls);
* RSS growth from the end of the first window (warm-up) to the last below ``--max-rss-growth``
  (5%);
* p99 drift: the last window's p99 against the first steady window's, per transport (reported;
  a drift over ``--max-p99-drift`` (3x) fails).

``make soak`` runs it (not part of ``make test``). A run of 10 minutes or more writes its table
between the markers in ``benchmarks/RESULTS.md`` (``--results`` for shorter ones too).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.testing import serve_process, write_model
from shipyard.testing.models import cnn_model
from shipyard.testing.process import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
BEGIN = "<!-- soak: begin (written by benchmarks/soak.py) -->"
END = "<!-- soak: end -->"
SHIPYARD = str(Path(sys.executable).parent / "shipyard")
MODEL = "cnn"
SHAPE = "input:1,1,28,28"


@dataclass(frozen=True)
class Window:
    """One window of the soak: per transport the bench row, and the server's RSS after it."""

    end_s: float
    http: dict[str, Any]
    grpc: dict[str, Any]
    rss_bytes: int
    #: The server's CPU seconds per wall second over the window (1.0 = one core busy).
    server_cpu: float


def parse_cpus(text: str) -> set[int]:
    """``0,2-3`` -> {0, 2, 3}."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def cpu_split(args: argparse.Namespace) -> tuple[set[int], set[int]] | None:
    """The cores of the server and of the load generators, or None (``--no-pin``, one CPU)."""
    available = sorted(os.sched_getaffinity(0))
    if args.no_pin or (len(available) < 2 and not (args.server_cpus or args.client_cpus)):
        return None
    clients = parse_cpus(args.client_cpus) if args.client_cpus else None
    server = parse_cpus(args.server_cpus) if args.server_cpus else None
    if clients is None:
        pool = sorted(set(available) - (server or set())) or available
        clients = set(pool[-max(1, len(available) // 4) :])
    if server is None:
        server = set(available) - clients
    if not server or not clients or server & clients:
        raise SystemExit(f"soak: server CPUs {server} and client CPUs {clients} must not overlap")
    return server, clients


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (gRPC needs one: ``--grpc-port 0`` turns it off)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bench(
    url: str,
    protocol: str,
    seconds: float,
    concurrency: int,
    rate: float = 0,
    warmup: float = 2,
    tick_ms: float = 1,
) -> Any:
    """Start one ``shipyard bench --json`` run; returns the process (read with :func:`row`).

    The ``warmup`` seconds before the measured ones are driven the same way (at ``rate`` in an
    open loop) but not counted: the two generators start at once and import for a second or
    so, so one's first requests would otherwise be late for want of CPU, not of the server.
    """
    argv = [SHIPYARD, "bench", url, "--model", MODEL, "--shape", SHAPE, "--json"]
    argv += ["--protocol", protocol, "--concurrency", str(concurrency)]
    argv += ["--duration", str(seconds), "--warmup", f"{warmup:g}"]
    if protocol == "http":
        argv.append("--binary")
    if rate:  # a tick: without one the generator spins between sends (docs/bench.md)
        argv += ["--rate", f"{rate:.1f}", "--tick", f"{tick_ms:g}"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def row(process: Any) -> dict[str, Any]:
    """The one row a ``shipyard bench --json`` process printed."""
    out, err = process.communicate(timeout=3600)
    if process.returncode != 0:
        raise RuntimeError(f"shipyard bench failed:\n{err[-2000:]}")
    rows: list[dict[str, Any]] = json.loads(out)["rows"]
    return rows[0]


@dataclass(frozen=True)
class Capacity:
    """What the closed-loop probe measured: req/s per transport and how busy the server was."""

    rps: dict[str, float]
    server_cpu: float
    #: The two load generators' CPU seconds per second during the probe (near 1.0 per core
    #: they have: the generators, not the server, may have set the capacity).
    load_cpu: float
    #: ``server CPUs / client CPUs`` as pinned, or "shared".
    placement: str
    #: The open-loop capacity as a share of the closed-loop one (:func:`open_loop_share`).
    open_share: float


#: The shares of the closed-loop capacity the open-loop probe offers, one step each.
STEPS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def open_loop_share(
    http_url: str,
    grpc_url: str,
    rps: dict[str, float],
    pace: tuple[float, float],
    args: argparse.Namespace,
) -> float:
    """The highest share of the closed-loop capacity the server sustains in an open loop.

    A closed loop at concurrency 32 keeps the queue full, so requests batch well; an open loop
    at the same rate sends them spread out, in smaller batches that cost more each. The soak is
    an open loop, so its 70% is of what an open loop sustains: steps of :data:`STEPS` times the
    closed-loop rates, both transports at once, each ``--step`` seconds; a step is sustained
    when nothing failed or was missed and both p99s are at most ``--sustained-p99`` ms. The
    first step that is not ends the probe (0 when not even the first is).
    """
    sustained = 0.0
    for share in STEPS:
        runs = {
            "http": bench(http_url, "http", args.step, 64, share * rps["http"], *pace),
            "grpc": bench(grpc_url, "grpc", args.step, 64, share * rps["grpc"], *pace),
        }
        done = {name: row(process) for name, process in runs.items()}
        worst = max(float(side["p99_ms"] or 0) for side in done.values())
        failed = sum(
            int(side["error_count"]) + int(side.get("missed") or 0) for side in done.values()
        )
        ok = failed == 0 and worst <= args.sustained_p99
        print(f"  open loop at {share:.1f}: p99 {worst:.1f} ms, failed or missed {failed}")
        if not ok:
            break
        sustained = share
    if sustained == 0:
        raise SystemExit("soak: the server sustains not even the first open-loop step")
    return sustained


def soak(args: argparse.Namespace) -> tuple[list[Window], Capacity]:
    """Serve, measure the capacity, drive the windows; return them and the capacity."""
    split = cpu_split(args)
    placement = "shared"
    if split is not None:
        server_cpus, client_cpus = split
        placement = f"server on CPUs {_cpus(server_cpus)}, load on CPUs {_cpus(client_cpus)}"
        os.sched_setaffinity(0, server_cpus)  # the server process inherits it
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        write_model(repository, MODEL, cnn_model())
        grpc_port = free_port()
        serve = ("--grpc-port", str(grpc_port), "--log-level", "warning")
        with serve_process(repository, *serve) as server:
            if split is not None:
                os.sched_setaffinity(0, split[1])  # and the load generators this one
            grpc_url = f"127.0.0.1:{grpc_port}"
            # The capacity of the mix the soak offers: both transports at once, each with its
            # own load generator.
            cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
            probes = {
                "http": bench(server.url, "http", args.probe, 32),
                "grpc": bench(grpc_url, "grpc", args.probe, 32),
            }
            probed = {name: row(process) for name, process in probes.items()}
            rps = {name: float(side["rps"]) for name, side in probed.items()}
            load_cpu = sum(float(side["client_cpu"]) for side in probed.values())
            # The probe's 2 s warm-up is in the CPU reading too: the server is busy throughout.
            probe_cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - wall0)
            print(
                f"{placement}; closed-loop capacity, both at once: HTTP binary "
                f"{rps['http']:,.0f} req/s, gRPC {rps['grpc']:,.0f} req/s (server CPU "
                f"{probe_cpu:.2f}, load CPU {load_cpu:.2f})",
                flush=True,
            )
            pace = (args.warmup, args.tick)
            share = open_loop_share(server.url, grpc_url, rps, pace, args)
            capacity = Capacity(rps, probe_cpu, load_cpu, placement, share)
            rates = {name: args.load * share * value for name, value in rps.items()}
            print(
                f"open-loop capacity: {share:.1f} of it; soak at {rates['http']:,.0f} + "
                f"{rates['grpc']:,.0f} req/s for {args.minutes:g} min",
                flush=True,
            )
            windows: list[Window] = []
            start = time.monotonic()
            count = max(2, round(args.minutes * 60 / args.window))
            for _ in range(count):
                cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
                runs = {
                    "http": bench(server.url, "http", args.window, 64, rates["http"], *pace),
                    "grpc": bench(grpc_url, "grpc", args.window, 64, rates["grpc"], *pace),
                }
                done = {name: row(process) for name, process in runs.items()}
                server_cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - wall0)
                window = Window(
                    time.monotonic() - start,
                    done["http"],
                    done["grpc"],
                    server.rss_bytes(),
                    server_cpu,
                )
                windows.append(window)
                print(_line(window), flush=True)
    return windows, capacity


def _cpus(cpus: set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def _line(window: Window) -> str:
    return (
        f"{window.end_s:7.0f} s  HTTP {window.http['rps']:8,.0f} req/s p99 "
        f"{window.http['p99_ms']:7.2f} ms  gRPC {window.grpc['rps']:8,.0f} req/s p99 "
        f"{window.grpc['p99_ms']:7.2f} ms  errors {_errors(window)} missed {_missed(window)}  "
        f"RSS {window.rss_bytes / 2**20:7.1f} MiB  server CPU {window.server_cpu:.2f}  "
        f"load CPU {_client_cpu(window):.2f}"
        + "".join(
            f"\n          {name}: {side['first_error']}"
            for name, side in (("HTTP", window.http), ("gRPC", window.grpc))
            if side["first_error"]
        )
    )


def _client_cpu(window: Window) -> float:
    """The two load generators' CPU seconds per second, together."""
    return sum(float(side["client_cpu"]) for side in (window.http, window.grpc))


def _errors(window: Window) -> int:
    """Requests that failed (any status but OK, or no answer), in the window or in its
    uncounted warm-up and drain."""
    return sum(
        int(side["error_count"]) + int(side.get("errors_outside") or 0)
        for side in (window.http, window.grpc)
    )


def _missed(window: Window) -> int:
    """Scheduled requests the load generator could not send: 64 were outstanding all along."""
    return sum(int(side.get("missed") or 0) for side in (window.http, window.grpc))


def verdict(windows: list[Window], args: argparse.Namespace) -> list[tuple[bool, str]]:
    """Each check and whether it held."""
    first, last = windows[0], windows[-1]
    growth = (last.rss_bytes - first.rss_bytes) / first.rss_bytes
    errors = sum(_errors(w) for w in windows)
    missed = sum(_missed(w) for w in windows[1:])
    checks = [
        (errors == 0, f"errors: {errors}"),
        (missed == 0, f"requests not sent in time after warm-up (64 outstanding): {missed}"),
        (
            growth < args.max_rss_growth,
            f"RSS after warm-up {first.rss_bytes / 2**20:.1f} MiB -> end "
            f"{last.rss_bytes / 2**20:.1f} MiB ({growth:+.1%}; limit {args.max_rss_growth:.0%})",
        ),
    ]
    steady = windows[1] if len(windows) > 2 else first
    for name in ("http", "grpc"):
        before, after = getattr(steady, name)["p99_ms"], getattr(last, name)["p99_ms"]
        drift = after / before if before else float("inf")
        checks.append(
            (
                drift < args.max_p99_drift,
                f"{name} p99 drift: {before:.2f} -> {after:.2f} ms ({drift:.2f}x; limit "
                f"{args.max_p99_drift:g}x)",
            )
        )
    return checks


def report(
    windows: list[Window],
    capacity: Capacity,
    checks: list[tuple[bool, str]],
    args: argparse.Namespace,
) -> str:
    """The Markdown section written to RESULTS.md."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rps = capacity.rps
    lines = [
        f"Run {when} on {platform.machine()} ({os.cpu_count()} CPUs; {capacity.placement}), "
        f"{windows[-1].end_s / 60:.1f} min at `--load {args.load:g}` (send tick {args.tick:g} ms); "
        "capacity HTTP binary "
        f"{rps['http']:,.0f} req/s, gRPC {rps['grpc']:,.0f} req/s (both at once, closed loop, "
        f"concurrency 32 each; server CPU {capacity.server_cpu:.2f}, load CPU "
        f"{capacity.load_cpu:.2f}); open-loop capacity {capacity.open_share:.1f} of that (the "
        f"highest step sustained with p99 <= {args.sustained_p99:g} ms), so the soak offers "
        f"{args.load:g} x {capacity.open_share:.1f} of the closed-loop rates. Server CPU: CPU "
        "seconds "
        "per second over the window (1.00 = one core busy); load CPU: the same for the two load "
        "generators together.",
        "",
        "| end (s) | HTTP req/s | HTTP p99 ms | gRPC req/s | gRPC p99 ms | errors | missed "
        "| RSS MiB | server CPU | load CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in windows:
        lines.append(
            f"| {w.end_s:.0f} | {w.http['rps']:,.0f} | {w.http['p99_ms']:.2f} | "
            f"{w.grpc['rps']:,.0f} | {w.grpc['p99_ms']:.2f} | {_errors(w)} | {_missed(w)} | "
            f"{w.rss_bytes / 2**20:.1f} | {w.server_cpu:.2f} | {_client_cpu(w):.2f} |"
        )
    lines.append("")
    lines += [f"- {'met' if ok else 'NOT met'}: {text}" for ok, text in checks]
    return "\n".join(lines)


def write_results(section: str) -> None:
    """Replace what is between the soak markers in RESULTS.md (append them when absent)."""
    text = RESULTS.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{section}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Soak (benchmarks/soak.py)\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print the windows and the checks; 1 when a check fails."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--load", type=float, default=0.7, help="share of capacity offered")
    parser.add_argument("--probe", type=float, default=10.0, help="seconds per capacity run")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds driven but not counted per window"
    )
    parser.add_argument(
        "--tick", type=float, default=1.0, help="ms: the load generators' send tick (0: spin)"
    )
    parser.add_argument("--step", type=float, default=6.0, help="seconds per open-loop step")
    parser.add_argument(
        "--sustained-p99", type=float, default=50.0, help="ms: the p99 an open-loop step may reach"
    )
    parser.add_argument("--max-rss-growth", type=float, default=0.05)
    parser.add_argument("--max-p99-drift", type=float, default=3.0)
    parser.add_argument(
        "--results", action="store_true", help="write RESULTS.md even for a short run"
    )
    parser.add_argument("--server-cpus", help="CPUs of the server, e.g. 0 or 0-11")
    parser.add_argument("--client-cpus", help="CPUs of the load generators, e.g. 1 or 12-15")
    parser.add_argument(
        "--no-pin", action="store_true", help="server and load generators share every CPU"
    )
    args = parser.parse_args(argv)
    if not 0 < args.load <= 1 or args.minutes <= 0 or args.window <= 0:
        parser.error("--load must be in (0, 1], --minutes and --window positive")
    windows, capacity = soak(args)
    checks = verdict(windows, args)
    for ok, text in checks:
        print(f"{'met' if ok else 'NOT met'}: {text}")
    if args.minutes >= 10 or args.results:
        write_results(report(windows, capacity, checks, args))
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
