"""The HPACK decoding cache agrees with plain ``hpack`` on every block; so do our blocks."""

from __future__ import annotations

import collections
import random

import hpack
import pytest

from shipyard.protocol.http2 import encode_headers
from shipyard.protocol.http2.hpack_cache import CachingDecoder


def test_cached_decoding_follows_the_table_as_it_grows_and_evicts() -> None:
    """Blocks that add, reuse and evict table entries decode as a plain decoder does."""
    rng = random.Random(2)
    encoder = hpack.Encoder()
    encoder.header_table_size = 256  # small: entries get evicted
    reference = hpack.Decoder()
    reference.header_table_size = 256
    decoder = CachingDecoder(65536)
    decoder.header_table_size = 256
    values = [f"value-{i}" for i in range(12)]
    for _ in range(400):
        headers = [(":path", "/p"), ("x-a", rng.choice(values)), ("x-b", rng.choice(values[:3]))]
        block = encoder.encode(headers)
        raw = rng.random() < 0.5
        assert decoder.decode(block, raw=raw) == reference.decode(block, raw=raw)


def test_cached_decoding_survives_evicting_the_front_entry() -> None:
    """After blocks that replace the whole table, an indexed block decodes to the new entry."""
    encoder = hpack.Encoder()
    reference = hpack.Decoder()
    decoder = CachingDecoder(65536)
    for token in "abcdef":
        first = encoder.encode([("authorization", token * 2500)])
        second = encoder.encode([("authorization", token.upper() * 2500)])
        again = encoder.encode([("authorization", token.upper() * 2500)])  # indexed: \xbe
        for block in (first, second, again, again):
            assert decoder.decode(block) == reference.decode(block)


def test_cached_decoding_keeps_the_header_list_limit() -> None:
    """A block over max_header_list_size is refused, cached or not."""
    decoder = CachingDecoder(100)
    block = hpack.Encoder().encode([("x-big", "v" * 200)])
    for _ in range(2):
        with pytest.raises(hpack.OversizedHeaderListError):
            decoder.decode(block)


def test_literal_blocks_decode_with_hpack() -> None:
    """The blocks both ends write (literals never indexed) decode with plain ``hpack``, long
    names and values (multi-byte lengths) included, and leave its table empty."""
    headers = [
        (b":status", b"200"),
        (b":status", b"415"),
        (b"content-type", b"application/grpc"),
        (b"grpc-message", b"m" * 300),
        (b"x-" + b"n" * 200, b""),
    ]
    decoder = hpack.Decoder()
    assert decoder.decode(encode_headers(headers), raw=True) == headers
    assert decoder.header_table.dynamic_entries == collections.deque()
