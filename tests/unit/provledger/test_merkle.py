"""Tests of provledger.merkle: published RFC 6962/9162 answers, pymerkle, and corrupted proofs.

The known answers (vectors/rfc6962.json, sources named in the file) pin the hashing and
the exact proofs; pymerkle is an independent implementation to compare random trees
with; every corruption of a valid proof must raise the verifier's own error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from provledger import merkle
from provledger.errors import ConsistencyError, InclusionProofError

_VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "rfc6962.json").read_text(encoding="utf-8")
)


def _hashes(hexes: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


LEAVES = _hashes(_VECTORS["leaves"])
ROOTS = _hashes(_VECTORS["roots"])  # by tree size, 0 to 8
NODES = [_hashes(level) for level in _VECTORS["nodes"]]  # NODES[level][index]
LEAF_HASHES = [merkle.leaf_hash(leaf) for leaf in LEAVES]
# transparency-dev/merkle proof/verify_test.go (sha256SomeHash): a hash of nothing in the tree.
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def published_node(level: int, index: int) -> bytes:
    """A NodeReader over the published node hashes: proofs built from it use none of our hashing."""
    return NODES[level][index]


def _bounded(node: merkle.NodeReader, start: int, end: int) -> merkle.NodeReader:
    """A reader that fails the test on any read but a complete subtree inside [start, end).

    A node's store holds only complete subtrees of the leaves it has, so a proof for a
    size must never need a node that straddles or passes that size.
    """

    def read(level: int, index: int) -> bytes:
        first, last = index << level, (index + 1) << level
        assert level >= 0 and start <= first and last <= end, (
            f"read node ({level}, {index}) = leaves [{first}, {last}) outside [{start}, {end})"
        )
        return node(level, index)

    return read


def _fold_rehash(nodes: list[list[int]], rehash: list[int] | None) -> list[bytes]:
    """The proof hashes that transparency-dev's node list stands for.

    Where a proof needs an incomplete subtree, its node list names the subtree's complete
    pieces [begin, end) lowest first; the proof holds their fold, each piece the left
    child of the hash so far (transparency-dev proof.Nodes.Rehash).
    """
    hashes = [NODES[level][index] for level, index in nodes]
    if rehash:
        begin, end = rehash
        acc = hashes[begin]
        for h in hashes[begin + 1 : end]:
            acc = merkle.node_hash(h, acc)
        hashes[begin:end] = [acc]
    return hashes


def _flip(h: bytes, bit: int) -> bytes:
    out = bytearray(h)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def _distinct_leaf_hashes(size: int, salt: bytes) -> list[bytes]:
    # Distinct leaves: with two equal leaves a proof can truly hold for another index.
    return [merkle.leaf_hash(salt + i.to_bytes(4, "big")) for i in range(size)]


def _inclusion_shape(index: int, size: int) -> tuple[str, ...]:
    """The side of each sibling on the path, leaf first, from RFC 9162's recursive PATH."""
    if size <= 1:
        return ()
    k = 1 << ((size - 1).bit_length() - 1)
    if index < k:
        return (*_inclusion_shape(index, k), "right")
    return (*_inclusion_shape(index - k, size - k), "left")


def _verifies_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether the proof verifies; a refusal must be an InclusionProofError, nothing else."""
    try:
        merkle.verify_inclusion(index, size, leaf, proof, root)
    except InclusionProofError:
        return False
    return True


def _verifies_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether the proof verifies; a refusal must be a ConsistencyError carrying the proof."""
    try:
        merkle.verify_consistency(first, second, first_root, second_root, proof)
    except ConsistencyError as err:
        assert err.proof == tuple(proof), "the error must carry the refused proof as evidence"
        return False
    return True


InclusionProbe = tuple[str, int, int, bytes, list[bytes], bytes]
ConsistencyProbe = tuple[str, int, int, bytes, bytes, list[bytes]]


