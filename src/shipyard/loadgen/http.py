"""HTTP/1.1 load: raw keep-alive connections writing one pre-encoded request.

Each slot is an ``asyncio.Protocol`` on its own connection. The request (request line, headers
and body) is encoded once; per request the slot writes those bytes, finds the end of the
response head, reads the status and ``Content-Length`` and waits for that many body bytes. No
HTTP library, coroutine, future or header dictionary per request: one Python process drives
well over 10k requests/s this way and stays far from being the bottleneck it measures.

Also here: building the request for a model (JSON or binary tensors), and the plain one-off
client (:func:`send`) that reads a model's metadata, which ``shipyard predict`` uses too.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import ssl
import urllib.parse
from collections.abc import Sequence
from typing import Any, cast

from shipyard.errors import LoadGeneratorError
from shipyard.loadgen.runner import (
    CONNECT_TIMEOUT_S,
    RECONNECT_PAUSE_S,
    Driver,
    clock,
    connect,
    wait_lost,
)
from shipyard.loadgen.stats import OK
from shipyard.protocol.binary import array_to_raw
from shipyard.types import Array, DataType

__all__ = [
    "HttpTarget",
    "HttpTransport",
    "encode_request",
    "error_text",
    "fetch_metadata",
    "raw_request",
    "send",
]


class HttpTarget:
    """Where requests go: host, port and the path prefix of a base URL.

    ``tls=True`` also accepts ``https://`` URLs, for one-off requests through :func:`send`
    (the load transport speaks plain HTTP only).
    """

    def __init__(self, url: str, *, tls: bool = False) -> None:
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme != "http" and not (tls and parsed.scheme == "https"):
            raise LoadGeneratorError(
                f"{url}: only http:// and https:// URLs are supported"
                if tls
                else f"{url}: only http:// URLs are supported over HTTP (no TLS); for gRPC pass "
                "--protocol grpc"
            )
        if not parsed.hostname:
            raise LoadGeneratorError(f"{url}: no host in the URL")
        self.host = parsed.hostname
        self.tls = parsed.scheme == "https"
        try:
            self.port = parsed.port or (443 if self.tls else 80)
        except ValueError as exc:
            raise LoadGeneratorError(f"{url}: bad port ({exc})") from exc
        self.prefix = parsed.path.rstrip("/")
        self.url = f"{parsed.scheme}://{parsed.netloc}{self.prefix}"

    def model_path(self, model: str, version: str | None) -> str:
        """``/v2/models/NAME[/versions/V]`` under the URL's path."""
        path = f"{self.prefix}/v2/models/{urllib.parse.quote(model, safe='')}"
        return f"{path}/versions/{urllib.parse.quote(version, safe='')}" if version else path


