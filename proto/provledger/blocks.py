"""Block headers (SPEC §2): their canonical RFC 8785 bytes, hash and Ed25519 signatures.

A header is hashed and signed as its JCS bytes, never as a protobuf; the bytes travel
as they are and `BlockHeader.from_bytes` refuses any that are not canonical, so one
header has exactly one hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from provledger.errors import SignatureError
from provledger.events import canonical_json
from provledger.note import Signer, Verifier, valid_key_name

__all__ = [
    "GENESIS_PREV_HASH",
    "HEADER_FIELDS",
    "SIGNATURE_FIELDS",
    "BlockHeader",
    "BlockSignature",
    "sign_header",
    "timestamp_ms",
    "verify_header_signature",
]

GENESIS_PREV_HASH = bytes(32)

HEADER_FIELDS = frozenset(
    {
        "height",
        "prev_hash",
        "first_index",
        "count",
        "entries_root",
        "tree_size",
        "tree_root",
        "timestamp",
        "leader",
        "term",
    }
)
SIGNATURE_FIELDS = frozenset({"node", "key_id", "sig"})

_INT_FIELDS = ("height", "first_index", "count", "tree_size", "term")
_HASH_FIELDS = ("prev_hash", "entries_root", "tree_root")
_MAX_SAFE_INT = 2**53 - 1  # I-JSON: larger integers do not survive a JSON number
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX8 = re.compile(r"[0-9a-f]{8}")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"block header field {name!r}: expected an integer")
    if not 0 <= value <= _MAX_SAFE_INT:
        raise ValueError(f"block header field {name!r}: expected an integer in 0..2^53-1")
    return value


def _hex_hash(name: str, value: object) -> bytes:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValueError(f"block header field {name!r}: expected 64 lowercase hex characters")
    return bytes.fromhex(value)


def _check_timestamp(value: object) -> str:
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise ValueError(
            "block header field 'timestamp': expected RFC 3339 UTC with milliseconds "
            "(YYYY-MM-DDTHH:MM:SS.mmmZ)"
        )
    try:  # the fields' ranges, as strptime checks them, in a fifth of its time
        datetime(
            int(value[0:4]),
            int(value[5:7]),
            int(value[8:10]),
            int(value[11:13]),
            int(value[14:16]),
            int(value[17:19]),
        )
    except ValueError:
        raise ValueError(
            f"block header field 'timestamp': {value!r} is not a valid date and time"
        ) from None
    return value


@dataclass(frozen=True, slots=True)
class BlockHeader:
    height: int
    prev_hash: bytes
    first_index: int
    count: int
    entries_root: bytes
    tree_size: int
    tree_root: bytes
    timestamp: str
    leader: str
    term: int

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            _check_int(name, getattr(self, name))
        for name in _HASH_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise ValueError(f"block header field {name!r}: expected a 32-byte hash")
        _check_timestamp(self.timestamp)
        if not valid_key_name(self.leader):
            raise ValueError(
                "block header field 'leader': expected a node id (non-empty, no spaces, '+' "
                "or control characters)"
            )
        # The log is one sequence: a block appends `count` entries at the end of the tree.
        if self.tree_size != self.first_index + self.count:
            raise ValueError(
                "block header field 'tree_size': must equal first_index + count "
                f"({self.first_index} + {self.count}), got {self.tree_size}"
            )
        if self.height == 0 and self.prev_hash != GENESIS_PREV_HASH:
            raise ValueError("block header field 'prev_hash': must be 64 zeros at height 0")

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "prev_hash": self.prev_hash.hex(),
            "first_index": self.first_index,
            "count": self.count,
            "entries_root": self.entries_root.hex(),
            "tree_size": self.tree_size,
            "tree_root": self.tree_root.hex(),
            "timestamp": self.timestamp,
            "leader": self.leader,
            "term": self.term,
        }

    def canonical(self) -> bytes:
        """The RFC 8785 bytes that are hashed and signed."""
        return canonical_json(self.to_json())

    def hash(self) -> bytes:
        """SHA-256 of the canonical bytes: the next block's `prev_hash`."""
        return hashlib.sha256(self.canonical()).digest()

    @classmethod
    def from_json(cls, obj: Any) -> BlockHeader:
        if not isinstance(obj, dict):
            raise ValueError("block header: expected a JSON object")
        missing = sorted(HEADER_FIELDS - obj.keys())
        if missing:
            raise ValueError(f"block header: missing field {missing[0]!r}")
        extra = sorted(str(k) for k in obj.keys() - HEADER_FIELDS)
        if extra:
            raise ValueError(f"block header: unexpected field {extra[0]!r}")
        if not isinstance(obj["leader"], str):
            raise ValueError("block header field 'leader': expected a string")
        return cls(
            height=_check_int("height", obj["height"]),
            prev_hash=_hex_hash("prev_hash", obj["prev_hash"]),
            first_index=_check_int("first_index", obj["first_index"]),
            count=_check_int("count", obj["count"]),
            entries_root=_hex_hash("entries_root", obj["entries_root"]),
            tree_size=_check_int("tree_size", obj["tree_size"]),
            tree_root=_hex_hash("tree_root", obj["tree_root"]),
            timestamp=_check_timestamp(obj["timestamp"]),
            leader=obj["leader"],
            term=_check_int("term", obj["term"]),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> BlockHeader:
        """Parse header bytes, refusing any that are not exactly the canonical encoding."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError("block header: expected bytes")
        data = bytes(data)
        try:
            obj = json.loads(
                data.decode("utf-8"),
                object_pairs_hook=_no_duplicates,
                parse_constant=_no_constant,
            )
        except UnicodeDecodeError:
            raise ValueError("block header: not UTF-8") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"block header: malformed JSON: {e}") from None
        header = cls.from_json(obj)
        if header.canonical() != data:
            raise ValueError("block header: bytes are not the canonical (RFC 8785) encoding")
        return header


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"block header: duplicate field {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"block header: {name} is not JSON")


@dataclass(frozen=True, slots=True)
class BlockSignature:
    """One node's signature of a header: `sig` is standard base64 of 64 Ed25519 bytes
    over the header's canonical bytes; `key_id` is the signing key's 8-hex key ID."""

    node: str
    key_id: str
    sig: str

    def __post_init__(self) -> None:
        if not valid_key_name(self.node):
            raise ValueError(
                "block signature field 'node': expected a node id (non-empty, no spaces, '+' "
                "or control characters)"
            )
        if not isinstance(self.key_id, str) or not _HEX8.fullmatch(self.key_id):
            raise ValueError("block signature field 'key_id': expected 8 lowercase hex characters")
        if not isinstance(self.sig, str):
            raise ValueError("block signature field 'sig': expected a string")
        try:
            raw = base64.b64decode(self.sig.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise ValueError("block signature field 'sig': expected standard base64") from None
        if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != self.sig:
            raise ValueError(
                "block signature field 'sig': expected the canonical base64 of 64 bytes"
            )

    @property
    def signature(self) -> bytes:
        return base64.b64decode(self.sig)

    def to_json(self) -> dict[str, str]:
        return {"node": self.node, "key_id": self.key_id, "sig": self.sig}

    @classmethod
    def from_json(cls, obj: Any) -> BlockSignature:
        if not isinstance(obj, dict):
            raise ValueError("block signature: expected a JSON object")
        missing = sorted(SIGNATURE_FIELDS - obj.keys())
        if missing:
            raise ValueError(f"block signature: missing field {missing[0]!r}")
        extra = sorted(str(k) for k in obj.keys() - SIGNATURE_FIELDS)
        if extra:
            raise ValueError(f"block signature: unexpected field {extra[0]!r}")
        for name in ("node", "key_id", "sig"):
            if not isinstance(obj[name], str):
                raise ValueError(f"block signature field {name!r}: expected a string")
        return cls(node=obj["node"], key_id=obj["key_id"], sig=obj["sig"])


def sign_header(header: bytes | BlockHeader, node: str, signer: Signer) -> BlockSignature:
    """`node`'s signature of a header with `signer` (the log key for the leader, else the
    node key).

    Only canonical header bytes are signed: the log key also signs checkpoint notes, and
    a canonical header (one line of JSON) can never be read as a checkpoint (three lines
    or more) or a cosignature message, so the two uses stay apart. Bytes are parsed to
    prove them canonical; a `BlockHeader` is valid by construction, and its canonical
    bytes are signed.
    """
    if isinstance(header, BlockHeader):
        header_bytes = header.canonical()
    else:
        header_bytes = BlockHeader.from_bytes(header).canonical()
    sig = base64.b64encode(signer.sign(header_bytes)).decode("ascii")
    return BlockSignature(node=node, key_id=signer.key_id.hex(), sig=sig)


def verify_header_signature(
    header_bytes: bytes, signature: BlockSignature, verifier: Verifier
) -> None:
    """Raise SignatureError unless `signature` is `verifier`'s signature of the header."""
    expected = verifier.key_id.hex()
    if signature.key_id != expected:
        raise SignatureError(
            f"block signature by node {signature.node!r} has key id {signature.key_id}, "
            f"not {expected} of key {verifier.name}"
        )
    if not verifier.verify(bytes(header_bytes), signature.signature):
        raise SignatureError(
            f"block signature by node {signature.node!r} (key id {signature.key_id}) "
            "does not verify"
        )


def timestamp_ms(when: datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds, e.g. "2025-01-31T12:00:00.123Z" (truncated, not
    rounded, so a timestamp never lies in the future of its instant)."""
    if when is None:
        when = datetime.now(UTC)
    elif when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("timestamp_ms needs an aware datetime")
    when = when.astimezone(UTC)
    return (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T"
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}.{when.microsecond // 1000:03d}Z"
    )