def _inclusion_probes(
    index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> Iterator[InclusionProbe]:
    """Corruptions of a valid inclusion proof, none of which may verify.

    The list follows transparency-dev/merkle proof/verify_test.go (corruptInclusionProof)
    and google/certificate-transparency cpp/merkletree/merkle_tree_test.cc (VerifierCheck),
    plus removal, duplication and reordering of every element. The leaves must be
    distinct for the wrong-index probes to be wrong.
    """
    yield "index - 1", index - 1, size, leaf, proof, root
    yield "index + 1", index + 1, size, leaf, proof, root
    yield "index ^ 2", index ^ 2, size, leaf, proof, root
    yield "size * 2", index, size * 2, leaf, proof, root
    yield "size // 2", index, size // 2, leaf, proof, root
    yield "wrong leaf", index, size, b"WrongLeaf", proof, root
    yield "leaf hash bit flipped", index, size, _flip(leaf, 0), proof, root
    yield "empty root", index, size, leaf, proof, merkle.EMPTY_ROOT
    yield "random root", index, size, leaf, proof, SOME_HASH
    yield "root bit flipped", index, size, leaf, proof, _flip(root, 255)
    yield "trailing garbage", index, size, leaf, [*proof, b""], root
    yield "trailing root", index, size, leaf, [*proof, root], root
    yield "preceding garbage", index, size, leaf, [b"", *proof], root
    yield "preceding root", index, size, leaf, [root, *proof], root
    yield "preceding leaf", index, size, leaf, [leaf, *proof], root
    for i in range(len(proof)):
        for bit in (0, 3, 4, 255):  # bits 4 and 3 are transparency-dev's ^= 8 and ^= 16
            wrong = list(proof)
            wrong[i] = _flip(proof[i], bit)
            yield f"proof[{i}] bit {bit} flipped", index, size, leaf, wrong, root
        wrong = list(proof)
        wrong[i] = merkle.EMPTY_ROOT
        yield f"proof[{i}] replaced by the empty root", index, size, leaf, wrong, root
        yield f"proof[{i}] removed", index, size, leaf, proof[:i] + proof[i + 1 :], root
        yield f"proof[{i}] doubled", index, size, leaf, proof[: i + 1] + proof[i:], root
    for i in range(len(proof) - 1):
        wrong = list(proof)
        wrong[i], wrong[i + 1] = wrong[i + 1], wrong[i]
        yield f"proof[{i}] and proof[{i + 1}] swapped", index, size, leaf, wrong, root
    if len(proof) > 1:
        yield "inserted component", index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], root
        yield "reversed", index, size, leaf, proof[::-1], root


