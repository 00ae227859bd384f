"""A cluster member's copy of the log: verify a block against the local head, apply, sign.

Every block a node applies without sealing it itself (pushed by the leader, read from the
etcd window, fetched from a peer) passes `verify_block`: the height follows the local
head, `prev_hash` is the local head's hash, the term is not older, the first signature
is the leader's under the LOG key, the entries root, tree size and tree root recompute
from the leaves and the locally stored frontier. A pushed block must also be the one
etcd committed at that height. A refused block is logged with its height, hash, sender
and reason, and nothing of it is stored.

Blocks below the etcd window (already collected) can no longer be compared with etcd;
they are accepted from a peer on the log key's signature and the hash chain, which must
then join the window's first block.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import zstandard
from google.protobuf.message import DecodeError

from ledger.sequencer import LogState, Sequencer, extend_tree
from ledger.storage import BlockRecord, Head, LevelDBStore, NewLeaf, event_digest
from provledger import merkle
from provledger.blocks import BlockHeader, BlockSignature, sign_header, verify_header_signature
from provledger.errors import (
    LedgerError,
    SignatureError,
    StorageError,
    UnavailableError,
    VerificationError,
)
from provledger.events import leaf_identity
from provledger.note import Checkpoint, Signer, Verifier, cosign_checkpoint, sign_checkpoint
from provledger.v1 import ledger_pb2 as pb

if TYPE_CHECKING:
    from ledger._etcd import CommittedHead, EtcdCoordinator

__all__ = [
    "BlockRefusedError",
    "PushOutcome",
    "Replica",
    "VerifiedBlock",
    "block_message",
    "decode_block",
    "encode_payload",
    "verify_block",
]

log = logging.getLogger(__name__)


class BlockRefusedError(VerificationError):
    """A block that does not extend this node's log as the committed, signed next block."""

    title = "Block refused"


@dataclass(frozen=True, slots=True)
class VerifiedBlock:
    header: BlockHeader
    record: BlockRecord  # with the leader's signature only
    leaves: tuple[NewLeaf, ...]
    nodes: tuple[tuple[int, int, bytes], ...]
    frontier: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PushOutcome:
    next_height: int
    signature: BlockSignature | None = None
    cosignature: str = ""


def block_message(record: BlockRecord, leaves: Iterable[bytes]) -> pb.Block:
    return pb.Block(
        header=record.header,
        hash=record.header_hash,
        signatures=[pb.BlockSignature(**s) for s in record.signatures],
        leaves=list(leaves),
        first_index=record.first_index,
        count=record.count,
    )


# The etcd window's payload: transport only, never hashed or signed. Every etcd member
# writes, replicates and stores each payload: raw, blocks cost the three members more CPU
# than the follower nodes (bench/bench_cluster.py). zstd's fastest level takes the bench's
# 1,000 events (a 700 KB Block) to 28 KB in 0.4 ms, and back in 0.1; zlib's fastest, which
# leaders used before, to 50 KB in 3 ms, and back in 1.6.
_ZLIB_PAYLOAD = b"\x01"  # then zlib(serialized pb.Block): an earlier leader's
_ZSTD_PAYLOAD = b"\x02"  # then one zstd frame that states its size; a serialized Block starts 0x0a
_MAX_BLOCK_BYTES = 512 * 1024 * 1024


def encode_payload(serialized_block: bytes) -> bytes:
    # A compressor costs 4 µs to make; one a call is simpler than sharing one between
    # threads, which zstandard's compressors do not allow.
    return _ZSTD_PAYLOAD + zstandard.ZstdCompressor(level=1).compress(serialized_block)


def decode_block(payload: bytes) -> pb.Block:
    """A block from its etcd payload (compressed, or a plain Block of an earlier leader)."""
    marker = payload[:1]
    if marker == _ZSTD_PAYLOAD:
        payload = _unzstd(payload[1:])
    elif marker == _ZLIB_PAYLOAD:
        payload = _unzlib(payload[1:])
    try:
        return pb.Block.FromString(payload)
    except DecodeError as exc:
        raise BlockRefusedError(f"block payload is not a block: {exc}") from None


