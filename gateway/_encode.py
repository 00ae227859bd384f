"""The node's protobuf answers as SPEC §3 JSON: hashes in lowercase hex, leaves in base64.

The gateway adds nothing but encoding. Signed bytes (leaves, headers, notes) are passed
through as they came; a header or leaf is parsed only to be shown as a JSON object.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Sequence
from typing import Any, Protocol

from provledger.v1 import ledger_pb2 as pb

__all__ = [
    "ConsistencyLike",
    "InclusionLike",
    "block_detail",
    "block_summary",
    "consistency_proof",
    "dumps",
    "entry",
    "export_line",
    "inclusion_proof",
    "log_info",
]


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def entry(e: pb.Entry) -> dict[str, Any]:
    return {
        "index": e.index,
        "leaf_hash": e.leaf_hash.hex(),
        "leaf": base64.b64encode(e.leaf).decode("ascii"),
        "entry": json.loads(e.leaf),
        "block_height": e.block_height,
    }


def _signatures(b: pb.Block) -> list[dict[str, str]]:
    return [{"node": s.node, "key_id": s.key_id, "sig": s.sig} for s in b.signatures]


def block_summary(b: pb.Block) -> dict[str, Any]:
    return {"header": json.loads(b.header), "hash": b.hash.hex(), "signatures": _signatures(b)}


def block_detail(b: pb.Block) -> dict[str, Any]:
    body = block_summary(b)
    body["entries"] = list(range(b.first_index, b.first_index + b.count))
    return body


# Proofs are the hot read: their JSON is assembled as text (what `dumps` of the same
# dict gives, byte for byte; hex needs no escaping), at a third of the cost.
_INCLUSION = '{"index":%d,"tree_size":%d,"leaf_hash":"%s","hashes":[%s]%s}'
_CONSISTENCY = '{"first":%d,"second":%d,"hashes":[%s]}'


class InclusionLike(Protocol):
    """The node's InclusionProof message, or one computed in the gateway."""

    @property
    def index(self) -> int: ...
    @property
    def tree_size(self) -> int: ...
    @property
    def leaf_hash(self) -> bytes: ...
    @property
    def hashes(self) -> Sequence[bytes]: ...
    @property
    def checkpoint(self) -> str: ...


class ConsistencyLike(Protocol):
    """The node's ConsistencyProof message, or one computed in the gateway."""

    @property
    def first(self) -> int: ...
    @property
    def second(self) -> int: ...
    @property
    def hashes(self) -> Sequence[bytes]: ...


def _hex_list(hashes: Sequence[bytes]) -> str:
    return '"' + '","'.join([h.hex() for h in hashes]) + '"' if hashes else ""


@functools.lru_cache(maxsize=16)
def _checkpoint_member(note: str) -> str:
    # Every proof at the latest checkpoint carries the same note until the next block.
    return ',"checkpoint":' + json.dumps(note) if note else ""


def inclusion_proof(p: InclusionLike) -> bytes:
    """`{index, tree_size, leaf_hash, hashes[, checkpoint]}` as JSON bytes."""
    checkpoint = _checkpoint_member(p.checkpoint)
    hashes = _hex_list(p.hashes)
    return (_INCLUSION % (p.index, p.tree_size, p.leaf_hash.hex(), hashes, checkpoint)).encode()


def consistency_proof(p: ConsistencyLike) -> bytes:
    """`{first, second, hashes}` as JSON bytes."""
    return (_CONSISTENCY % (p.first, p.second, _hex_list(p.hashes))).encode()


def log_info(info: pb.LogInfo) -> dict[str, Any]:
    return {
        "origin": info.origin,
        "tree_size": info.tree_size,
        "root_hash": info.root_hash.hex(),
        "block_height": info.block_height if info.HasField("block_height") else None,
        "verifier_key": info.verifier_key,
        "checkpoint": info.checkpoint,
        "nodes": [{"node": n.node, "verifier_key": n.verifier_key} for n in info.nodes],
    }


def export_line(item: pb.ExportItem) -> bytes:
    """One NDJSON line of `/v1/export` (SPEC §3), newline included."""
    kind = item.WhichOneof("item")
    value: dict[str, Any]
    if kind == "block":
        b = item.block
        value = block_summary(b)
        value["leaves"] = [base64.b64encode(leaf).decode("ascii") for leaf in b.leaves]
    elif kind == "frontier":
        f = item.frontier
        value = {"frontier": {"tree_size": f.tree_size, "hashes": [h.hex() for h in f.hashes]}}
    elif kind == "checkpoint":
        value = {"checkpoint": item.checkpoint}
    else:
        raise ValueError("export item carries nothing")
    return dumps(value) + b"\n"
