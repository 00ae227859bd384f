"""The leader's blocks for pushing to followers: each block is encoded once, when
sealed, as the payload etcd stores, and served from here to every follower once
committed."""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["PushCache"]


class PushCache:
    """Blocks sealed but not yet committed, by height, and the last `keep` committed.

    The sequencer seals block h+1 while block h commits, so several heights may be
    sealed ahead. A refused block stays until its height is sealed again, which replaces
    it before that height can commit.
    """

    def __init__(self, keep: int = 16, ahead: int = 4) -> None:
        self._keep = keep
        self._ahead = ahead
        self._lock = threading.Lock()
        self._sealed: OrderedDict[int, bytes] = OrderedDict()
        self._committed: OrderedDict[int, bytes] = OrderedDict()

    def sealed(self, height: int, payload: bytes) -> None:
        with self._lock:
            self._sealed.pop(height, None)
            self._sealed[height] = payload
            while len(self._sealed) > self._ahead:
                self._sealed.popitem(last=False)

    def committed(self, height: int) -> None:
        with self._lock:
            payload = self._sealed.pop(height, None)
            if payload is None:
                return
            self._committed[height] = payload
            while len(self._committed) > self._keep:
                self._committed.popitem(last=False)

    def get(self, height: int) -> bytes | None:
        """Committed block `height`, if still kept."""
        with self._lock:
            return self._committed.get(height)

    def clear(self) -> None:
        with self._lock:
            self._sealed.clear()
            self._committed.clear()
