"""RFC 9162 Merkle trees: hashing, proofs from stored subtrees, and their verification.

Pure code, no I/O. Proof generation reads complete subtree hashes through a
`NodeReader`, so the node's LevelDB store, an in-memory list and a tile cache all
share one implementation of RFC 9162 §2.1.3 and §2.1.4.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from provledger.errors import ConsistencyError, InclusionProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "NodeReader",
    "appended_inclusion_proofs",
    "appended_nodes",
    "consistency_proof",
    "frontier_positions",
    "inclusion_proof",
    "inclusion_proofs",
    "leaf_hash",
    "list_reader",
    "node_hash",
    "root",
    "root_from_inclusion",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeReader = Callable[[int, int], bytes]
"""(level, index) -> hash of the complete subtree over leaves [index << level, (index + 1) << level)."""

_sha256 = hashlib.sha256


def leaf_hash(leaf: bytes) -> bytes:
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves, bottom-up in O(n): pairs each level left to right
    and carries an odd last node up as it is, which builds exactly RFC 9162's tree (its
    left subtrees are the perfect ones)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        paired = [
            _sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def frontier_positions(size: int) -> list[tuple[int, int]]:
    """(level, index) of the perfect subtrees that make up the first `size` leaves, largest first."""
    positions = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            positions.append((level, start >> level))
            start += 1 << level
    return positions


def subtree_root(start: int, end: int, node: NodeReader) -> bytes:
    """MTH(D[start:end]) where `start` is a multiple of the largest power of two not above end - start."""
    size = end - start
    if size <= 0:
        if size == 0:
            return EMPTY_ROOT
        raise ValueError(f"empty range [{start}, {end})")
    # Combine the perfect subtrees of the range from the right: RFC 9162 splits
    # at the largest power of two, which puts every perfect part on the left.
    parts = []
    offset = start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            if offset % (1 << level):
                raise ValueError(f"range [{start}, {end}) is not aligned to stored subtrees")
            parts.append(node(level, offset >> level))
            offset += 1 << level
    acc = parts[-1]
    for h in reversed(parts[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_proof(index: int, size: int, node: NodeReader) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size]), leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of size {size}")
    return _path_up(0, index, size, node)


def _path_up(level: int, index: int, size: int, node: NodeReader) -> list[bytes]:
    """The RFC 9162 path from the complete subtree (level, index) to the root of the first
    `size` leaves, bottom-up: each sibling is a stored complete subtree, or the one
    incomplete subtree on the right edge (computed from stored ones), or absent where the
    node is carried up unchanged. At most log2(size) reads and one right-edge root."""
    path: list[bytes] = []
    last = (size - 1) >> level  # the last node at this level
    while last:
        sibling = index ^ 1
        if sibling < last or (sibling == last and (sibling + 1) << level <= size):
            path.append(node(level, sibling))
        elif sibling == last:
            path.append(subtree_root(sibling << level, size, node))
        index >>= 1
        last >>= 1
        level += 1
    return path


def consistency_proof(first: int, second: int, node: NodeReader) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(first, D[0:second]); empty when first is 0 or equal to second.

    Bottom-up: the largest complete subtree that ends at `first`, then its path to the
    root of `second` (the subtree itself is left out when `first` is a power of two,
    the verifier holds it as the old root)."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    if first == 0 or first == second:
        return []
    level = (first & -first).bit_length() - 1  # trailing zero bits of first
    index = (first - 1) >> level
    path = _path_up(level, index, second, node)
    return path if index == 0 else [node(level, index), *path]


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root that `proof` joins `leaf` (a leaf hash) to."""
    if not 0 <= index < size:
        raise InclusionProofError(f"index {index} is outside a tree of size {size}")
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise InclusionProofError(f"leaf hash and proof hashes must be {HASH_SIZE} bytes")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise InclusionProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InclusionProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes
) -> None:
    computed = root_from_inclusion(index, size, leaf, proof)
    if computed != root_hash:
        raise InclusionProofError(
            f"leaf {index} does not lead to the root of tree size {size}: "
            f"computed {computed.hex()}, expected {root_hash.hex()}"
        )


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2."""

    def fail(reason: str) -> ConsistencyError:
        return ConsistencyError(
            f"tree size {first} is not a prefix of tree size {second}: {reason}",
            proof=tuple(proof),
        )

    if not 0 <= first <= second:
        raise fail("first size is larger than second")
    if any(len(h) != HASH_SIZE for h in (first_root, second_root, *proof)):
        raise fail(f"roots and proof hashes must be {HASH_SIZE} bytes")
    if first == second:
        if proof:
            raise fail("proof must be empty for equal sizes")
        if first_root != second_root:
            raise fail("equal sizes with different roots")
        return
    if first == 0:
        if proof:
            raise fail("proof must be empty from size 0")
        return
    if not proof:
        raise fail("proof is empty")
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: first_root is the first node
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise fail("proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise fail("proof is too short")
    if fr != first_root:
        raise fail(f"computed first root {fr.hex()}, expected {first_root.hex()}")
    if sr != second_root:
        raise fail(f"computed second root {sr.hex()}, expected {second_root.hex()}")


class CompactRange:
    """The right edge of a growing tree: its perfect subtrees, largest first, in O(log n) memory."""

    __slots__ = ("_hashes", "size")

    def __init__(self) -> None:
        self.size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_frontier(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a tree of size {size} has {size.bit_count()} frontier hashes, got {len(hashes)}"
            )
        compact = cls()
        compact.size = size
        compact._hashes = list(hashes)
        return compact

    def hashes(self) -> list[bytes]:
        return list(self._hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Adds one leaf hash; returns the complete nodes it finished, level 0 first."""
        index = self.size
        created = [(0, index, leaf)]
        h = leaf
        level = 0
        hashes = self._hashes
        while index >> level & 1:
            h = node_hash(hashes.pop(), h)
            level += 1
            created.append((level, index >> level, h))
        hashes.append(h)
        self.size += 1
        return created

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = node_hash(h, acc)
        return acc


