"""Pydantic models of SPEC §3's JSON bodies, used only to describe them in OpenAPI.

Routes build their JSON by hand from the node's protobufs (see `_encode`) and return
ready bytes, so these models never run on the request path; they exist so that
`/openapi.json` states exactly what is sent, and schemathesis holds the two together.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BatchFailure",
    "BatchRequest",
    "BatchResult",
    "Block",
    "BlockHeader",
    "BlockList",
    "BlockSignature",
    "BlockSummary",
    "ConsistencyProof",
    "Entry",
    "EntryObject",
    "EntryPage",
    "Event",
    "FieldError",
    "Health",
    "InclusionPath",
    "InclusionProof",
    "LogInfo",
    "NodeKey",
    "Problem",
    "Readiness",
    "Receipt",
]

Hex64 = Annotated[str, Field(pattern="^[0-9a-f]{64}$", description="SHA-256, lowercase hex")]


class _Model(BaseModel):
    # Responses may grow new fields in a later version; readers must ignore them.
    model_config = ConfigDict(extra="allow")


class FieldError(_Model):
    path: str = Field(description="dotted path of the offending field, e.g. data.model.digest")
    message: str


class Problem(_Model):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[FieldError] | None = Field(
        default=None, description="for invalid events: every offending field"
    )


class Event(_Model):
    """A CloudEvents 1.0 event of one of the provledger types (SPEC §1)."""

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=512)
    type: Literal[
        "provledger.data.v1",
        "provledger.training.v1",
        "provledger.deployment.v1",
        "provledger.inference.v1",
        "provledger.cost.v1",
        "provledger.anchor.v1",
        "provledger.reconcile.v1",
        "provledger.policy.v1",
    ]
    time: str = Field(description="RFC 3339 in UTC (Z or +00:00)")
    subject: str | None = None
    data: dict[str, Any]


class BatchRequest(_Model):
    events: list[Any] = Field(
        min_length=1,
        max_length=10_000,
        description="events (SPEC §1); an item that is not a valid event fails on its own, "
        "reported under `failed` with its position",
    )


class InclusionPath(_Model):
    hashes: list[str] = Field(description="RFC 9162 PATH(index, tree_size), hex")


class Receipt(_Model):
    index: int = Field(ge=0)
    leaf_hash: Hex64
    block_height: int = Field(ge=0)
    tree_size: int = Field(ge=1)
    inclusion: InclusionPath
    checkpoint: str = Field(description="signed checkpoint note at tree_size")


class BatchFailure(_Model):
    position: int = Field(ge=0, description="index of the event in the request's events")
    error: Problem


class BatchResult(_Model):
    status: Literal["success", "partial_success", "failure"]
    receipts: list[Receipt | None]
    failed: list[BatchFailure]


class EntryObject(_Model):
    event: dict[str, Any]
    submitter: str


class Entry(_Model):
    index: int = Field(ge=0)
    leaf_hash: Hex64
    leaf: str = Field(description="base64 of the exact leaf bytes (RFC 8785 JSON)")
    entry: EntryObject
    block_height: int = Field(ge=0)


class EntryPage(_Model):
    entries: list[Entry]
    next_after: int | None = Field(
        description="pass as `after` for the next page; null when nothing further matched"
    )


class InclusionProof(_Model):
    index: int = Field(ge=0)
    tree_size: int = Field(ge=1)
    leaf_hash: Hex64
    hashes: list[str]
    checkpoint: str | None = Field(
        default=None, description="the latest checkpoint, when tree_size was not given"
    )


class ConsistencyProof(_Model):
    first: int = Field(ge=0)
    second: int = Field(ge=0)
    hashes: list[str]


class BlockHeader(_Model):
    height: int = Field(ge=0)
    prev_hash: Hex64
    first_index: int = Field(ge=0)
    count: int = Field(ge=0)
    entries_root: Hex64
    tree_size: int = Field(ge=0)
    tree_root: Hex64
    timestamp: str
    leader: str
    term: int = Field(ge=0)


class BlockSignature(_Model):
    node: str
    key_id: str = Field(pattern="^[0-9a-f]{8}$")
    sig: str = Field(description="base64 Ed25519 signature over the header's JCS bytes")


class BlockSummary(_Model):
    header: BlockHeader
    hash: Hex64
    signatures: list[BlockSignature]


class Block(BlockSummary):
    entries: list[int] = Field(description="indexes of the block's entries")


class BlockList(_Model):
    blocks: list[BlockSummary]


class NodeKey(_Model):
    node: str
    verifier_key: str


class LogInfo(_Model):
    origin: str
    tree_size: int = Field(ge=0)
    root_hash: Hex64
    block_height: int | None
    verifier_key: str
    checkpoint: str
    nodes: list[NodeKey]


class Health(_Model):
    status: Literal["ok"]


class Readiness(_Model):
    status: Literal["ready"]
    leader: str
