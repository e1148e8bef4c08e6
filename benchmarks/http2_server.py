"""CPU per call of the gRPC server's HTTP/2 connection alone (no sockets, no service).

Feeds :class:`shipyard.protocol.http2.ServerConnection` reads that each carry ``--batch``
ModelInfer calls (HEADERS + DATA(END_STREAM), an MNIST-sized 3 kB message), hands the calls
out, answers each (headers, a 60-byte message, trailers) and takes the bytes to write: the
work the transport asks of the connection per call, as ``serve_overhead.py``'s gRPC rows
cause it. Three kinds of header blocks:

* ``literal``: literal fields never indexed, the same bytes every call (Shipyard's load
  generator);
* ``indexed``: ``hpack``'s encoder, so after the first call every field is a table index, the
  same bytes every call (grpcio and most gRPC clients);
* ``changing``: ``hpack``'s encoder with a ``grpc-timeout`` that differs per call, so every
  block adds a table entry and none can come from a cache (the worst case).

Prints microseconds per call, the best of ``--repeat`` runs. Any checkout's server end can be
measured with the same script: ``PYTHONPATH=/other/src python benchmarks/http2_server.py``.
"""

from __future__ import annotations

import argparse
import time

import hpack

from shipyard.protocol.grpc_wire import frame_message
from shipyard.protocol.http2 import PREFACE, ConnectionLimits, ServerConnection, frame

HEADERS, DATA, SETTINGS, WINDOW_UPDATE = 0x1, 0x0, 0x4, 0x8
END_STREAM, END_HEADERS = 0x1, 0x4
REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/inference.GRPCInferenceService/ModelInfer"),
    (b":authority", b"127.0.0.1:8001"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
    (b"user-agent", b"grpc-python/1.85.3 grpc-c/50.0.0 (linux; chttp2)"),
]
ANSWER_HEADERS = ((b":status", b"200"), (b"content-type", b"application/grpc"))
OK = ((b"grpc-status", b"0"),)


def literal_block(fields: list[tuple[bytes, bytes]]) -> bytes:
    """A header block of literal fields never indexed (RFC 7541 6.2.3), no Huffman."""
    out = bytearray()
    for name, value in fields:
        out += b"\x10"
        for text in (name, value):
            assert len(text) < 127
            out += bytes([len(text)]) + text
    return bytes(out)


def blocks(kind: str, count: int) -> list[bytes]:
    """``count`` header blocks of one kind, in the order a client would send them."""
    if kind == "literal":
        block = literal_block([*REQUEST, (b"grpc-timeout", b"60S")])
        return [block] * count
    encoder = hpack.Encoder()
    if kind == "indexed":
        return [encoder.encode([*REQUEST, (b"grpc-timeout", b"60S")]) for _ in range(count)]
    return [
        encoder.encode([*REQUEST, (b"grpc-timeout", f"{59_999 - n}m".encode())])
        for n in range(count)
    ]


def prepare(kind: str, batch: int, reads: int) -> tuple[ServerConnection, list[bytes]]:
    """A connection past its handshake, and ``reads`` reads of ``batch`` calls for it."""
    limits = ConnectionLimits(keepalive_interval_s=0, idle_timeout_s=0)
    conn = ServerConnection(limits)
    big = (2**31 - 1 - 65_535).to_bytes(4, "big")  # the client's connection window, opened
    conn.receive(PREFACE + frame(SETTINGS, 0, 0) + frame(WINDOW_UPDATE, 0, 0, big))
    conn.data_to_send()
    message = frame_message(b"\x0a\x06simple" + b"\x00" * 3150)
    headers = blocks(kind, batch * reads)
    data: list[bytes] = []
    stream_id = 1
    for read in range(reads):
        parts = []
        for n in range(batch):
            block = headers[read * batch + n]
            parts.append(frame(HEADERS, END_HEADERS, stream_id, block))
            parts.append(frame(DATA, END_STREAM, stream_id, message))
            stream_id += 2
        data.append(b"".join(parts))
    return conn, data


def serve(conn: ServerConnection, data: list[bytes]) -> int:
    """What the transport asks of the connection for each read; the calls answered."""
    answer = frame_message(b"\x00" * 60)
    calls = 0
    for read in data:
        conn.receive(read)
        for request in conn.take_ready():
            conn.respond(request.stream_id, ANSWER_HEADERS, answer, OK)
            conn.call_done(request.stream_id)
            calls += 1
        conn.data_to_send()
    assert conn.closed is None, conn.closed
    return calls


def measure(kind: str, batch: int, reads: int) -> float:
    """Microseconds per call through one connection: ``reads`` reads of ``batch`` calls."""
    conn, data = prepare(kind, batch, reads)
    started = time.perf_counter()
    calls = serve(conn, data)
    elapsed = time.perf_counter() - started
    assert calls == batch * reads, f"{calls} calls answered of {batch * reads}"
    return elapsed / calls * 1e6


def main() -> None:
    """Print microseconds per call for each kind of header block."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch", type=int, default=32, help="calls per read (default 32)")
    parser.add_argument("--reads", type=int, default=300, help="reads per run (default 300)")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is kept")
    args = parser.parse_args()
    for kind in ("literal", "indexed", "changing"):
        best = min(measure(kind, args.batch, args.reads) for _ in range(args.repeat))
        print(f"{kind:9} {best:7.1f} µs per call ({args.batch} calls per read)")


if __name__ == "__main__":
    main()
