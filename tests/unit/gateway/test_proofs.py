"""`LocalProofs` against an in-memory log behind the TileSource seam: proofs equal the
ones `provledger.merkle` computes from the leaves, and verify against the checkpoint
they come with; tiles are fetched once and checked; whatever cannot be trusted (tiles
that do not hash up, a replaced log, reads that are not public, a stale checkpoint)
returns None, so that the gateway asks the node instead."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from gateway._problems import Problem, ProblemError
from gateway._proofs import LocalProofs, TreeHead
from gateway._tilehash import TileKey, edge_keys
from provledger import merkle
from provledger.note import Checkpoint, Signer, sign_checkpoint

ORIGIN = "test.provledger.local/tiles"


class FakeLog:
    """A log in memory, serving checkpoints and tiles as a node's GetCheckpoint/GetTile."""

    def __init__(self, size: int, origin: str = ORIGIN, seed: str = "") -> None:
        self.origin = origin
        self.signer = Signer.generate(origin)
        self.leaves: list[bytes] = []
        self.seed = seed
        self.public = True
        self.corrupt: set[TileKey] = set()
        self.fetched: list[TileKey] = []
        self.grow(size)

    def grow(self, size: int) -> None:
        self.leaves += [
            merkle.leaf_hash(f"{self.seed}{i}".encode()) for i in range(len(self.leaves), size)
        ]
        self._reader = merkle.list_reader(self.leaves)

    @property
    def size(self) -> int:
        return len(self.leaves)

    @property
    def reader(self) -> merkle.NodeReader:
        """Nodes of the whole tree: those complete in a prefix are the prefix's nodes."""
        return self._reader

    def root(self, size: int | None = None) -> bytes:
        return merkle.subtree_root(0, self.size if size is None else size, self._reader)

    def head(self) -> TreeHead:
        note = sign_checkpoint(Checkpoint(self.origin, self.size, self.root()), self.signer)
        return TreeHead(self.origin, self.size, self.root(), note)

    async def checkpoint(self) -> TreeHead:
        await asyncio.sleep(0)
        if not self.public:
            raise ProblemError(Problem(401, "Unauthorized", "reads need a token"))
        return self.head()

    async def tile(self, key: TileKey) -> bytes:
        await asyncio.sleep(0)
        self.fetched.append(key)
        count = self.size >> (8 * key.level)
        if (key.index << 8) + key.width > count:
            raise ProblemError(Problem(404, "Not found", f"tile {key} is beyond the tree"))
        data = b"".join(self._reader(8 * key.level, (key.index << 8) + i) for i in range(key.width))
        if key in self.corrupt:
            data = bytes([data[0] ^ 1]) + data[1:]
        return data


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(
    log: FakeLog, body: Callable[[LocalProofs, Clock], Awaitable[None]], **kwargs: object
) -> list[int]:
    """Runs body with a LocalProofs over `log` after one poll; returns its reset count."""
    resets: list[int] = []
    clock = Clock()

    async def main() -> None:
        proofs = LocalProofs(
            log,
            clock=clock,
            on_reset=lambda: resets.append(1),
            **kwargs,  # type: ignore[arg-type]
        )
        await proofs.poll()
        await body(proofs, clock)

    asyncio.run(main())
    return resets


async def check_inclusion(
    proofs: LocalProofs, log: FakeLog, index: int, size: int | None = None
) -> None:
    proof = await proofs.inclusion(index, size)
    assert proof is not None, (index, size)
    at = log.size if size is None else size
    expected = merkle.inclusion_proof(index, at, log.reader)
    assert (proof.index, proof.tree_size, proof.leaf_hash) == (index, at, log.leaves[index])
    assert list(proof.hashes) == expected
    merkle.verify_inclusion(index, at, proof.leaf_hash, proof.hashes, log.root(at))
    if size is None:
        assert proof.checkpoint == log.head().note
    else:
        assert proof.checkpoint == ""


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 1_000, 65_536, 66_000])
def test_proofs_equal_merkle_and_verify(size: int) -> None:
    log = FakeLog(size)
    rng = random.Random(size)

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        for index in {0, size - 1, *(rng.randrange(size) for _ in range(30))}:
            await check_inclusion(proofs, log, index)
            pinned = rng.randint(index + 1, size)
            await check_inclusion(proofs, log, index, pinned)
        for _ in range(20):
            second = rng.randint(0, size)
            first = rng.randint(0, second)
            proof = await proofs.consistency(first, second)
            assert proof is not None
            assert list(proof.hashes) == merkle.consistency_proof(first, second, log.reader)
            merkle.verify_consistency(
                first, second, log.root(first), log.root(second), proof.hashes
            )

    assert run(log, body) == []


