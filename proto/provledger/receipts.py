"""Per-event receipts from a batch answer, whose committed events share one
`BlockReceipt` per block (ledger.proto) instead of repeating the checkpoint and most of
the inclusion path in each of a thousand receipts.

Pure code: callers that want every event's RFC 9162 proof (the SDK, the REST gateway)
derive them here, and a block whose leaf hashes do not give the root its checkpoint
signs is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from provledger import merkle
from provledger.errors import InclusionProofError
from provledger.note import parse_checkpoint, parse_note
from provledger.v1 import ledger_pb2 as pb

__all__ = ["BlockProofs", "block_for", "block_proofs", "expand"]


@dataclass(frozen=True, slots=True)
class BlockProofs:
    """A block receipt's leaf hashes and each leaf's inclusion proof, in index order."""

    block: pb.BlockReceipt
    leaf_hashes: list[bytes]
    proofs: list[list[bytes]]

    def receipt(self, index: int) -> pb.Receipt:
        at = index - self.block.first_index
        return pb.Receipt(
            index=index,
            leaf_hash=self.leaf_hashes[at],
            block_height=self.block.block_height,
            tree_size=self.block.tree_size,
            inclusion=self.proofs[at],
            checkpoint=self.block.checkpoint,
        )


def block_proofs(block: pb.BlockReceipt) -> BlockProofs:
    """Every leaf's proof in `block`, checked against the root its checkpoint states."""
    where = f"block receipt at height {block.block_height}"
    raw = block.leaf_hashes
    count = block.tree_size - block.first_index
    if count <= 0 or len(raw) != 32 * count:
        raise InclusionProofError(
            f"{where}: leaf_hashes holds {len(raw)} bytes for {count} leaves "
            f"({block.first_index} to {block.tree_size})"
        )
    leaf_hashes = [raw[i : i + 32] for i in range(0, len(raw), 32)]
    try:
        stated = parse_checkpoint(parse_note(block.checkpoint).text)
        root, proofs = merkle.appended_inclusion_proofs(
            block.first_index, list(block.frontier), leaf_hashes
        )
    except ValueError as exc:
        raise InclusionProofError(f"{where}: {exc}") from exc
    if stated.size != block.tree_size or stated.root_hash != root:
        raise InclusionProofError(
            f"{where}: its leaves give root {root.hex()} at size {block.tree_size}, its "
            f"checkpoint states {stated.root_hash.hex()} at size {stated.size}"
        )
    return BlockProofs(block, leaf_hashes, proofs)


def expand(response: pb.AppendBatchResponse) -> list[pb.Receipt | pb.Problem]:
    """One whole receipt or problem per event, in input order."""
    blocks = [block_proofs(b) for b in response.blocks]
    out: list[pb.Receipt | pb.Problem] = []
    for result in response.results:
        kind = result.WhichOneof("outcome")
        if kind == "committed":
            out.append(block_for(blocks, result.committed).receipt(result.committed))
        elif kind == "receipt":
            out.append(result.receipt)
        else:
            out.append(result.error)
    return out


def block_for(blocks: list[BlockProofs], index: int) -> BlockProofs:
    """The block among `blocks` that holds `index`."""
    for b in blocks:
        if b.block.first_index <= index < b.block.tree_size:
            return b
    raise InclusionProofError(f"the answer holds no block receipt for index {index}")
