"""A follower's block verification (`verify_block`) on real blocks sealed by the sequencer,
and on every kind of forgery: each is refused with its reason, and the genuine block
passes with the same tree nodes and frontier the leader stored."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from ledger._replica import (
    BlockRefusedError,
    block_message,
    decode_block,
    encode_payload,
    verify_block,
)
from ledger.coordinator import LocalCoordinator
from ledger.sequencer import LogState, SequencerLimits, admitted, load_state
from ledger.storage import LevelDBStore
from provledger import merkle
from provledger.blocks import BlockHeader, sign_header
from provledger.events import make_entry
from provledger.note import Signer
from provledger.v1 import ledger_pb2 as pb
from tests.harness.sequencer import start_sequencer

ORIGIN = "unit.provledger.local/replica"


def _event(block: int, i: int) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"{block}-{i}",
        "source": "urn:test:replica",
        "type": "provledger.inference.v1",
        "time": "2026-11-26T12:00:00Z",
        "subject": f"model:m{i % 2}",
        "data": {
            "model": {"name": "m", "version": "1"},
            "input_commitment": "ab" * 32,
            "output_commitment": "cd" * 32,
        },
    }


@pytest.fixture(scope="module")
def chain(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Signer, list[tuple[LogState, pb.Block]]]]:
    """Three blocks of three entries, each with the state it extends."""
    path: Path = tmp_path_factory.mktemp("leader")
    store = LevelDBStore(path / "db")
    signer = Signer.generate(ORIGIN)
    sequencer = start_sequencer(
        store,
        LocalCoordinator(store, "node-1", "127.0.0.1:1"),
        SequencerLimits(max_block_entries=3, max_block_delay=0.001),
        origin=ORIGIN,
        node_id="node-1",
        signer=signer,
    )
    blocks = []
    try:
        for b in range(3):
            before = sequencer.state
            entries = [admitted(make_entry(_event(b, i), "local")) for i in range(3)]
            results = sequencer.submit(entries).wait(30)
            height = results[0].block.height  # type: ignore[union-attr]
            record = store.block(height)
            leaves = list(store.leaves(record.first_index, record.count))
            blocks.append((before, decode_block(block_message(record, leaves).SerializeToString())))
        yield signer, blocks
    finally:
        sequencer.stop()
        store.close()


def _resigned(block: pb.Block, signer: Signer, **changes: object) -> pb.Block:
    header = BlockHeader.from_bytes(block.header)
    fields = {name: getattr(header, name) for name in BlockHeader.__dataclass_fields__}
    fields.update(changes)
    raw = BlockHeader(**fields).canonical()  # type: ignore[arg-type]
    forged = pb.Block()
    forged.CopyFrom(block)
    forged.header = raw
    forged.hash = hashlib.sha256(raw).digest()
    del forged.signatures[:]
    forged.signatures.append(pb.BlockSignature(**sign_header(raw, header.leader, signer).to_json()))
    return forged


def test_genuine_blocks_verify_in_order(
    chain: tuple[Signer, list[tuple[LogState, pb.Block]]],
) -> None:
    signer, blocks = chain
    for before, block in blocks:
        verified = verify_block(block, before, signer.verifier)
        assert verified.record.header_hash == hashlib.sha256(block.header).digest()
        assert [leaf.leaf for leaf in verified.leaves] == list(block.leaves)
        assert verified.leaves[0].type == "provledger.inference.v1"
        size = verified.header.tree_size
        assert (
            merkle.CompactRange.from_frontier(size, verified.frontier).root()
            == verified.header.tree_root
        )
    # The state after the last block, recomputed from scratch, is the leader's own.
    assert (
        blocks[1][0].frontier == verify_block(blocks[0][1], blocks[0][0], signer.verifier).frontier
    )


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ("wrong_signer", "does not verify under the log key"),
        ("bad_sig", "does not verify under the log key"),
        ("prev_hash", "does not match the head"),
        ("tree_root", "tree_root does not recompute"),
        ("entries_root", "entries_root does not recompute"),
        ("leaf", "entries_root does not recompute"),
        ("dropped_leaf", "entries, the block carries"),
        ("not_json_leaf", "is not a ledger entry"),
        ("older_term", "is older than"),
        ("first_index", "first_index"),
        ("height", "expected height"),
        ("hash", "not the header's SHA-256"),
        ("signer_not_leader", "the header names leader"),
        ("no_signature", "no leader signature"),
        ("malformed", "malformed header"),
    ],
)
def test_forged_blocks_are_refused(
    chain: tuple[Signer, list[tuple[LogState, pb.Block]]], forge: str, reason: str
) -> None:
    signer, blocks = chain
    before, genuine = blocks[1]
    block = pb.Block()
    block.CopyFrom(genuine)
    state = before
    if forge == "wrong_signer":
        block = _resigned(genuine, Signer.generate(ORIGIN))
    elif forge == "bad_sig":
        sig = bytearray(block.signatures[0].sig.encode())
        sig[5] = ord("A") if sig[5] != ord("A") else ord("B")
        block.signatures[0].sig = sig.decode()
    elif forge in ("prev_hash", "tree_root", "entries_root"):
        block = _resigned(genuine, signer, **{forge: hashlib.sha256(forge.encode()).digest()})
    elif forge == "leaf":
        block.leaves[1] = make_entry(_event(9, 9), "local").leaf
    elif forge == "dropped_leaf":
        del block.leaves[2]
    elif forge == "not_json_leaf":
        block.leaves[0] = b"\xff not json"
    elif forge == "older_term":
        state = LogState(**{**_state_fields(before), "term": before.term + 1})
    elif forge == "first_index":
        header = BlockHeader.from_bytes(genuine.header)
        block = _resigned(
            genuine, signer, first_index=header.first_index + 1, tree_size=header.tree_size + 1
        )
    elif forge == "height":
        block = blocks[2][1]
    elif forge == "hash":
        block.hash = bytes(32)
    elif forge == "signer_not_leader":
        block.signatures[0].node = "node-9"
    elif forge == "no_signature":
        del block.signatures[:]
    elif forge == "malformed":
        block.header = b'{"height": 1'
    with pytest.raises(BlockRefusedError, match=reason):
        verify_block(block, state, signer.verifier)


def _state_fields(state: LogState) -> dict[str, object]:
    return {name: getattr(state, name) for name in LogState.__dataclass_fields__}


def test_an_empty_log_takes_only_block_zero(
    chain: tuple[Signer, list[tuple[LogState, pb.Block]]], tmp_path: Path
) -> None:
    signer, blocks = chain
    store = LevelDBStore(tmp_path / "db")
    try:
        empty = load_state(store, ORIGIN, signer)
    finally:
        store.close()
    assert blocks[0][0].tree_size == empty.tree_size == 0
    verify_block(blocks[0][1], empty, signer.verifier)
    with pytest.raises(BlockRefusedError, match="expected height 0"):
        verify_block(blocks[1][1], empty, signer.verifier)


def test_etcd_payloads_are_compressed_and_plain_ones_still_read(
    chain: tuple[Signer, list[tuple[LogState, pb.Block]]],
) -> None:
    _, blocks = chain
    block = blocks[1][1]
    serialized = block.SerializeToString()
    payload = encode_payload(serialized)
    assert payload[:1] == b"\x02" and len(payload) < len(serialized)
    assert decode_block(payload) == block
    # Earlier leaders stored zlib payloads, and before those the serialized Block itself.
    assert decode_block(b"\x01" + zlib.compress(serialized, 1)) == block
    assert decode_block(serialized) == block


def _frame_claiming(size: int) -> bytes:
    """A zstd frame header (RFC 8878 §3.1.1.1) that states `size` decompressed bytes,
    then one empty last block: single segment, a 4-byte content size."""
    return b"\x28\xb5\x2f\xfd" + b"\xa0" + size.to_bytes(4, "little") + b"\x01\x00\x00"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x01not zlib", "does not decompress"),
        (b"\x01" + zlib.compress(b"\xff\xff\xff"), "is not a block"),
        (b"\x02not zstd", "does not decompress"),
        (b"\x02" + zstandard.ZstdCompressor().compress(b"\xff\xff\xff"), "is not a block"),
        (
            b"\x02" + zstandard.ZstdCompressor(write_content_size=False).compress(b"\x0a\x00"),
            "does not state its decompressed size",
        ),
        # A frame header that claims 1 GiB: refused before anything is inflated.
        (b"\x02" + _frame_claiming(1 << 30), "inflates beyond"),
        (b"\xff\xff", "is not a block"),
    ],
)
def test_payloads_that_are_no_block_are_refused_by_name(payload: bytes, reason: str) -> None:
    with pytest.raises(BlockRefusedError, match=reason):
        decode_block(payload)
