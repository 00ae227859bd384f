"""The upper levels of the tree in memory: every stored subtree hash from some level up.

A proof at a million entries reads some twenty nodes; from LevelDB each costs 5 to 10 µs,
from here a slice. Complete subtrees never change, and a level's nodes are stored in index
order, so each level is one bytearray of 32-byte hashes that only grows. The lowest level
kept rises as the log grows, so the whole stays within a fixed budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["UpperLevels"]

HASH = 32


class UpperLevels:
    """Hashes of complete subtrees at `lowest` and above (`lowest` >= `floor`), all of
    them from index 0 up, or, where a level could not be kept whole, from 0 up to a gap."""

    def __init__(self, floor: int, budget: int) -> None:
        self._floor = floor
        self._budget = budget
        self.lowest = floor
        self._levels: dict[int, bytearray] = {}

    @staticmethod
    def size_from(level: int, tree_size: int) -> int:
        """Bytes that levels `level` and up take for a tree of `tree_size` leaves."""
        return sum(tree_size >> upper for upper in range(level, tree_size.bit_length())) * HASH

    def lowest_for(self, tree_size: int) -> int:
        level = self._floor
        while self.size_from(level, tree_size) > self._budget:
            level += 1
        return level

    def load(self, tree_size: int, read_level: Callable[[int, int], bytes]) -> None:
        """Reads the levels kept for a tree of `tree_size` leaves: `read_level(level,
        count)` gives the level's first `count` stored hashes joined (fewer before a gap)."""
        self.lowest = self.lowest_for(tree_size)
        self._levels = {
            level: bytearray(read_level(level, tree_size >> level))
            for level in range(self.lowest, tree_size.bit_length())
        }

    def get(self, level: int, index: int) -> bytes | None:
        """The hash at (level, index), or None when it is not held here."""
        if level < self.lowest:
            return None
        hashes = self._levels.get(level)
        if hashes is None:
            return None
        start = index * HASH
        found = hashes[start : start + HASH]
        return bytes(found) if len(found) == HASH else None

    def extend(self, nodes: Sequence[tuple[int, int, bytes]], tree_size: int) -> None:
        """Takes a committed block's new complete subtrees (level by level, each in index
        order). A node that does not continue its level is left to the store: a level
        with a gap stops growing here and its later nodes are read from LevelDB."""
        lowest = self.lowest
        for level, index, node_hash in nodes:
            if level < lowest:
                continue
            hashes = self._levels.get(level)
            if hashes is None:
                if index != 0:
                    continue
                hashes = self._levels[level] = bytearray()
            if len(hashes) == index * HASH:
                hashes += node_hash
        wanted = self.lowest_for(tree_size)
        while self.lowest < wanted:  # over budget: the lowest level goes
            self._levels.pop(self.lowest, None)
            self.lowest += 1
