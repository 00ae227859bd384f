"""ledger.sequencer: block h+1 is sealed while block h is committed; when h is refused,
h+1 (which extends it) is refused with it, nothing of either is stored, and the next
block extends what is committed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from ledger.coordinator import CommitRecord, FencedError, LocalCoordinator
from ledger.sequencer import Admitted, Committed, Sequencer, SequencerLimits, admitted
from ledger.storage import BlockRecord, LevelDBStore
from provledger import merkle
from provledger.blocks import BlockHeader
from provledger.errors import LedgerError, StorageError, UnavailableError
from provledger.events import entry_from_json
from tests.harness.cluster import make_event
from tests.harness.procs import wait_until
from tests.harness.sequencer import start_sequencer

ORIGIN = "pipeline.test/log"


def event(i: int) -> Admitted:
    return admitted(entry_from_json(make_event("urn:test:pipeline", f"e-{i}"), "tester"))


class HeldCoordinator(LocalCoordinator):
    """The local coordinator, but the first commit of a chosen height waits for
    `release`, then is refused (or, with `refuse=False`, goes ahead)."""

    def __init__(self, store: LevelDBStore, held: int, refuse: bool) -> None:
        super().__init__(store, "n1", "127.0.0.1:1")
        self.held = held
        self.refuse = refuse
        self.entered = threading.Event()
        self.release = threading.Event()
        self.heights: list[int] = []

    def commit(self, record: CommitRecord) -> None:
        self.heights.append(record.height)
        if record.height == self.held and not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)
            if self.refuse:
                raise FencedError(f"block {record.height}: refused by the test")
        super().commit(record)


class FailingStore(LevelDBStore):
    """A store whose disk fails when block 1 is written."""

    def apply_block(self, block: BlockRecord, *args: Any, **kwargs: Any) -> None:
        if block.height == 1:
            raise StorageError("cannot write block 1: disk full (the test)")
        super().apply_block(block, *args, **kwargs)


def sequencer(
    tmp_path: Path,
    coordinator_held: int,
    *,
    refuse: bool = True,
    store_type: type[LevelDBStore] = LevelDBStore,
) -> tuple[Sequencer, HeldCoordinator]:
    store = store_type(tmp_path / "db")
    coordinator = HeldCoordinator(store, coordinator_held, refuse)
    limits = SequencerLimits(max_block_entries=2, max_block_delay=0.001)
    return start_sequencer(store, coordinator, limits, origin=ORIGIN), coordinator


def test_a_refused_block_takes_the_block_sealed_on_it_along(tmp_path: Path) -> None:
    seq, coordinator = sequencer(tmp_path, coordinator_held=1)
    try:
        first = seq.submit([event(0), event(1)]).wait(10)
        assert all(isinstance(o, Committed) for o in first)
        refused = seq.submit([event(2), event(3)])  # block 1, held in the coordinator
        assert coordinator.entered.wait(10)
        sealed_on_it = seq.submit([event(4), event(5)])  # block 2, sealed on block 1
        # Block 2 is sealed and waits behind block 1 for the committer.
        wait_until(seq._sealed.full, 10, "block 2 sealed while block 1 commits")
        coordinator.release.set()

        outcomes = refused.wait(10)
        assert all(isinstance(o, FencedError) for o in outcomes)
        after = sealed_on_it.wait(10)
        assert all(isinstance(o, UnavailableError) for o in after)
        assert "block 2 not committed: the block before it was not" in str(after[0])
        # Nothing of either block is in the log; the next block is height 1 again and
        # extends block 0.
        assert seq.state.tree_size == 2 and seq.state.height == 0
        retried = seq.submit([event(2), event(3)]).wait(10)
        assert all(isinstance(o, Committed) for o in retried)
        assert seq.state.height == 1 and seq.state.tree_size == 4
        store = seq._store
        header = BlockHeader.from_bytes(store.block(1).header)
        assert header.prev_hash == store.block(0).header_hash
        assert coordinator.heights == [0, 1, 1]  # block 2 never reached the coordinator
        leaf_hashes = [merkle.leaf_hash(store.leaf(i)) for i in range(4)]
        assert seq.state.root_hash == merkle.root(leaf_hashes)
    finally:
        coordinator.release.set()
        seq.stop()
        seq._store.close()


def test_a_storage_failure_stops_sequencing_and_answers_every_entry(tmp_path: Path) -> None:
    seq, coordinator = sequencer(
        tmp_path, coordinator_held=1, refuse=False, store_type=FailingStore
    )
    try:
        assert all(isinstance(o, Committed) for o in seq.submit([event(0), event(1)]).wait(10))
        failing = seq.submit([event(2), event(3)])  # block 1, held, then its write fails
        assert coordinator.entered.wait(10)
        behind = seq.submit([event(4), event(5)])  # block 2, sealed on block 1
        wait_until(seq._sealed.full, 10, "block 2 sealed while block 1 commits")
        coordinator.release.set()

        assert all(isinstance(o, StorageError) for o in failing.wait(10))
        for outcome in behind.wait(10):
            assert isinstance(outcome, UnavailableError)
            assert "storage failed: cannot write block 1: disk full" in str(outcome)
        assert seq.failed is not None and not seq.running
        for outcome in seq.submit([event(6), event(7)]).wait(10):
            assert isinstance(outcome, UnavailableError) and "storage failed" in str(outcome)
        assert seq.state.height == 0 and seq.state.tree_size == 2
        assert coordinator.heights == [0, 1]  # block 2 never reached the coordinator
    finally:
        coordinator.release.set()
        seq.stop()
        seq._store.close()


def test_stop_commits_what_was_sealed_and_refuses_what_waits(tmp_path: Path) -> None:
    seq, _ = sequencer(tmp_path, coordinator_held=-1)
    try:
        tickets = [seq.submit([event(2 * i), event(2 * i + 1)]) for i in range(50)]
        seq.stop("stopping for the test")
        answered = [o for t in tickets for o in t.wait(10)]
        committed = [o for o in answered if isinstance(o, Committed)]
        refused = [o for o in answered if isinstance(o, LedgerError)]
        assert len(committed) + len(refused) == 100
        assert all("stopping for the test" in str(e) for e in refused)
        assert seq.state.tree_size == len(committed)
        assert sorted(c.leaf_index for c in committed) == list(range(len(committed)))
    finally:
        seq._store.close()


@pytest.mark.parametrize("blocks", [1, 7])
def test_blocks_commit_in_order_with_one_chain(tmp_path: Path, blocks: int) -> None:
    seq, _ = sequencer(tmp_path, coordinator_held=-1)
    try:
        tickets = [seq.submit([event(2 * i), event(2 * i + 1)]) for i in range(blocks)]
        for t in tickets:
            assert all(isinstance(o, Committed) for o in t.wait(10))
        store = seq._store
        prev = None
        for height in range(seq.state.height + 1):
            record = store.block(height)
            header = BlockHeader.from_bytes(record.header)
            if prev is not None:
                assert header.prev_hash == prev
            prev = record.header_hash
        assert prev == seq.state.head_hash
    finally:
        seq.stop()
        seq._store.close()
