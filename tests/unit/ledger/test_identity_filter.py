"""ledger._identity_filter: never a false "new" (that would admit a duplicate), few false
"maybe" (each costs a store lookup), background build, growth past its capacity."""

from __future__ import annotations

import hashlib
import threading
import time

from ledger._identity_filter import IdentityFilter, _Bits


def digest(i: int, salt: str = "committed") -> bytes:
    return hashlib.sha256(f"{salt}:{i}".encode()).digest()


def ready(f: IdentityFilter, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while f._ready is None:
        assert time.monotonic() < deadline, "filter never became ready"
        time.sleep(0.01)


def test_every_committed_identity_is_a_maybe_and_few_new_ones_are() -> None:
    committed = [digest(i) for i in range(50_000)]
    f = IdentityFilter(lambda: iter(committed), len(committed))
    ready(f)
    assert all(f.might_contain(committed))
    false_maybes = sum(f.might_contain([digest(i, "new") for i in range(50_000)]))
    assert false_maybes < 50_000 * 0.02


def test_the_bits_are_the_first_five_words_of_each_digest() -> None:
    # Read back in plain Python: the probes of a chunk and of one digest at a time agree,
    # and a digest is a "maybe" exactly when all five of its bits are set.
    bits = _Bits(10_000)
    committed = [digest(i) for i in range(3_000)]
    for start in range(0, 3_000, 700):  # chunks, as blocks add them
        bits.add(committed[start : start + 700])
    raw = bytes(bits.bits)

    def set_in_python(d: bytes) -> bool:
        probes = [int.from_bytes(d[4 * k : 4 * k + 4], "big") & bits.mask for k in range(5)]
        return all(raw[p >> 3] >> (p & 7) & 1 for p in probes)

    assert sum(bin(b).count("1") for b in raw) <= 5 * 3_000
    candidates = committed + [digest(i, "new") for i in range(3_000)]
    chunk = bits.contains(candidates)
    assert chunk == [set_in_python(d) for d in candidates]
    assert chunk == [bits.contains([d])[0] for d in candidates]
    assert all(chunk[:3_000]) and bits.contains([]) == []


def test_until_built_every_lookup_goes_to_the_store() -> None:
    release = threading.Event()

    def slow_scan():  # type: ignore[no-untyped-def]
        release.wait(10)
        yield digest(0)

    f = IdentityFilter(slow_scan, 1)
    assert f.might_contain([digest(1, "new")]) == [True]  # not ready: "maybe"
    release.set()
    ready(f)
    assert f.might_contain([digest(0)]) == [True]


def test_identities_added_during_and_after_the_build_are_kept_and_it_grows() -> None:
    store = [digest(i) for i in range(10)]  # what the store holds: a rebuild scans it
    release = threading.Event()

    def scan():  # type: ignore[no-untyped-def]
        release.wait(10)
        yield from list(store)

    def commit(digests: list[bytes]) -> None:  # as the sequencer does: store, then filter
        store.extend(digests)
        f.add(digests)

    f = IdentityFilter(scan, 10, min_capacity=1000)
    commit([digest(100)])  # committed while the filter is being built
    release.set()
    ready(f)
    first = f._ready
    assert first is not None and f.might_contain([digest(100)]) == [True]
    added = [digest(i, "later") for i in range(first.m // 10 + 1000)]  # beyond capacity
    commit(added)
    deadline = time.monotonic() + 10
    while f._ready is first:
        assert time.monotonic() < deadline, "filter did not grow"
        time.sleep(0.01)
    grown = f._ready
    assert grown is not None and grown.m > first.m
    assert all(f.might_contain([digest(100), *added]))


def test_close_stops_a_build_under_way_before_returning() -> None:
    """The store is closed right after: a scan still iterating it would crash the node
    (it did, on shutdown during the build at 1 M entries)."""
    scanning = threading.Event()
    finished = threading.Event()

    def endless_scan():  # type: ignore[no-untyped-def]
        try:
            i = 0
            while True:
                scanning.set()
                yield digest(i)
                i += 1
        finally:
            finished.set()

    f = IdentityFilter(endless_scan, 10_000_000)
    assert scanning.wait(10)
    f.close()
    assert finished.is_set(), "the scan was still open when close() returned"
    assert f.might_contain([digest(1, "new")]) == [True]  # not built: all go to the store
