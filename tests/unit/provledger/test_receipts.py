"""Batch answers whose committed events share one block receipt per block."""

from __future__ import annotations

import pytest

from provledger import merkle, receipts
from provledger.errors import InclusionProofError
from provledger.note import Checkpoint, Signer, sign_checkpoint
from provledger.v1 import ledger_pb2 as pb

SIGNER = Signer.from_seed("example.org/log", bytes(range(32)))


def block_receipt(hashes: list[bytes], first: int, height: int = 4) -> pb.BlockReceipt:
    size = len(hashes)
    reader = merkle.list_reader(hashes)
    note = sign_checkpoint(Checkpoint(SIGNER.name, size, merkle.root(hashes)), SIGNER)
    return pb.BlockReceipt(
        block_height=height,
        first_index=first,
        tree_size=size,
        checkpoint=note,
        frontier=[reader(*at) for at in merkle.frontier_positions(first)],
        leaf_hashes=b"".join(hashes[first:]),
    )


def leaf_hashes(count: int) -> list[bytes]:
    return [merkle.leaf_hash(b"leaf %d" % i) for i in range(count)]


def test_expanded_receipts_verify_against_the_checkpoint_in_input_order() -> None:
    hashes = leaf_hashes(1_000)
    blocks = [block_receipt(hashes[:700], 650, height=3), block_receipt(hashes, 700)]
    problem = pb.Problem(status=409, detail="taken")
    retried = pb.Receipt(index=2, tree_size=1_000, duplicate=True)
    answer = pb.AppendBatchResponse(
        results=[
            pb.AppendResult(committed=999),
            pb.AppendResult(error=problem),
            pb.AppendResult(committed=650),
            pb.AppendResult(receipt=retried),
            pb.AppendResult(committed=700),
        ],
        blocks=blocks,
    )
    out = receipts.expand(answer)
    assert out[1] == problem and out[3] == retried
    for result, index, size, height in ((out[0], 999, 1_000, 4), (out[2], 650, 700, 3)):
        assert isinstance(result, pb.Receipt)
        assert (result.index, result.tree_size, result.block_height) == (index, size, height)
        assert result.leaf_hash == hashes[index]
        assert not result.duplicate
        merkle.verify_inclusion(
            index, size, hashes[index], list(result.inclusion), merkle.root(hashes[:size])
        )
        assert result.checkpoint == blocks[height - 3].checkpoint
    assert isinstance(out[4], pb.Receipt) and out[4].block_height == 4


def test_a_block_whose_leaves_do_not_give_its_checkpoints_root_is_refused() -> None:
    hashes = leaf_hashes(40)
    block = block_receipt(hashes, 30)
    tampered = bytearray(block.leaf_hashes)
    tampered[5] ^= 1
    block.leaf_hashes = bytes(tampered)
    with pytest.raises(InclusionProofError, match=r"height 4: its leaves give root .* states"):
        receipts.block_proofs(block)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"leaf_hashes": b"\x00" * 31}, "leaf_hashes holds 31 bytes for 10 leaves"),
        ({"first_index": 40}, "leaf_hashes holds 320 bytes for 0 leaves"),
        ({"frontier": [merkle.EMPTY_ROOT]}, "frontier hashes"),
        ({"checkpoint": "not a note"}, "height 4: "),
    ],
)
def test_malformed_block_receipts_are_refused_by_name(
    change: dict[str, object], reason: str
) -> None:
    block = block_receipt(leaf_hashes(40), 30)
    for field, value in change.items():
        if field == "frontier":
            del block.frontier[:]
            block.frontier.extend(value)  # type: ignore[arg-type]
        else:
            setattr(block, field, value)
    with pytest.raises(InclusionProofError, match=reason):
        receipts.block_proofs(block)


def test_a_committed_index_outside_every_block_is_refused() -> None:
    answer = pb.AppendBatchResponse(
        results=[pb.AppendResult(committed=3)], blocks=[block_receipt(leaf_hashes(40), 30)]
    )
    with pytest.raises(InclusionProofError, match="no block receipt for index 3"):
        receipts.expand(answer)
