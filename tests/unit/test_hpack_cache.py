"""The HPACK caches in front of h2's coder agree with plain ``hpack`` on every block."""

from __future__ import annotations

import random

import hpack
import pytest

from shipyard.protocol.http2.hpack_cache import CachingDecoder, CachingEncoder

NEVER = hpack.NeverIndexedHeaderTuple


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


def test_never_indexed_headers_encode_once_and_stay_decodable() -> None:
    """A constant never-indexed list gives the same block as hpack's, from the cache after."""
    encoder, plain = CachingEncoder(), hpack.Encoder()
    headers = (NEVER(b":status", b"200"), NEVER(b"content-type", b"application/grpc"))
    first = encoder.encode(headers)
    assert first == plain.encode(headers)
    assert encoder.encode(list(headers)) is first
    assert hpack.Decoder().decode(first) == [
        (":status", "200"),
        ("content-type", "application/grpc"),
    ]


def test_table_size_change_is_sent_even_for_a_cached_list() -> None:
    """After the peer changes the table size, the next block starts with the size update."""
    encoder, decoder = CachingEncoder(), hpack.Decoder()
    headers = (NEVER(b"grpc-status", b"0"),)
    decoder.decode(encoder.encode(headers))
    encoder.header_table_size = 1024
    block = encoder.encode(headers)
    assert block[0] & 0xE0 == 0x20  # a dynamic table size update first
    assert decoder.decode(block) == [("grpc-status", "0")]
    assert decoder.header_table_size == 1024
    assert encoder.encode(headers) != block  # the update is sent once


def test_indexed_headers_are_encoded_afresh() -> None:
    """Headers that may be indexed change the table, so they are never served from the cache."""
    encoder, decoder = CachingEncoder(), hpack.Decoder()
    headers = [(b"x-a", b"1")]
    blocks = [encoder.encode(headers) for _ in range(3)]
    assert blocks[0] != blocks[1]  # the first adds the entry, the next refer to it
    for block in blocks:
        assert decoder.decode(block) == [("x-a", "1")]
