"""C2SP tlog-tiles paths: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`.

`<N>` is the tile index in zero-padded three-digit path elements, every element but the
last prefixed with `x` (1234067 is `x001/x234/067`); `<W>` is a partial tile's width,
1 to 255. Parsing accepts only the canonical spelling, so that one tile has exactly one
URL and a CDN never caches the same bytes twice (or a mangled path once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "FULL_WIDTH",
    "MAX_LEVEL",
    "MAX_TILE_INDEX",
    "TileIndex",
    "TilePathError",
    "format_tile_index",
    "parse_tile_index",
    "parse_tile_level",
]

FULL_WIDTH = 256
MAX_LEVEL = 63
# Indexes travel as uint64 on gRPC; a tile index is at most (2**64 - 1) >> 8.
MAX_TILE_INDEX = (2**64 - 1) >> 8

_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_INNER = re.compile(r"x[0-9]{3}")
_LAST = re.compile(r"[0-9]{3}")


class TilePathError(ValueError):
    """A tile path that is not in canonical C2SP form."""


@dataclass(frozen=True, slots=True)
class TileIndex:
    """The `<N>[.p/<W>]` part of a tile path; `width` is 256 for a full tile."""

    index: int
    width: int = FULL_WIDTH

    def __post_init__(self) -> None:
        if not 0 <= self.index <= MAX_TILE_INDEX:
            raise TilePathError(f"tile index {self.index} out of range")
        if not 1 <= self.width <= FULL_WIDTH:
            raise TilePathError(f"tile width {self.width} out of range 1..256")

    @property
    def full(self) -> bool:
        return self.width == FULL_WIDTH


def parse_tile_level(text: str) -> int:
    """`<L>`: decimal 0 to 63 without leading zeros."""
    if not _LEVEL.fullmatch(text) or int(text) > MAX_LEVEL:
        raise TilePathError(f"tile level {text!r} is not a decimal integer from 0 to 63")
    return int(text)


def parse_tile_index(text: str) -> TileIndex:
    """`<N>[.p/<W>]`, e.g. `x001/x234/067` or `067.p/12`."""
    parts = text.split("/")
    width = FULL_WIDTH
    if len(parts) >= 2 and parts[-2].endswith(".p"):
        raw_width = parts[-1]
        if not _WIDTH.fullmatch(raw_width) or int(raw_width) >= FULL_WIDTH:
            raise TilePathError(f"partial tile width {raw_width!r} is not 1 to 255")
        width = int(raw_width)
        parts = [*parts[:-2], parts[-2][: -len(".p")]]
    if not parts or len(parts) > 7:
        raise TilePathError(f"tile index path {text!r} has {len(parts)} elements")
    *inner, last = parts
    if not _LAST.fullmatch(last) or not all(_INNER.fullmatch(p) for p in inner):
        raise TilePathError(
            f"tile index path {text!r} is not zero-padded three-digit elements "
            "with an 'x' before all but the last"
        )
    if inner and inner[0] == "x000":
        raise TilePathError(f"tile index path {text!r} has a leading zero element")
    index = 0
    for part in parts:
        index = index * 1000 + int(part.removeprefix("x"))
    return TileIndex(index, width)


def format_tile_index(index: int, width: int = FULL_WIDTH) -> str:
    """The canonical `<N>[.p/<W>]` for a tile index (inverse of `parse_tile_index`)."""
    tile = TileIndex(index, width)
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    path = "/".join(reversed(groups))
    return path if tile.full else f"{path}.p/{tile.width}"
