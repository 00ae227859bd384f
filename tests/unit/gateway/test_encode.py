"""Proof bodies are assembled as text for speed: they must be exactly what `dumps` of the
SPEC §3 objects gives, for the node's messages and for proofs computed in the gateway."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway import _encode as encode
from gateway._proofs import ConsistencyProof, InclusionProof
from provledger.v1 import ledger_pb2 as pb

UINT64 = st.integers(0, 2**64 - 1)
HASHES = st.lists(st.binary(min_size=32, max_size=32), max_size=64)


def dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@given(UINT64, UINT64, st.binary(min_size=32, max_size=32), HASHES, st.text())
def test_inclusion_proof_json(
    index: int, size: int, leaf_hash: bytes, hashes: list[bytes], note: str
) -> None:
    expected: dict[str, Any] = {
        "index": index,
        "tree_size": size,
        "leaf_hash": leaf_hash.hex(),
        "hashes": [h.hex() for h in hashes],
    }
    if note:
        expected["checkpoint"] = note
    message = pb.InclusionProof(
        index=index, tree_size=size, leaf_hash=leaf_hash, hashes=hashes, checkpoint=note
    )
    local = InclusionProof(index, size, leaf_hash, hashes, note)
    assert encode.inclusion_proof(message) == encode.inclusion_proof(local) == dumps(expected)


@given(UINT64, UINT64, HASHES)
def test_consistency_proof_json(first: int, second: int, hashes: list[bytes]) -> None:
    expected = {"first": first, "second": second, "hashes": [h.hex() for h in hashes]}
    message = pb.ConsistencyProof(first=first, second=second, hashes=hashes)
    local = ConsistencyProof(first, second, hashes)
    assert encode.consistency_proof(message) == encode.consistency_proof(local) == dumps(expected)
