"""A cluster member's roles: follower until it wins the lease, then leader until it loses it.

The role loop: as follower, take the leader's pushed blocks (and pull from the etcd
window or peers when pushes stop coming); campaign. On winning, bring the store up to
etcd's `head` (verifying every block), then start the sequencer with the new term and
push each committed block to the followers, storing the signatures they return. On a
lost lease or a fenced commit, stop the sequencer (waiting entries are answered
UNAVAILABLE; clients retry with the same `(source, id)`), release the lease and follow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ledger._etcd import EtcdCoordinator, LeaderInfo, Member
from ledger._peers import Peers
from ledger._push_cache import PushCache
from ledger._replica import Replica, block_message, encode_payload
from ledger.sequencer import LogState, SealedBlock
from provledger.blocks import BlockSignature, verify_header_signature
from provledger.errors import LedgerError, SignatureError, StorageError
from provledger.note import Verifier, verify_cosignature
from provledger.v1 import ledger_pb2 as pb

if TYPE_CHECKING:
    from ledger._node import LedgerNode

__all__ = ["ClusterRole"]

log = logging.getLogger(__name__)

_PUSH_BACKLOG = 64  # a follower further behind pulls (etcd window, peers) instead
_RECENT_BLOCKS = 16  # encoded blocks kept for pushing (up to 1 MiB each)
_PUSH_TIMEOUT_S = 10.0


class ClusterRole:
    def __init__(self, node: LedgerNode, coordinator: EtcdCoordinator) -> None:
        self.node = node
        self.coordinator = coordinator
        self.peers = Peers(node.config.tls)
        self.replica = Replica(
            store=node.store,
            sequencer=node.sequencer,
            coordinator=coordinator,
            origin=node.origin,
            node_id=node.config.node_id,
            log_signer=node.log_signer,
            node_signer=node.node_signer,
        )
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._lost_reason = ""
        self._leading = False
        self._pushers: list[_Pusher] = []
        self._committed = threading.Condition()
        # Recent blocks, encoded once for etcd and every follower's push.
        self._pushable = PushCache(keep=_RECENT_BLOCKS)
        self._signature_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        coordinator.on_lost_leadership(self._on_lost)

    # lifecycle

    def start(self) -> None:
        self.coordinator.start(self.node.node_signer.verifier_key)
        head = self.node.store.head()
        if head is not None:
            self.coordinator.report_applied(head.height)
        for target, name in ((self._run, "role"), (self._follow, "follower-sync")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._lost.set()
        self._stop_pushers()
        # Closing the channels ends any fetch or push in flight, so the threads finish.
        self.peers.close()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def role(self) -> str:
        return "leader" if self._leading and self.node.sequencer.running else "follower"

    def leader(self) -> LeaderInfo | None:
        return self.coordinator.leader_info()

    def members(self) -> list[Member]:
        return self.coordinator.members()

    def _on_lost(self, reason: str) -> None:
        self._lost_reason = reason
        self._lost.set()

    # the role loop

    def _run(self) -> None:
        node_id = self.node.config.node_id
        while not self._stop.is_set():
            self.replica.accept_pushes = True
            self._lost.clear()
            self._lost_reason = ""
            term = self.coordinator.campaign(self._stop)
            if term is None:
                return
            self.replica.accept_pushes = False
            try:
                self._prepare(term)
            except StorageError as exc:
                # A store that differs from the committed log (or cannot be written) must
                # not lead again and again: it keeps serving reads and stops campaigning.
                self.coordinator.resign(f"cannot lead: {exc.detail}")
                log.error("node %s stops campaigning: %s", node_id, exc.detail)
                return
            except LedgerError as exc:
                log.error("won term %d but cannot lead: %s", term, exc.detail)
                self.coordinator.resign(f"cannot catch up: {exc.detail}")
                self._stop.wait(1.0)
                continue
            if self._lost.is_set():
                continue
            log.info(
                "node %s leads term %d from height %s (tree size %d)",
                node_id,
                term,
                self.node.state.height,
                self.node.state.tree_size,
            )
            self._start_pushers()
            while not self._lost.wait(0.5):
                if self._stop.is_set():
                    break
                failed = self.node.sequencer.failed
                if failed is not None:
                    self._lost_reason = f"it cannot write its store: {failed.detail}"
                    break
                self._start_pushers()  # members that joined since
            self._leading = False
            reason = self._lost_reason or "the node is stopping"
            self.node.sequencer.stop(f"node {node_id} no longer leads ({reason}); retry")
            self._stop_pushers()
            self.coordinator.resign(reason)
            if self.node.sequencer.failed is not None:
                log.error("node %s stops campaigning: %s", node_id, reason)
                return
            log.info("node %s follows again (term %d ended: %s)", node_id, term, reason)

    def _prepare(self, term: int) -> None:
        """Catches up to etcd's head, then starts sequencing with `term`."""
        head = self.coordinator.read_head()
        mine = self.node.store.head()
        if head is not None and mine is not None and mine.height > head.height:
            raise StorageError(
                f"this node's store reaches height {mine.height}, beyond etcd's committed "
                f"head {head.height}: etcd's data was lost or rolled back"
            )
        if head is not None:
            self.replica.catch_up(head, self._fetchers())
        elif mine is not None:
            raise StorageError(
                "etcd holds no committed head but this node's store has blocks: etcd's data "
                "was lost or this store belongs to another cluster"
            )
        self.coordinator.begin_term(head)
        self._pushable.clear()
        with self.replica.lock:
            if self._lost.is_set():
                return
            self.node.sequencer.start(term)
            self._leading = True

    def _fetchers(self) -> Iterable[tuple[str, Callable[[int, int], Iterable[pb.Block]]]]:
        me = self.node.config.node_id
        for member in self.coordinator.members(fresh=True):
            if member.node == me:
                continue
            address = member.address

            def fetch(first: int, last: int, address: str = address) -> Iterable[pb.Block]:
                return self.peers.fetch(address, first, last)

            yield member.node, fetch

    def _follow(self) -> None:
        """Pulls blocks when the leader's pushes stop bringing this follower forward.

        Behind the head but still applying pushes is not stalled: on a busy machine the
        pushes lag by a block or two, and pulling the same blocks from etcd as well
        would only add load to etcd and to this node.
        """
        stalled_since: float | None = None
        stalled_at = -1  # the next height wanted when the stall began
        last_read = time.monotonic()
        while not self._stop.is_set():
            self.coordinator.wait_for_change(0.25)
            if self._leading or not self.replica.accept_pushes:
                stalled_since = None
                continue
            if time.monotonic() - last_read > 2.0:
                # The watch tells of every new head; this read covers a stalled watch.
                last_read = time.monotonic()
                try:
                    self.coordinator.read_head()
                except LedgerError as exc:
                    log.debug("cannot read the committed head: %s", exc.detail)
            head = self.coordinator.latest_head()
            if head is None or self.replica.next_height() > head.height:
                stalled_since = None
                continue
            now = time.monotonic()
            wanted = self.replica.next_height()
            if stalled_since is None or wanted != stalled_at:
                stalled_since, stalled_at = now, wanted
                continue
            if now - stalled_since < 0.5:
                continue
            try:
                target = self.coordinator.read_head()
                if target is not None:
                    self.replica.catch_up(target, self._fetchers())
                stalled_since = None
            except StorageError as exc:
                log.error("node %s stops following: %s", self.node.config.node_id, exc.detail)
                return
            except LedgerError as exc:
                log.warning("catching up failed: %s", exc.detail)
                self._stop.wait(1.0)

    # the leader's side of replication

    def encode_block(self, sealed: SealedBlock) -> bytes:
        payload = encode_payload(block_message(sealed.record, sealed.leaves).SerializeToString())
        self._pushable.sealed(sealed.record.height, payload)
        return payload

    def on_commit(self, sealed: SealedBlock, state: LogState) -> None:
        height = sealed.record.height
        self._pushable.committed(height)
        with self._committed:
            self._committed.notify_all()
        self.coordinator.report_applied(height)

    def block_for_push(self, height: int) -> bytes:
        """Block `height` as a push payload: as etcd holds it while cached, else the
        serialized Block (a payload too; not worth compressing for a catch-up push)."""
        cached = self._pushable.get(height)
        if cached is not None:
            return cached
        record = self.node.store.block(height)
        leaves = self.node.store.leaves(record.first_index, record.count)
        return block_message(record, leaves).SerializeToString()

    def wait_for_commit(self, timeout: float) -> None:
        with self._committed:
            self._committed.wait(timeout)

    def add_signature(self, height: int, signature: BlockSignature, verifier: Verifier) -> None:
        """Stores a follower's verified header signature beside the leader's."""
        record = self.node.store.block(height)
        try:
            verify_header_signature(record.header, signature, verifier)
        except SignatureError as exc:
            log.warning("ignoring %s's signature of block %d: %s", verifier.name, height, exc)
            return
        with self._signature_lock:
            record = self.node.store.block(height)
            if any(s.get("node") == signature.node for s in record.signatures):
                return
            self.node.store.put_signatures(
                height, [*record.signatures, signature.to_json()], sync=False
            )

    def add_cosignature(self, height: int, line: str, verifier: Verifier) -> None:
        """Adds a follower's cosignature of block `height`'s checkpoint to the checkpoint
        this node serves, if that is still the latest and the line verifies."""
        state = self.node.state
        if state.height != height:
            return  # a newer block committed meanwhile: its checkpoint gathers its own
        try:
            verify_cosignature(f"{state.checkpoint}{line}\n", verifier)
        except (SignatureError, ValueError) as exc:
            log.warning("ignoring %s's cosignature of block %d: %s", verifier.name, height, exc)
            return
        self.node.sequencer.add_checkpoint_signature(state.tree_size, line)

    def _start_pushers(self) -> None:
        """One pusher per other member; members that left or moved lose theirs."""
        me = self.node.config.node_id
        current = {m for m in self.coordinator.members() if m.node != me}
        for pusher in self._pushers:
            if pusher.member not in current:
                pusher.running = False
        self._pushers = [p for p in self._pushers if p.running]
        have = {p.member for p in self._pushers}
        for member in sorted(current - have, key=lambda m: m.node):
            pusher = _Pusher(self, member)
            pusher.start()
            self._pushers.append(pusher)

    def _stop_pushers(self) -> None:
        pushers, self._pushers = self._pushers, []
        for pusher in pushers:
            pusher.running = False
        with self._committed:
            self._committed.notify_all()
        # Not joined: one may sit in a push to a paused follower for its whole timeout;
        # what it still delivers is a committed block, verified by the follower anyway.


