"""The C2SP tlog-tiles path codec: canonical spellings only, and a round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import TileIndex, TilePathError, format_tile_index, parse_tile_index
from gateway._tiles import MAX_TILE_INDEX, parse_tile_level

# Examples from c2sp.org/tlog-tiles: "index 1234067 will be encoded as x001/x234/067".
KNOWN = [
    (0, 256, "000"),
    (1, 256, "001"),
    (999, 256, "999"),
    (1000, 256, "x001/000"),
    (1234067, 256, "x001/x234/067"),
    (1234067, 8, "x001/x234/067.p/8"),
    (0, 1, "000.p/1"),
    (5, 255, "005.p/255"),
]


@pytest.mark.parametrize(("index", "width", "path"), KNOWN)
def test_known_paths(index: int, width: int, path: str) -> None:
    assert format_tile_index(index, width) == path
    assert parse_tile_index(path) == TileIndex(index, width)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "1",
        "01",
        "0000",
        "x000/001",  # a leading zero element: 1 has one spelling, "001"
        "001/002",  # inner element without x
        "x001",  # last element with x
        "x1/000",
        "000.p/0",
        "000.p/256",  # a full tile has no .p suffix
        "000.p/012",
        "000.p/",
        "000.p",
        "000/.p/3",
        "x001/x002/x003/x004/x005/x006/x007/000",
        "١٢٣",  # digits of another script
        "+12",
        "000/",
        "/000",
        "x999/x999/x999/x999/x999/x999/999",  # beyond the uint64 leaf index space
    ],
)
def test_non_canonical_paths_are_refused(path: str) -> None:
    with pytest.raises(TilePathError):
        parse_tile_index(path)


@given(st.integers(0, MAX_TILE_INDEX), st.integers(1, 256))
def test_round_trip(index: int, width: int) -> None:
    path = format_tile_index(index, width)
    assert parse_tile_index(path) == TileIndex(index, width)
    # Every element is three digits, all but the last behind an x.
    elements = path.split(".p/")[0].split("/")
    assert all(len(e) == 4 and e[0] == "x" for e in elements[:-1])
    assert len(elements[-1]) == 3


@pytest.mark.parametrize(("text", "level"), [("0", 0), ("1", 1), ("63", 63)])
def test_levels(text: str, level: int) -> None:
    assert parse_tile_level(text) == level


@pytest.mark.parametrize("text", ["", "00", "01", "64", "-1", "x", "entries", "1.0", "٣"])
def test_bad_levels(text: str) -> None:
    with pytest.raises(TilePathError):
        parse_tile_level(text)


def test_tile_index_validates() -> None:
    with pytest.raises(TilePathError):
        TileIndex(-1)
    with pytest.raises(TilePathError):
        TileIndex(0, 0)
    with pytest.raises(TilePathError):
        TileIndex(0, 257)
    assert TileIndex(3).full and not TileIndex(3, 9).full
