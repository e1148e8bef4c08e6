"""HPACK for a server that repeats itself: ``hpack``'s coder with a cache in front.

Every call of a gRPC client carries almost the same header block, and every answer of the
server the same headers and trailers. ``h2`` decodes and encodes each one afresh through the
``hpack`` package (about a third of its cost per call), so its connection is given these
subclasses (``H2Connection.decoder`` and ``.encoder`` are its documented attributes):

- :class:`CachingDecoder` remembers the headers of a block that left the dynamic table as it
  was (indexed fields and literals without indexing): the same bytes decode the same way until
  a block changes the table, which clears what was cached.
- :class:`CachingEncoder` remembers the block of a header list made only of
  :class:`hpack.NeverIndexedHeaderTuple`: such fields never touch the table, so their encoding
  is constant (a pending table size change is still sent first, by ``hpack`` itself).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import hpack

__all__ = ["CachingDecoder", "CachingEncoder"]

#: Blocks kept per connection, and the largest block kept (at most 32 KiB per connection): a
#: repeated call's block is a few bytes of indexed fields.
CACHED_BLOCKS = 64
CACHED_BLOCK_BYTES = 512


class CachingDecoder(hpack.Decoder):
    """An HPACK decoder that answers a repeated block from a cache while the table is unchanged."""

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size)
        self._cache: dict[tuple[bytes, bool], Any] = {}

    def decode(self, data: bytes, raw: bool = False) -> Any:
        """Decode ``data`` like :meth:`hpack.Decoder.decode`, from the cache when it can."""
        if type(data) is not bytes or len(data) > CACHED_BLOCK_BYTES:
            self._cache.clear()  # it may change the table; nothing cached can be trusted
            return super().decode(data, raw)
        key = (data, raw)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        table = self.header_table
        entries = table.dynamic_entries
        # The front entry itself, not its id: held here, it cannot be freed and its address
        # reused by a new entry, so "is" below tells a table that changed from one that did not.
        count, front, size = len(entries), entries[0] if entries else None, table.maxsize
        headers = super().decode(data, raw)
        unchanged = (
            len(entries) == count
            and (entries[0] if entries else None) is front
            and table.maxsize == size
        )
        if not unchanged:
            self._cache.clear()
        else:
            if len(self._cache) >= CACHED_BLOCKS:
                self._cache.clear()
            self._cache[key] = headers
        return headers


class CachingEncoder(hpack.Encoder):
    """An HPACK encoder that encodes a header list of never-indexed fields only once."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[tuple[Any, ...], bytes] = {}

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        """Encode ``headers`` like :meth:`hpack.Encoder.encode`, from the cache when it can."""
        key = tuple(headers)
        resized = self.header_table.resized  # the block will start with the size update
        if not resized and huffman:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
        block: bytes = super().encode(key, huffman)
        if not resized and huffman and all(getattr(h, "indexable", True) is False for h in key):
            if len(self._cache) >= CACHED_BLOCKS:
                self._cache.clear()
            self._cache[key] = block
        return block