def _consistency_probes(
    first: int, second: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> Iterator[ConsistencyProbe]:
    """Corruptions of a valid, non-empty consistency proof, none of which may verify.

    After transparency-dev/merkle proof/verify_test.go (corruptConsistencyProof) and
    google/certificate-transparency cpp/merkletree/merkle_tree_test.cc
    (VerifierConsistencyCheck), plus removal, duplication and reordering of every element.
    """
    yield "first - 1", first - 1, second, root1, root2, proof
    yield "first + 1", first + 1, second, root1, root2, proof
    yield "first ^ 2", first ^ 2, second, root1, root2, proof
    yield "second * 2", first, second * 2, root1, root2, proof
    yield "second // 2", first, second // 2, root1, root2, proof
    yield "wrong first root", first, second, b"WrongRoot", root2, proof
    yield "wrong second root", first, second, root1, b"WrongRoot", proof
    yield "first root bit flipped", first, second, _flip(root1, 7), root2, proof
    yield "second root bit flipped", first, second, root1, _flip(root2, 7), proof
    yield "swapped roots", first, second, root2, root1, proof
    yield "empty proof", first, second, root1, root2, []
    yield "trailing garbage", first, second, root1, root2, [*proof, b""]
    yield "trailing first root", first, second, root1, root2, [*proof, root1]
    yield "trailing second root", first, second, root1, root2, [*proof, root2]
    yield "trailing last hash again", first, second, root1, root2, [*proof, proof[-1]]
    yield "preceding garbage", first, second, root1, root2, [b"", *proof]
    yield "preceding first root", first, second, root1, root2, [root1, *proof]
    yield "preceding second root", first, second, root1, root2, [root2, *proof]
    yield "preceding proof[0] again", first, second, root1, root2, [proof[0], *proof]
    yield "truncated", first, second, root1, root2, proof[:-1]
    for i in range(len(proof)):
        for bit in (0, 3, 4, 255):  # bits 4 and 3 are transparency-dev's ^= 8 and ^= 16
            wrong = list(proof)
            wrong[i] = _flip(proof[i], bit)
            yield f"proof[{i}] bit {bit} flipped", first, second, root1, root2, wrong
        wrong = list(proof)
        wrong[i] = merkle.EMPTY_ROOT
        yield f"proof[{i}] replaced by the empty root", first, second, root1, root2, wrong
        yield f"proof[{i}] removed", first, second, root1, root2, proof[:i] + proof[i + 1 :]
        yield f"proof[{i}] doubled", first, second, root1, root2, proof[: i + 1] + proof[i:]
    for i in range(len(proof) - 1):
        wrong = list(proof)
        wrong[i], wrong[i + 1] = wrong[i + 1], wrong[i]
        yield f"proof[{i}] and proof[{i + 1}] swapped", first, second, root1, root2, wrong
    if len(proof) > 1:
        yield "reversed", first, second, root1, root2, proof[::-1]
        yield "inserted component", first, second, root1, root2, [proof[0], SOME_HASH, *proof[1:]]


def _accepted_inclusion_probes(
    index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> list[str]:
    return [
        desc
        for desc, *probe in _inclusion_probes(index, size, leaf, proof, root)
        if _verifies_inclusion(*probe)  # type: ignore[arg-type]
    ]


def _accepted_consistency_probes(
    first: int, second: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> list[str]:
    return [
        desc
        for desc, *probe in _consistency_probes(first, second, root1, root2, proof)
        if _verifies_consistency(*probe)  # type: ignore[arg-type]
    ]


# ---------------------------------------------------------------------------
# Hashing and roots: published answers
# ---------------------------------------------------------------------------


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT == ROOTS[0]
    assert merkle.root([]) == merkle.EMPTY_ROOT
    assert merkle.CompactRange().root() == merkle.EMPTY_ROOT
    assert merkle.subtree_root(0, 0, published_node) == merkle.EMPTY_ROOT


def test_leaf_and_node_hashes_match_the_published_nodes() -> None:
    assert NODES[0] == LEAF_HASHES
    for level in range(1, len(NODES)):
        for index, parent in enumerate(NODES[level]):
            below = NODES[level - 1]
            assert merkle.node_hash(below[2 * index], below[2 * index + 1]) == parent


def test_hashes_use_the_rfc_domain_prefixes() -> None:
    assert merkle.leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = b"L" * 32, b"R" * 32
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


def test_list_reader_serves_every_published_node() -> None:
    reader = merkle.list_reader(LEAF_HASHES)
    for level, row in enumerate(NODES):
        for index, h in enumerate(row):
            assert reader(level, index) == h


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_roots_match_the_published_roots(size: int) -> None:
    assert merkle.root(LEAF_HASHES[:size]) == ROOTS[size]
    assert merkle.subtree_root(0, size, _bounded(published_node, 0, size)) == ROOTS[size]
    if size:
        reader = merkle.list_reader(LEAF_HASHES[:size])
        assert merkle.subtree_root(0, size, reader) == ROOTS[size]


def test_compact_range_follows_the_published_tree() -> None:
    compact = merkle.CompactRange()
    seen: set[tuple[int, int]] = set()
    for size in range(1, len(LEAF_HASHES) + 1):
        created = compact.append(LEAF_HASHES[size - 1])
        for level, index, h in created:
            assert NODES[level][index] == h
            seen.add((level, index))
        frontier = [tuple(p) for p in _VECTORS["compact_trees"][size]]
        assert merkle.frontier_positions(size) == frontier
        assert compact.hashes() == [NODES[level][index] for level, index in frontier]
        assert compact.size == size
        assert compact.root() == ROOTS[size]
    # Appending leaf by leaf reported every complete subtree of the tree exactly once.
    assert seen == {(level, index) for level, row in enumerate(NODES) for index in range(len(row))}


def test_subtree_hashes_match_the_published_rolling_digest() -> None:
    vectors = _VECTORS["subtree_vectors"]
    size = vectors["size"]
    reader = merkle.list_reader([merkle.leaf_hash(bytes([i])) for i in range(size)])
    digest = hashlib.sha256()
    for end in range(1, size + 1):
        for start in _valid_subtree_starts(end):
            h = merkle.subtree_root(start, end, _bounded(reader, start, end))
            digest.update(f"[{start}, {end}) {h.hex()}\n".encode())
    assert digest.hexdigest() == vectors["subtree_hash"]


def _valid_subtree_starts(end: int) -> Iterator[int]:
    """Starts of the draft's valid subtrees ending at `end`.

    A start is valid if it is 0 or a multiple of BIT_CEIL(end - start).
    """
    for start in range(end):
        if start == 0 or start % (1 << (end - start - 1).bit_length()) == 0:
            yield start


def _shifted(node: merkle.NodeReader, offset: int) -> merkle.NodeReader:
    """The tree over leaves [offset, ...) as a tree of its own (offset aligned to every read)."""
    return lambda level, index: node(level, index + (offset >> level))


# ---------------------------------------------------------------------------
# Inclusion proofs: published answers
# ---------------------------------------------------------------------------

INCLUSION_VECTORS = [
    (v["index"], v["size"], _hashes(v["proof"])) for v in _VECTORS["inclusion_proofs"]
]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_proofs_match_the_published_vectors(
    index: int, size: int, proof: list[bytes]
) -> None:
    assert merkle.inclusion_proof(index, size, _bounded(published_node, 0, size)) == proof
    reader = merkle.list_reader(LEAF_HASHES)
    assert merkle.inclusion_proof(index, size, _bounded(reader, 0, size)) == proof
    assert merkle.root_from_inclusion(index, size, LEAF_HASHES[index], proof) == ROOTS[size]
    merkle.verify_inclusion(index, size, LEAF_HASHES[index], proof, ROOTS[size])


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_corrupted_published_inclusion_proofs_are_rejected(
    index: int, size: int, proof: list[bytes]
) -> None:
    accepted = _accepted_inclusion_probes(index, size, LEAF_HASHES[index], proof, ROOTS[size])
    assert accepted == []


@pytest.mark.parametrize(
    "layout", _VECTORS["inclusion_layouts"], ids=lambda v: f"{v['index']}:{v['size']}"
)
def test_inclusion_proofs_take_the_published_nodes(layout: dict[str, Any]) -> None:
    index, size = layout["index"], layout["size"]
    expected = _fold_rehash(layout["nodes"], layout.get("rehash"))
    assert merkle.inclusion_proof(index, size, _bounded(published_node, 0, size)) == expected
    assert merkle.inclusion_proofs([index], size, _bounded(published_node, 0, size)) == [expected]
    merkle.verify_inclusion(index, size, LEAF_HASHES[index], expected, ROOTS[size])


@pytest.mark.parametrize("size", range(1, len(LEAF_HASHES) + 1))
def test_batched_inclusion_proofs_match_single_ones_in_the_published_tree(size: int) -> None:
    node = _bounded(published_node, 0, size)
    indexes = [*range(size), *reversed(range(size)), 0]  # any order, repeats allowed
    single = [merkle.inclusion_proof(index, size, node) for index in indexes]
    assert merkle.inclusion_proofs(indexes, size, node) == single
    assert merkle.inclusion_proofs([], size, node) == []


@pytest.mark.parametrize(
    ("indexes", "size"), [([0], 0), ([1], 1), ([0, 8], 8), ([-1], 3), ([7, 0], 7)]
)
def test_no_batched_inclusion_proof_for_a_leaf_outside_the_tree(
    indexes: list[int], size: int
) -> None:
    with pytest.raises(ValueError, match=r"outside|empty"):
        merkle.inclusion_proofs(indexes, size, published_node)


@pytest.mark.parametrize(
    "bad", _VECTORS["inclusion_layout_errors"], ids=lambda v: f"{v['index']}:{v['size']}"
)
def test_no_inclusion_proof_for_a_leaf_outside_the_tree(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="outside"):
        merkle.inclusion_proof(bad["index"], bad["size"], published_node)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1), (-1, 1)])
