"""Key layout of the node's LevelDB database: fixed-width big-endian integers, so iteration is index order.

Changing anything here changes the on-disk format: bump FORMAT_VERSION and update the
golden test (tests/unit/ledger/test_storage_format.py).

Format 2 writes the type and subject index entries a block adds as runs, one per type
and one per subject, each under the (type or subject, index) of its first entry, where
format 1 wrote a key per entry: seven keys per event become five. Format 2 reads format
1's entries as runs of one, so a format-1 database is upgraded by rewriting its format
key.

Format 3 stores the tree's four lowest levels in tiles, one key per 16 leaves, where
formats 1 and 2 wrote a key per node: about 1.9 keys per event become 1/16, and a proof
reads one tile instead of four nodes. The nodes from level 4 up stay one key each. A
format-1 or format-2 database is upgraded when opened (LevelDBStore): its lower nodes
are copied into tiles, then the format key is rewritten, then the old node keys go.
"""

from __future__ import annotations

import hashlib
import struct

FORMAT_VERSION = b"provledger-leveldb/3"
READABLE_VERSIONS = (b"provledger-leveldb/1", b"provledger-leveldb/2", FORMAT_VERSION)

META = b"M"  # M<name> -> value
LEAF = b"L"  # L<u64 index> -> leaf bytes
LEAF_HASH = b"H"  # H<32-byte leaf hash> -> u64 index
EVENT_ID = b"E"  # E<sha256(u16 len source || source || id)> -> u64 index
NODE = b"N"  # N<u8 level><u64 index> -> 32-byte hash of a complete subtree (format 3: level >= 4)
# D<u64 tile> -> levels 0 to 3 of the tree over leaves 16*tile .. 16*tile + 15: the
# complete nodes of each level in turn, from level 0, 32 bytes each. A tile over w < 16
# leaves (the log's right edge) holds w, w>>1, w>>2 and w>>3 of them, and is written
# again as the log grows.
TILE = b"D"
BLOCK = b"B"  # B<u64 height> -> header JCS bytes
SIGNATURES = b"S"  # S<u64 height> -> JSON list of signatures
BLOCK_START = b"F"  # F<u64 first_index> -> u64 height
# T<type>\x00<u64 index> -> u64 indexes of that type from that one on (a run);
# format 1: b"" for the key's index alone
TYPE_INDEX = b"T"
# U<u16 len><subject><u64 index> -> a run: RUN_MARK, u8 count of types, each type as u8
# length + bytes, then the entries' u64 indexes, then their u8 type numbers; format 1:
# the type of the key's index alone (a type never starts with RUN_MARK)
SUBJECT_INDEX = b"U"
RUN_MARK = b"\x00"
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


# N<u8 level> for every u8 level, made once rather than per key
NODE_LEVEL_PREFIXES = tuple(NODE + bytes((level,)) for level in range(256))


def node_key(level: int, index: int) -> bytes:
    return NODE_LEVEL_PREFIXES[level] + _U64.pack(index)


TILE_LEVELS = 4  # levels 0 to 3 are kept in tiles
TILE_WIDTH = 1 << TILE_LEVELS  # leaves under one tile
_HASH = 32


def tile_key(tile: int) -> bytes:
    return TILE + _U64.pack(tile)


def tile_bytes(width: int) -> int:
    """The length of a tile over `width` leaves."""
    return _HASH * sum(width >> level for level in range(TILE_LEVELS))


# A tile's width from its length (the length grows with the width, so it tells it).
_TILE_WIDTHS = {tile_bytes(width): width for width in range(1, TILE_WIDTH + 1)}


def tile_width(value: bytes) -> int | None:
    """The number of leaves under a stored tile; None if its length fits no width."""
    return _TILE_WIDTHS.get(len(value))


def tile_level(value: bytes, width: int, level: int) -> bytes:
    """The joined hashes of `level` (< TILE_LEVELS) in a tile over `width` leaves."""
    start = _HASH * sum(width >> lower for lower in range(level))
    return value[start : start + _HASH * (width >> level)]


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


def index_run(indexes: list[int]) -> bytes:
    """A type index run: the indexes, ascending, as u64s."""
    return struct.pack(f">{len(indexes)}Q", *indexes)


def read_index_run(key_index: int, value: bytes) -> tuple[int, ...]:
    """The indexes of a type index value (format 1: the key's own)."""
    if not value:
        return (key_index,)
    return struct.unpack(f">{len(value) // 8}Q", value)


def subject_run(entries: list[tuple[int, str]]) -> bytes:
    """A subject index run: (index, type) pairs, ascending by index. Event types are
    SPEC §1's few short names, so a block's fit the u8 counts and lengths."""
    numbers: dict[str, int] = {}
    kinds = bytes(numbers.setdefault(kind, len(numbers)) for _, kind in entries)
    table = b"".join(bytes((len(raw),)) + raw for raw in (kind.encode() for kind in numbers))
    indexes = struct.pack(f">{len(entries)}Q", *(index for index, _ in entries))
    return RUN_MARK + bytes((len(numbers),)) + table + indexes + kinds


def read_subject_run(key_index: int, value: bytes) -> list[tuple[int, bytes]]:
    """The (index, type) pairs of a subject index value (format 1: the key's own)."""
    if not value.startswith(RUN_MARK):
        return [(key_index, value)]
    at, types = 2, []
    for _ in range(value[1]):
        types.append(value[at + 1 : at + 1 + value[at]])
        at += 1 + value[at]
    count = (len(value) - at) // 9
    indexes = struct.unpack_from(f">{count}Q", value, at)
    kinds = value[at + 8 * count :]
    return [(index, types[kind]) for index, kind in zip(indexes, kinds, strict=True)]
