"""Client-side verification of what a ledger serves: checkpoints, receipts, entries.

Nothing here trusts the server: every check recomputes from the signed checkpoint under
a verifier key the caller supplies, with `provledger.merkle` and `provledger.note`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clients._model import Entry, Receipt
from provledger.errors import InclusionProofError, SignatureError, VerificationError
from provledger.events import canonical_json
from provledger.merkle import leaf_hash, verify_inclusion
from provledger.note import Checkpoint, Verifier, verify_checkpoint

__all__ = [
    "VerifiedReceipt",
    "as_verifier",
    "checked_checkpoint",
    "verify_entry",
    "verify_receipt",
]


def as_verifier(key: Verifier | str) -> Verifier:
    """A Verifier from a verifier key string (`<origin>+<key id>+<base64>`) or itself."""
    return key if isinstance(key, Verifier) else Verifier.from_string(key)


def checked_checkpoint(note: str, verifier: Verifier) -> Checkpoint:
    """The checkpoint in `note` once its log signature verifies; a malformed note fails too."""
    try:
        return verify_checkpoint(note, verifier)
    except ValueError as e:
        raise SignatureError(f"malformed checkpoint note: {e}") from None


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """A receipt whose inclusion proof and checkpoint signature were checked here, and
    whose stored leaf was read back and found to hold the event that was sent."""

    receipt: Receipt
    checkpoint: Checkpoint
    submitter: str

    @property
    def index(self) -> int:
        return self.receipt.index

    @property
    def leaf_hash(self) -> bytes:
        return self.receipt.leaf_hash


def verify_receipt(receipt: Receipt, verifier: Verifier) -> Checkpoint:
    """Checks the receipt's checkpoint signature and its inclusion proof against it."""
    checkpoint = checked_checkpoint(receipt.checkpoint, verifier)
    if checkpoint.size != receipt.tree_size:
        raise InclusionProofError(
            f"receipt for index {receipt.index} claims tree size {receipt.tree_size} "
            f"but its checkpoint is for size {checkpoint.size}"
        )
    verify_inclusion(
        receipt.index, receipt.tree_size, receipt.leaf_hash, receipt.inclusion, checkpoint.root_hash
    )
    return checkpoint


def verify_entry(entry: Entry, receipt: Receipt, event: Any) -> str:
    """Checks that `entry` is the leaf the receipt proves and holds `event`; its submitter."""
    if entry.index != receipt.index:
        raise VerificationError(f"asked for entry {receipt.index}, got entry {entry.index}")
    if leaf_hash(entry.leaf) != receipt.leaf_hash:
        raise InclusionProofError(
            f"entry {entry.index}: its leaf bytes do not hash to the receipt's leaf hash"
        )
    stored = entry.entry
    if canonical_json(stored.get("event")) != canonical_json(event):
        raise VerificationError(f"entry {entry.index} holds another event than the one appended")
    return str(stored.get("submitter"))
