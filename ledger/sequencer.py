"""The leader's write path: admit entries, seal them into signed blocks, commit, acknowledge.

Admission (any request thread) checks `(source, id)` against committed and pending
entries and queues the entry. The sequencer thread seals a block when it holds
`max_block_entries` entries, `max_block_bytes` bytes, or `max_block_delay` after its
first entry, or at once when waiting could gain nothing: when the only request in the
node has handed all its entries over (see `request`). Sealing integrates the block into
the tree and signs header and checkpoint. The committer thread commits each sealed
block, in order, through the coordinator and the store, then resolves the waiting
tickets. Block h+1 is sealed while block h is being written; nothing is acknowledged
before its block is durable, and a block whose predecessor was not committed is refused
with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import logging
import operator
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ledger._identity_filter import IdentityFilter
from ledger.coordinator import CommitRecord, Coordinator
from ledger.storage import BlockRecord, Head, LevelDBStore, NewLeaf, event_digest
from provledger import merkle
from provledger.blocks import GENESIS_PREV_HASH, BlockHeader, sign_header, timestamp_ms
from provledger.errors import ConflictError, LedgerError, StorageError, UnavailableError
from provledger.events import LedgerEntry
from provledger.note import Checkpoint, Signer, sign_checkpoint

__all__ = [
    "Admitted",
    "AdmittedFields",
    "BlockReceipt",
    "Committed",
    "LogState",
    "Outcome",
    "Receipt",
    "Request",
    "Sequencer",
    "SequencerLimits",
    "Ticket",
    "admitted",
    "admitted_fields",
    "extend_tree",
]

log = logging.getLogger(__name__)


class Admitted(NamedTuple):
    """An accepted event as the sequencer takes it, with the two digests it needs, made
    where the event was checked (an admission worker, as often as not) rather than
    under the sequencing process's one GIL."""

    leaf: bytes
    source: str
    id: str
    type: str
    subject: str | None
    leaf_hash: bytes  # merkle.leaf_hash(leaf)
    identity: bytes  # event_digest(source, id)


# An Admitted's fields in NewLeaf's order, as the store takes them: a plain tuple, made
# in C (a fifth of the time a NewLeaf from five attribute reads takes).
_AS_NEW_LEAF = operator.itemgetter(*(Admitted._fields.index(name) for name in NewLeaf._fields))


# An Admitted's fields as a plain tuple, as an admission worker sends them.
AdmittedFields = tuple[bytes, str, str, str, str | None, bytes, bytes]


def admitted(entry: LedgerEntry) -> Admitted:
    return Admitted(*admitted_fields(entry))


def admitted_fields(entry: LedgerEntry) -> AdmittedFields:
    """An `Admitted`'s fields as a plain tuple, as an admission worker sends them."""
    leaf, source, event_id = entry.leaf, entry.source, entry.id
    return (
        leaf,
        source,
        event_id,
        entry.type,
        entry.subject,
        merkle.leaf_hash(leaf),
        event_digest(source, event_id),
    )


@dataclass(frozen=True, slots=True)
class Receipt:
    """One event's receipt. Never mutated once made."""

    index: int
    leaf_hash: bytes
    block_height: int
    tree_size: int
    inclusion: tuple[bytes, ...]
    checkpoint: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class BlockReceipt:
    """What the receipts of every event in one committed block share, made once a block:
    a batch answer carries it once (ledger.proto BlockReceipt) rather than a checkpoint
    and an inclusion path in each of a thousand receipts."""

    height: int
    first_index: int
    tree_size: int
    checkpoint: str
    frontier: tuple[bytes, ...]  # the perfect subtrees of the first `first_index` leaves
    leaf_hashes: list[bytes]
    # Every complete subtree an inclusion proof of one of the block's leaves reads: the
    # frontier and the nodes the block finished (merkle.appended_inclusion_proofs).
    nodes: dict[tuple[int, int], bytes]

    def receipt(self, index: int) -> Receipt:
        proof = merkle.inclusion_proof(index, self.tree_size, self._node)
        return Receipt(
            index,
            self.leaf_hashes[index - self.first_index],
            self.height,
            self.tree_size,
            tuple(proof),
            self.checkpoint,
        )

    def _node(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]