def list_reader(leaf_hashes: Sequence[bytes]) -> NodeReader:
    """A NodeReader over an in-memory list of leaf hashes (for tests and small trees)."""
    levels: list[list[bytes]] = [list(leaf_hashes)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])

    def read(level: int, index: int) -> bytes:
        return levels[level][index]

    return read


def inclusion_proofs(indexes: Sequence[int], size: int, node: NodeReader) -> list[list[bytes]]:
    """PATH(i, D[0:size]) for many leaves at one size, sharing what their paths share.

    Walks each path bottom-up: a sibling is either a complete stored subtree, the one
    incomplete subtree on the right edge of its level (computed once), or absent where
    the node is promoted unchanged. Leaves under one ancestor share the path above it,
    so it is built once per ancestor: a block's receipts cost about two tuple
    concatenations per leaf instead of a walk of the whole height.
    """
    if size <= 0:
        raise ValueError("no inclusion proof in an empty tree")
    edge: dict[int, bytes] = {}
    above: dict[tuple[int, int], tuple[bytes, ...]] = {}
    proofs = []
    for index in indexes:
        if not 0 <= index < size:
            raise ValueError(f"index {index} is outside a tree of size {size}")
        walked: list[tuple[int, int, bytes | None]] = []
        idx = index
        level = 0
        last = size - 1
        tail: tuple[bytes, ...] | None = ()
        while last:
            cached = above.get((level, idx))
            if cached is not None:
                tail = cached
                break
            sibling = idx ^ 1
            if sibling < last or (sibling == last and (sibling + 1) << level <= size):
                walked.append((level, idx, node(level, sibling)))
            elif sibling == last:
                h = edge.get(level)
                if h is None:
                    h = edge[level] = subtree_root(sibling << level, size, node)
                walked.append((level, idx, h))
            else:
                walked.append((level, idx, None))
            idx >>= 1
            last >>= 1
            level += 1
        assert tail is not None
        for lvl, i, h in reversed(walked):
            if h is not None:
                tail = (h, *tail)
            above[(lvl, i)] = tail
        proofs.append(list(tail))
    return proofs


def appended_nodes(
    first: int, frontier: Sequence[bytes], leaf_hashes: Iterable[bytes]
) -> tuple[CompactRange, dict[tuple[int, int], bytes]]:
    """Appends `leaf_hashes` to a tree of `first` leaves whose perfect subtrees are
    `frontier` (largest first). Returns the new compact range, and by (level, index) the
    frontier's subtrees followed by each complete subtree the new leaves finish (the
    leaves themselves included), level by level.

    Those are all the nodes an inclusion proof of a new leaf in the new tree reads: a
    sibling wholly left of `first` whose parent reaches past it is a maximal perfect
    subtree of the first `first` leaves, that is a frontier subtree."""
    if len(frontier) != first.bit_count():
        raise ValueError(
            f"a tree of size {first} has {first.bit_count()} frontier hashes, got {len(frontier)}"
        )
    nodes = dict(zip(frontier_positions(first), frontier, strict=True))
    # Level by level: the new nodes of a level start at index `start`; one at an odd
    # index pairs with the frontier node on its left, the rest pair among themselves.
    row = list(leaf_hashes)
    size = first + len(row)
    start = first
    level = 0
    while row:
        for offset, h in enumerate(row, start):
            nodes[(level, offset)] = h
        if start & 1:
            row.insert(0, nodes[(level, start - 1)])
            start -= 1
        row = [_sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row) - 1, 2)]
        start >>= 1
        level += 1
    compact = CompactRange.from_frontier(size, [nodes[at] for at in frontier_positions(size)])
    return compact, nodes


def appended_inclusion_proofs(
    first: int, frontier: Sequence[bytes], leaf_hashes: Sequence[bytes]
) -> tuple[bytes, list[list[bytes]]]:
    """The root after appending `leaf_hashes` as in `appended_nodes`, and PATH(i, D[0:n])
    of each new leaf i in the new tree of n leaves, in order: a block's receipts from
    what they share."""
    compact, nodes = appended_nodes(first, frontier, leaf_hashes)
    size = compact.size

    def node(level: int, index: int) -> bytes:
        return nodes[(level, index)]

    return compact.root(), inclusion_proofs(range(first, size), size, node)