class _Pusher(threading.Thread):
    """Sends each committed block to one follower, in order, and keeps its signatures."""

    def __init__(self, role: ClusterRole, member: Member) -> None:
        super().__init__(name=f"push-{member.node}", daemon=True)
        self.role = role
        self.member = member
        self.running = True
        try:
            self.verifier: Verifier | None = Verifier.from_string(member.verifier_key)
        except ValueError as exc:
            log.warning("member %s has an unusable verifier key: %s", member.node, exc)
            self.verifier = None

    def run(self) -> None:
        role, member = self.role, self.member
        next_height: int | None = None
        failures = 0
        while self.running:
            head = role.node.state.height
            if head is None or (next_height is not None and next_height > head):
                role.wait_for_commit(0.5)
                continue
            if next_height is None or next_height < head - _PUSH_BACKLOG:
                next_height = head  # probe with the newest block; the answer says what it needs
            try:
                block = role.block_for_push(next_height)
                response = role.peers.push(member.address, block, _PUSH_TIMEOUT_S)
            except LedgerError as exc:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.info("push of block %d to %s failed: %s", next_height, member.node, exc)
                next_height = None
                time.sleep(min(0.1 * failures, 1.0))
                continue
            failures = 0
            if response.HasField("signature") and response.signature.node and self.verifier:
                try:
                    signature = BlockSignature(
                        response.signature.node, response.signature.key_id, response.signature.sig
                    )
                    role.add_signature(next_height, signature, self.verifier)
                except (ValueError, LedgerError) as exc:
                    log.warning("bad signature from %s: %s", member.node, exc)
            if response.cosignature and self.verifier:
                role.add_cosignature(next_height, response.cosignature, self.verifier)
            next_height = response.next_height