class Committed(NamedTuple):
    """An event committed in `block` at `leaf_index`: its receipt, not yet spelled out."""

    block: BlockReceipt
    leaf_index: int

    def receipt(self) -> Receipt:
        return self.block.receipt(self.leaf_index)


Outcome = Receipt | Committed | LedgerError


@dataclass(frozen=True, slots=True)
class LogState:
    """A consistent snapshot of the committed log, swapped whole after each block."""

    tree_size: int
    root_hash: bytes
    height: int | None
    head_hash: bytes
    term: int
    checkpoint: str  # the note signed by the log key alone: what receipts carry
    frontier: tuple[bytes, ...]
    # C2SP cosignature lines of nodes that verified this state (a follower's own; on the
    # leader, each follower's as it arrives), served after the log's signature.
    cosignatures: tuple[str, ...] = ()

    @property
    def served_checkpoint(self) -> str:
        """The checkpoint note with every cosignature gathered so far."""
        return self.checkpoint + "".join(f"{line}\n" for line in self.cosignatures)


@dataclass(frozen=True, slots=True)
class SequencerLimits:
    max_block_entries: int = 1000
    max_block_bytes: int = 1024 * 1024
    max_block_delay: float = 0.020


class Ticket:
    """The outcomes of one submission, in input order: a receipt or the refusal of each entry.

    One per call rather than one future per entry: a batch of 10,000 events waits on
    one event object, and the sequencer fills positions as blocks commit.
    """

    __slots__ = ("_done", "_lock", "_remaining", "results")

    def __init__(self, count: int) -> None:
        self.results: list[Outcome | None] = [None] * count
        self._remaining = count
        self._lock = threading.Lock()
        self._done = threading.Event()
        if count == 0:
            self._done.set()

    def resolve(self, position: int, outcome: Outcome) -> None:
        self.resolve_many([(position, outcome)])

    def resolve_many(self, outcomes: list[tuple[int, Outcome]]) -> None:
        with self._lock:
            results = self.results
            for position, outcome in outcomes:
                if results[position] is None:
                    results[position] = outcome
                    self._remaining -= 1
            if self._remaining == 0:
                self._done.set()

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        if not self._done.wait(timeout):
            raise UnavailableError("timed out waiting for the block to commit", retry_after=1)
        return [r for r in self.results if r is not None]


@dataclass(slots=True)
class _Pending:
    entry: Admitted
    waiters: list[tuple[Ticket, int]]

    def resolve(self, outcome: Outcome) -> None:
        for ticket, position in self.waiters:
            ticket.resolve(position, outcome)


@dataclass(frozen=True, slots=True)
class SealedBlock:
    """A committed block as the store and the replication layer see it."""

    record: BlockRecord
    leaves: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class _Sealed:
    """A block sealed and signed on top of `base`, on its way to be committed."""

    batch: list[_Pending]
    base: LogState
    block: SealedBlock
    payload: bytes  # what the coordinator stores (empty for the local one)
    nodes: list[tuple[int, int, bytes]]
    state: LogState  # the state it leaves
    receipt: BlockReceipt

    @property
    def record(self) -> BlockRecord:
        return self.block.record


def extend_tree(
    state: LogState, leaf_hashes: list[bytes]
) -> tuple[merkle.CompactRange, dict[tuple[int, int], bytes], list[tuple[int, int, bytes]]]:
    """The tree of `state` with a block's leaf hashes appended: its compact range, every
    node an inclusion proof of a new leaf reads, and the new complete nodes to store."""
    compact, known = merkle.appended_nodes(state.tree_size, state.frontier, leaf_hashes)
    created = itertools.islice(known.items(), len(state.frontier), None)
    return compact, known, [(level, index, h) for (level, index), h in created]


