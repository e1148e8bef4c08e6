"""A load generator for the tests under load: threads looping on one request, every request's
outcome recorded (a status code, or the name of the error that ended it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["Load", "Outcome", "Probe"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one request."""

    #: The HTTP status, or the exception's name when there was no answer.
    status: int | str
    #: Seconds from send to answer (or to the error).
    latency_s: float
    #: When it was sent (``time.monotonic()``).
    sent_at: float
    retry_after: str | None = None
    #: The model version that answered (``model_version`` of a 200).
    version: str | None = None
    error: str = ""


@dataclass
class Load:
    """``threads`` clients each sending ``body`` to ``url + path`` until :meth:`stop`.

    ``interval_s`` > 0 paces each client (one request per interval at most): the offered rate
    is ``threads / interval_s``. Each client keeps one connection open.
    """

    url: str
    path: str
    body: dict[str, Any]
    threads: int
    interval_s: float = 0.0
    timeout_s: float = 30.0
    #: Checks a 200's JSON answer; a wrong one is recorded with status "wrong".
    expect: Callable[[dict[str, Any]], bool] | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        """Start the clients; returns self."""
        for _ in range(self.threads):
            worker = threading.Thread(target=self._client, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> list[Outcome]:
        """Stop the clients, wait for their last answers, and return every outcome."""
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self.timeout_s + 10)
        assert not any(w.is_alive() for w in self._workers), "a client did not stop"
        return self.outcomes

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=self.timeout_s) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                if self.interval_s:
                    pause = next_at - time.monotonic()
                    if pause > 0 and self._stop.wait(pause):
                        return
                    next_at = max(next_at + self.interval_s, time.monotonic())
                with self._lock:
                    self.sent += 1
                outcome = self._one(client)
                self._record(outcome)
                if not isinstance(outcome.status, int):
                    self._stop.wait(0.01)  # no answer: do not spin on a server that is gone

    def _one(self, client: httpx.Client) -> Outcome:
        sent_at = time.monotonic()
        try:
            answer = client.post(self.path, json=self.body)
        except httpx.HTTPError as exc:
            return Outcome(type(exc).__name__, time.monotonic() - sent_at, sent_at, error=str(exc))
        latency = time.monotonic() - sent_at
        version = None
        error = ""
        if answer.status_code == 200:
            content = answer.json()
            version = content.get("model_version")
            if self.expect is not None and not self.expect(content):
                return Outcome("wrong", latency, sent_at, None, version, answer.text)
        else:
            error = answer.text
        return Outcome(
            answer.status_code,
            latency,
            sent_at,
            answer.headers.get("retry-after"),
            version,
            error,
        )

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)


@dataclass
class Probe:
    """A thread timing ``GET`` of each path in ``paths`` every ``interval_s`` until stopped."""

    url: str
    paths: tuple[str, ...] = ("/v2/health/ready", "/metrics")
    interval_s: float = 0.02
    #: (path, status, seconds) of every probe.
    results: list[tuple[str, int | str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Probe:
        """Start probing; returns self."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[tuple[str, int | str, float]]:
        """Stop probing and return every probe's result."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self.results

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                for path in self.paths:
                    start = time.perf_counter()
                    try:
                        status: int | str = client.get(path).status_code
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    self.results.append((path, status, time.perf_counter() - start))
                self._stop.wait(self.interval_s)