def test_each_tile_is_fetched_once_even_by_concurrent_requests() -> None:
    log = FakeLog(3_000)

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        answers = await asyncio.gather(*(proofs.inclusion(i) for i in range(0, 3_000, 7)))
        assert all(a is not None for a in answers)
        assert len(log.fetched) == len(set(log.fetched))
        # Every tile of the tree: 11 full, the partial right edge and the level-1 edge.
        assert set(log.fetched) == {
            *(TileKey(0, n, 256) for n in range(11)),
            TileKey(0, 11, 3_000 - 11 * 256),
            TileKey(1, 0, 11),
        }
        before = len(log.fetched)
        for i in range(0, 3_000, 5):
            await check_inclusion(proofs, log, i)
        assert len(log.fetched) == before

    run(log, body)


def test_the_tile_cache_is_bounded() -> None:
    log = FakeLog(5_000)

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        for i in range(0, 5_000, 97):
            await check_inclusion(proofs, log, i)
            assert proofs.tiles_held <= 3

    run(log, body, max_tiles=3)


def test_growth_is_followed_and_earlier_tiles_are_kept() -> None:
    log = FakeLog(700)

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        await check_inclusion(proofs, log, 10)
        for size in (701, 956, 1_024, 5_000, 70_000):
            log.grow(size)
            fetched = len(log.fetched)
            # A receipt for the append makes it the latest at once, without a poll.
            head = log.head()
            proofs.observe_receipt(head.note, head.size)
            await check_inclusion(proofs, log, size - 1)
            if size == 701:
                # Only the level-0 edge grew; the level-1 edge tile (2 entries) is reused.
                assert log.fetched[fetched:] == [TileKey(0, 2, 189)]
            await check_inclusion(proofs, log, 10)
            await check_inclusion(proofs, log, 10, 700)
            assert TileKey(0, 0, 256) not in log.fetched[fetched:]

    assert run(log, body) == []


def test_indexes_and_sizes_beyond_the_known_tree_are_the_nodes_to_answer() -> None:
    log = FakeLog(1_000)

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        log.grow(1_100)  # appended elsewhere; no poll since
        assert await proofs.inclusion(1_050) is None
        assert await proofs.inclusion(5, 1_100) is None
        assert await proofs.consistency(5, 1_100) is None
        assert await proofs.inclusion(5, 3) is None  # index outside the tree: the node says
        await proofs.poll()
        await check_inclusion(proofs, log, 1_050)

    run(log, body)


def test_nothing_is_served_while_reads_are_not_public() -> None:
    log = FakeLog(600)
    log.public = False

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        assert not proofs.public
        head = log.head()
        proofs.observe_receipt(head.note, head.size)  # known, but not public
        assert await proofs.inclusion(3) is None
        assert await proofs.inclusion(3, 600) is None
        assert await proofs.consistency(3, 600) is None
        assert log.fetched == []
        log.public = True
        await proofs.poll()
        await check_inclusion(proofs, log, 3)
        log.public = False
        await proofs.poll()
        assert await proofs.inclusion(3) is None

    run(log, body)


def test_a_checkpoint_not_confirmed_lately_is_not_served() -> None:
    log = FakeLog(600)

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        await check_inclusion(proofs, log, 3)
        clock.now += 5.0  # no poll answered for five seconds (node down)
        assert await proofs.inclusion(3) is None
        assert await proofs.inclusion(3, 600) is None
        await proofs.poll()
        await check_inclusion(proofs, log, 3)

    run(log, body)


