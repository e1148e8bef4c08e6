"""``shipyard top URL``: a live view of a running server, per model, from its ``/metrics``."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import click
from rich.live import Live
from rich.table import Table
from rich.text import Text

from shipyard.cli.common import console, fail
from shipyard.metrics.scrape import REQUIRED, ModelActivity, Scrape, activity, parse

__all__ = ["top_command"]

#: Seconds a scrape may take before the server counts as unreachable.
SCRAPE_TIMEOUT_S = 5.0


class Unreachable(Exception):  # noqa: N818 - a state, reported to the user
    """``/metrics`` could not be read."""


def scrape(url: str) -> Scrape:
    """Fetch and read ``URL/metrics``; raise :class:`Unreachable` saying why it failed."""
    target = f"{url.rstrip('/')}/metrics"
    try:
        with urllib.request.urlopen(target, timeout=SCRAPE_TIMEOUT_S) as answer:
            text = answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise Unreachable(f"{target} answered HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"cannot reach {target}: {reason}") from exc
    try:
        return parse(text, time.monotonic())
    except ValueError as exc:
        raise Unreachable(f"{target} is not Prometheus text: {exc}") from exc


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def render(url: str, rows: list[ModelActivity], interval_s: float, note: str = "") -> Table:
    """The table of one refresh."""
    title = f"Shipyard at {url}: last {interval_s:g} s"
    if note:
        title = f"{title}  [bold red]{note}[/]"
    table = Table(title=title, title_justify="left")
    for column in ("model", "req/s", "p50 ms", "p99 ms", "queue", "in flight", "batch", "err/s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(
            row.model,
            f"{row.requests_per_s:.1f}",
            _ms(row.p50_s),
            _ms(row.p99_s),
            f"{row.queue:g}",
            f"{row.inflight:g}",
            "-" if row.batch_mean is None else f"{row.batch_mean:.1f}",
            Text(f"{row.errors_per_s:.1f}", style="red" if row.errors_per_s else ""),
        )
    if not rows:
        table.add_row("(no models)", *[""] * 7)
    return table


def _first(url: str) -> Scrape:
    """The first scrape, failing with a clear message if the server cannot be watched."""
    try:
        first = scrape(url)
    except Unreachable as exc:
        fail(str(exc))
    if not first.has_histograms:
        fail(
            f"{url}/metrics has no {REQUIRED}: the server is an older Shipyard (or not "
            "Shipyard); `shipyard top` needs its latency histograms"
        )
    return first


@click.command("top")
@click.argument("url")
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes (rates and percentiles are over this interval).",
)
@click.option("--once", is_flag=True, help="Print one refresh (two scrapes apart) and exit.")
def top_command(url: str, interval_s: float, once: bool) -> None:
    """Watch a running server: per model req/s, p50/p99, queue, in flight, batch size, errors.

    URL is the server's HTTP address (http://host:port). Any server exposing Shipyard's
    metrics at /metrics works.
    """
    if "://" not in url:
        url = f"http://{url}"
    previous = _first(url)
    if once:
        time.sleep(interval_s)
        try:
            current = scrape(url)
        except Unreachable as exc:
            fail(str(exc))
        console.print(render(url, activity(previous, current), interval_s))
        return
    with Live(render(url, [], interval_s), console=console, auto_refresh=False) as live:
        rows: list[ModelActivity] = []
        while True:
            try:
                time.sleep(interval_s)
            except KeyboardInterrupt:
                return
            try:
                current = scrape(url)
            except Unreachable as exc:
                note = f"{exc} (at {time.strftime('%H:%M:%S')}); still trying"
                live.update(render(url, rows, interval_s, note), refresh=True)
                continue
            rows = activity(previous, current)
            previous = current
            live.update(render(url, rows, interval_s), refresh=True)