def test_inclusion_in_impossible_or_empty_trees_is_rejected(index: int, size: int) -> None:
    # transparency-dev/merkle proof/verify_test.go TestVerifyInclusion: empty proofs
    # with a leaf and a root that do not match, or a leaf outside the tree.
    assert not _verifies_inclusion(index, size, SOME_HASH, [], b"")
    assert not _verifies_inclusion(index, size, b"", [], merkle.EMPTY_ROOT)
    assert not _verifies_inclusion(index, size, SOME_HASH, [], merkle.EMPTY_ROOT)


def test_single_leaf_tree_inclusion() -> None:
    # transparency-dev/merkle proof/verify_test.go TestVerifyInclusionSingleEntry: the
    # root of a one-leaf tree is its leaf hash and the proof is empty.
    h = merkle.leaf_hash(b"data")
    assert merkle.inclusion_proof(0, 1, merkle.list_reader([h])) == []
    merkle.verify_inclusion(0, 1, h, [], h)
    assert not _verifies_inclusion(0, 1, b"", [], h)
    assert not _verifies_inclusion(0, 1, h, [], b"")
    assert not _verifies_inclusion(0, 1, h, [h], h)


def test_hashes_of_the_wrong_length_are_rejected() -> None:
    # transparency-dev/merkle proof/verify_test.go TestVerifyInclusionSingleEntry expects
    # an error for an empty leaf hash and root ("Wrong hash size"); its verifier refuses
    # any leaf hash that is not 32 bytes (proof/verify.go RootFromInclusionProof).
    with pytest.raises(InclusionProofError):
        merkle.verify_inclusion(0, 1, b"", [], b"")
    with pytest.raises(ConsistencyError):
        merkle.verify_consistency(1, 2, b"x" * 31, b"y" * 32, [b"z" * 32])


# ---------------------------------------------------------------------------
# Consistency proofs: published answers
# ---------------------------------------------------------------------------

CONSISTENCY_VECTORS = [
    (v["first"], v["second"], _hashes(v["proof"])) for v in _VECTORS["consistency_proofs"]
]


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY_VECTORS)
def test_consistency_proofs_match_the_published_vectors(
    first: int, second: int, proof: list[bytes]
) -> None:
    assert merkle.consistency_proof(first, second, _bounded(published_node, 0, second)) == proof
    reader = merkle.list_reader(LEAF_HASHES)
    assert merkle.consistency_proof(first, second, _bounded(reader, 0, second)) == proof
    merkle.verify_consistency(first, second, ROOTS[first], ROOTS[second], proof)