def send(
    target: HttpTarget,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> tuple[int, bytes]:
    """Send one request on a connection of its own; return the status and the body.

    ``timeout_s`` bounds the connect and each read. Raises LoadGeneratorError ("cannot reach
    ...") when the server cannot be reached or breaks the exchange off; any status is returned.
    """
    kind = http.client.HTTPSConnection if target.tls else http.client.HTTPConnection
    connection = kind(target.host, target.port, timeout=timeout_s)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise LoadGeneratorError(f"cannot reach {target.url}: {exc}") from exc
    finally:
        connection.close()


def fetch_metadata(target: HttpTarget, model: str, version: str | None) -> dict[str, Any]:
    """``GET /v2/models/NAME[/versions/V]``: the model's inputs and outputs."""
    status, body = send(target, "GET", target.model_path(model, version))
    if status == 404:
        what = f"model {model!r}" + (f" version {version}" if version else "")
        raise LoadGeneratorError(f"{what} not found at {target.url}: {error_text(body)}")
    if status != 200:
        raise LoadGeneratorError(
            f"model metadata from {target.url}: HTTP {status}: {error_text(body)}"
        )
    try:
        metadata: dict[str, Any] = json.loads(body)
    except ValueError as exc:
        raise LoadGeneratorError(f"model metadata from {target.url} is not JSON") from exc
    return metadata


def error_text(body: bytes) -> str:
    """The ``error`` of a V2 error body, else the start of the body as text."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace") or "(empty body)"


def _json_data(datatype: DataType, array: Array) -> list[Any]:
    flat = array.reshape(-1)
    if datatype is DataType.BYTES:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]
    values: list[Any] = flat.tolist()
    return values


def encode_request(
    inputs: Sequence[tuple[str, DataType, Array]], binary: bool
) -> tuple[bytes, dict[str, str]]:
    """The V2 infer body and its headers: JSON data, or binary tensors in and out."""
    if not binary:
        body = {
            "inputs": [
                {
                    "name": name,
                    "shape": list(array.shape),
                    "datatype": datatype.value,
                    "data": _json_data(datatype, array),
                }
                for name, datatype, array in inputs
            ]
        }
        return json.dumps(body, separators=(",", ":")).encode(), {
            "Content-Type": "application/json"
        }
    raws = [array_to_raw(datatype, array) for _, datatype, array in inputs]
    header = {
        "inputs": [
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype.value,
                "parameters": {"binary_data_size": len(raw)},
            }
            for (name, datatype, array), raw in zip(inputs, raws, strict=True)
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    return head + b"".join(raws), headers


def raw_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The whole HTTP/1.1 POST as bytes, built once and sent as is."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight (one slot)."""

    def __init__(self, transport: HttpTransport, driver: Driver) -> None:
        self.owner = transport
        self.driver = driver
        self.buffer = bytearray()
        self.need = -1  # bytes of the current response (head + body); -1: head not parsed yet
        self.status = b""
        self.intended_ns = 0
        self.busy = False
        self.closing = False
        self.transport: asyncio.Transport | None = None
        self.reconnecting: asyncio.Task[None] | None = None
        #: Done once the current transport is gone (set up by connection_made).
        self.lost: asyncio.Future[None] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.lost = asyncio.get_running_loop().create_future()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.need < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            self.status = head[9:12]
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self._fail("bad-response", "response without Content-Length")
                return
            line_end = head.find(b"\r\n", at + 2)
            self.need = end + 4 + int(head[at + 17 : line_end if line_end > 0 else len(head)])
        if len(buffer) < self.need:
            return
        done_ns = clock()
        if self.status == b"200":
            status, detail = OK, ""
        else:
            status = self.status.decode("latin-1")
            detail = error_text(bytes(buffer[buffer.find(b"\r\n\r\n") + 4 : self.need]))
        del buffer[: self.need]
        self.need = -1
        self.busy = False
        following = self.driver.completed(self.intended_ns, done_ns, status, detail)
        if following is not None:
            self.send(following)
        else:
            self.driver.park(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)
        self.buffer.clear()
        self.need = -1
        if self.busy and not self.closing:
            self.busy = False
            self._report("connection", f"connection lost: {exc or 'closed by the server'}")

    # -- Slot --------------------------------------------------------------------------------

    def send(self, intended_ns: int) -> None:
        self.intended_ns = intended_ns
        self.busy = True
        if self.transport is None or self.transport.is_closing():
            self.reconnecting = asyncio.get_running_loop().create_task(self._reconnect())
            return
        self.transport.write(self.owner.request)

    def close(self) -> None:
        self.closing = True
        if self.reconnecting is not None:
            self.reconnecting.cancel()
        if self.transport is not None:
            if self.busy:
                self.transport.abort()
            else:
                self.transport.close()

    # -- failures ----------------------------------------------------------------------------

    async def _reconnect(self) -> None:
        try:
            await self.owner.connect(self)
        except LoadGeneratorError as exc:
            await asyncio.sleep(RECONNECT_PAUSE_S)
            self.busy = False
            self._report("connection", exc.message)
            return
        if self.transport is not None and self.busy:
            self.transport.write(self.owner.request)

    def _fail(self, status: str, detail: str) -> None:
        self.busy = False
        self._report(status, detail)
        if self.transport is not None:
            self.transport.close()

    def _report(self, status: str, detail: str) -> None:
        following = self.driver.completed(self.intended_ns, clock(), status, detail)
        if following is not None:
            self.send(following)
        else:
            self.driver.park(self)


class HttpTransport:
    """Opens keep-alive connections to ``host:port`` that all send ``request``.

    ``tls``, when given, is the client context of HTTPS connections (it should offer ALPN
    ``http/1.1``, see :func:`shipyard.loadgen.runner.client_context`).
    """

    def __init__(
        self, host: str, port: int, request: bytes, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.tls = tls
        self.connections: list[_Connection] = []

    async def connect(self, connection: _Connection) -> None:
        """(Re)connect ``connection``'s socket."""
        await connect(connection, self.host, self.port, self.tls)

    async def open(self, count: int, driver: Driver) -> Sequence[_Connection]:
        connections = [_Connection(self, driver) for _ in range(count)]
        self.connections = connections
        results = await asyncio.gather(
            *(self.connect(c) for c in connections), return_exceptions=True
        )
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            for connection in connections:
                connection.close()
            raise failure
        return connections

    async def aclose(self) -> None:
        await wait_lost([(c.lost, c.transport) for c in self.connections])
