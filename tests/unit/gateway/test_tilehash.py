"""The tile-backed NodeReader and tile checks, against `provledger.merkle.list_reader`.

Tiles are cut from an in-memory tree exactly as C2SP tlog-tiles defines them (tile L/N
holds the hashes at tree level 8L, indexes 256N...), so every proof and node computed
from them must equal the one computed from the leaves directly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway._tilehash import (
    HashTile,
    PathMemo,
    TileKey,
    TileMismatchError,
    TileMissingError,
    check_edge,
    check_full,
    edge_keys,
    inclusion_path,
    parent_key,
    tile_code,
    tile_reader,
)
from provledger import merkle


def leaves(n: int, seed: str = "") -> list[bytes]:
    return [merkle.leaf_hash(f"{seed}leaf-{i}".encode()) for i in range(n)]


def cut_tiles(node: merkle.NodeReader, size: int) -> dict[int, HashTile]:
    """Every hash tile of a tree of `size` leaves (full and right-edge partial)."""
    tiles = {}
    for level in range(8):
        count = size >> (8 * level)
        if not count:
            break
        for index in range((count + 255) // 256):
            width = min(256, count - 256 * index)
            data = b"".join(node(8 * level, 256 * index + i) for i in range(width))
            tiles[tile_code(level, index)] = HashTile(level, index, data)
    return tiles


# One large tree, so that tile level 2 (65,536 leaves and more) is reached; any prefix
# of it is a tree too, with the same complete nodes.
BIG = leaves(70_000, "big-")
BIG_READER = merkle.list_reader(BIG)
NOTHING: dict[int, HashTile] = {}


def assert_proofs_equal(size: int, indexes: Sequence[int], firsts: Sequence[int]) -> None:
    expected = merkle.list_reader(BIG[:size])
    tiles = cut_tiles(BIG_READER, size)
    node = tile_reader(size, tiles.get)
    memo, small = PathMemo(), PathMemo(limit=2)
    assert merkle.subtree_root(0, size, node) == merkle.root(BIG[:size])
    for i in indexes:
        want = merkle.inclusion_proof(i, size, expected)
        assert merkle.inclusion_proof(i, size, node) == want
        assert inclusion_path(i, size, node) == want
        assert inclusion_path(i, size, node, memo) == want  # the memo filled
        assert inclusion_path(i, size, node, memo) == want  # and used
        assert inclusion_path(i, size, node, small) == want
        assert node(0, i) == BIG[i]
    assert len(small.above) <= 2
    if size > 256:
        assert memo.above
    for m in firsts:
        assert merkle.consistency_proof(m, size, node) == merkle.consistency_proof(
            m, size, expected
        )


@pytest.mark.parametrize(
    "size",
    [1, 2, 3, 255, 256, 257, 511, 512, 513, 65_535, 65_536, 65_537, 65_792, 65_793, 69_999],
)
def test_proofs_from_tiles_equal_list_reader_at_tile_boundaries(size: int) -> None:
    rng = random.Random(size)
    indexes = {0, size - 1, size // 2, *(rng.randrange(size) for _ in range(40))}
    firsts = {0, 1, size, *(rng.randint(0, size) for _ in range(20))}
    assert_proofs_equal(size, sorted(indexes), sorted(firsts))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 70_000), st.randoms(use_true_random=False))
def test_proofs_from_tiles_equal_list_reader_for_random_sizes(
    size: int, rng: random.Random
) -> None:
    indexes = [rng.randrange(size) for _ in range(8)]
    firsts = [rng.randint(0, size) for _ in range(4)]
    assert_proofs_equal(size, indexes, firsts)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 1_500), st.data())
def test_small_random_trees(size: int, data: st.DataObject) -> None:
    tree = leaves(size, "small-")
    expected = merkle.list_reader(tree)
    node = tile_reader(size, cut_tiles(expected, size).get)
    i = data.draw(st.integers(0, size - 1))
    m = data.draw(st.integers(i + 1, size))
    proof = inclusion_path(i, m, node)
    assert proof == merkle.inclusion_proof(i, m, expected)
    merkle.verify_inclusion(i, m, tree[i], proof, merkle.root(tree[:m]))


def test_every_node_of_an_expanded_tile_is_the_tree_node() -> None:
    size = 70_000
    tiles = cut_tiles(BIG_READER, size)
    for code in (tile_code(0, 0), tile_code(0, 273), tile_code(1, 1), tile_code(2, 0)):
        tile = tiles[code]
        for height in range(9):
            count = tile.width >> height
            for position in range(count):
                index = (tile.index << (8 - height)) + position
                assert tile.node(height, position) == BIG_READER(8 * tile.level + height, index), (
                    tile,
                    height,
                    position,
                )
            with pytest.raises(IndexError):
                tile.node(height, count)
    assert tiles[tile_code(0, 5)].root == BIG_READER(8, 5)
    with pytest.raises(ValueError):
        _ = tiles[tile_code(2, 0)].root  # a partial tile has no single root


def test_edge_keys_name_the_right_edge() -> None:
    assert edge_keys(0) == []
    assert edge_keys(5) == [TileKey(0, 0, 5)]
    assert edge_keys(256) == [TileKey(1, 0, 1)]
    assert edge_keys(256 * 256 + 3) == [TileKey(0, 256, 3), TileKey(2, 0, 1)]
    assert edge_keys(70_000) == [
        TileKey(0, 273, 70_000 - 273 * 256),
        TileKey(1, 1, 273 - 256),
        TileKey(2, 0, 1),
    ]


def test_parent_key() -> None:
    assert parent_key(TileKey(0, 3, 256), 70_000) == TileKey(1, 0, 256)
    assert parent_key(TileKey(0, 260, 256), 70_000) == TileKey(1, 1, 17)
    assert parent_key(TileKey(1, 0, 256), 70_000) == TileKey(2, 0, 1)
    with pytest.raises(ValueError):
        parent_key(TileKey(0, 273, 112), 70_000)  # partial: no single parent entry
    with pytest.raises(ValueError):
        parent_key(TileKey(0, 274, 256), 70_000)  # not complete at this size


def test_missing_tiles_are_named_in_one_pass() -> None:
    size = 70_000
    tiles = cut_tiles(BIG_READER, size)
    held: dict[int, HashTile] = {}
    index = 12_345
    missing: set[TileKey] = set()
    placeholder_proof = inclusion_path(index, size, tile_reader(size, held.get, missing))
    assert len(placeholder_proof) == len(merkle.inclusion_proof(index, size, BIG_READER))
    # The leaf's full tiles up the tree, and the right edge where its path meets it
    # (the incomplete subtree over leaves 65,536 to 69,999: 4,096 + 256 + 112 leaves).
    assert missing == {
        TileKey(0, index >> 8, 256),
        TileKey(1, 0, 256),
        TileKey(1, 1, 17),
        TileKey(0, 273, 112),
    }
    held.update({k.code: tiles[k.code] for k in missing})
    node = tile_reader(size, held.get)
    assert inclusion_path(index, size, node) == merkle.inclusion_proof(index, size, BIG_READER)
    with pytest.raises(TileMissingError):
        tile_reader(size, NOTHING.get)(0, 0)


def test_placeholders_are_not_kept_in_the_memo() -> None:
    size = 1_000
    memo = PathMemo()
    missing: set[TileKey] = set()
    inclusion_path(3, size, tile_reader(size, NOTHING.get, missing), memo, missing)
    assert missing and not memo.right_edge and not memo.above
    node = tile_reader(size, cut_tiles(BIG_READER, size).get)
    assert inclusion_path(3, size, node, memo) == merkle.inclusion_proof(3, size, node)
    assert memo.right_edge and memo.above


def test_a_narrow_tile_does_not_serve_nodes_beyond_its_width() -> None:
    size = 600
    narrow = {tile_code(0, 2): HashTile(0, 2, b"".join(BIG_READER(0, 512 + i) for i in range(10)))}
    missing: set[TileKey] = set()
    assert tile_reader(size, narrow.get, missing)(0, 520) == BIG[520]
    assert not missing
    tile_reader(size, narrow.get, missing)(0, 525)
    assert missing == {TileKey(0, 2, 88)}
    with pytest.raises(ValueError):
        tile_reader(size, narrow.get)(0, 600)  # not in the tree at all


def test_edge_tiles_must_make_the_root() -> None:
    size = 70_000
    tiles = cut_tiles(BIG_READER, size)
    edge = [tiles[k.code] for k in edge_keys(size)]
    root = merkle.root(BIG[:size])
    check_edge(size, root, edge)
    check_edge(0, merkle.EMPTY_ROOT, [])
    with pytest.raises(TileMismatchError):
        check_edge(size, merkle.root(BIG[: size - 1]), edge)
    for victim in range(len(edge)):
        bad = list(edge)
        tile = bad[victim]
        data = bytearray(tile.entries)
        data[-1] ^= 1  # the last entry of every edge tile is in the frontier
        bad[victim] = HashTile(tile.level, tile.index, bytes(data))
        with pytest.raises(TileMismatchError):
            check_edge(size, root, bad)


def test_full_tiles_must_match_the_tile_above() -> None:
    size = 70_000
    tiles = cut_tiles(BIG_READER, size)
    for code in (tile_code(0, 0), tile_code(0, 272), tile_code(1, 0)):
        check_full(tiles[code], size, tiles.get)
    good = tiles[tile_code(0, 7)]
    data = bytearray(good.entries)
    data[100] ^= 0x80
    with pytest.raises(TileMismatchError):
        check_full(HashTile(0, 7, bytes(data)), size, tiles.get)
    # And a tile above that does not hold this tile's root refuses it too.
    parent = tiles[tile_code(1, 0)]
    entries = bytearray(parent.entries)
    entries[7 * 32] ^= 1
    bad_parent = dict(tiles)
    bad_parent[tile_code(1, 0)] = HashTile(1, 0, bytes(entries))
    with pytest.raises(TileMismatchError):
        check_full(good, size, bad_parent.get)


@pytest.mark.parametrize("length", [0, 31, 33, 257 * 32])
def test_malformed_tile_bytes_are_refused(length: int) -> None:
    with pytest.raises(TileMismatchError):
        HashTile(0, 0, bytes(length))


def test_tile_keys_are_validated() -> None:
    for level, index, width in ((8, 0, 1), (-1, 0, 1), (0, -1, 1), (0, 0, 0), (0, 0, 257)):
        with pytest.raises(ValueError):
            TileKey(level, index, width)
