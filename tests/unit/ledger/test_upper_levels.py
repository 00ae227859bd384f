"""The upper tree levels a store keeps in memory: exactly the stored nodes, within budget."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import plyvel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.storage import BlockRecord, Head, LevelDBStore, NewLeaf, event_digest
from ledger.storage import _codec as codec
from ledger.storage._upper_levels import HASH, UpperLevels
from provledger import merkle
from provledger.errors import StorageError


def _grow(
    blocks: list[int],
) -> tuple[dict[tuple[int, int], bytes], list[list[tuple[int, int, bytes]]]]:
    """Every complete node of a tree grown block by block, and each block's new nodes."""
    compact = merkle.CompactRange()
    stored: dict[tuple[int, int], bytes] = {}
    per_block = []
    for i, count in enumerate(blocks):
        created = []
        for j in range(count):
            created.extend(compact.append(merkle.leaf_hash(b"block %d leaf %d" % (i, j))))
        stored.update(((level, index), h) for level, index, h in created)
        per_block.append(created)
    return stored, per_block


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 90), min_size=1, max_size=12))
def test_holds_exactly_the_complete_nodes_from_its_lowest_level(blocks: list[int]) -> None:
    stored, per_block = _grow(blocks)
    upper = UpperLevels(2, 1 << 20)
    size = 0
    for count, created in zip(blocks, per_block, strict=True):
        size += count
        upper.extend(created, size)
    assert upper.lowest == 2
    for level in range(0, size.bit_length() + 1):
        for index in range((size >> level) + 2):
            want = stored.get((level, index)) if level >= 2 else None
            assert upper.get(level, index) == want, (level, index)


def test_a_level_with_a_gap_stops_growing_and_is_read_elsewhere() -> None:
    stored, per_block = _grow([64])
    upper = UpperLevels(1, 1 << 20)
    without = [node for node in per_block[0] if node[:2] != (1, 5)]
    upper.extend(without, 64)
    assert [upper.get(1, i) for i in range(5)] == [stored[(1, i)] for i in range(5)]
    assert upper.get(1, 5) is None and upper.get(1, 6) is None  # never shifted
    assert upper.get(2, 7) == stored[(2, 7)]


def test_the_lowest_level_rises_to_stay_within_budget() -> None:
    stored, per_block = _grow([1000, 1000, 1000])
    budget = 4 * 1024
    upper = UpperLevels(2, budget)
    size = 0
    for created in per_block:
        size += 1000
        upper.extend(created, size)
        assert UpperLevels.size_from(upper.lowest, size) <= budget
    assert upper.lowest > 2
    assert upper.get(upper.lowest - 1, 0) is None
    assert upper.get(upper.lowest, 3) == stored[(upper.lowest, 3)]
    held = sum(len(upper._levels[level]) for level in upper._levels) // HASH
    assert held == sum(1 for level, _ in stored if level >= upper.lowest)


def _apply(
    store: LevelDBStore, height: int, first: int, leaves: list[bytes], compact: merkle.CompactRange
) -> None:
    nodes = []
    for leaf in leaves:
        nodes.extend(compact.append(merkle.leaf_hash(leaf)))
    header = b'{"height":%d}' % height
    digest = hashlib.sha256(header).digest()
    store.apply_block(
        BlockRecord(height, header, digest, (), first, len(leaves)),
        [
            NewLeaf(leaf, merkle.leaf_hash(leaf), event_digest("urn:s", str(first + i)), "t", None)
            for i, leaf in enumerate(leaves)
        ],
        nodes,
        Head(height, digest, first + len(leaves), 1),
    )


def test_a_reopened_store_proves_what_the_tree_proves(tmp_path: Path) -> None:
    store = LevelDBStore(tmp_path / "db")
    compact = merkle.CompactRange()
    leaves = [b"entry %d" % i for i in range(3000)]
    first = 0
    for height, count in enumerate([700, 1, 1299, 1000]):
        _apply(store, height, first, leaves[first : first + count], compact)
        first += count
    reader = merkle.list_reader([merkle.leaf_hash(leaf) for leaf in leaves])
    rng = random.Random(7)
    cases = [
        (rng.randrange(n), n)
        for n in (1, 2, 17, 700, 701, 2047, 2048, 2049, 3000)
        for _ in range(20)
    ]

    def check(store: LevelDBStore) -> None:
        for index, size in cases:
            index %= size
            assert merkle.inclusion_proof(index, size, store.node) == merkle.inclusion_proof(
                index, size, reader
            )
            assert merkle.consistency_proof(index, size, store.node) == merkle.consistency_proof(
                index, size, reader
            )

    check(store)  # kept while writing
    store.close()
    store = LevelDBStore(tmp_path / "db")
    check(store)  # read back at open
    store.close()


def test_a_store_missing_a_node_keeps_the_nodes_before_it_and_names_the_missing_one(
    tmp_path: Path,
) -> None:
    store = LevelDBStore(tmp_path / "db")
    compact = merkle.CompactRange()
    leaves = [b"entry %d" % i for i in range(256)]
    _apply(store, 0, 0, leaves, compact)
    store.close()
    db = plyvel.DB(str(tmp_path / "db"))
    db.delete(codec.node_key(4, 5))
    db.close()
    store = LevelDBStore(tmp_path / "db")
    reader = merkle.list_reader([merkle.leaf_hash(leaf) for leaf in leaves])
    assert store._upper.get(4, 4) == reader(4, 4)
    assert store._upper.get(4, 6) is None
    assert store.node(4, 6) == reader(4, 6)  # from LevelDB
    with pytest.raises(StorageError, match="missing tree node at level 4, index 5"):
        store.node(4, 5)
    store.close()
