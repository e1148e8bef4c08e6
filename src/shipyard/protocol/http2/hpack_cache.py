"""HPACK decoding for peers that repeat themselves: ``hpack``'s decoder with a cache in front.

Every call of a gRPC client carries almost the same header block, and decoding one with
``hpack`` costs more than the rest of a call's framing. :class:`CachingDecoder` remembers the
headers of a block that left the dynamic table as it was (indexed fields and literals without
indexing): the same bytes decode the same way until a block changes the table, which clears
what was cached. A cached block's headers are the same list object each time, so whatever is
derived from them (the server end's header validation) can be cached by that object too.

(Encoding needs no cache: both ends write literal fields that are never indexed,
:func:`~shipyard.protocol.http2.frames.encode_headers`, so a header list's block is constant.)
"""

from __future__ import annotations

from typing import Any

import hpack

__all__ = ["CachingDecoder"]

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