@pytest.mark.parametrize(("first", "second", "proof"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_corrupted_published_consistency_proofs_are_rejected(
    first: int, second: int, proof: list[bytes]
) -> None:
    accepted = _accepted_consistency_probes(first, second, ROOTS[first], ROOTS[second], proof)
    assert accepted == []


@pytest.mark.parametrize(
    "layout", _VECTORS["consistency_layouts"], ids=lambda v: f"{v['first']}:{v['second']}"
)
def test_consistency_proofs_take_the_published_nodes(layout: dict[str, Any]) -> None:
    first, second = layout["first"], layout["second"]
    expected = _fold_rehash(layout["nodes"], layout.get("rehash"))
    assert merkle.consistency_proof(first, second, _bounded(published_node, 0, second)) == expected
    merkle.verify_consistency(first, second, ROOTS[first], ROOTS[second], expected)


@pytest.mark.parametrize(
    "bad", _VECTORS["consistency_layout_errors"], ids=lambda v: f"{v['first']}:{v['second']}"
)
def test_no_consistency_proof_from_a_larger_tree(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="no consistency proof"):
        merkle.consistency_proof(bad["first"], bad["second"], published_node)


# Roots the verifier must not look at (32 bytes, so that no length check is pinned).
_ROOT1, _ROOT2 = hashlib.sha256(b"don't care 1").digest(), hashlib.sha256(b"don't care 2").digest()


@pytest.mark.parametrize(
    ("first", "second", "root1", "root2", "proof", "holds"),
    [
        # transparency-dev/merkle proof/verify_test.go TestVerifyConsistency and
        # google/certificate-transparency merkle_tree_test.cc VerifyConsistencyProof.
        (0, 0, _ROOT1, _ROOT2, [], False),
        (1, 1, _ROOT1, _ROOT2, [], False),
        (0, 0, _ROOT1, _ROOT1, [], True),
        (0, 1, _ROOT1, _ROOT2, [], True),  # SPEC: first = 0 is a proof with no hashes
        (1, 1, _ROOT2, _ROOT2, [], True),
        (1, 0, _ROOT1, _ROOT2, [], False),
        (2, 1, _ROOT1, _ROOT2, [], False),
        (1, 2, _ROOT1, _ROOT2, [], False),
        (0, 0, merkle.EMPTY_ROOT, _ROOT2, [], False),
        (1, 1, merkle.EMPTY_ROOT, _ROOT2, [], False),
        (0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [merkle.EMPTY_ROOT], False),
        (0, 1, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [merkle.EMPTY_ROOT], False),
        (1, 1, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [merkle.EMPTY_ROOT], False),
        (-1, 1, _ROOT1, _ROOT2, [], False),
    ],
)
def test_consistency_edge_cases(
    first: int, second: int, root1: bytes, root2: bytes, proof: list[bytes], holds: bool
) -> None:
    assert _verifies_consistency(first, second, root1, root2, proof) is holds


def test_no_consistency_proof_is_needed_from_empty_or_equal_trees() -> None:
    reader = merkle.list_reader(LEAF_HASHES)
    for size in range(len(LEAF_HASHES) + 1):
        assert merkle.consistency_proof(0, size, reader) == []
        assert merkle.consistency_proof(size, size, reader) == []


# ---------------------------------------------------------------------------
# Every proof of every tree up to 130 leaves: the draft's rolling digests
# ---------------------------------------------------------------------------


def test_every_inclusion_proof_up_to_130_leaves_matches_the_published_digest() -> None:
    vectors = _VECTORS["subtree_vectors"]
    size = vectors["size"]
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(size)]
    reader = merkle.list_reader(leaves)
    roots = _prefix_roots(leaves)
    digest = hashlib.sha256()
    for end in range(1, size + 1):
        for start in _valid_subtree_starts(end):
            # A valid subtree is aligned to its own size, so its inclusion proof is an
            # ordinary proof in the tree of its leaves.
            sub = _bounded(_shifted(reader, start), 0, end - start)
            proofs = merkle.inclusion_proofs(range(end - start), end - start, sub)
            for index, proof in enumerate(proofs, start):
                assert merkle.inclusion_proof(index - start, end - start, sub) == proof
                digest.update(_proof_line(f"{index} [{start}, {end})", proof))
                if start == 0:
                    merkle.verify_inclusion(index, end, leaves[index], proof, roots[end])
    assert digest.hexdigest() == vectors["subtree_inclusion_proof"]


def test_every_consistency_proof_up_to_130_leaves_matches_the_published_digest() -> None:
    """All RFC 9162 PROOF(m, D[n]) for 1 <= m <= n <= 130 are in the digest (start = 0)."""
    vectors = _VECTORS["subtree_vectors"]
    size = vectors["size"]
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(size)]
    reader = merkle.list_reader(leaves)
    roots = _prefix_roots(leaves)
    digest = hashlib.sha256()
    for n in range(size + 1):
        for end in range(1, n + 1):
            for start in _valid_subtree_starts(end):
                proof = _subtree_consistency_proof(start, end, n, _bounded(reader, 0, n))
                digest.update(_proof_line(f"[{start}, {end}) {n}", proof))
                if start == 0:
                    merkle.verify_consistency(end, n, roots[end], roots[n], proof)
    assert digest.hexdigest() == vectors["subtree_consistency_proof"]


