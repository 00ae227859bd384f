"""One ledger node: its store, keys, coordinator and sequencer, and every read it serves."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger._admission import AdmissionPool, Checking, default_workers
from ledger._auth import Authenticator, Principal
from ledger._config import NodeConfig
from ledger._keys import load_or_create_signer, load_signer
from ledger.coordinator import Coordinator, LocalCoordinator
from ledger.sequencer import (
    Admitted,
    BlockReceipt,
    LogState,
    Outcome,
    Receipt,
    SealedBlock,
    Sequencer,
    SequencerLimits,
    Ticket,
    admitted,
)
from ledger.storage import BlockRecord, LevelDBStore
from provledger import merkle
from provledger.errors import (
    InvalidRequestError,
    LedgerError,
    NotFoundError,
    StorageError,
)
from provledger.events import LedgerEntry, entry_from_json
from provledger.note import Checkpoint, Signer, sign_checkpoint

if TYPE_CHECKING:
    from ledger._cluster import ClusterRole

__all__ = ["EntryView", "ExportFrontier", "LedgerNode"]


log = logging.getLogger(__name__)

# SPEC §3: an Idempotency-Key is honoured for at least 24 hours; records are deleted
# once twice as old.
IDEMPOTENCY_TTL = 24 * 3600
SWEEP_EVERY_S = 3600.0
TILE_WIDTH = 256
APPEND_CHUNK = 250  # entries handed to the sequencer at once by one request
TILE_HEIGHT = 8


def _record_name(key: str) -> str:
    """An idempotency key (principal and client key, any characters) as an etcd key part."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class EntryView:
    index: int
    leaf_hash: bytes
    leaf: bytes
    block_height: int


@dataclass(frozen=True, slots=True)
class ExportFrontier:
    tree_size: int
    hashes: tuple[bytes, ...]


