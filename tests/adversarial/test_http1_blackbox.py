"""A black-box run of malformed HTTP requests against a live server: 0 answers of 500 or more,
no crash, and correct answers afterwards.

Requests come from a seeded generator (the seed is in every failure message, so a failure
replays): most are well-formed HTTP carrying broken content (mutated inference requests,
odd paths, methods, queries, headers and repository calls, sent with httpx); the rest are
broken HTTP itself (written on raw sockets). ``SHIPYARD_BLACKBOX_REQUESTS`` sets how many
(10,000 by default).
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import string
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shipyard.testing import (
    RunningServer,
    add_sub_model,
    identity_model,
    running_server,
    write_model,
)
from shipyard.types import DataType
from tests.adversarial.http_clients import TIMEOUT_S, SlowClient

REQUESTS = int(os.environ.get("SHIPYARD_BLACKBOX_REQUESTS", "10000"))
SEED = 20261204
#: One request in this many is broken HTTP on a raw socket; the others are httpx requests.
RAW_EVERY = 4

ROW = list(range(16))
GOOD = {
    "inputs": [
        {"name": n, "shape": [1, 16], "datatype": "FP32", "data": ROW} for n in ("INPUT0", "INPUT1")
    ]
}
MODELS = ["simple", "strings", "nope", "", "a" * 300, "..", "%2e%2e", "sim ple", "ünï", "x/y"]
DATATYPES = ["FP32", "FP16", "BF16", "INT8", "UINT64", "BOOL", "BYTES", "fp32", "", "X", 7, None]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``simple`` for inference, ``strings`` (BYTES) and ``spare`` for repository calls."""
    repo = tmp_path_factory.mktemp("blackbox")
    write_model(repo, "simple", add_sub_model())
    write_model(repo, "strings", identity_model(DataType.BYTES))
    write_model(repo, "spare", identity_model(DataType.FP32))
    with running_server(repo, grpc=False, max_request_bytes=1 << 20) as running:
        yield running


#: Marks where dumps() writes nested lists (json.dumps itself would recurse too deep).
DEEP = "\x01deep"
_DEEP = re.compile(r'"\\u0001deep(\d+)\\u0001deep"')


def dumps(value: Any) -> bytes:
    """JSON text of ``value``, deep-nesting markers replaced by nested lists."""
    text = json.dumps(value)
    return _DEEP.sub(lambda m: "[" * int(m.group(1)) + "1" + "]" * int(m.group(1)), text).encode()