def _subtree_consistency_proof(
    start: int, end: int, size: int, node: merkle.NodeReader
) -> list[bytes]:
    """The draft's subtree consistency proof, built on merkle.consistency_proof.

    Walk down the tree of `size` leaves towards the subtree, keeping the sibling of each
    step, until the subtree starts its part of the tree; from there it is an RFC 9162
    consistency proof within that part, followed by the kept siblings, lowest first.
    """
    offset, width, siblings = 0, size, []
    while start != offset:
        k = 1 << ((width - 1).bit_length() - 1)
        if end <= offset + k:
            siblings.append(merkle.subtree_root(offset + k, offset + width, node))
            width = k
        else:
            level = k.bit_length() - 1
            siblings.append(node(level, offset >> level))
            offset, width = offset + k, width - k
    return merkle.consistency_proof(end - offset, width, _shifted(node, offset)) + siblings[::-1]


def _proof_line(prefix: str, proof: Sequence[bytes]) -> bytes:
    return (prefix + "".join(f" {h.hex()}" for h in proof) + "\n").encode()


def _prefix_roots(leaves: Sequence[bytes]) -> list[bytes]:
    compact = merkle.CompactRange()
    roots = [compact.root()]
    for h in leaves:
        compact.append(h)
        roots.append(compact.root())
    return roots


# ---------------------------------------------------------------------------
# pymerkle as an independent reference
# ---------------------------------------------------------------------------


def test_roots_and_paths_equal_pymerkles_for_every_size_up_to_300() -> None:
    tree = InmemoryTree(algorithm="sha256")
    hashes: list[bytes] = []
    compact = merkle.CompactRange()
    assert tree.get_root(0) == merkle.EMPTY_ROOT
    for size in range(1, 301):
        entry = b"entry %d" % size
        assert tree.append_entry(entry) == size  # pymerkle counts leaves from 1
        hashes.append(merkle.leaf_hash(entry))
        assert tree.get_leaf(size) == hashes[-1]
        compact.append(hashes[-1])
        assert compact.root() == tree.get_root(size)
    assert merkle.root(hashes) == tree.get_root()
    reader = merkle.list_reader(hashes)
    for size in [*range(1, 34), 63, 64, 65, 127, 128, 129, 255, 256, 257, 300]:
        assert merkle.subtree_root(0, size, reader) == tree.get_root(size)
        batch = merkle.inclusion_proofs(range(size), size, _bounded(reader, 0, size))
        for index in range(size):
            # pymerkle's inclusion path is the leaf hash followed by RFC 9162 PATH.
            ours = merkle.inclusion_proof(index, size, _bounded(reader, 0, size))
            assert tree.prove_inclusion(index + 1, size).path == [hashes[index], *ours]
            assert batch[index] == ours


# Up to 300 leaves of arbitrary bytes, drawn as a few values repeated: a log may hold
# equal leaves, and drawing 300 independent values would make examples slow to shrink.
_ENTRIES = st.tuples(
    st.lists(st.binary(max_size=48), min_size=1, max_size=12), st.integers(1, 300)
).map(lambda t: [t[0][i % len(t[0])] for i in range(t[1])])


@settings(max_examples=60, deadline=None)
@given(entries=_ENTRIES, data=st.data())
def test_roots_and_inclusion_paths_equal_pymerkles(
    entries: list[bytes], data: st.DataObject
) -> None:
    tree = InmemoryTree(algorithm="sha256")
    hashes = [merkle.leaf_hash(entry) for entry in entries]
    tree.append_entries(entries)
    size = len(entries)
    assert merkle.root(hashes) == tree.get_root()
    reader = merkle.list_reader(hashes)
    for index in range(size):
        ours = merkle.inclusion_proof(index, size, reader)
        assert tree.prove_inclusion(index + 1).path == [hashes[index], *ours]
    for _ in range(4):
        past = data.draw(st.integers(1, size), label="past size")
        index = data.draw(st.integers(0, past - 1), label="index")
        assert merkle.root(hashes[:past]) == tree.get_root(past)
        ours = merkle.inclusion_proof(index, past, _bounded(reader, 0, past))
        assert tree.prove_inclusion(index + 1, past).path == [hashes[index], *ours]


