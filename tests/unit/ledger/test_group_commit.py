"""ledger.sequencer: a request alone in the node is sealed as soon as it has handed all
its entries over; while other requests are in the node, or this one is still handing
entries over, a block gathers up to its limits (real LevelDB, no gRPC).

The block delay is ten seconds throughout, so a block sealed within three seconds was
sealed by the rule under test, not by its delay."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger._config import NodeConfig
from ledger._node import LedgerNode
from ledger.coordinator import LocalCoordinator
from ledger.sequencer import (
    Admitted,
    Committed,
    Outcome,
    Sequencer,
    SequencerLimits,
    Ticket,
    admitted,
)
from ledger.storage import LevelDBStore
from provledger.errors import UnavailableError
from provledger.events import entry_from_json
from tests.harness.cluster import make_event
from tests.harness.sequencer import start_sequencer

ORIGIN = "group-commit.test/log"
DELAY_S = 10.0
PROMPTLY_S = 3.0  # under a third of the delay: room for a slow fsync
HELD_S = 0.3  # how long a gathering block is watched not being sealed


def event(i: int) -> Admitted:
    return admitted(entry_from_json(make_event("urn:test:group-commit", f"e-{i}"), "tester"))


@pytest.fixture
def sequencer(tmp_path: Path) -> Iterator[Sequencer]:
    store = LevelDBStore(tmp_path / "db")
    seq = start_sequencer(
        store,
        LocalCoordinator(store, "n1", "127.0.0.1:1"),
        SequencerLimits(max_block_entries=1000, max_block_delay=DELAY_S),
        origin=ORIGIN,
    )
    yield seq
    seq.stop()
    store.close()


def heights(ticket: Ticket, timeout: float) -> set[int]:
    outcomes = ticket.wait(timeout)
    assert all(isinstance(o, Committed) for o in outcomes)
    return {o.block.height for o in outcomes if isinstance(o, Committed)}


def still_gathering(ticket: Ticket) -> bool:
    try:
        ticket.wait(HELD_S)
    except UnavailableError:
        return True
    return False


def test_a_request_alone_is_sealed_once_handed_over(sequencer: Sequencer) -> None:
    with sequencer.request() as request:
        ticket = sequencer.submit([event(0), event(1)])
        request.handed_over()
        assert heights(ticket, PROMPTLY_S) == {0}


def test_a_request_still_handing_over_keeps_its_block_open(sequencer: Sequencer) -> None:
    with sequencer.request() as request:
        first = sequencer.submit([event(0)])
        assert still_gathering(first)
        second = sequencer.submit([event(1)])
        request.handed_over()
        assert heights(first, PROMPTLY_S) == heights(second, PROMPTLY_S) == {0}


def test_requests_in_the_node_together_share_a_block(sequencer: Sequencer) -> None:
    with sequencer.request() as waiting_for_its_receipt:
        with sequencer.request() as other:
            ticket = sequencer.submit([event(0)])
            other.handed_over()
            # Another request is in the node: its client may send more meanwhile.
            assert still_gathering(ticket)
            late = sequencer.submit([event(1)])
            waiting_for_its_receipt.handed_over()
            assert still_gathering(ticket)
        # The other request has left: the one remaining has handed everything over.
        assert heights(ticket, PROMPTLY_S) == heights(late, PROMPTLY_S) == {0}


def test_entries_submitted_outside_a_request_are_sealed_at_once(sequencer: Sequencer) -> None:
    assert heights(sequencer.submit([event(0)]), PROMPTLY_S) == {0}


def test_a_lone_append_to_the_node_is_not_held_for_the_block_delay(tmp_path: Path) -> None:
    node = LedgerNode(
        NodeConfig(node_id="n1", data_dir=tmp_path, max_block_delay_ms=DELAY_S * 1000)
    )
    node.start()
    try:
        principal = node.auth.authenticate(None)
        raws = [make_event("urn:test:group-commit", f"n-{i}") for i in range(300)]
        # One event, then one request of two chunks (an admission worker checks the first).
        for batch in (raws[:1], raws[1:]):
            outcomes: list[Outcome] = []
            call = threading.Thread(
                target=lambda b=batch, out=outcomes: out.extend(node.append(b, principal))
            )
            call.start()
            call.join(DELAY_S / 2)  # room for the worker to start, not for the delay
            assert not call.is_alive(), "the append waited for the block delay"
            assert len(outcomes) == len(batch)
            assert all(isinstance(o, Committed) for o in outcomes)
        assert (node.state.height, node.state.tree_size) == (1, 300)  # a block per request
    finally:
        node.close()
