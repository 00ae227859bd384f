"""A Bloom filter over the `(source, id)` of committed events.

Admission must tell a new event from a retry. Asking LevelDB for every event costs
little on its own but releases the GIL, and under load each reacquisition waits
behind busy request threads (measured: 150 to 250 µs per lookup instead of 7 µs).
The filter answers "certainly new" for a whole chunk of identities in a few numpy
operations; only a possible hit (about 1 % of new events, and every real retry) goes
to the store.

The filter is rebuilt from the store in a background thread at start (and when it
fills up); until it is ready, every event goes to the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["IdentityFilter"]

log = logging.getLogger(__name__)

_BITS_PER_KEY = 10
_PROBES = 5  # 0.9 % false "maybe" at 10 bits a key (7 probes: 0.8 %), for 2 fewer per event
# The probes are the first five big-endian 32-bit words of the SHA-256 identity digest,
# masked to a power-of-two table. A block's identities are set, and a chunk's looked up,
# in a few numpy operations over all of them: per identity and probe in Python, that cost
# 3 to 5 µs of the sequencing process's one GIL per event.
_WORDS = np.dtype(">u4")


class _Bits:
    __slots__ = ("bits", "count", "m", "mask")

    def __init__(self, capacity: int) -> None:
        self.m = 1 << max(capacity * _BITS_PER_KEY, 1 << 16).bit_length()
        self.mask = self.m - 1
        self.bits = np.zeros(self.m >> 3, dtype=np.uint8)
        self.count = 0

    def _probes(self, digests: Sequence[bytes]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """(byte offset, bit mask) of each probe of each digest: two (n, _PROBES) arrays."""
        words = np.frombuffer(b"".join(digests), dtype=_WORDS).reshape(len(digests), -1)
        probes = words[:, :_PROBES].astype(np.uint32) & self.mask
        return probes >> 3, (np.uint8(1) << (probes & 7).astype(np.uint8))

    def add(self, digests: Sequence[bytes]) -> None:
        if not digests:
            return
        offsets, masks = self._probes(digests)
        np.bitwise_or.at(self.bits, offsets.ravel(), masks.ravel())
        self.count += len(digests)

    def contains(self, digests: Sequence[bytes]) -> list[bool]:
        if not digests:
            return []
        offsets, masks = self._probes(digests)
        found: list[bool] = ((self.bits[offsets] & masks) != 0).all(axis=1).tolist()
        return found


class IdentityFilter:
    def __init__(
        self, scan: Callable[[], Iterable[bytes]], count: int, *, min_capacity: int = 1 << 20
    ) -> None:
        """`scan` yields the digest of every committed identity; `count` is how many there are."""
        self._scan = scan
        self._min_capacity = min_capacity
        self._lock = threading.Lock()
        self._ready: _Bits | None = None
        self._building: _Bits | None = None
        self._closed = threading.Event()
        self._fillers: list[threading.Thread] = []
        self._rebuild(max(2 * count, min_capacity))

    def _rebuild(self, capacity: int) -> None:
        building = _Bits(capacity)
        with self._lock:
            self._building = building
        thread = threading.Thread(
            target=self._fill, args=(building,), name="identity-filter", daemon=True
        )
        self._fillers = [t for t in self._fillers if t.is_alive()] + [thread]
        thread.start()

    def close(self) -> None:
        """Stops any build under way and waits for it: the store may be closed next, and
        an iterator over a closed LevelDB crashes the process."""
        self._closed.set()
        for thread in self._fillers:
            thread.join()

    def _fill(self, building: _Bits) -> None:
        chunk: list[bytes] = []
        try:
            for digest in self._scan():
                chunk.append(digest)
                if len(chunk) >= 4096:
                    if self._closed.is_set():
                        return
                    with self._lock:
                        building.add(chunk)
                    chunk.clear()
            with self._lock:
                building.add(chunk)
                if self._building is building:
                    self._ready = building
                    self._building = None
            log.info("identity filter ready: %d identities", building.count)
        except Exception:  # the store closed under us; lookups keep going to the store
            log.exception("identity filter build failed")

    def might_contain(self, digests: Sequence[bytes]) -> list[bool]:
        """For each identity digest: False if it was certainly never committed."""
        ready = self._ready
        return [True] * len(digests) if ready is None else ready.contains(digests)

    def add(self, digests: Sequence[bytes]) -> None:
        """Records newly committed identities (in both the live and the filter being built)."""
        grow = False
        with self._lock:
            targets = [b for b in (self._ready, self._building) if b is not None]
            for b in targets:
                b.add(digests)
            ready = self._ready
            if (
                ready is not None
                and self._building is None
                and ready.count * _BITS_PER_KEY > ready.m
            ):
                grow = True
        if grow:
            self._rebuild(4 * ready.count if ready is not None else self._min_capacity)
