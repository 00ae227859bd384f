"""ledger.sequencer.submit: an entry is never queued twice, even when a block commits
between its lookup (outside the sequencer's lock) and its queueing (under it)."""

from __future__ import annotations

from pathlib import Path

from ledger.coordinator import LocalCoordinator
from ledger.sequencer import Admitted, Committed, Receipt, SequencerLimits, admitted
from ledger.storage import LevelDBStore
from provledger.events import entry_from_json
from tests.harness.cluster import make_event
from tests.harness.sequencer import start_sequencer


def event(i: int) -> Admitted:
    return admitted(entry_from_json(make_event("urn:test:submit", f"e-{i}"), "tester"))


def test_entries_committed_after_their_lookup_are_answered_as_retries(tmp_path: Path) -> None:
    store = LevelDBStore(tmp_path / "db")
    coordinator = LocalCoordinator(store, "n1", "127.0.0.1:1")
    limits = SequencerLimits(max_block_entries=10, max_block_delay=0.001)
    seq = start_sequencer(store, coordinator, limits, origin="submit.test/log")
    try:
        first = seq.submit([event(0), event(1), event(2)]).wait(10)
        assert all(isinstance(o, Committed) for o in first)

        # The lookup outside the lock misses them all, as it would have just before
        # their block committed; the block's commit moves the generation on.
        lookups: list[int] = []
        real_lookup = seq._committed_indexes

        def stale_then_real(identities: list[bytes]) -> list[int | None]:
            lookups.append(len(identities))
            if len(lookups) == 1:
                seq._generation += 1  # a block finished meanwhile
                return [None] * len(identities)
            return real_lookup(identities)

        seq._committed_indexes = stale_then_real  # type: ignore[method-assign]
        outcomes = seq.submit([event(0), event(5), event(2)]).wait(10)

        assert lookups == [3, 3]  # looked up again, all at once, under the lock
        retried = [outcomes[0], outcomes[2]]
        assert all(isinstance(o, Receipt) and o.duplicate for o in retried)
        assert [o.index for o in retried if isinstance(o, Receipt)] == [0, 2]
        assert isinstance(outcomes[1], Committed) and outcomes[1].leaf_index == 3
        assert seq.state.tree_size == 4  # nothing queued twice
    finally:
        seq.stop()
        store.close()
