"""Block headers: golden canonical bytes, validation naming the field, signatures."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from provledger.blocks import (
    GENESIS_PREV_HASH,
    BlockHeader,
    BlockSignature,
    sign_header,
    timestamp_ms,
    verify_header_signature,
)
from provledger.errors import SignatureError
from provledger.note import Signer

GOLDEN = BlockHeader(
    height=7,
    prev_hash=bytes.fromhex("11" * 32),
    first_index=1000,
    count=3,
    entries_root=bytes.fromhex("22" * 32),
    tree_size=1003,
    tree_root=bytes.fromhex("33" * 32),
    timestamp="2025-01-31T12:00:00.123Z",
    leader="node-1",
    term=2,
)
# RFC 8785: keys sorted by UTF-16 code units, no whitespace. Written out by hand.
GOLDEN_BYTES = (
    b'{"count":3,'
    b'"entries_root":"2222222222222222222222222222222222222222222222222222222222222222",'
    b'"first_index":1000,"height":7,"leader":"node-1",'
    b'"prev_hash":"1111111111111111111111111111111111111111111111111111111111111111",'
    b'"term":2,"timestamp":"2025-01-31T12:00:00.123Z",'
    b'"tree_root":"3333333333333333333333333333333333333333333333333333333333333333",'
    b'"tree_size":1003}'
)
GOLDEN_HASH = "76b2a508ff4061f90c16ae228f02d0df5e045d95b0024eab41089e817367afdc"
# Ed25519 is deterministic: the log key below always gives this signature.
LOG_SEED = bytes(range(32))
GOLDEN_SIG = BlockSignature(
    node="node-1",
    key_id="d455c521",
    sig="u5soNzuwvmez941i4sJZEMH0q4FqquRsyPkN9ZH8wFUSUAJ2n4d6XIKDBu6uwoEGJ5QgZvX4WHSreQQ9a5bmBw==",
)


def log_signer() -> Signer:
    return Signer.from_seed("example.com/log", LOG_SEED)


def golden_json(**changes: Any) -> dict[str, Any]:
    obj = GOLDEN.to_json()
    obj.update(changes)
    return obj


# --- golden format --------------------------------------------------------------------


def test_golden_header_canonical_bytes_and_hash() -> None:
    assert GOLDEN.canonical() == GOLDEN_BYTES
    assert GOLDEN.hash().hex() == GOLDEN_HASH
    assert hashlib.sha256(GOLDEN_BYTES).hexdigest() == GOLDEN_HASH
    assert BlockHeader.from_bytes(GOLDEN_BYTES) == GOLDEN


def test_header_json_uses_the_spec_field_names() -> None:
    assert GOLDEN.to_json() == {
        "height": 7,
        "prev_hash": "11" * 32,
        "first_index": 1000,
        "count": 3,
        "entries_root": "22" * 32,
        "tree_size": 1003,
        "tree_root": "33" * 32,
        "timestamp": "2025-01-31T12:00:00.123Z",
        "leader": "node-1",
        "term": 2,
    }
    assert BlockHeader.from_json(GOLDEN.to_json()) == GOLDEN


def test_genesis_header() -> None:
    genesis = BlockHeader(
        height=0,
        prev_hash=GENESIS_PREV_HASH,
        first_index=0,
        count=1,
        entries_root=bytes(32),
        tree_size=1,
        tree_root=bytes(32),
        timestamp="2025-01-01T00:00:00.000Z",
        leader="n",
        term=1,
    )
    assert genesis.to_json()["prev_hash"] == "0" * 64
    with pytest.raises(ValueError, match="'prev_hash': must be 64 zeros at height 0"):
        BlockHeader.from_json(genesis.to_json() | {"prev_hash": "11" * 32})


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"height": -1}, "height"),
        ({"height": True}, "height"),
        ({"height": 7.0}, "height"),
        ({"height": "7"}, "height"),
        ({"height": 2**53}, "height"),
        ({"first_index": None}, "first_index"),
        ({"count": -3}, "count"),
        ({"tree_size": 1004}, "tree_size"),
        ({"term": 1.5}, "term"),
        ({"prev_hash": "11" * 31}, "prev_hash"),
        ({"prev_hash": "AA" * 32}, "prev_hash"),
        ({"prev_hash": bytes(32).hex() + "00"}, "prev_hash"),
        ({"entries_root": "zz" * 32}, "entries_root"),
        ({"entries_root": 5}, "entries_root"),
        ({"tree_root": " " + "33" * 31 + "3"}, "tree_root"),
        ({"timestamp": "2025-01-31T12:00:00Z"}, "timestamp"),
        ({"timestamp": "2025-01-31T12:00:00.123+00:00"}, "timestamp"),
        ({"timestamp": "2025-01-31 12:00:00.123Z"}, "timestamp"),
        ({"timestamp": "2025-02-30T12:00:00.123Z"}, "timestamp"),
        ({"timestamp": "2025-01-31T24:00:00.123Z"}, "timestamp"),
        ({"timestamp": "2025-13-01T12:00:00.123Z"}, "timestamp"),
        ({"timestamp": "2025-00-10T12:00:00.123Z"}, "timestamp"),
        ({"timestamp": "2023-02-29T12:00:00.123Z"}, "timestamp"),
        ({"timestamp": "0000-01-01T12:00:00.123Z"}, "timestamp"),
        ({"timestamp": "2025-01-31T12:60:00.123Z"}, "timestamp"),
        ({"timestamp": "2025-01-31T12:00:60.123Z"}, "timestamp"),
        ({"timestamp": 1738324800123}, "timestamp"),
        ({"leader": ""}, "leader"),
        ({"leader": "node 1"}, "leader"),
        ({"leader": "a+b"}, "leader"),
        ({"leader": 1}, "leader"),
    ],
)
def test_from_json_names_the_bad_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        BlockHeader.from_json(golden_json(**changes))


@pytest.mark.parametrize(
    "timestamp",
    ["2024-02-29T23:59:59.999Z", "2000-02-29T00:00:00.000Z", "9999-12-31T23:59:59.999Z"],
)
def test_from_json_takes_every_valid_timestamp(timestamp: str) -> None:
    assert BlockHeader.from_json(golden_json(timestamp=timestamp)).timestamp == timestamp


@pytest.mark.parametrize("field", sorted(GOLDEN.to_json()))
def test_from_json_requires_every_field(field: str) -> None:
    obj = golden_json()
    del obj[field]
    with pytest.raises(ValueError, match=f"missing field '{field}'"):
        BlockHeader.from_json(obj)


def test_from_json_refuses_extra_fields_and_non_objects() -> None:
    with pytest.raises(ValueError, match="unexpected field 'signatures'"):
        BlockHeader.from_json(golden_json(signatures=[]))
    with pytest.raises(ValueError, match="JSON object"):
        BlockHeader.from_json([GOLDEN.to_json()])


def test_constructor_validates_too() -> None:
    with pytest.raises(ValueError, match="'tree_root': expected a 32-byte hash"):
        BlockHeader(**{**_fields(GOLDEN), "tree_root": bytes(31)})
    with pytest.raises(ValueError, match="'count'"):
        BlockHeader(**{**_fields(GOLDEN), "count": -1})


def _fields(header: BlockHeader) -> dict[str, Any]:
    return {name: getattr(header, name) for name in BlockHeader.__dataclass_fields__}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (GOLDEN_BYTES.replace(b",", b", "), "not the canonical"),
        (GOLDEN_BYTES + b"\n", "not the canonical"),
        (
            json.dumps(GOLDEN.to_json(), separators=(",", ":")).encode(),  # field order
            "not the canonical",
        ),
        (GOLDEN_BYTES.replace(b'"term":2', b'"term":2.0'), "'term'"),
        (GOLDEN_BYTES.replace(b'{"count":3,', b'{"count":3,"count":3,'), "duplicate field"),
        (GOLDEN_BYTES.replace(b'"term":2', b'"term":NaN'), "NaN"),
        (GOLDEN_BYTES[:-1], "malformed JSON"),
        (b"\xff" + GOLDEN_BYTES, "UTF-8"),
    ],
)
def test_from_bytes_refuses_anything_but_canonical_bytes(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        BlockHeader.from_bytes(data)


# --- signatures -----------------------------------------------------------------------


def test_golden_signature() -> None:
    signer = log_signer()
    sig = sign_header(GOLDEN_BYTES, "node-1", signer)
    assert sig == GOLDEN_SIG
    assert sig.key_id == signer.key_id.hex()
    assert sig.to_json() == {"node": "node-1", "key_id": "d455c521", "sig": GOLDEN_SIG.sig}
    # Independent of our verifier: plain Ed25519 over the canonical header bytes.
    pub = Ed25519PublicKey.from_public_bytes(signer.public_key)
    pub.verify(base64.b64decode(sig.sig), GOLDEN_BYTES)
    verify_header_signature(GOLDEN_BYTES, sig, signer.verifier)


def test_tampered_headers_are_refused() -> None:
    verifier = log_signer().verifier
    for changes in ({"count": 4, "tree_size": 1004}, {"term": 3}, {"leader": "node-2"}):
        tampered = BlockHeader.from_json(golden_json(**changes)).canonical()
        with pytest.raises(SignatureError, match=r"node 'node-1' \(key id d455c521\)"):
            verify_header_signature(tampered, GOLDEN_SIG, verifier)


def test_tampered_signatures_are_refused() -> None:
    verifier = log_signer().verifier
    raw = bytearray(base64.b64decode(GOLDEN_SIG.sig))
    for index in (0, 31, 63):
        flipped = bytearray(raw)
        flipped[index] ^= 0x80
        bad = BlockSignature("node-1", "d455c521", base64.b64encode(bytes(flipped)).decode())
        with pytest.raises(SignatureError, match="does not verify"):
            verify_header_signature(GOLDEN_BYTES, bad, verifier)


def test_signature_by_another_key_is_refused_naming_node_and_key() -> None:
    other = Signer.from_seed("node-2", bytes(32))
    sig = sign_header(GOLDEN_BYTES, "node-2", other)
    with pytest.raises(SignatureError, match=f"node 'node-2' has key id {sig.key_id}"):
        verify_header_signature(GOLDEN_BYTES, sig, log_signer().verifier)
    # Right key id on the wrong signature: refused by the signature check itself.
    forged = BlockSignature("node-2", log_signer().key_id.hex(), sig.sig)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_header_signature(GOLDEN_BYTES, forged, log_signer().verifier)


def test_only_canonical_headers_are_signed() -> None:
    with pytest.raises(ValueError, match="not the canonical"):
        sign_header(GOLDEN_BYTES + b" ", "node-1", log_signer())
    checkpoint_body = b"example.com/log\n3\n" + base64.b64encode(bytes(32)) + b"\n"
    with pytest.raises(ValueError):
        sign_header(checkpoint_body, "node-1", log_signer())


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"node": "", "key_id": "d455c521", "sig": GOLDEN_SIG.sig}, "'node'"),
        ({"node": "n", "key_id": "D455C521", "sig": GOLDEN_SIG.sig}, "'key_id'"),
        ({"node": "n", "key_id": "d455c52", "sig": GOLDEN_SIG.sig}, "'key_id'"),
        ({"node": "n", "key_id": "d455c521", "sig": GOLDEN_SIG.sig[:-4]}, "'sig'"),
        ({"node": "n", "key_id": "d455c521", "sig": GOLDEN_SIG.sig.rstrip("=")}, "'sig'"),
        ({"node": "n", "key_id": "d455c521", "sig": GOLDEN_SIG.sig[:-3] + "x=="}, "'sig'"),
        ({"node": "n", "key_id": "d455c521", "sig": 5}, "'sig'"),
        ({"node": "n", "key_id": "d455c521"}, "missing field 'sig'"),
        ({**GOLDEN_SIG.to_json(), "extra": 1}, "unexpected field 'extra'"),
    ],
)
def test_block_signature_from_json_names_the_bad_field(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BlockSignature.from_json(obj)


def test_block_signature_round_trips() -> None:
    assert BlockSignature.from_json(GOLDEN_SIG.to_json()) == GOLDEN_SIG
    assert len(GOLDEN_SIG.signature) == 64


# --- timestamps -----------------------------------------------------------------------


def test_timestamp_ms_format() -> None:
    when = datetime(2025, 1, 31, 12, 0, 0, 123999, tzinfo=UTC)
    assert timestamp_ms(when) == "2025-01-31T12:00:00.123Z"  # truncated, not rounded
    plus_two = timezone(timedelta(hours=2))
    assert timestamp_ms(datetime(2025, 1, 31, 14, 0, 0, 5000, tzinfo=plus_two)) == (
        "2025-01-31T12:00:00.005Z"
    )
    assert timestamp_ms(datetime(5, 1, 1, tzinfo=UTC)) == "0005-01-01T00:00:00.000Z"
    with pytest.raises(ValueError, match="aware"):
        timestamp_ms(datetime(2025, 1, 31))
    now = timestamp_ms()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", now)
    BlockHeader.from_json(golden_json(timestamp=now))


# --- properties -----------------------------------------------------------------------

ints = st.integers(0, 2**53 - 1)
hashes = st.binary(min_size=32, max_size=32)
node_ids = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_./:"), min_size=1)


@st.composite
def headers(draw: st.DrawFn) -> BlockHeader:
    first_index = draw(st.integers(0, 2**52))
    count = draw(st.integers(0, 2**52 - 1))
    height = draw(ints)
    when = draw(st.datetimes(timezones=st.just(UTC)))
    return BlockHeader(
        height=height,
        prev_hash=GENESIS_PREV_HASH if height == 0 else draw(hashes),
        first_index=first_index,
        count=count,
        entries_root=draw(hashes),
        tree_size=first_index + count,
        tree_root=draw(hashes),
        timestamp=timestamp_ms(when),
        leader=draw(node_ids),
        term=draw(ints),
    )


@given(headers())
def test_headers_round_trip_through_canonical_bytes(header: BlockHeader) -> None:
    data = header.canonical()
    assert BlockHeader.from_bytes(data) == header
    assert BlockHeader.from_json(json.loads(data)) == header
    # For ASCII content, JCS is sorted compact JSON: an independent encoder agrees.
    assert data == json.dumps(header.to_json(), sort_keys=True, separators=(",", ":")).encode()
    assert header.hash() == hashlib.sha256(data).digest()
