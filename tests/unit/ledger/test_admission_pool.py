"""ledger._admission.AdmissionPool with real worker processes: each chunk gets its own
answers whatever the interleaving of the threads that send chunks; a worker killed with
chunks outstanding costs those chunks their check in a worker and nothing else; closing
ends the workers."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from ledger._admission import MIN_POOLED, AdmissionPool
from ledger.sequencer import admitted
from provledger.events import canonical_json, entry_from_json


def event(run: str, n: int) -> bytes:
    return canonical_json(
        {
            "specversion": "1.0",
            "id": f"{run}-{n}",
            "source": "urn:test:admission",
            "type": "provledger.training.v1",
            "time": "2026-11-27T10:00:00Z",
            "data": {
                "run_id": f"r-{n}",
                "model": {"name": "m", "version": "1", "digest": {"sha256": "a" * 64}},
                "datasets": [{"name": "d", "digest": {"sha256": "b" * 64}}],
                "code": {"repo": "https://git.example/m.git", "commit": "c" * 40},
            },
        }
    )


def chunk(run: str, size: int = MIN_POOLED) -> list[bytes]:
    return [event(run, n) for n in range(size)]


@pytest.fixture
def pool() -> Iterator[AdmissionPool]:
    made = AdmissionPool(workers=1, max_event_bytes=60_000)
    yield made
    made.close()


def worker_pids(pool: AdmissionPool) -> list[int]:
    return [w.process.pid for w in pool._running if w.process.pid is not None]


def test_each_chunk_gets_its_own_answers_under_concurrent_senders(pool: AdmissionPool) -> None:
    results: dict[str, list[object]] = {}
    chunks = {f"t{t}-c{c}": chunk(f"t{t}-c{c}") for t in range(4) for c in range(12)}
    chunks["t0-c0"][5] = b'{"not": "an event"}'  # the node judges it: None

    def send(thread: int) -> None:
        mine = [name for name in chunks if name.startswith(f"t{thread}-")]
        under_way = [(name, pool.submit(chunks[name], "alice")) for name in mine]
        for name, checking in under_way:
            assert checking is not None
            results[name] = list(pool.results(checking, len(chunks[name])))

    threads = [threading.Thread(target=send, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(worker_pids(pool)) == 1
    for name, raws in chunks.items():
        expected = [
            None if raw.startswith(b'{"not"') else admitted(entry_from_json(raw, "alice"))
            for raw in raws
        ]
        assert results[name] == expected, name


def test_small_chunks_stay_in_the_node(pool: AdmissionPool) -> None:
    assert pool.submit(chunk("small", MIN_POOLED - 1), "alice") is None
    assert worker_pids(pool) == []


def test_a_killed_worker_hands_its_chunks_back_and_is_replaced(pool: AdmissionPool) -> None:
    first = pool.submit(chunk("warm"), "alice")
    assert first is not None and all(pool.results(first, MIN_POOLED))
    (pid,) = worker_pids(pool)
    outstanding = [pool.submit(chunk(f"big-{n}", 2_000), "alice") for n in range(4)]
    os.kill(pid, signal.SIGKILL)
    for checking in outstanding:
        assert checking is not None
        answers = pool.results(checking, 2_000)
        # Answered before the kill, or handed back whole for the node to judge.
        assert all(a is not None for a in answers) or all(a is None for a in answers)
    assert all(a is None for a in pool.results(outstanding[-1], 2_000))
    again = pool.submit(chunk("after"), "alice")
    assert again is not None
    assert [a.id if a else None for a in pool.results(again, MIN_POOLED)] == [
        f"after-{n}" for n in range(MIN_POOLED)
    ]
    assert worker_pids(pool) != [pid]


def test_close_ends_the_workers_and_later_chunks_stay_in_the_node() -> None:
    pool = AdmissionPool(workers=2, max_event_bytes=60_000)
    for n in range(4):
        checking = pool.submit(chunk(f"c{n}"), "alice")
        assert checking is not None
        pool.results(checking, MIN_POOLED)
    processes = [w.process for w in pool._running]
    assert len(processes) == 2
    pool.close()
    assert all(not p.is_alive() for p in processes)
    assert pool.submit(chunk("late"), "alice") is None


def test_a_chunk_the_worker_cannot_check_goes_back_to_the_node_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A limit entry_from_json refuses to work with: every check in the worker raises.
    pool = AdmissionPool(workers=1, max_event_bytes=10**6)
    try:
        for n in range(2):
            checking = pool.submit(chunk(f"bad-{n}"), "alice")
            assert checking is not None
            assert list(pool.results(checking, MIN_POOLED)) == [None] * MIN_POOLED
        assert len(worker_pids(pool)) == 1  # the same worker answered both
        assert "could not check a chunk (ValueError: max_event_bytes" in caplog.text
    finally:
        pool.close()
