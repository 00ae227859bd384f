"""Key layout of the node's LevelDB database: fixed-width big-endian integers, so iteration is index order.

Changing anything here changes the on-disk format: bump FORMAT_VERSION and update the
golden test (tests/unit/ledger/test_storage_format.py).
"""

from __future__ import annotations

import hashlib
import struct

FORMAT_VERSION = b"provledger-leveldb/1"

META = b"M"  # M<name> -> value
LEAF = b"L"  # L<u64 index> -> leaf bytes
LEAF_HASH = b"H"  # H<32-byte leaf hash> -> u64 index
EVENT_ID = b"E"  # E<sha256(u16 len source || source || id)> -> u64 index
NODE = b"N"  # N<u8 level><u64 index> -> 32-byte hash of a complete subtree
BLOCK = b"B"  # B<u64 height> -> header JCS bytes
SIGNATURES = b"S"  # S<u64 height> -> JSON list of signatures
BLOCK_START = b"F"  # F<u64 first_index> -> u64 height
TYPE_INDEX = b"T"  # T<type>\x00<u64 index> -> b""
SUBJECT_INDEX = b"U"  # U<u16 len><subject><u64 index> -> type
IDEMPOTENCY = b"K"  # K<key> -> JSON {digest, created, response}

_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")


def u64(value: int) -> bytes:
    return _U64.pack(value)


def read_u64(raw: bytes, offset: int = 0) -> int:
    return int(_U64.unpack_from(raw, offset)[0])


def meta_key(name: str) -> bytes:
    return META + name.encode()


def leaf_key(index: int) -> bytes:
    return LEAF + _U64.pack(index)


def leaf_hash_key(leaf_hash: bytes) -> bytes:
    return LEAF_HASH + leaf_hash


def event_digest(source: str, event_id: str) -> bytes:
    src = source.encode()
    return hashlib.sha256(_U16.pack(len(src)) + src + event_id.encode()).digest()


def event_id_key(source: str, event_id: str) -> bytes:
    return EVENT_ID + event_digest(source, event_id)


def node_key(level: int, index: int) -> bytes:
    return NODE + bytes((level,)) + _U64.pack(index)


def block_key(height: int) -> bytes:
    return BLOCK + _U64.pack(height)


def signatures_key(height: int) -> bytes:
    return SIGNATURES + _U64.pack(height)


def block_start_key(first_index: int) -> bytes:
    return BLOCK_START + _U64.pack(first_index)


def type_prefix(event_type: str) -> bytes:
    return TYPE_INDEX + event_type.encode() + b"\x00"


def subject_prefix(subject: str) -> bytes:
    raw = subject.encode()
    return SUBJECT_INDEX + _U16.pack(len(raw)) + raw


def idempotency_key(key: str) -> bytes:
    return IDEMPOTENCY + key.encode()
