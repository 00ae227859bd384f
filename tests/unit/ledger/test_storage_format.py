"""Golden tests that pin the node's on-disk format, a format-1 database (a key per tree
node) upgraded, read and extended by this format, and a round trip of the key codec.

If one of these fails, the storage format changed: bump FORMAT_VERSION in
ledger/storage/_codec.py, write a migration, and only then update the digests here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import plyvel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.storage import BlockRecord, Head, LevelDBStore, NewLeaf, event_digest
from ledger.storage import _codec as codec
from provledger import merkle
from provledger.errors import StorageError


def _block(
    height: int, first: int, count: int, compact: merkle.CompactRange, *, by_level: bool = True
) -> tuple:  # type: ignore[type-arg]
    """The arguments of apply_block for entries `first` .. `first + count - 1`: every
    third a training event, the others data events; all but every fourth about a model.
    The new nodes come level by level, as the sequencer makes them, or (`by_level=False`)
    in the order the leaves complete them."""
    leaves = [b'{"event":{"n":%d},"submitter":"local"}' % i for i in range(first, first + count)]
    nodes = []
    for leaf in leaves:
        nodes.extend(compact.append(merkle.leaf_hash(leaf)))
    if by_level:
        nodes.sort(key=lambda node: (node[0], node[1]))
    header = b'{"height":%d}' % height
    record = BlockRecord(
        height,
        header,
        hashlib.sha256(header).digest(),
        ({"node": "n", "key_id": "00000000", "sig": "AA=="},),
        first,
        count,
    )
    new = [
        NewLeaf(
            leaf,
            merkle.leaf_hash(leaf),
            event_digest("urn:s", str(i)),
            "provledger.training.v1" if i % 3 == 0 else "provledger.data.v1",
            None if i % 4 == 0 else f"model:m{i % 2}",
        )
        for i, leaf in enumerate(leaves, start=first)
    ]
    return record, new, nodes, Head(height, record.header_hash, first + count, 1)


def _fixture_block(store: LevelDBStore) -> None:
    store.apply_block(*_block(0, 0, 3, merkle.CompactRange()))


def _write_format_1(path: Path, blocks: list[tuple]) -> None:  # type: ignore[type-arg]
    """What a format-1 node wrote for these blocks: one key per node and index entry."""
    db = plyvel.DB(str(path), create_if_missing=True)
    db.put(b"Mformat", b"provledger-leveldb/1")
    for record, leaves, nodes, head in blocks:
        with db.write_batch() as wb:
            for index, new in enumerate(leaves, start=record.first_index):
                key = codec.u64(index)
                wb.put(codec.LEAF + key, new.leaf)
                wb.put(codec.LEAF_HASH + new.leaf_hash, key)
                wb.put(codec.EVENT_ID + new.identity, key)
                wb.put(codec.type_prefix(new.type) + key, b"")
                if new.subject is not None:
                    wb.put(codec.subject_prefix(new.subject) + key, new.type.encode())
            for level, index, node_hash in nodes:
                wb.put(codec.node_key(level, index), node_hash)
            wb.put(codec.block_key(record.height), record.header)
            wb.put(codec.signatures_key(record.height), json.dumps(record.signatures).encode())
            wb.put(codec.block_start_key(record.first_index), codec.u64(record.height))
            head_json = {
                "height": head.height,
                "hash": head.header_hash.hex(),
                "tree_size": head.tree_size,
                "term": head.term,
            }
            wb.put(b"Mhead", json.dumps(head_json).encode())
    db.close()


def _expected_query(size: int, event_type: str | None, subject: str | None) -> list[int]:
    return [
        i
        for i in range(size)
        if (event_type is None or event_type == _block_type(i))
        and (subject is None or (i % 4 != 0 and subject == f"model:m{i % 2}"))
    ]


def _block_type(i: int) -> str:
    return "provledger.training.v1" if i % 3 == 0 else "provledger.data.v1"


def _check_reads(store: LevelDBStore, size: int) -> None:
    """Every read of the store against what the blocks wrote."""
    hashes = [merkle.leaf_hash(store.leaf(i)) for i in range(size)]
    assert [store.node(0, i) for i in range(size)] == hashes
    assert store.nodes(0, 1, size - 2) == hashes[1:-1]
    assert merkle.subtree_root(0, size, store.node) == merkle.root(hashes)
    for level in range(1, size.bit_length()):
        width = 1 << level
        for index in range(size >> level):
            expected = merkle.root(hashes[index * width : (index + 1) * width])
            assert store.node(level, index) == expected, (level, index)
    for event_type in (None, "provledger.training.v1", "provledger.data.v1"):
        for subject in (None, "model:m0", "model:m1"):
            everything = _expected_query(size, event_type, subject)
            for after in (None, 0, 5, size // 2, size - 2):
                first = 0 if after is None else after + 1
                expected = [i for i in everything if i >= first]
                assert store.query(event_type, subject, after, 1000) == expected
                assert store.query(event_type, subject, after, 3) == expected[:3]


def _dump(path: Path) -> list[tuple[bytes, bytes]]:
    db = plyvel.DB(str(path))
    try:
        return list(db.iterator())
    finally:
        db.close()


def test_layout_is_pinned(tmp_path: Path) -> None:
    store = LevelDBStore(tmp_path / "db")
    compact = merkle.CompactRange()
    store.apply_block(*_block(0, 0, 3, compact))
    store.apply_block(*_block(1, 3, 300, compact))
    store.close()
    records = _dump(tmp_path / "db")
    keys = [k for k, _ in records]
    values = dict(records)
    # One family per prefix, fixed-width big-endian integers.
    assert b"L" + (2).to_bytes(8, "big") in keys
    assert b"F" + (3).to_bytes(8, "big") in keys
    assert values[b"Mformat"] == b"provledger-leveldb/3"
    # Levels 0 to 3 in tiles of 16 leaves: 303 leaves fill 18 and 15 of the 19th.
    tiles = {int.from_bytes(k[1:], "big"): v for k, v in records if k[:1] == b"D"}
    assert sorted(tiles) == list(range(19))
    assert len(tiles[0]) == 32 * (16 + 8 + 4 + 2)
    assert len(tiles[18]) == 32 * (15 + 7 + 3 + 1)
    hashes = [merkle.leaf_hash(values[b"L" + i.to_bytes(8, "big")]) for i in range(303)]
    assert tiles[18][: 32 * 15] == b"".join(hashes[288:303])
    assert tiles[1][32 * 16 : 32 * 17] == merkle.root(hashes[16:18])  # level 1 follows
    # From level 4 up, a key per node.
    assert not [k for k in keys if k[:1] == b"N" and k[1] < 4]
    assert b"N\x04" + (17).to_bytes(8, "big") in keys
    assert len(values[b"N\x08" + (0).to_bytes(8, "big")]) == 32
    # Runs of each block's type and subject index entries, under their first index.
    runs = [k for k in keys if k[:1] in b"TU"]
    assert len(runs) == 8  # two types and two subjects, in each of the two blocks
    assert b"Tprovledger.training.v1\x00" + (3).to_bytes(8, "big") in runs
    assert b"U\x00\x08model:m1" + (3).to_bytes(8, "big") in runs
    training = values[b"Tprovledger.training.v1\x00" + (3).to_bytes(8, "big")]
    assert training == b"".join(i.to_bytes(8, "big") for i in range(3, 303, 3))
    m1 = values[b"U\x00\x08model:m1" + (3).to_bytes(8, "big")]
    assert m1[:2] == codec.RUN_MARK + b"\x02"  # two types: training first, then data
    assert codec.read_subject_run(3, m1) == [
        (i, b"provledger.training.v1" if i % 3 == 0 else b"provledger.data.v1")
        for i in range(3, 303, 2)
    ]
    digest = hashlib.sha256(
        b"".join(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v for k, v in records)
    ).hexdigest()
    assert digest == GOLDEN_DIGEST, digest


GOLDEN_DIGEST = "6555227b94dd0b18ea2a27f8d854bb02bae6942566c7be05a642a0053134598a"


def test_reopen_reads_what_was_written(tmp_path: Path) -> None:
    store = LevelDBStore(tmp_path / "db")
    _fixture_block(store)
    store.close()
    store = LevelDBStore(tmp_path / "db")
    head = store.head()
    assert head is not None and head.tree_size == 3 and head.term == 1
    assert store.index_of_event("urn:s", "2") == 2
    assert store.block_height_of_index(2) == 0
    assert store.query("provledger.data.v1", "model:m1", None, 10) == [1]
    assert store.query(None, None, 0, 10) == [1, 2]
    _check_reads(store, 3)
    store.close()


@pytest.mark.parametrize("by_level", [True, False])
def test_reads_across_blocks_runs_and_the_kept_upper_levels(tmp_path: Path, by_level: bool) -> None:
    compact = merkle.CompactRange()
    store = LevelDBStore(tmp_path / "db")
    first = 0
    for height, count in enumerate([5, 1, 26, 7, 64, 3, 300, 250, 2, 1]):
        store.apply_block(*_block(height, first, count, compact, by_level=by_level))
        first += count
    _check_reads(store, first)
    store.close()
    reopened = LevelDBStore(tmp_path / "db")  # upper levels loaded again
    _check_reads(reopened, first)
    reopened.close()


def test_a_format_1_database_is_read_and_extended(tmp_path: Path) -> None:
    compact = merkle.CompactRange()
    old = [_block(0, 0, 9, compact), _block(1, 9, 20, compact), _block(2, 29, 250, compact)]
    _write_format_1(tmp_path / "db", old)
    store = LevelDBStore(tmp_path / "db")
    _check_reads(store, 279)
    assert store.index_of_event("urn:s", "17") == 17
    store.apply_block(*_block(3, 279, 40, compact))
    store.apply_block(*_block(4, 319, 2, compact))
    store.apply_block(*_block(5, 321, 300, compact))
    _check_reads(store, 621)
    store.close()
    upgraded = _dump(tmp_path / "db")
    assert dict(upgraded)[b"Mformat"] == b"provledger-leveldb/3"
    assert not [k for k, _ in upgraded if k[:1] == b"N" and k[1] < 4]
    reopened = LevelDBStore(tmp_path / "db")
    _check_reads(reopened, 621)
    assert reopened.block_height_of_index(620) == 5
    reopened.close()


def test_an_upgrade_cut_short_is_finished_on_the_next_open(tmp_path: Path) -> None:
    compact = merkle.CompactRange()
    old = [_block(0, 0, 37, compact), _block(1, 37, 100, compact)]
    _write_format_1(tmp_path / "db", old)
    LevelDBStore(tmp_path / "db").close()
    tiles = {k: v for k, v in _dump(tmp_path / "db") if k[:1] == b"D"}
    # As a crash after the format key and before the old node keys were deleted leaves
    # it: the tiles, the format-3 key, and some of the old keys.
    db = plyvel.DB(str(tmp_path / "db"))
    for level, index in ((0, 5), (1, 60), (3, 16)):
        db.put(codec.node_key(level, index), b"\x00" * 32)
    db.close()
    store = LevelDBStore(tmp_path / "db")
    _check_reads(store, 137)
    store.close()
    after = _dump(tmp_path / "db")
    assert not [k for k, _ in after if k[:1] == b"N" and k[1] < 4]
    assert {k: v for k, v in after if k[:1] == b"D"} == tiles


def test_a_missing_node_is_named(tmp_path: Path) -> None:
    store = LevelDBStore(tmp_path / "db")
    _fixture_block(store)
    with pytest.raises(StorageError, match="missing tree node at level 0, index 3"):
        store.node(0, 3)
    with pytest.raises(StorageError, match="missing tree nodes at level 0 from index 2"):
        store.nodes(0, 2, 2)
    with pytest.raises(StorageError, match="missing tree node at level 1, index 1"):
        store.node(1, 1)
    store.close()
    db = plyvel.DB(str(tmp_path / "db"))
    db.put(codec.tile_key(0), b"\x00" * 33)  # a length no tile has
    db.close()
    store = LevelDBStore(tmp_path / "db")
    with pytest.raises(StorageError, match="missing tree node at level 0, index 0"):
        store.node(0, 0)
    store.close()


@pytest.mark.parametrize("first, then", [(False, True), (True, False)])
def test_either_compression_reads_what_the_other_wrote(
    tmp_path: Path, first: bool, then: bool
) -> None:
    store = LevelDBStore(tmp_path / "db", compress=first)
    _fixture_block(store)
    store.close()
    # Into table files written under the first setting (LevelDB compresses per table block).
    db = plyvel.DB(str(tmp_path / "db"), compression="snappy" if first else None)
    db.compact_range()
    db.close()
    assert list((tmp_path / "db").glob("*.ldb"))
    store = LevelDBStore(tmp_path / "db", compress=then)
    head = store.head()
    assert head is not None and head.tree_size == 3
    assert [len(store.leaf(i)) > 0 for i in range(3)] == [True] * 3
    assert store.index_of_event("urn:s", "2") == 2
    store.close()


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    db.put(b"Mformat", b"provledger-leveldb/0")
    db.close()
    with pytest.raises(StorageError, match="unsupported storage format"):
        LevelDBStore(tmp_path / "db")


@given(st.integers(0, 2**64 - 1), st.integers(0, 255))
def test_integer_keys_sort_in_numeric_order(index: int, level: int) -> None:
    assert codec.read_u64(codec.u64(index)) == index
    if index < 2**64 - 1:
        assert codec.leaf_key(index) < codec.leaf_key(index + 1)
        assert codec.node_key(level, index) < codec.node_key(level, index + 1)


@given(
    st.text(max_size=40),
    st.text(min_size=1, max_size=40),
    st.text(max_size=40),
    st.text(min_size=1, max_size=40),
)
def test_event_identities_do_not_collide_across_the_source_id_boundary(
    s1: str, i1: str, s2: str, i2: str
) -> None:
    if (s1, i1) != (s2, i2):
        assert codec.event_id_key(s1, i1) != codec.event_id_key(s2, i2)