def load_state(store: LevelDBStore, origin: str, log_signer: Signer) -> LogState:
    """The committed state from the store: O(log n) reads, no replay."""
    head = store.head()
    if head is None:
        note = sign_checkpoint(Checkpoint(origin, 0, merkle.EMPTY_ROOT), log_signer)
        return LogState(0, merkle.EMPTY_ROOT, None, GENESIS_PREV_HASH, 0, note, ())
    frontier = tuple(
        store.node(level, index) for level, index in merkle.frontier_positions(head.tree_size)
    )
    root_hash = merkle.CompactRange.from_frontier(head.tree_size, frontier).root()
    note = sign_checkpoint(Checkpoint(origin, head.tree_size, root_hash), log_signer)
    return LogState(
        head.tree_size, root_hash, head.height, head.header_hash, head.term, note, frontier
    )


class Request:
    """One request in the node (`Sequencer.request`)."""

    __slots__ = ("_done", "_sequencer")

    def __init__(self, sequencer: Sequencer) -> None:
        self._sequencer = sequencer
        self._done = False

    def handed_over(self) -> None:
        """All of this request's entries are submitted (later calls do nothing)."""
        if not self._done:
            self._done = True
            self._sequencer._handed_over()


class Sequencer:
    def __init__(
        self,
        store: LevelDBStore,
        coordinator: Coordinator,
        *,
        origin: str,
        node_id: str,
        log_signer: Signer,
        limits: SequencerLimits,
        encode_block: Callable[[SealedBlock], bytes] | None = None,
        on_commit: Callable[[SealedBlock, LogState], None] | None = None,
    ) -> None:
        self._store = store
        self._coordinator = coordinator
        self._origin = origin
        self._node_id = node_id
        self._signer = log_signer
        self._limits = limits
        self._encode_block = encode_block
        self._on_commit = on_commit
        self.state = load_state(store, origin, log_signer)
        self._term = 0
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: deque[_Pending] = deque()
        self._queued_bytes = 0
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._generation = 0  # blocks finished; see submit()
        self._running = False
        self._failed: LedgerError | None = None
        self._threads: list[threading.Thread] = []
        # Blocks sealed but not yet committed, in order; None once sealing has stopped.
        self._sealed: queue.Queue[_Sealed | None] = queue.Queue(maxsize=1)
        self._rewind = False  # a block was not committed: seal the next on `state` again
        self._filter: IdentityFilter | None = None
        self._requests = 0  # requests in the node (see `request`)
        self._arriving = 0  # of which still handing entries over

    # lifecycle

    def start(self, term: int) -> None:
        head = self._store.head()
        self._filter = IdentityFilter(self._store.event_digests, head.tree_size if head else 0)
        self._term = term
        self._running = True
        # Each start has its own hand-over queue: a thread of an earlier start that
        # outlived stop()'s wait can never take a block of this one.
        sealed: queue.Queue[_Sealed | None] = queue.Queue(maxsize=1)
        self._sealed = sealed
        self._threads = [
            threading.Thread(
                target=self._seal_blocks, args=(sealed,), name="sequencer", daemon=True
            ),
            threading.Thread(
                target=self._commit_blocks, args=(sealed,), name="committer", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, reason: str = "the node is shutting down") -> None:
        """Stops sealing; every entry still waiting is answered UNAVAILABLE with `reason`.
        A block already sealed is committed (or refused by the coordinator) first.

        A cluster leader that loses its lease stops this way and may start again later
        with a new term (`start`), after adopting what other leaders committed.
        """
        with self._lock:
            self._running = False
            self._wakeup.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []
        if self._filter is not None:
            self._filter.close()  # a closed filter still answers, from what it has
        self._fail_all(UnavailableError(reason, retry_after=1))

    @property
    def running(self) -> bool:
        return self._running

    @property
    def failed(self) -> LedgerError | None:
        """The storage failure that stopped sequencing for good, if any."""
        return self._failed

    def add_checkpoint_signature(self, tree_size: int, line: str) -> None:
        """Appends a signature line (a follower's C2SP cosignature) to the current
        checkpoint note if the log is still at `tree_size`; only the latest checkpoint
        gathers cosignatures. The caller has verified the line."""
        with self._lock:
            state = self.state
            if state.tree_size == tree_size and line not in state.cosignatures:
                self.state = dataclasses.replace(state, cosignatures=(*state.cosignatures, line))

    def set_state(self, state: LogState) -> None:
        """Adopts a state committed elsewhere (a follower applying a leader's block)."""
        with self._lock:
            self.state = state

    # admission

    @contextlib.contextmanager
    def request(self) -> Iterator[Request]:
        """Brackets one request, from its first event to its last receipt; it calls
        `handed_over()` once it has submitted all its entries.

        While several requests are in the node, a block gathers entries up to its limits,
        as the clients of the others may send more meanwhile. A request alone in the node
        that has handed everything over can be joined by nobody: its entries are sealed
        at once rather than after `max_block_delay`."""
        request = Request(self)
        with self._lock:
            self._requests += 1
            self._arriving += 1
        try:
            yield request
        finally:
            request.handed_over()
            with self._lock:
                self._requests -= 1
                self._wake_if_alone()

    def _handed_over(self) -> None:
        with self._lock:
            self._arriving -= 1
            self._wake_if_alone()

    def _wake_if_alone(self) -> None:
        if self._queue and self._nothing_more_coming():
            self._wakeup.notify()

    def _nothing_more_coming(self) -> bool:
        """No request but one is in the node, and it has handed everything over (under
        `_lock`)."""
        return self._arriving == 0 and self._requests <= 1

    def submit(self, entries: Sequence[Admitted]) -> Ticket:
        """Queues entries under one lock acquisition; an identical retry of a pending or
        committed entry gets that entry's receipt, anything else under its
        `(source, id)` a conflict."""
        # The committed-index lookups run outside the lock; the generation counter
        # tells whether a block was committed meanwhile, in which case they are
        # repeated under the lock (all at once: the filter's cost is per call, not per
        # entry), so an entry can never be queued twice.
        ticket = Ticket(len(entries))
        generation = self._generation
        identities = [e.identity for e in entries]
        indexes = self._committed_indexes(identities)
        committed: list[tuple[int, Admitted, int]] = []
        with self._lock:
            refusal = self._failed
            if refusal is None and not self._running:
                refusal = UnavailableError(
                    "this node is not sequencing (not the leader)", retry_after=1
                )
            if refusal is not None:
                for position in range(len(entries)):
                    ticket.resolve(position, refusal)
                return ticket
            if generation != self._generation:
                indexes = self._committed_indexes(identities)
            queued_before = len(self._queue)
            for position, entry in enumerate(entries):
                key = (entry.source, entry.id)
                pending = self._pending.get(key)
                if pending is not None:
                    if pending.entry.leaf == entry.leaf:
                        pending.waiters.append((ticket, position))
                    else:
                        ticket.resolve(position, _conflict(entry))
                    continue
                index = indexes[position]
                if index is not None:
                    committed.append((position, entry, index))
                    continue
                pending = _Pending(entry, [(ticket, position)])
                self._pending[key] = pending
                self._queue.append(pending)
                self._queued_bytes += len(entry.leaf)
            if (queued_before == 0 and self._queue) or len(
                self._queue
            ) >= self._limits.max_block_entries:
                self._wakeup.notify()
        for position, entry, index in committed:
            if self._store.leaf(index) == entry.leaf:
                ticket.resolve(position, self.receipt_for(index, duplicate=True))
            else:
                ticket.resolve(position, _conflict(entry))
        return ticket

    def _committed_indexes(self, identities: list[bytes]) -> list[int | None]:
        """The index of each identity already committed, None for the rest: the store is
        asked only about those the filter cannot rule out."""
        if self._filter is None:
            maybe = [True] * len(identities)
        else:
            maybe = self._filter.might_contain(identities)
        lookup = self._store.index_of_event_digest
        return [lookup(d) if m else None for d, m in zip(identities, maybe, strict=True)]

    def receipt_for(self, index: int, *, duplicate: bool) -> Receipt:
        state = self.state
        leaf_hash = merkle.leaf_hash(self._store.leaf(index))
        proof = merkle.inclusion_proof(index, state.tree_size, self._store.node)
        return Receipt(
            index=index,
            leaf_hash=leaf_hash,
            block_height=self._store.block_height_of_index(index),
            tree_size=state.tree_size,
            inclusion=tuple(proof),
            checkpoint=state.checkpoint,
            duplicate=duplicate,
        )

    # sequencing

    def _take_batch(self) -> list[_Pending] | None:
        limits = self._limits
        with self._lock:
            while self._running and not self._queue:
                self._wakeup.wait()
            if not self._running:
                return None
            deadline = time.monotonic() + limits.max_block_delay
            while (
                self._running
                and len(self._queue) < limits.max_block_entries
                and self._queued_bytes < limits.max_block_bytes
            ):
                if self._nothing_more_coming():
                    break  # see `request`
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.wait(remaining)
            batch: list[_Pending] = []
            size = 0
            while self._queue and len(batch) < limits.max_block_entries:
                nxt = len(self._queue[0].entry.leaf)
                if batch and size + nxt > limits.max_block_bytes:
                    break
                batch.append(self._queue.popleft())
                size += nxt
            self._queued_bytes -= size
            return batch

    def _seal_blocks(self, handover: queue.Queue[_Sealed | None]) -> None:
        """Seals each batch on the tip left by the block before it, committed or not:
        block h+1 is sealed while block h is still being written."""
        tip = self.state
        while True:
            batch = self._take_batch()
            if batch is None:
                break
            with self._lock:
                if self._rewind:  # a block was refused: extend what is committed
                    self._rewind = False
                    tip = self.state
            try:
                sealed = self._seal(batch, tip)
            except Exception as exc:  # a bug: fail the batch, keep the node alive
                log.exception("sealing a block failed")
                self._finish(batch, UnavailableError(f"internal error while sealing: {exc}"))
                continue
            handover.put(sealed)
            tip = sealed.state
        handover.put(None)

    def _commit_blocks(self, handover: queue.Queue[_Sealed | None]) -> None:
        """Commits the sealed blocks in order and answers their entries. A block whose
        predecessor was not committed is refused with it, and sealing starts again from
        the committed state."""
        while (sealed := handover.get()) is not None:
            if self._failed is not None:
                self._finish(sealed.batch, self._failed)
                continue
            if sealed.base.head_hash != self.state.head_hash:
                self._finish(
                    sealed.batch,
                    UnavailableError(
                        f"block {sealed.record.height} not committed: the block before it "
                        "was not; retry",
                        retry_after=1,
                    ),
                )
                continue
            try:
                receipts = self._commit(sealed)
            except StorageError as exc:
                log.error("storage failed, the node stops sequencing: %s", exc)
                self._finish(sealed.batch, exc)
                with self._lock:
                    self._failed = UnavailableError(f"storage failed: {exc}", retry_after=5)
                    self._running = False
                    self._wakeup.notify_all()
                self._fail_all(self._failed)
                continue
            except LedgerError as exc:
                log.warning("block not committed: %s", exc)
                self._refused(sealed, exc)
                continue
            except Exception as exc:  # a bug: fail the batch, keep the node alive
                log.exception("committing a block failed")
                self._refused(sealed, UnavailableError(f"internal error while committing: {exc}"))
                continue
            self._finish(sealed.batch, receipts)

    def _refused(self, sealed: _Sealed, error: LedgerError) -> None:
        with self._lock:
            self._rewind = True
        self._finish(sealed.batch, error)

    def _seal(self, batch: list[_Pending], state: LogState) -> _Sealed:
        """Block `batch` on top of `state`, signed, with the state it leaves."""
        first = state.tree_size
        height = 0 if state.height is None else state.height + 1
        leaf_hashes = [p.entry.leaf_hash for p in batch]
        compact, known, nodes = extend_tree(state, leaf_hashes)
        tree_size = compact.size
        tree_root = compact.root()
        header = BlockHeader(
            height=height,
            prev_hash=state.head_hash,
            first_index=first,
            count=len(batch),
            entries_root=merkle.root(leaf_hashes),
            tree_size=tree_size,
            tree_root=tree_root,
            timestamp=timestamp_ms(),
            leader=self._node_id,
            term=self._term,
        )
        header_bytes = header.canonical()
        header_hash = hashlib.sha256(header_bytes).digest()
        signature = sign_header(header, self._node_id, self._signer)
        checkpoint = sign_checkpoint(Checkpoint(self._origin, tree_size, tree_root), self._signer)
        record = BlockRecord(
            height=height,
            header=header_bytes,
            header_hash=header_hash,
            signatures=(signature.to_json(),),
            first_index=first,
            count=len(batch),
        )
        block = SealedBlock(record, tuple(p.entry.leaf for p in batch))
        payload = (
            self._encode_block(block)
            if self._encode_block and self._coordinator.needs_payload
            else b""
        )
        new_state = LogState(
            tree_size,
            tree_root,
            height,
            header_hash,
            self._term,
            checkpoint,
            tuple(compact.hashes()),
        )
        receipt = BlockReceipt(
            height, first, tree_size, checkpoint, state.frontier, leaf_hashes, known
        )
        return _Sealed(batch, state, block, payload, nodes, new_state, receipt)

    def _commit(self, sealed: _Sealed) -> list[Committed]:
        record, state, batch = sealed.record, sealed.state, sealed.batch
        self._coordinator.commit(
            CommitRecord(
                record.height,
                record.header_hash,
                sealed.base.head_hash,
                self._term,
                sealed.payload,
                state.tree_size,
            )
        )
        as_new_leaf = _AS_NEW_LEAF
        self._store.apply_block(
            record,
            [as_new_leaf(p.entry) for p in batch],
            sealed.nodes,
            Head(record.height, record.header_hash, state.tree_size, self._term),
        )
        if self._filter is not None:
            self._filter.add([p.entry.identity for p in batch])
        with self._lock:
            self.state = state
        if self._on_commit is not None:
            self._on_commit(sealed.block, state)
        block = sealed.receipt
        return [Committed(block, index) for index in range(block.first_index, block.tree_size)]

    def _finish(self, batch: list[_Pending], outcome: list[Committed] | LedgerError) -> None:
        with self._lock:
            self._generation += 1
            for p in batch:
                self._pending.pop((p.entry.source, p.entry.id), None)
        # One lock acquisition per ticket rather than per entry: a batch request's
        # thousand entries share one ticket.
        by_ticket: dict[Ticket, list[tuple[int, Outcome]]] = {}
        results: Sequence[Committed | LedgerError] = (
            [outcome] * len(batch) if isinstance(outcome, LedgerError) else outcome
        )
        for p, result in zip(batch, results, strict=True):
            for ticket, position in p.waiters:
                found = by_ticket.get(ticket)
                if found is None:
                    by_ticket[ticket] = [(position, result)]
                else:
                    found.append((position, result))
        for ticket, outcomes in by_ticket.items():
            ticket.resolve_many(outcomes)

    def _fail_all(self, error: LedgerError) -> None:
        with self._lock:
            waiting = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            for p in waiting:
                self._pending.pop((p.entry.source, p.entry.id), None)
        for p in waiting:
            p.resolve(error)


def _conflict(entry: Admitted) -> ConflictError:
    return ConflictError(
        f"(source, id) = ({entry.source!r}, {entry.id!r}) is already taken by a different event "
        "or another submitter"
    )
