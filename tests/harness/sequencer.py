"""A started sequencer in the test process, over a real LevelDB store and a local
coordinator (or a test's subclass of it)."""

from __future__ import annotations

from ledger.coordinator import LocalCoordinator
from ledger.sequencer import Sequencer, SequencerLimits
from ledger.storage import LevelDBStore
from provledger.note import Signer


def start_sequencer(
    store: LevelDBStore,
    coordinator: LocalCoordinator,
    limits: SequencerLimits,
    *,
    origin: str,
    node_id: str = "n1",
    signer: Signer | None = None,
) -> Sequencer:
    """A sequencer that has campaigned and started; the caller stops it."""
    sequencer = Sequencer(
        store,
        coordinator,
        origin=origin,
        node_id=node_id,
        log_signer=signer or Signer.generate(origin),
        limits=limits,
    )
    sequencer.start(coordinator.campaign())
    return sequencer