class LedgerNode:
    def __init__(self, config: NodeConfig, coordinator: Coordinator | None = None) -> None:
        self.config = config
        self.store = LevelDBStore(config.data_dir / "db", compress=config.compress_storage)
        self.origin = self._origin()
        keys = config.data_dir / "keys"
        self.log_signer: Signer = (
            load_signer(config.log_key_file, self.origin)
            if config.log_key_file is not None
            else load_or_create_signer(keys / "log.key", self.origin)
        )
        self.node_signer: Signer = (
            load_signer(config.node_key_file, config.node_id)
            if config.node_key_file is not None
            else load_or_create_signer(keys / "node.key", config.node_id)
        )
        self.auth = Authenticator(config.principals, config.public_reads)
        self.admission = AdmissionPool(
            default_workers() if config.admission_workers is None else config.admission_workers,
            config.max_event_bytes,
        )
        self.cluster: ClusterRole | None = None
        self._closing = threading.Event()
        self._sweeper = threading.Thread(
            target=self._sweep_batches, name="idempotency-sweeper", daemon=True
        )
        if config.clustered and coordinator is None:
            # Imported here: a single node never loads the etcd client.
            from ledger._etcd import EtcdCoordinator, EtcdSettings

            etcd = EtcdCoordinator(
                EtcdSettings.from_mapping(config.coordinator, self.origin, config.tls),
                config.node_id,
                config.advertised,
            )
            self.coordinator: Coordinator = etcd
        else:
            self.coordinator = coordinator or LocalCoordinator(
                self.store, config.node_id, config.advertised
            )
        self.sequencer = Sequencer(
            self.store,
            self.coordinator,
            origin=self.origin,
            node_id=config.node_id,
            log_signer=self.log_signer,
            limits=SequencerLimits(
                config.max_block_entries,
                config.max_block_bytes,
                config.max_block_delay_ms / 1000.0,
            ),
            encode_block=self._encode_block if config.clustered else None,
            on_commit=self._on_commit if config.clustered else None,
        )
        if config.clustered and coordinator is None:
            from ledger._cluster import ClusterRole

            self.cluster = ClusterRole(self, etcd)

    def _encode_block(self, sealed: SealedBlock) -> bytes:
        assert self.cluster is not None
        return self.cluster.encode_block(sealed)

    def _on_commit(self, sealed: SealedBlock, state: LogState) -> None:
        assert self.cluster is not None
        self.cluster.on_commit(sealed, state)

    def _origin(self) -> str:
        stored = self.store.get_meta("origin")
        if stored is not None:
            origin = stored.decode()
            if self.config.origin and self.config.origin != origin:
                raise StorageError(
                    f"{self.config.data_dir} holds log {origin!r}, "
                    f"not the configured origin {self.config.origin!r}"
                )
            return origin
        origin = self.config.origin or f"localhost/provledger/{secrets.token_hex(4)}"
        self.store.put_meta("origin", origin.encode())
        return origin

    def start(self) -> None:
        self._sweeper.start()
        if self.cluster is not None:
            # Follower first; the role loop campaigns and leads when it wins the lease.
            self.cluster.start()
            log.info(
                "node %s joins the cluster of log %s at tree size %d",
                self.config.node_id,
                self.origin,
                self.state.tree_size,
            )
            return
        if not isinstance(self.coordinator, LocalCoordinator):
            raise TypeError("a standalone node needs a LocalCoordinator")
        term = self.coordinator.campaign()
        self.sequencer.start(term)
        log.info(
            "node %s leads log %s at term %d, tree size %d",
            self.config.node_id,
            self.origin,
            term,
            self.state.tree_size,
        )

    def close(self) -> None:
        self._closing.set()
        if self._sweeper.is_alive():
            self._sweeper.join(timeout=10)
        if self.cluster is not None:
            self.cluster.stop()
        self.sequencer.stop()
        self.admission.close()
        self.coordinator.close()
        self.store.close()

    @property
    def state(self) -> LogState:
        return self.sequencer.state

    # writes

    def validate(self, raw: bytes, principal: Principal) -> LedgerEntry:
        """Parses and checks one event for this principal; raises on refusal."""
        self.auth.require_writer(principal)
        entry = entry_from_json(raw, principal.name, max_event_bytes=self.config.max_event_bytes)
        principal.may_write(entry.type)
        return entry

    def append(self, raws: Iterable[bytes], principal: Principal) -> list[Outcome]:
        """Checks each event, queues the valid ones, and waits for their blocks.

        Events are taken in chunks as they arrive: each chunk is checked (by an admission
        worker when it is large enough) and handed to the sequencer in input order, so a
        long client stream is being sealed while the rest of it is still coming in.
        """
        with self.sequencer.request() as request:
            refused, tickets, count = self._hand_over(raws, principal)
            request.handed_over()
            outcomes = iter([outcome for ticket in tickets for outcome in ticket.wait()])
        return [refused[i] if i in refused else next(outcomes) for i in range(count)]

    def _hand_over(
        self, raws: Iterable[bytes], principal: Principal
    ) -> tuple[dict[int, LedgerError], list[Ticket], int]:
        """Checks and queues the events of one request, chunk by chunk: its refusals by
        position, the tickets of what it queued, and its number of events."""
        refused: dict[int, LedgerError] = {}
        tickets: list[Ticket] = []
        checking: deque[tuple[int, list[bytes], Checking | None]]
        checking = deque()

        def settle(wait: bool) -> None:
            """Queues the checked chunks, in order; all of them when `wait`."""
            while checking and (wait or checking[0][2] is None or checking[0][2].future.done()):
                start, chunk, checked = checking.popleft()
                entries: list[Admitted] = []
                accepted = self.admission.results(checked, len(chunk))
                for offset, raw in enumerate(chunk):
                    try:
                        entries.append(self._admitted(accepted[offset], raw, principal))
                    except LedgerError as exc:
                        refused[start + offset] = exc
                if entries:
                    tickets.append(self.sequencer.submit(entries))

        chunk: list[bytes] = []
        count = 0
        for count, raw in enumerate(raws, start=1):
            chunk.append(raw)
            if len(chunk) >= APPEND_CHUNK:
                checking.append(
                    (count - len(chunk), chunk, self.admission.submit(chunk, principal.name))
                )
                chunk = []
                settle(wait=False)
        if chunk:
            checking.append(
                (count - len(chunk), chunk, self.admission.submit(chunk, principal.name))
            )
        settle(wait=True)
        return refused, tickets, count

    def _admitted(self, accepted: Admitted | None, raw: bytes, principal: Principal) -> Admitted:
        """A worker's acceptance, checked against the principal; else the node's own
        judgement of `raw`, which words any refusal."""
        if accepted is None:
            return admitted(self.validate(raw, principal))
        self.auth.require_writer(principal)
        principal.may_write(accepted.type)
        return accepted

    # reads

    def entry(self, index: int) -> EntryView:
        if index >= self.state.tree_size:
            raise NotFoundError(f"no entry at index {index} (tree size {self.state.tree_size})")
        leaf = self.store.leaf(index)
        return EntryView(
            index, merkle.leaf_hash(leaf), leaf, self.store.block_height_of_index(index)
        )

    def lookup(self, source: str, event_id: str) -> EntryView:
        index = self.store.index_of_event(source, event_id)
        if index is None or index >= self.state.tree_size:
            raise NotFoundError(f"no event with source {source!r} and id {event_id!r}")
        return self.entry(index)

    def query(
        self, event_type: str | None, subject: str | None, after: int | None, limit: int
    ) -> tuple[list[EntryView], int | None]:
        if not 1 <= limit <= 1000:
            raise InvalidRequestError("limit: must be between 1 and 1000")
        size = self.state.tree_size
        if after is not None and after >= size - 1:  # nothing after it (and no u64 after it)
            return [], None
        indexes = [i for i in self.store.query(event_type, subject, after, limit + 1) if i < size]
        more = len(indexes) > limit
        page = indexes[:limit]
        return [self.entry(i) for i in page], (page[-1] if more else None)

    def block(self, height: int) -> BlockRecord:
        state = self.state
        if state.height is None or height > state.height:
            raise NotFoundError(f"no block at height {height}")
        return self.store.block(height)

    def block_leaves(self, record: BlockRecord) -> list[bytes]:
        return list(self.store.leaves(record.first_index, record.count))

    def blocks(self, start: int, limit: int) -> list[BlockRecord]:
        if not 1 <= limit <= 1000:
            raise InvalidRequestError("limit: must be between 1 and 1000")
        state = self.state
        if state.height is None:
            return []
        return [self.store.block(h) for h in range(start, min(state.height + 1, start + limit))]

    def checkpoint_at(self, tree_size: int) -> str:
        """The signed checkpoint of an earlier tree size (deterministic: Ed25519, no timestamp)."""
        state = self.state
        if tree_size == state.tree_size:
            return state.checkpoint
        root_hash = self.root_at(tree_size)
        return sign_checkpoint(Checkpoint(self.origin, tree_size, root_hash), self.log_signer)

    def root_at(self, tree_size: int) -> bytes:
        self._check_size(tree_size, "tree_size")
        if tree_size == self.state.tree_size:
            return self.state.root_hash
        return merkle.subtree_root(0, tree_size, self.store.node)

    def _check_size(self, tree_size: int, name: str) -> None:
        current = self.state.tree_size
        if tree_size > current:
            raise InvalidRequestError(f"{name}: {tree_size} is beyond the log's size {current}")

    def inclusion(
        self, index: int | None, leaf_hash: bytes | None, tree_size: int | None
    ) -> tuple[int, int, bytes, list[bytes], str]:
        """(index, tree_size, leaf_hash, proof, checkpoint if tree_size was not given)."""
        state = self.state
        size = state.tree_size if tree_size is None else tree_size
        self._check_size(size, "tree_size")
        if index is None:
            if leaf_hash is None:
                raise InvalidRequestError("index or leaf_hash: one is required")
            index = self.store.index_of_leaf_hash(leaf_hash)
            if index is None or index >= state.tree_size:
                raise NotFoundError(f"no entry with leaf hash {leaf_hash.hex()}")
        if index >= size:
            if index >= state.tree_size:
                raise NotFoundError(f"no entry at index {index} (tree size {state.tree_size})")
            raise InvalidRequestError(f"index {index} is not in a tree of size {size}")
        proof = merkle.inclusion_proof(index, size, self.store.node)
        found = self.store.node(0, index)  # the stored leaf hash
        checkpoint = state.served_checkpoint if tree_size is None else ""
        return index, size, found, proof, checkpoint

    def consistency(self, first: int, second: int) -> list[bytes]:
        if first > second:
            raise InvalidRequestError(f"first: {first} is larger than second ({second})")
        self._check_size(second, "second")
        return merkle.consistency_proof(first, second, self.store.node)

    def tile(self, level: int, index: int, width: int, entries: bool) -> bytes:
        """A C2SP tlog-tiles hash tile or entry bundle of `width` (1..256) items."""
        if not 1 <= width <= TILE_WIDTH:
            raise InvalidRequestError("width: must be between 1 and 256")
        size = self.state.tree_size
        first = index * TILE_WIDTH
        if entries:
            if first + width > size:
                raise NotFoundError(
                    f"entry bundle {index} of width {width} is beyond tree size {size}"
                )
            out = bytearray()
            for leaf in self.store.leaves(first, width):
                out += len(leaf).to_bytes(2, "big") + leaf
            return bytes(out)
        if level > 7:
            raise NotFoundError(f"no tiles at level {level}")
        tree_level = level * TILE_HEIGHT
        available = size >> tree_level
        if first + width > available:
            raise NotFoundError(f"tile {level}/{index} of width {width} is beyond tree size {size}")
        return b"".join(self.store.nodes(tree_level, first, width))

    def export(
        self, start: int, end: int | None
    ) -> Iterator[ExportFrontier | tuple[BlockRecord, list[bytes]] | str]:
        """Frontier (when start > 0), then each block with its leaves, then the checkpoint."""
        state = self.state
        if state.height is None:
            if start > 0 or (end is not None and end > 0):
                raise NotFoundError("the log has no blocks yet")
            yield state.checkpoint
            return
        last = state.height if end is None else end
        if start > last or last > state.height:
            raise InvalidRequestError(
                f"from/to: blocks {start} to {last} are not within heights 0 to {state.height}"
            )
        first_block = self.store.block(start)
        if start > 0:
            size = first_block.first_index
            hashes = tuple(
                self.store.node(level, i) for level, i in merkle.frontier_positions(size)
            )
            yield ExportFrontier(size, hashes)
        tree_size = 0
        for height in range(start, last + 1):
            record = first_block if height == start else self.store.block(height)
            tree_size = record.first_index + record.count
            yield record, self.block_leaves(record)
        yield self.checkpoint_at(tree_size)

    def status(self) -> dict[str, Any]:
        state = self.state
        term = state.term
        if self.cluster is not None:
            role = self.cluster.role
            info = self.cluster.leader()
            leader = (info.node, info.address) if info is not None else None
            if info is not None:
                term = max(term, info.term)
        else:
            role = "leader" if self.coordinator.is_leader() else "follower"
            leader = self.coordinator.leader()
        return {
            "node": self.config.node_id,
            "role": role,
            "leader": leader[0] if leader else "",
            "leader_address": leader[1] if leader else "",
            "term": term,
            "height": state.height,
            "head_hash": state.head_hash,
            "tree_size": state.tree_size,
            "pid": os.getpid(),
        }

    def node_keys(self) -> list[tuple[str, str]]:
        """Every member's node verifier key (this node's alone when standalone)."""
        mine = (self.config.node_id, self.node_signer.verifier_key)
        if self.cluster is None:
            return [mine]
        keys = {m.node: m.verifier_key for m in self.cluster.members()}
        keys[mine[0]] = mine[1]
        return sorted(keys.items())

    def idempotent_batch(self, key: str) -> dict[str, Any] | None:
        """The record of a batch appended under `key` within the last IDEMPOTENCY_TTL, by
        this node or (in a cluster) by an earlier leader."""
        raw = self.store.idempotency(key)
        if raw is None:
            raw = self.coordinator.shared_record(_record_name(key))
            if raw is None:
                return None
            self.store.put_idempotency(key, raw)
        record = dict(json.loads(raw))
        if time.time() - float(record["created"]) >= IDEMPOTENCY_TTL:
            return None
        return record

    def remember_batch(self, key: str, record: dict[str, Any]) -> None:
        raw = json.dumps(record, separators=(",", ":")).encode()
        self.store.put_idempotency(key, raw)
        try:
            self.coordinator.share_record(_record_name(key), raw, 2 * IDEMPOTENCY_TTL)
        except LedgerError as exc:  # the events are committed: answer, and say what is lost
            log.warning("a batch's idempotency record stays on this node only: %s", exc)

    def forget_expired_batches(self, now: float | None = None) -> int:
        """Deletes idempotency records past twice their TTL; how many went."""
        cutoff = (time.time() if now is None else now) - 2 * IDEMPOTENCY_TTL
        expired = []
        for key, raw in self.store.idempotency_records():
            try:
                created = float(json.loads(raw)["created"])
            except (ValueError, KeyError, TypeError):
                created = 0.0  # unreadable: nothing can be replayed from it
            if created < cutoff:
                expired.append(key)
        if expired:
            self.store.delete_idempotency(expired)
        return len(expired)

    def _sweep_batches(self) -> None:
        """Deletes expired idempotency records at start and then every hour."""
        while not self._closing.is_set():
            try:
                gone = self.forget_expired_batches()
            except LedgerError as exc:
                log.warning("sweeping idempotency records failed: %s", exc)
            else:
                if gone:
                    log.info("deleted %d expired idempotency records", gone)
            self._closing.wait(SWEEP_EVERY_S)

    def block_receipt(self, tree_size: int) -> BlockReceipt:
        """The shared receipt of the block that ends at `tree_size`, as it was issued (its
        checkpoint note has no timestamp and Ed25519 is deterministic: the same bytes)."""
        self._check_size(tree_size, "tree_size")
        if tree_size == 0:
            raise StorageError("idempotency record: no block ends at tree size 0")
        record = self.store.block(self.store.block_height_of_index(tree_size - 1))
        first = record.first_index
        if first + record.count != tree_size:
            raise StorageError(f"idempotency record: no block ends at tree size {tree_size}")
        frontier = tuple(self.store.node(*at) for at in merkle.frontier_positions(first))
        leaf_hashes = self.store.nodes(0, first, record.count)
        compact, nodes = merkle.appended_nodes(first, frontier, leaf_hashes)
        note = sign_checkpoint(Checkpoint(self.origin, tree_size, compact.root()), self.log_signer)
        return BlockReceipt(record.height, first, tree_size, note, frontier, leaf_hashes, nodes)

    def receipts_at(self, items: Sequence[tuple[int, int, bool]]) -> list[Receipt]:
        """Receipts of committed entries `(index, tree_size, duplicate)` as they were
        issued: proofs at those tree sizes and the log's checkpoint note at each (Ed25519
        is deterministic and the note has no timestamp, so these are the same bytes)."""
        positions: dict[int, list[int]] = {}
        for position, (index, size, _) in enumerate(items):
            self._check_size(size, "tree_size")
            if not 0 <= index < size:
                raise StorageError(f"idempotency record: index {index} beyond tree size {size}")
            positions.setdefault(size, []).append(position)
        out: list[Receipt | None] = [None] * len(items)
        block: BlockRecord | None = None
        for size, group in positions.items():
            note = sign_checkpoint(
                Checkpoint(self.origin, size, self.root_at(size)), self.log_signer
            )
            indexes = [items[p][0] for p in group]
            proofs = merkle.inclusion_proofs(indexes, size, self.store.node)
            for position, index, proof in zip(group, indexes, proofs, strict=True):
                if (
                    block is None
                    or not block.first_index <= index < block.first_index + block.count
                ):
                    block = self.store.block(self.store.block_height_of_index(index))
                out[position] = Receipt(
                    index,
                    self.store.node(0, index),
                    block.height,
                    size,
                    tuple(proof),
                    note,
                    items[position][2],
                )
        return [r for r in out if r is not None]
