"""What the SDK hands back: receipts, entries, proofs and log facts as frozen values.

Each value is built from either transport (gRPC messages or the gateway's JSON) and
renders itself in the gateway's JSON shape (SPEC §3), which is also what the CLI prints
for machines. Hashes are bytes here and lowercase hex in JSON.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from provledger.blocks import BlockHeader, BlockSignature
from provledger.errors import LedgerError

__all__ = [
    "BatchFailure",
    "BatchResult",
    "Block",
    "ConsistencyProof",
    "Entry",
    "InclusionProof",
    "LogInfo",
    "NodeKey",
    "Page",
    "Receipt",
    "SignedCheckpoint",
]


@dataclass(frozen=True, slots=True)
class Receipt:
    """The ledger's answer to an append: where the event landed and the proof of it."""

    index: int
    leaf_hash: bytes
    block_height: int
    tree_size: int
    inclusion: tuple[bytes, ...]
    checkpoint: str
    duplicate: bool = False
    """True when the ledger answered an idempotent retry with the original entry."""

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "leaf_hash": self.leaf_hash.hex(),
            "block_height": self.block_height,
            "tree_size": self.tree_size,
            "inclusion": {"hashes": [h.hex() for h in self.inclusion]},
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], *, duplicate: bool = False) -> Receipt:
        return cls(
            index=int(obj["index"]),
            leaf_hash=bytes.fromhex(obj["leaf_hash"]),
            block_height=int(obj["block_height"]),
            tree_size=int(obj["tree_size"]),
            inclusion=tuple(bytes.fromhex(h) for h in obj["inclusion"]["hashes"]),
            checkpoint=str(obj["checkpoint"]),
            duplicate=bool(obj.get("duplicate", duplicate)),
        )


@dataclass(frozen=True, slots=True)
class BatchFailure:
    """One event of a batch that the ledger refused, by its position in the input."""

    position: int
    error: LedgerError


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One receipt per input event (None where it failed) and the failures by position."""

    receipts: tuple[Receipt | None, ...]
    failures: tuple[BatchFailure, ...] = ()

    @property
    def status(self) -> str:
        if not self.failures:
            return "success"
        return "failure" if len(self.failures) == len(self.receipts) else "partial_success"


@dataclass(frozen=True, slots=True)
class Entry:
    """One leaf of the log: its exact bytes, as stored and hashed."""

    index: int
    leaf_hash: bytes
    leaf: bytes
    block_height: int

    @property
    def entry(self) -> dict[str, Any]:
        """The decoded entry object `{"event": ..., "submitter": ...}`."""
        value = json.loads(self.leaf)
        if not isinstance(value, dict):
            raise ValueError(f"leaf {self.index} is not a JSON object")
        return value

    @property
    def event(self) -> dict[str, Any]:
        event = self.entry["event"]
        if not isinstance(event, dict):
            raise ValueError(f"leaf {self.index} holds no event object")
        return event

    @property
    def submitter(self) -> str:
        return str(self.entry["submitter"])

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "leaf_hash": self.leaf_hash.hex(),
            "leaf": base64.b64encode(self.leaf).decode("ascii"),
            "entry": self.entry,
            "block_height": self.block_height,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Entry:
        return cls(
            index=int(obj["index"]),
            leaf_hash=bytes.fromhex(obj["leaf_hash"]),
            leaf=base64.b64decode(obj["leaf"], validate=True),
            block_height=int(obj["block_height"]),
        )


@dataclass(frozen=True, slots=True)
class Page:
    """A page of a query: entries in index order and where the next page starts."""

    entries: tuple[Entry, ...]
    next_after: int | None


@dataclass(frozen=True, slots=True)
class Block:
    """A block header as signed (its JCS bytes), its hash and signatures."""

    header_bytes: bytes
    hash: bytes
    signatures: tuple[BlockSignature, ...]
    header: BlockHeader = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "header", BlockHeader.from_bytes(self.header_bytes))

    def to_json(self) -> dict[str, Any]:
        return {
            "header": self.header.to_json(),
            "hash": self.hash.hex(),
            "signatures": [s.to_json() for s in self.signatures],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Block:
        header = BlockHeader.from_json(obj["header"])
        return cls(
            header_bytes=header.canonical(),
            hash=bytes.fromhex(obj["hash"]),
            signatures=tuple(BlockSignature.from_json(s) for s in obj.get("signatures", [])),
        )


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """The latest checkpoint as served; `note` is the signed text, not yet verified."""

    note: str
    tree_size: int
    root_hash: bytes
    block_height: int | None = None


@dataclass(frozen=True, slots=True)
class NodeKey:
    node: str
    verifier_key: str


@dataclass(frozen=True, slots=True)
class LogInfo:
    origin: str
    tree_size: int
    root_hash: bytes
    block_height: int | None
    verifier_key: str
    checkpoint: str
    nodes: tuple[NodeKey, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "block_height": self.block_height,
            "verifier_key": self.verifier_key,
            "checkpoint": self.checkpoint,
            "nodes": [{"node": n.node, "verifier_key": n.verifier_key} for n in self.nodes],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LogInfo:
        height = obj.get("block_height")
        return cls(
            origin=str(obj["origin"]),
            tree_size=int(obj["tree_size"]),
            root_hash=bytes.fromhex(obj["root_hash"]),
            block_height=None if height is None else int(height),
            verifier_key=str(obj["verifier_key"]),
            checkpoint=str(obj["checkpoint"]),
            nodes=tuple(
                NodeKey(str(n["node"]), str(n["verifier_key"])) for n in obj.get("nodes", [])
            ),
        )


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """RFC 9162 PATH(index, tree_size); `checkpoint` is set when the latest size was asked."""

    index: int
    tree_size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "hashes": [h.hex() for h in self.hashes],
        }
        if self.checkpoint:
            out["checkpoint"] = self.checkpoint
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> InclusionProof:
        return cls(
            index=int(obj["index"]),
            tree_size=int(obj["tree_size"]),
            leaf_hash=bytes.fromhex(obj["leaf_hash"]),
            hashes=tuple(bytes.fromhex(h) for h in obj["hashes"]),
            checkpoint=obj.get("checkpoint") or None,
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """RFC 9162 PROOF(first, D[0:second])."""

    first: int
    second: int
    hashes: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "second": self.second,
            "hashes": [h.hex() for h in self.hashes],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ConsistencyProof:
        return cls(
            first=int(obj["first"]),
            second=int(obj["second"]),
            hashes=tuple(bytes.fromhex(h) for h in obj["hashes"]),
        )
