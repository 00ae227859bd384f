"""Golden tests that pin the node's on-disk format, and a round trip of the key codec.

If one of these fails, the storage format changed: bump FORMAT_VERSION in
ledger/storage/_codec.py, write a migration, and only then update the digests here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import plyvel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.storage import BlockRecord, Head, LevelDBStore, NewLeaf, event_digest
from ledger.storage import _codec as codec
from provledger import merkle
from provledger.errors import StorageError


def _fixture_block(store: LevelDBStore) -> None:
    leaves = [b'{"event":{"n":%d},"submitter":"local"}' % i for i in range(3)]
    compact = merkle.CompactRange()
    nodes = []
    for leaf in leaves:
        nodes.extend(compact.append(merkle.leaf_hash(leaf)))
    header = b'{"height":0}'
    store.apply_block(
        BlockRecord(
            0,
            header,
            hashlib.sha256(header).digest(),
            ({"node": "n", "key_id": "00000000", "sig": "AA=="},),
            0,
            3,
        ),
        [
            NewLeaf(
                leaf,
                merkle.leaf_hash(leaf),
                event_digest("urn:s", str(i)),
                "provledger.data.v1",
                "model:m" if i else None,
            )
            for i, leaf in enumerate(leaves)
        ],
        nodes,
        Head(0, hashlib.sha256(header).digest(), 3, 1),
    )


def _dump(path: Path) -> list[tuple[bytes, bytes]]:
    db = plyvel.DB(str(path))
    try:
        return list(db.iterator())
    finally:
        db.close()


def test_layout_is_pinned(tmp_path: Path) -> None:
    store = LevelDBStore(tmp_path / "db")
    _fixture_block(store)
    store.close()
    records = _dump(tmp_path / "db")
    keys = [k for k, _ in records]
    # One family per prefix, fixed-width big-endian integers.
    assert b"L" + (2).to_bytes(8, "big") in keys
    assert b"N" + bytes((1,)) + (0).to_bytes(8, "big") in keys
    assert b"F" + (0).to_bytes(8, "big") in keys
    assert b"Mformat" in keys and dict(records)[b"Mformat"] == b"provledger-leveldb/1"
    digest = hashlib.sha256(
        b"".join(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v for k, v in records)
    ).hexdigest()
    assert digest == GOLDEN_DIGEST, digest


GOLDEN_DIGEST = "c44c2bead31c03340f1ec52b4e05376cf8076154c8271ed0521aeed8cad994ee"


def test_reopen_reads_what_was_written(tmp_path: Path) -> None:
    store = LevelDBStore(tmp_path / "db")
    _fixture_block(store)
    store.close()
    store = LevelDBStore(tmp_path / "db")
    head = store.head()
    assert head is not None and head.tree_size == 3 and head.term == 1
    assert store.index_of_event("urn:s", "2") == 2
    assert store.block_height_of_index(2) == 0
    assert store.query("provledger.data.v1", "model:m", None, 10) == [1, 2]
    assert store.query(None, None, 0, 10) == [1, 2]
    root = merkle.subtree_root(0, 3, store.node)
    assert root == merkle.root([merkle.leaf_hash(store.leaf(i)) for i in range(3)])
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
