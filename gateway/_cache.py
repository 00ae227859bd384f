"""A small in-memory cache of immutable answers (proofs at a given tree size, entries,
blocks, tiles), so that repeated reads cost no gRPC round trip.

Only answers that can never change are kept: a proof pinned to a tree size, an entry
by index or identity, a block by height, a tile. The key includes a digest of the
caller's `Authorization` header, so an answer is only ever replayed to a caller who
presented the same credentials and was served it by the node; the time-to-live bounds
how long a token the node has since revoked could still read what it read before.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["ResponseCache", "credential_key"]


def credential_key(authorization: str | None) -> bytes:
    """What the cache keys on instead of the credential itself (never kept in clear)."""
    if not authorization:
        return b""
    return hashlib.sha256(authorization.encode("utf-8", "surrogateescape")).digest()


class ResponseCache:
    """LRU of encoded response bodies with a time-to-live; `capacity` 0 disables it."""

    def __init__(self, capacity: int, ttl_s: float) -> None:
        self._capacity = capacity
        self._ttl = ttl_s
        self._items: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> bytes | None:
        if not self._capacity:
            return None
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            if item is not None:
                del self._items[key]
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[1]

    def clear(self) -> None:
        self._items.clear()

    def put(self, key: Hashable, body: bytes) -> None:
        if not self._capacity:
            return
        self._items[key] = (time.monotonic() + self._ttl, body)
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