def test_a_tile_that_does_not_hash_up_is_refused_and_not_kept() -> None:
    log = FakeLog(3_000)
    log.corrupt.add(TileKey(0, 4, 256))

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        assert await proofs.inclusion(4 * 256 + 3) is None
        assert await proofs.inclusion(4 * 256 + 3, 2_000) is None
        await check_inclusion(proofs, log, 5 * 256)  # other tiles are fine
        log.corrupt.clear()
        await check_inclusion(proofs, log, 4 * 256 + 3)

    run(log, body)


def test_a_checkpoint_whose_edge_does_not_make_its_root_is_not_followed() -> None:
    log = FakeLog(3_000)
    log.corrupt.add(edge_keys(3_000)[0])

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        assert await proofs.inclusion(7) is None
        assert proofs.trusted_size is None
        log.corrupt.clear()
        assert await proofs.inclusion(7) is None  # the same checkpoint is retried later
        clock.now += 2.0
        await proofs.poll()
        await check_inclusion(proofs, log, 7)

    run(log, body)


def test_a_replaced_log_drops_every_tile_and_cached_answer() -> None:
    log = FakeLog(2_000, seed="first-")

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        for i in range(0, 2_000, 100):
            await check_inclusion(proofs, log, i)
        # The node's data is replaced by another tree under the same origin, which grows
        # beyond the old size: not an extension of what was trusted.
        other = FakeLog(2_500, seed="second-")
        log.leaves, log._reader = other.leaves, other._reader
        await proofs.poll()
        for i in range(0, 2_500, 100):
            await check_inclusion(proofs, log, i)
            await check_inclusion(proofs, log, i, 2_450)

    assert run(log, body) == [1]


def test_a_replaced_log_that_is_smaller_is_noticed_at_once() -> None:
    log = FakeLog(2_000, seed="first-")

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        for i in range(0, 2_000, 100):
            await check_inclusion(proofs, log, i)
        # Wiped and restarted under the same origin: a smaller tree of other leaves.
        other = FakeLog(300, seed="second-")
        log.leaves, log._reader = other.leaves, other._reader
        await proofs.poll()
        await check_inclusion(proofs, log, 299)
        await check_inclusion(proofs, log, 5, 100)
        assert await proofs.inclusion(1_000, 2_000) is None  # beyond what the node has now

    assert run(log, body) == [1]


def test_a_follower_behind_is_no_reason_to_reset() -> None:
    log = FakeLog(2_000)
    behind = log.head()

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        await check_inclusion(proofs, log, 1_999)
        log.grow(2_100)
        await proofs.poll()
        await check_inclusion(proofs, log, 2_050)
        await check_inclusion(proofs, log, 1_900)  # the tiles that make the older root
        proofs._source = _Fixed(behind)
        await proofs.poll()
        await check_inclusion(proofs, log, 2_050, 2_100)

    assert run(log, body) == []


class _Fixed:
    """A node that answers an older checkpoint (a follower one block behind)."""

    def __init__(self, head: TreeHead) -> None:
        self.head = head

    async def checkpoint(self) -> TreeHead:
        return self.head

    async def tile(self, key: TileKey) -> bytes:
        raise AssertionError("no tile is needed")


def test_another_origin_is_another_log() -> None:
    log = FakeLog(900)

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        await check_inclusion(proofs, log, 800)
        replacement = FakeLog(300, origin="test.provledger.local/other")
        proofs._source = replacement  # the gateway now reaches a node of another log
        await proofs.poll()
        await check_inclusion(proofs, replacement, 200)
        assert await proofs.inclusion(800) is None

    assert run(log, body) == [1]


def test_a_receipt_note_that_is_not_a_checkpoint_is_ignored() -> None:
    log = FakeLog(10)

    async def body(proofs: LocalProofs, clock: Clock) -> None:
        proofs.observe_receipt("not a note", 50)
        head = log.head()
        proofs.observe_receipt(head.note, head.size + 1)  # size and note disagree
        newest = proofs.newest
        assert newest is not None and newest.size == 10

    run(log, body)