@settings(max_examples=80, deadline=None)
@given(first=st.integers(0, 260), count=st.integers(1, 70), salt=st.binary(max_size=8))
def test_a_blocks_proofs_from_frontier_and_leaf_hashes_equal_pymerkles(
    first: int, count: int, salt: bytes
) -> None:
    # A batch answer sends each block's receipts as the frontier before it and its leaf
    # hashes: every proof of the block must follow from those alone.
    entries = [salt + b"%d" % i for i in range(first + count)]
    tree = InmemoryTree(algorithm="sha256")
    tree.append_entries(entries)
    hashes = [merkle.leaf_hash(e) for e in entries]
    reader = merkle.list_reader(hashes)
    frontier = [reader(level, index) for level, index in merkle.frontier_positions(first)]
    root, proofs = merkle.appended_inclusion_proofs(first, frontier, hashes[first:])
    size = first + count
    assert root == tree.get_root(size)
    assert len(proofs) == count
    for index, proof in zip(range(first, size), proofs, strict=True):
        assert tree.prove_inclusion(index + 1, size).path == [hashes[index], *proof]


def test_a_blocks_proofs_need_the_whole_frontier() -> None:
    with pytest.raises(ValueError, match="frontier hashes"):
        merkle.appended_inclusion_proofs(5, [merkle.EMPTY_ROOT], [merkle.EMPTY_ROOT])


# ---------------------------------------------------------------------------
# Any proof of any tree verifies; no corruption of it does
# ---------------------------------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(
    size=st.integers(1, 300),
    extra=st.integers(0, 40),
    salt=st.binary(max_size=8),
    data=st.data(),
)
def test_every_inclusion_proof_verifies_and_no_corruption_does(
    size: int, extra: int, salt: bytes, data: st.DataObject
) -> None:
    # The store may hold more leaves than the tree size the proof is for.
    leaves = _distinct_leaf_hashes(size + extra, salt)
    reader = merkle.list_reader(leaves)
    root = merkle.root(leaves[:size])
    index = data.draw(st.integers(0, size - 1), label="index")
    leaf = leaves[index]

    proof = merkle.inclusion_proof(index, size, _bounded(reader, 0, size))
    assert len(proof) == len(_inclusion_shape(index, size))
    assert merkle.root_from_inclusion(index, size, leaf, proof) == root
    merkle.verify_inclusion(index, size, leaf, proof, root)

    assert _accepted_inclusion_probes(index, size, leaf, proof, root) == []
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        wrong = list(proof)
        wrong[i] = _flip(proof[i], bit)
        assert not _verifies_inclusion(index, size, leaf, wrong, root)
    other = data.draw(st.integers(0, size - 1), label="other index")
    if other != index:
        assert not _verifies_inclusion(other, size, leaf, proof, root)
        assert not _verifies_inclusion(index, size, leaves[other], proof, root)

    # A proof binds the size only through the shape of the path: a size whose path
    # has the same sides verifies the same hashes, any other size must fail.
    claimed = data.draw(st.integers(0, 2 * size + 2), label="claimed size")
    for wrong_size in {size - 1, size + 1, claimed} - {size}:
        same_shape = index < wrong_size and _inclusion_shape(index, wrong_size) == _inclusion_shape(
            index, size
        )
        assert _verifies_inclusion(index, wrong_size, leaf, proof, root) is same_shape, wrong_size


@settings(max_examples=250, deadline=None)
@given(
    second=st.integers(1, 300),
    extra=st.integers(0, 40),
    salt=st.binary(max_size=8),
    data=st.data(),
)
def test_every_consistency_proof_verifies_and_no_corruption_does(
    second: int, extra: int, salt: bytes, data: st.DataObject
) -> None:
    leaves = _distinct_leaf_hashes(second + extra, salt)
    reader = merkle.list_reader(leaves)
    first = data.draw(st.integers(0, second), label="first")
    root1, root2 = merkle.root(leaves[:first]), merkle.root(leaves[:second])

    proof = merkle.consistency_proof(first, second, _bounded(reader, 0, second))
    merkle.verify_consistency(first, second, root1, root2, proof)
    if first in (0, second):
        assert proof == []
        return
    assert proof

    assert _accepted_consistency_probes(first, second, root1, root2, proof) == []
    i = data.draw(st.integers(0, len(proof) - 1), label="element")
    bit = data.draw(st.integers(0, 255), label="bit")
    wrong = list(proof)
    wrong[i] = _flip(proof[i], bit)
    assert not _verifies_consistency(first, second, root1, root2, wrong)
    # A fork: the same sizes, but the later tree changed one leaf of the earlier one.
    changed = data.draw(st.integers(0, first - 1), label="changed leaf")
    forked = list(leaves[:second])
    forked[changed] = merkle.leaf_hash(b"forged")
    forked_proof = merkle.consistency_proof(first, second, merkle.list_reader(forked))
    assert not _verifies_consistency(first, second, root1, merkle.root(forked), forked_proof)
    assert not _verifies_consistency(first, second, root1, merkle.root(forked), proof)


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(1, 300),
    extra=st.integers(0, 40),
    salt=st.binary(max_size=8),
    data=st.data(),
)
def test_batched_inclusion_proofs_equal_single_ones(
    size: int, extra: int, salt: bytes, data: st.DataObject
) -> None:
    leaves = _distinct_leaf_hashes(size + extra, salt)
    node = _bounded(merkle.list_reader(leaves), 0, size)
    indexes = data.draw(st.lists(st.integers(0, size - 1), max_size=24), label="indexes")
    proofs = merkle.inclusion_proofs(indexes, size, node)
    assert proofs == [merkle.inclusion_proof(index, size, node) for index in indexes]


