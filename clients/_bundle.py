"""The lines of an audit bundle (SPEC §3 `/v1/export`), as the gateway writes them.

Over gRPC the client receives `ExportItem` messages and writes them with these
functions, so a bundle exported from a node and one from the gateway read the same.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from typing import Any

from provledger.blocks import BlockSignature

__all__ = ["block_line", "checkpoint_line", "frontier_line"]


def _line(obj: Any) -> bytes:
    # Compact and ASCII-only (the checkpoint's em dashes as \u2014), like the gateway, so
    # that an export over gRPC and one over HTTP of the same blocks are equal byte for byte.
    return json.dumps(obj, separators=(",", ":")).encode("ascii") + b"\n"


def frontier_line(tree_size: int, hashes: Sequence[bytes]) -> bytes:
    return _line({"frontier": {"tree_size": tree_size, "hashes": [h.hex() for h in hashes]}})


def block_line(
    header_bytes: bytes,
    block_hash: bytes,
    signatures: Iterable[BlockSignature],
    leaves: Iterable[bytes],
) -> bytes:
    # The header travels as the JSON object whose JCS bytes were signed; json.loads of
    # JCS keeps its (sorted) key order, so the line shows the signed bytes' fields.
    return _line(
        {
            "header": json.loads(header_bytes),
            "hash": block_hash.hex(),
            "signatures": [s.to_json() for s in signatures],
            "leaves": [base64.b64encode(leaf).decode("ascii") for leaf in leaves],
        }
    )


def checkpoint_line(note: str) -> bytes:
    return _line({"checkpoint": note})
