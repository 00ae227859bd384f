"""Whole-log checks used by several integration tests: chain, roots, signatures, uniqueness."""

from __future__ import annotations

import hashlib
import json

from provledger import merkle
from provledger.blocks import (
    GENESIS_PREV_HASH,
    BlockHeader,
    BlockSignature,
    verify_header_signature,
)
from provledger.note import Verifier, verify_checkpoint
from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import ledger_pb2_grpc as pb_grpc


def check_whole_log(stub: pb_grpc.LedgerStub) -> dict[tuple[str, str], int]:
    """Walks every block from height 0 and recomputes everything; returns (source, id) -> index."""
    info = stub.GetLogInfo(pb.GetLogInfoRequest())
    verifier = Verifier.from_string(info.verifier_key)
    checkpoint = verify_checkpoint(info.checkpoint, verifier)
    assert checkpoint.size == info.tree_size and checkpoint.root_hash == info.root_hash
    compact = merkle.CompactRange()
    prev = GENESIS_PREV_HASH
    identities: dict[tuple[str, str], int] = {}
    height = 0
    for item in stub.Export(pb.ExportRequest(from_height=0)):
        kind = item.WhichOneof("item")
        if kind == "checkpoint":
            final = verify_checkpoint(item.checkpoint, verifier)
            assert final.size == compact.size == info.tree_size
            assert final.root_hash == compact.root()
            continue
        assert kind == "block"
        block = item.block
        header = BlockHeader.from_bytes(block.header)
        assert header.height == height, f"block {height} out of order"
        assert header.prev_hash == prev, f"block {height} breaks the hash chain"
        assert hashlib.sha256(block.header).digest() == block.hash
        assert header.first_index == compact.size
        assert header.count == len(block.leaves)
        leaf_hashes = [merkle.leaf_hash(leaf) for leaf in block.leaves]
        assert header.entries_root == merkle.root(leaf_hashes)
        for leaf in block.leaves:
            entry = json.loads(leaf)
            key = (entry["event"]["source"], entry["event"]["id"])
            assert key not in identities, f"{key} appears twice"
            identities[key] = compact.size
            compact.append(merkle.leaf_hash(leaf))
        assert header.tree_size == compact.size and header.tree_root == compact.root()
        leader_sig = BlockSignature(
            block.signatures[0].node, block.signatures[0].key_id, block.signatures[0].sig
        )
        verify_header_signature(block.header, leader_sig, verifier)
        prev = block.hash
        height += 1
    return identities