# ---------------------------------------------------------------------------
# CompactRange, frontier_positions, subtree_root
# ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 300), salt=st.binary(max_size=8), data=st.data())
def test_compact_range_reports_every_complete_node_and_resumes_from_its_frontier(
    size: int, salt: bytes, data: st.DataObject
) -> None:
    leaves = _distinct_leaf_hashes(size, salt)
    reader = merkle.list_reader(leaves)
    resume_at = data.draw(st.integers(0, size), label="resume at")

    compact = merkle.CompactRange()
    resumed: merkle.CompactRange | None = None
    created_all: list[tuple[int, int, bytes]] = []
    for i in range(size + 1):
        if i == resume_at:
            resumed = merkle.CompactRange.from_frontier(i, compact.hashes())
            assert resumed.size == i
            assert resumed.root() == compact.root()
        if i == size:
            break
        created = compact.append(leaves[i])
        # The leaf itself, then one parent per subtree it completed: level 0 first.
        completed = ((i + 1) & -(i + 1)).bit_length()
        assert [(level, index) for level, index, _ in created] == [
            (level, i >> level) for level in range(completed)
        ]
        assert all(reader(level, index) == h for level, index, h in created)
        created_all += created
        if resumed is not None:
            assert resumed.append(leaves[i]) == created
        assert compact.size == i + 1
        assert compact.hashes() == [reader(lv, ix) for lv, ix in merkle.frontier_positions(i + 1)]
        assert compact.root() == merkle.subtree_root(0, i + 1, reader)
    assert resumed is not None and resumed.size == compact.size
    assert resumed.hashes() == compact.hashes()
    assert compact.root() == resumed.root() == merkle.root(leaves)
    # Every complete subtree of the final tree was reported, once.
    expected = {
        (level, index) for level in range(size.bit_length()) for index in range(size >> level)
    }
    assert len(created_all) == len(expected)
    assert {(level, index) for level, index, _ in created_all} == expected


def test_compact_range_hashes_are_a_copy() -> None:
    compact = merkle.CompactRange()
    for h in LEAF_HASHES[:3]:
        compact.append(h)
    compact.hashes().clear()
    assert compact.root() == ROOTS[3]


@pytest.mark.parametrize(("size", "count"), [(0, 1), (1, 0), (3, 1), (3, 3), (8, 2)])
def test_compact_range_refuses_a_frontier_of_the_wrong_length(size: int, count: int) -> None:
    with pytest.raises(ValueError, match="frontier"):
        merkle.CompactRange.from_frontier(size, [SOME_HASH] * count)


def test_compact_range_resumes_from_the_published_frontier() -> None:
    frontier = [NODES[level][index] for level, index in _VECTORS["compact_trees"][5]]
    compact = merkle.CompactRange.from_frontier(5, frontier)
    assert compact.root() == ROOTS[5]
    for size in range(6, 9):
        compact.append(LEAF_HASHES[size - 1])
        assert compact.root() == ROOTS[size]


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 2**64))
def test_frontier_positions_tile_the_tree_largest_first(size: int) -> None:
    positions = merkle.frontier_positions(size)
    assert len(positions) == size.bit_count()
    levels = [level for level, _ in positions]
    assert levels == sorted(set(levels), reverse=True)
    start = 0
    for level, index in positions:
        assert index << level == start  # each one starts where the previous one ended
        start += 1 << level
    assert start == size


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 200), salt=st.binary(max_size=8), data=st.data())
def test_subtree_root_is_the_root_of_the_range(size: int, salt: bytes, data: st.DataObject) -> None:
    leaves = _distinct_leaf_hashes(size, salt)
    reader = merkle.list_reader(leaves)
    end = data.draw(st.integers(1, size), label="end")
    start = data.draw(st.integers(0, end - 1), label="start")
    width = end - start
    aligned = start % (1 << (width.bit_length() - 1)) == 0
    if data.draw(st.booleans(), label="force aligned") and not aligned:
        # Shift the start down to the nearest aligned one so that both branches get examples.
        start -= start % (1 << (width.bit_length() - 1))
        end = start + width
        aligned = True
    try:
        got = merkle.subtree_root(start, end, _bounded(reader, start, end))
    except ValueError:
        # A range that is not made of stored subtrees is refused, never hashed wrongly.
        assert not aligned, (start, end)
        return
    assert got == merkle.root(leaves[start:end])


def test_subtree_root_refuses_reversed_ranges() -> None:
    with pytest.raises(ValueError):
        merkle.subtree_root(5, 4, published_node)