def _unzstd(frame: bytes) -> bytes:
    try:
        size = zstandard.frame_content_size(frame)
        if size < 0:
            raise BlockRefusedError("block payload does not state its decompressed size")
        if size > _MAX_BLOCK_BYTES:
            raise BlockRefusedError(f"block payload inflates beyond {_MAX_BLOCK_BYTES} bytes")
        return zstandard.ZstdDecompressor().decompress(frame, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise BlockRefusedError(f"block payload does not decompress: {exc}") from None


def _unzlib(stream: bytes) -> bytes:
    inflate = zlib.decompressobj()
    try:
        inflated = inflate.decompress(stream, _MAX_BLOCK_BYTES)
    except zlib.error as exc:
        raise BlockRefusedError(f"block payload does not decompress: {exc}") from None
    if inflate.unconsumed_tail:
        raise BlockRefusedError(f"block payload inflates beyond {_MAX_BLOCK_BYTES} bytes")
    return inflated


def _entry_fields(leaf: bytes, position: int) -> NewLeaf:
    # The indexes need source, id, type and subject. A full SPEC §1 re-validation of
    # every leaf (`parse_leaf`) costs five times a JSON parse; the leader validated each
    # event and its leaf hashes are bound into the signed roots checked here.
    try:
        source, event_id, event_type, subject = leaf_identity(leaf)
    except ValueError as exc:
        raise BlockRefusedError(f"leaf {position} is not a ledger entry: {exc}") from None
    return NewLeaf(
        leaf, merkle.leaf_hash(leaf), event_digest(source, event_id), event_type, subject
    )


def verify_block(block: pb.Block, state: LogState, log_verifier: Verifier) -> VerifiedBlock:
    """Checks that `block` is a correctly signed and computed successor of `state`."""
    header_bytes = bytes(block.header)
    try:
        header = BlockHeader.from_bytes(header_bytes)
    except ValueError as exc:
        raise BlockRefusedError(f"malformed header: {exc}") from None
    header_hash = hashlib.sha256(header_bytes).digest()
    h = header.height
    if block.hash and bytes(block.hash) != header_hash:
        raise BlockRefusedError(f"block {h}: the stated hash is not the header's SHA-256")
    expected = 0 if state.height is None else state.height + 1
    if h != expected:
        raise BlockRefusedError(f"block {h}: expected height {expected}")
    if header.prev_hash != state.head_hash:
        raise BlockRefusedError(
            f"block {h}: prev_hash {header.prev_hash.hex()[:16]}… does not match the head "
            f"{state.head_hash.hex()[:16]}… of height {state.height}"
        )
    if header.term < state.term:
        raise BlockRefusedError(f"block {h}: term {header.term} is older than {state.term}")
    if header.first_index != state.tree_size:
        raise BlockRefusedError(
            f"block {h}: first_index {header.first_index} is not the tree size {state.tree_size}"
        )
    if header.count != len(block.leaves) or header.count == 0:
        raise BlockRefusedError(
            f"block {h}: header counts {header.count} entries, the block carries {len(block.leaves)}"
        )
    if not block.signatures:
        raise BlockRefusedError(f"block {h}: no leader signature")
    first = block.signatures[0]
    try:
        signature = BlockSignature(first.node, first.key_id, first.sig)
    except ValueError as exc:
        raise BlockRefusedError(f"block {h}: malformed leader signature: {exc}") from None
    if signature.node != header.leader:
        raise BlockRefusedError(
            f"block {h}: first signature is by {signature.node!r}, the header names leader "
            f"{header.leader!r}"
        )
    try:
        verify_header_signature(header_bytes, signature, log_verifier)
    except SignatureError as exc:
        raise BlockRefusedError(
            f"block {h}: the leader signature does not verify under the log key: {exc.detail}"
        ) from None
    leaves = tuple(_entry_fields(bytes(leaf), i) for i, leaf in enumerate(block.leaves))
    leaf_hashes = [new.leaf_hash for new in leaves]
    tree, _, nodes = extend_tree(state, leaf_hashes)
    if merkle.root(leaf_hashes) != header.entries_root:
        raise BlockRefusedError(f"block {h}: entries_root does not recompute from the leaves")
    if tree.size != header.tree_size:
        raise BlockRefusedError(f"block {h}: tree_size {header.tree_size}, recomputed {tree.size}")
    if tree.root() != header.tree_root:
        raise BlockRefusedError(f"block {h}: tree_root does not recompute from the leaves")
    record = BlockRecord(
        height=h,
        header=header_bytes,
        header_hash=header_hash,
        signatures=(signature.to_json(),),
        first_index=header.first_index,
        count=header.count,
    )
    return VerifiedBlock(header, record, leaves, tuple(nodes), tuple(tree.hashes()))


class Replica:
    """Applies verified blocks to this node's store while it does not sequence."""

    def __init__(
        self,
        *,
        store: LevelDBStore,
        sequencer: Sequencer,
        coordinator: EtcdCoordinator,
        origin: str,
        node_id: str,
        log_signer: Signer,
        node_signer: Signer,
    ) -> None:
        self._store = store
        self._sequencer = sequencer
        self._coordinator = coordinator
        self._origin = origin
        self._node_id = node_id
        self._log_signer = log_signer
        self._log_verifier = log_signer.verifier
        self._node_signer = node_signer
        self.lock = threading.Lock()
        self.accept_pushes = False
        self._verifiers: dict[str, Verifier] = {}

    def next_height(self) -> int:
        height = self._sequencer.state.height
        return 0 if height is None else height + 1

    def offer(self, block: pb.Block, *, sender: str, confirm: bool) -> PushOutcome:
        """Verifies and applies `block` if it is the next one; see the module docstring.

        `confirm`: compare it with what etcd committed (pushes). Blocks read from the
        etcd window are committed by construction; blocks from peers below the window
        cannot be compared any more.
        """
        with self.lock:
            if self._sequencer.running:
                raise UnavailableError("this node leads; it takes no blocks from others")
            state = self._sequencer.state
            expected = 0 if state.height is None else state.height + 1
            try:
                height = BlockHeader.from_bytes(bytes(block.header)).height
            except ValueError as exc:
                self._refused(block, sender, f"malformed header: {exc}")
                raise BlockRefusedError(f"malformed header: {exc}") from None
            if height < expected:
                return self._already_held(block, height, sender, expected)
            if height > expected:
                return PushOutcome(expected)  # a gap: the sender resends from `expected`
            try:
                verified = verify_block(block, state, self._log_verifier)
                self._check_leader_member(verified.header)
                if confirm:
                    self._confirm_committed(verified)
            except BlockRefusedError as exc:
                self._refused(block, sender, exc.detail)
                raise
            return self._apply(verified, self._other_signatures(block, verified))

    def _refused(self, block: pb.Block, sender: str, reason: str) -> None:
        digest = hashlib.sha256(bytes(block.header)).hexdigest()
        log.warning("refused block (hash %s) from %s: %s", digest, sender, reason)

    def _already_held(
        self, block: pb.Block, height: int, sender: str, expected: int
    ) -> PushOutcome:
        held = self._store.block(height)
        if held.header_hash != hashlib.sha256(bytes(block.header)).digest():
            reason = (
                f"block {height} conflicts with the block this node holds at that height "
                f"({held.header_hash.hex()[:16]}…)"
            )
            self._refused(block, sender, reason)
            raise BlockRefusedError(reason)
        mine = next((s for s in held.signatures if s.get("node") == self._node_id), None)
        signature = BlockSignature.from_json(mine) if mine is not None else None
        return PushOutcome(expected, signature)

    def _check_leader_member(self, header: BlockHeader) -> None:
        for fresh in (False, True):
            if any(m.node == header.leader for m in self._coordinator.members(fresh)):
                return
        raise BlockRefusedError(
            f"block {header.height}: leader {header.leader!r} is not a member of the cluster"
        )

    def _confirm_committed(self, verified: VerifiedBlock) -> None:
        height, block_hash = verified.record.height, verified.record.header_hash
        coordinator = self._coordinator
        # The leader pushes right after its commit; the watch has usually seen it already.
        coordinator.wait_for_head(height, 1.0)
        seen = coordinator.seen_hash(height)
        if seen is None:
            head = coordinator.read_head()
            if head is None or head.height < height:
                raise BlockRefusedError(
                    f"block {height}: etcd has committed no block at height {height}"
                )
            if head.height == height:
                seen = head.block_hash
            else:
                payload = coordinator.committed_block(height)
                if payload is None:
                    raise UnavailableError(
                        f"block {height} left the etcd window; this node catches up from peers"
                    )
                seen = bytes(decode_block(payload).hash)
        if seen != block_hash:
            raise BlockRefusedError(
                f"block {height}: not the committed block (etcd holds {seen.hex()[:16]}…)"
            )

    def _other_signatures(self, block: pb.Block, verified: VerifiedBlock) -> list[dict[str, str]]:
        """Other members' signatures the block carries (a peer's copy), kept if they verify."""
        keys = {m.node: m.verifier_key for m in self._coordinator.members()}
        kept: dict[str, dict[str, str]] = {}
        for s in block.signatures[1:]:
            if s.node == self._node_id or s.node in kept or s.node not in keys:
                continue
            try:
                signature = BlockSignature(s.node, s.key_id, s.sig)
                verifier = self._verifiers.get(keys[s.node])
                if verifier is None:
                    verifier = self._verifiers[keys[s.node]] = Verifier.from_string(keys[s.node])
                verify_header_signature(verified.record.header, signature, verifier)
            except (ValueError, SignatureError) as exc:
                log.info(
                    "dropping %s's signature of block %d: %s", s.node, verified.header.height, exc
                )
                continue
            kept[s.node] = signature.to_json()
        return list(kept.values())

    def _apply(self, verified: VerifiedBlock, others: list[dict[str, str]]) -> PushOutcome:
        header, record = verified.header, verified.record
        mine = sign_header(record.header, self._node_id, self._node_signer)
        stored = BlockRecord(
            height=record.height,
            header=record.header,
            header_hash=record.header_hash,
            signatures=(*record.signatures, *others, mine.to_json()),
            first_index=record.first_index,
            count=record.count,
        )
        self._store.apply_block(
            stored,
            verified.leaves,
            verified.nodes,
            Head(record.height, record.header_hash, header.tree_size, header.term),
        )
        note = sign_checkpoint(
            Checkpoint(self._origin, header.tree_size, header.tree_root), self._log_signer
        )
        cosigned = cosign_checkpoint(note, self._node_signer, int(time.time()))
        line = cosigned.rstrip("\n").rsplit("\n", 1)[-1]
        self._sequencer.set_state(
            LogState(
                header.tree_size,
                header.tree_root,
                record.height,
                record.header_hash,
                header.term,
                note,
                verified.frontier,
                (line,),
            )
        )
        self._coordinator.report_applied(record.height)
        return PushOutcome(record.height + 1, mine, line)

    # catching up

    def catch_up(
        self,
        target: CommittedHead,
        fetchers: Iterable[tuple[str, Callable[[int, int], Iterable[pb.Block]]]],
    ) -> None:
        """Brings the store up to `target`: from the etcd window, else from peers.

        `fetchers`: (peer name, fetch(from_height, to_height)) for every other member.
        Raises UnavailableError when no source has the next block, StorageError when the
        local log has forked from the committed one.
        """
        peers = list(fetchers)
        while True:
            next_height = self.next_height()
            if next_height > target.height:
                break
            payload = self._coordinator.committed_block(next_height)
            if payload is not None:
                self.offer(decode_block(payload), sender="the etcd window", confirm=False)
                continue
            start = self._coordinator.window_start()
            upto = target.height if start is None else start - 1
            if upto < next_height:
                continue  # the window moved on between the two reads
            self._fetch_from_peers(peers, next_height, upto)
        held = self._store.block(target.height)
        if held.header_hash != target.block_hash:
            raise StorageError(
                f"this node's block {target.height} ({held.header_hash.hex()[:16]}…) differs "
                f"from the committed one ({target.block_hash.hex()[:16]}…): its log has forked"
            )

    def _fetch_from_peers(
        self,
        peers: list[tuple[str, Callable[[int, int], Iterable[pb.Block]]]],
        first: int,
        upto: int,
    ) -> None:
        errors = []
        for name, fetch in peers:
            try:
                for block in fetch(first, upto):
                    self.offer(block, sender=f"peer {name}", confirm=False)
            except LedgerError as exc:
                errors.append(f"{name}: {exc.detail}")
            if self.next_height() > first:
                log.info(
                    "caught up from peer %s: blocks %d to %d", name, first, self.next_height() - 1
                )
                return
        raise UnavailableError(
            f"no peer could supply block {first} (below the etcd window): "
            + ("; ".join(errors) or "no peers")
        )