class Generator:
    """Malformed requests from one seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def junk(self) -> Any:
        """A random JSON value, sometimes nested, sometimes extreme."""
        rng = self.rng
        kind = rng.randrange(12)
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice([True, False])
        if kind == 2:
            return rng.randint(-(2**70), 2**70)
        if kind == 3:
            return rng.choice([0, -1, 1, 2**31, 2**63, -(2**63) - 1, 2**64])
        if kind == 4:
            return rng.uniform(-1e308, 1e308)
        if kind == 5:
            return "".join(rng.choices(string.printable + "é\u2028\x00", k=rng.randrange(12)))
        if kind == 6:
            return [self.junk() for _ in range(rng.randrange(4))]
        if kind == 7:
            return {self.text(): self.junk() for _ in range(rng.randrange(3))}
        if kind == 8:  # lists nested up to 1,000 deep: written in by dumps()
            return f"{DEEP}{rng.randrange(1, 1000)}{DEEP}"
        if kind == 9:
            return [1.5] * rng.randrange(100)
        if kind == 10:
            return rng.choice(["", "nan", "1e999", "0x10"])
        return rng.randrange(-3, 20)

    def text(self) -> str:
        """A short random string."""
        return "".join(self.rng.choices(string.ascii_letters + "_-. é", k=self.rng.randrange(8)))

    def infer_body(self) -> tuple[bytes, dict[str, bytes]]:
        """A good request mutated a few times, as JSON (perhaps with binary blobs)."""
        rng = self.rng
        body: dict[str, Any] = json.loads(json.dumps(GOOD))
        for _ in range(rng.randrange(1, 4)):
            inputs = body["inputs"]
            tensors = [t for t in inputs if isinstance(t, dict)] if isinstance(inputs, list) else []
            tensor = rng.choice(tensors) if tensors else {}
            choice = rng.randrange(14)
            if choice == 0:
                tensor["shape"] = [rng.randrange(-2, 5) for _ in range(rng.randrange(5))]
            elif choice == 1:
                tensor["shape"] = [1] * rng.randrange(60, 70)
            elif choice == 2:
                tensor["shape"] = self.junk()
            elif choice == 3:
                tensor["datatype"] = rng.choice(DATATYPES)
            elif choice == 4:
                tensor["data"] = self.junk()
            elif choice == 5:
                tensor.pop(rng.choice(["name", "shape", "datatype", "data"]), None)
            elif choice == 6:
                tensor["name"] = self.junk()
            elif choice == 7:
                body["outputs"] = rng.choice(
                    [[], [{"name": "OUTPUT1"}], [{"name": self.junk()}], self.junk()]
                )
            elif choice == 8:
                # Any request parameter but a positive timeout (whose 504 would be correct).
                value = self.junk()
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    value = -value
                body["parameters"] = {rng.choice(["timeout", "binary_data_output", "x"]): value}
            elif choice == 9:
                body["inputs"] = self.junk()
            elif choice == 10:
                body["id"] = self.junk()
            elif choice == 11:
                tensor["parameters"] = {"binary_data_size": self.junk()}
                tensor.pop("data", None)
            elif choice == 12:
                body["inputs"] = [*tensors, *tensors]
            else:
                tensor["parameters"] = self.junk()
        text = dumps(body)
        blob = rng.randbytes(rng.randrange(80)) if rng.randrange(3) == 0 else b""
        headers: dict[str, bytes] = {}
        if blob or rng.randrange(6) == 0:
            length = rng.choice(
                [len(text), len(text) + 1, -1, 0, len(text) + len(blob) + 9, 10**30]
            )
            value = rng.choice([str(length), "9" * rng.randrange(1, 5000), "²", "", "12 ", "0x10"])
            headers["Inference-Header-Content-Length"] = value.encode("latin-1")
        if rng.randrange(10) == 0:  # cut or flip a byte of the JSON
            index = rng.randrange(len(text))
            text = text[:index] if rng.randrange(2) else text[:index] + b"\xff" + text[index + 1 :]
        return text + blob, headers

    def http_request(self) -> tuple[str, str, bytes, dict[str, bytes]]:
        """A method, path, body and headers, mostly aimed at real routes."""
        rng = self.rng
        model = rng.choice(MODELS)
        choice = rng.randrange(10)
        if choice < 5:
            body, headers = self.infer_body()
            version = rng.choice(["", "/versions/1", "/versions/0", "/versions/01", "/versions/x"])
            if rng.randrange(8) == 0:  # the same bodies on /explain, with its query parameters
                key = rng.choice(["masks", "patch", "stride", "target", "method", "input", "x"])
                value = rng.choice(["", "0", "3", "²", "9" * rng.randrange(1, 5000), "rise"])
                path = f"/v2/models/{model}{version}/explain?{key}={value}"
                return "POST", path, body, {**headers, "Content-Type": b"application/json"}
            return "POST", f"/v2/models/{model}{version}/infer", body, headers
        if choice == 5:
            query = rng.choice(["", "?top_k=" + "9" * rng.randrange(1, 5000), "?top_k=-1"])
            content_type = rng.choice(["image/png", "text/plain", "application/json", "a/b"])
            body = rng.randbytes(rng.randrange(200))
            return (
                "POST",
                f"/v2/models/{model}/predict{query}",
                body,
                {"Content-Type": content_type},
            )
        if choice == 6:
            action = rng.choice(["load", "unload"])
            # Never simple or strings: unloading them would make their 503s correct answers.
            target = rng.choice([m for m in MODELS if m not in ("simple", "strings")] + ["spare"])
            body = dumps(rng.choice([{}, {"parameters": self.junk()}, self.junk()]))
            return "POST", f"/v2/repository/models/{target}/{action}", body, {}
        if choice == 7:
            body = dumps(rng.choice([{"ready": self.junk()}, self.junk()]))
            return "POST", "/v2/repository/index", body, {}
        if choice == 8:
            suffix = rng.choice(["", "/ready", "/config", "/stats", "/versions/1", "/infer"])
            method = rng.choice(["GET", "HEAD", "DELETE", "PUT", "OPTIONS", "PATCH"])
            return method, f"/v2/models/{model}{suffix}", b"", {}
        path = rng.choice(
            ["/", "/v2", "/v2/", "/metrics", "/v2/health/live", "/v2/models/stats", "//v2", "/%"]
        )
        return rng.choice(["GET", "POST"]), path, rng.randbytes(rng.randrange(20)), {}

    def raw_request(self) -> bytes:
        """Broken HTTP: random bytes, bad request lines, bad headers, bad framing."""
        rng = self.rng
        choice = rng.randrange(8)
        if choice == 0:
            return rng.randbytes(rng.randrange(1, 200))
        if choice == 1:
            return rng.choice(
                [b"GET", b"GET /", b"GET / HTTP/9.9", b"\r\n\r\n", b" / HTTP/1.1"]
            ) + (b"\r\n\r\n")
        if choice == 2:
            return b"GET /v2 HTTP/1.1\r\nHost: x\r\n" + rng.randbytes(30) + b"\r\n\r\n"
        if choice == 3:
            lengths = rng.choice([b"5\r\nContent-Length: 6", b"-1", b"x", b"9" * 40, b"1 2"])
            return (
                b"POST /v2/models/simple/infer HTTP/1.1\r\nContent-Length: "
                + lengths
                + b"\r\n\r\n{}"
            )
        if choice == 4:
            chunks = rng.choice(
                [b"zz\r\n", b"5\r\nab\r\n0\r\n\r\n", b"ffffffffffffffff\r\n", b"0\r\n"]
            )
            return (
                b"POST /v2/models/simple/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunks
            )
        if choice == 5:
            return (
                b"POST /v2/models/simple/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Length: 3\r\n\r\n0\r\n\r\n"
            )
        if choice == 6:
            return b"GET /" + bytes(rng.randrange(256) for _ in range(40)) + b" HTTP/1.1\r\n\r\n"
        return b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nX: " + b"a\x00b\x7f" + b"\r\n\r\n"


def raw_status(server: RunningServer, data: bytes) -> int | None:
    """Send ``data`` on a new connection; the status of the answer, or None when closed."""
    with SlowClient(server) as client:
        try:
            client.send(data)
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return None  # refused while still writing: closed, no answer
        client.wait_closed(TIMEOUT_S)
        return client.status


def test_malformed_requests_never_get_a_5xx(server: RunningServer) -> None:
    """REQUESTS malformed requests: every answer is below 500 (or the connection is closed),
    the server never stops, and it answers good requests correctly afterwards."""
    generator = Generator(SEED)
    statuses: Counter[int | None] = Counter()
    failures: list[str] = []
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as http:
        index = 0
        while sum(statuses.values()) < REQUESTS:
            index += 1
            if index % RAW_EVERY == 0:
                data = generator.raw_request()
                status = raw_status(server, data)
                what = f"raw {data[:80]!r}"
            else:
                method, path, body, headers = generator.http_request()
                try:
                    response = http.request(method, path, content=body, headers=headers)
                except httpx.LocalProtocolError:  # refused by httpx itself: never sent
                    continue
                status = response.status_code
                what = f"{method} {path[:80]} {body[:80]!r} {headers}"
                if status >= 400 and method != "HEAD":
                    payload = response.json()
                    if not (isinstance(payload, dict) and isinstance(payload.get("error"), str)):
                        failures.append(f"#{index} no JSON error: {what} -> {response.text[:200]}")
            statuses[status] += 1
            if status is not None and status >= 500:
                failures.append(f"#{index} (seed {SEED}) got {status}: {what}")
        elapsed = time.monotonic() - started
        assert not failures, failures[:10]
        assert server.server.service is not None
        assert server.server.service.live()
        good = http.post("/v2/models/simple/infer", json=GOOD)
        assert good.status_code == 200, good.text
        assert good.json()["outputs"][0]["data"] == [2 * v for v in ROW]
        assert http.get("/v2/health/ready").status_code == 200
    print(f"{REQUESTS} malformed requests in {elapsed:.1f} s: {dict(statuses)}")
