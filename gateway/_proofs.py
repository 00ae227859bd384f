"""Inclusion and consistency proofs computed in the gateway from the node's hash tiles,
as a C2SP tlog-tiles client computes them, so that a proof costs no node round trip.

`LocalProofs` follows the node's latest checkpoint (a poll every few tens of
milliseconds, plus every receipt and checkpoint the gateway forwards) and keeps the
tiles it has checked: full tiles in a bounded LRU (they never change), and the
right-edge partial tiles of the checkpoint it trusts. A proof is one pass over those
tiles (`merkle.consistency_proof`, or for inclusion `_tilehash.inclusion_path`, equal to
`merkle.inclusion_proof` and cheaper); a pass that meets a tile it lacks names every
such tile, which are fetched (`GetTile`), checked against the tile above and kept, and
the pass is run again.

Nothing unchecked is ever used. A new checkpoint is trusted only once its right-edge
tiles recompute its root and a consistency proof from the checkpoint trusted before
verifies (so every tile checked earlier holds for the new tree too; when it does not,
say after the node's data was replaced, every tile and cached answer is dropped). A
full tile is trusted only once its root equals its entry in the trusted tile above.

Reads are authorized by the node, so the local path serves only callers without an
`Authorization` header, and only while the node answers the gateway's own
credential-less `GetCheckpoint` (that is, while reads are public, re-checked at every
poll). Anything else returns None and the caller asks the node, as do requests beyond
the checkpoint followed here and lookups by leaf hash (they need the node's index).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from gateway._nodes import NodePool
from gateway._problems import ProblemError
from gateway._tilehash import (
    HashTile,
    PathMemo,
    TileKey,
    TileLookup,
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
from provledger.errors import ConsistencyError
from provledger.note import parse_checkpoint, parse_note
from provledger.v1 import ledger_pb2 as pb

__all__ = [
    "ConsistencyProof",
    "InclusionProof",
    "LocalProofs",
    "NodeTiles",
    "TileSource",
    "TreeHead",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
_Proving = Callable[[merkle.NodeReader, set[TileKey] | None], T]

# A checkpoint not confirmed by a poll for this long is no longer "the latest", and a
# poll that proved reads public stops counting: the local path then stands aside.
STALE_AFTER_S = 1.0
# While reads are not public the poll only re-checks that, this often.
_PRIVATE_POLL_S = 1.0
# Checkpoints are adopted ahead of requests only while proofs are being asked for.
_DEMAND_WINDOW_S = 10.0
# After a failed adoption (a node unreachable, tiles that did not check) the same
# checkpoint is tried again after this long; a newer one at once.
_RETRY_S = 1.0
# Passes of a proof computation: the first names the missing tiles, the second has them.
_PASSES = 3


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A checkpoint as the node signed it: origin, size, root and the signed note."""

    origin: str
    size: int
    root_hash: bytes
    note: str

    @classmethod
    def from_checkpoint(cls, cp: pb.Checkpoint) -> TreeHead:
        return cls(cp.note.partition("\n")[0], cp.tree_size, cp.root_hash, cp.note)

    @classmethod
    def from_note(cls, note: str) -> TreeHead:
        """From a signed checkpoint note alone (ValueError if it is not one)."""
        body = parse_checkpoint(parse_note(note).text)
        return cls(body.origin, body.size, body.root_hash, note)


class TileSource(Protocol):
    """Where checkpoints and hash tiles come from, asked without the caller's credentials."""

    async def checkpoint(self) -> TreeHead: ...

    async def tile(self, key: TileKey) -> bytes: ...


class NodeTiles:
    """The nodes as a TileSource (through the gateway's pool, so reads spread and a
    follower that lacks a new tile is asked again of the leader)."""

    def __init__(self, pool: NodePool) -> None:
        self._pool = pool

    async def checkpoint(self) -> TreeHead:
        cp: pb.Checkpoint = await self._pool.read("GetCheckpoint", pb.GetCheckpointRequest(), None)
        return TreeHead.from_checkpoint(cp)

    async def tile(self, key: TileKey) -> bytes:
        request = pb.GetTileRequest(
            level=key.level, index=key.index, width=0 if key.full else key.width
        )
        answer: pb.Tile = await self._pool.read("GetTile", request, None)
        return answer.data


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """A proof computed here, shaped like the node's `InclusionProof` message (so that one
    encoder renders both; building the message would cost more than the proof)."""

    index: int
    tree_size: int
    leaf_hash: bytes
    hashes: list[bytes]
    checkpoint: str  # the signed note, when the latest checkpoint was asked for; else ""


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """Shaped like the node's `ConsistencyProof` message."""

    first: int
    second: int
    hashes: list[bytes]


@dataclass(frozen=True, slots=True)
class _Trusted:
    """A checkpoint whose right-edge tiles recompute its root."""

    head: TreeHead
    edge: dict[int, HashTile]
    epoch: int  # tiles checked under it are kept only while no reset came in between
    reader: merkle.NodeReader  # over its edge and the checked full tiles
    # What every inclusion proof at this size shares, computed once.
    paths: PathMemo = field(default_factory=PathMemo)


class LocalProofs:
    """Proofs from checked tiles; each method returns None where the node must answer.

    Create inside the running event loop; run `run()` as a task (the poll).
    """

    def __init__(
        self,
        source: TileSource,
        *,
        poll_interval_s: float = 0.05,
        max_tiles: int = 2048,
        stale_after_s: float = STALE_AFTER_S,
        on_reset: Callable[[], None] | None = None,
        on_fetch: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._interval = poll_interval_s
        self._max_tiles = max_tiles
        self._stale_after = stale_after_s
        self._on_reset = on_reset
        self._on_fetch = on_fetch
        self._clock = clock
        self._tiles: OrderedDict[int, HashTile] = OrderedDict()  # full tiles, checked
        self._inflight: dict[TileKey, asyncio.Future[HashTile]] = {}
        self._newest: TreeHead | None = None
        self._confirmed_at = float("-inf")
        self._public_until = float("-inf")
        self._last_demand = float("-inf")
        self._trusted: _Trusted | None = None
        self._adopting: asyncio.Future[None] | None = None
        self._failed: tuple[TreeHead, float] | None = None
        self._epoch = 0

    # --- what is known -------------------------------------------------------------

    @property
    def public(self) -> bool:
        """Whether a recent credential-less poll was answered (reads are public)."""
        return self._clock() < self._public_until

    @property
    def trusted_size(self) -> int | None:
        return None if self._trusted is None else self._trusted.head.size

    @property
    def newest(self) -> TreeHead | None:
        return self._newest

    @property
    def tiles_held(self) -> int:
        return len(self._tiles)

    def observe(self, head: TreeHead) -> None:
        """A checkpoint the node gave out (a poll, a forwarded checkpoint or receipt)."""
        newest = self._newest
        if newest is None or head.size > newest.size or head.origin != newest.origin:
            if newest is not None and head.origin != newest.origin:
                log.warning("the node's log is now %r (was %r)", head.origin, newest.origin)
            self._newest = head
            self._confirmed_at = self._clock()
        elif head.size == newest.size:
            self._confirmed_at = self._clock()

    def observe_receipt(self, note: str, size: int) -> None:
        """A receipt's checkpoint: what an acknowledged append made the latest."""
        newest = self._newest
        if newest is not None and size <= newest.size:
            return  # nothing newer (parsing the note would cost more than this check)
        try:
            head = TreeHead.from_note(note)
        except ValueError:
            return
        if head.size == size:
            self.observe(head)

    # --- the poll ----------------------------------------------------------------

    async def run(self) -> None:
        """Polls the latest checkpoint until cancelled."""
        while True:
            try:
                delay = await self.poll()
            except Exception as exc:  # a bug here must not end the poll for good
                log.error("checkpoint poll failed: %s: %s", type(exc).__name__, exc)
                delay = max(self._interval, _RETRY_S)
            await asyncio.sleep(delay)

    async def poll(self) -> float:
        """One credential-less GetCheckpoint; the seconds to wait before the next."""
        try:
            head = await self._source.checkpoint()
        except ProblemError as exc:
            if exc.problem.status in (401, 403):
                if self._public_until > float("-inf"):
                    log.info("reads are not public: proofs are asked of the node")
                self._public_until = float("-inf")
                return max(self._interval, _PRIVATE_POLL_S)
            log.debug("checkpoint poll failed: %s", exc.problem.detail)
            return self._interval
        now = self._clock()
        self._public_until = now + self._stale_after
        if self._went_back(head):
            self._trusted = None
            self._newest = None
        self.observe(head)
        if now - self._last_demand < _DEMAND_WINDOW_S:
            self._adopt_newest()  # ahead of the next request, so it need not wait
        return self._interval

    def _went_back(self, head: TreeHead) -> bool:
        """Whether a checkpoint smaller than the trusted one is not a prefix of it.

        Smaller is normal (a follower a block behind); another tree under the same origin
        (the node's data replaced, say) is not, and drops everything. Checked from the
        tiles held; when they do not reach, the consistency check at the next adoption
        will tell."""
        trusted = self._trusted
        if trusted is None or head.origin != trusted.head.origin or head.size >= trusted.head.size:
            return False
        try:
            root_hash = merkle.subtree_root(0, head.size, trusted.reader)
        except TileMissingError:
            return False
        if root_hash == head.root_hash:
            return False
        log.error(
            "the node's tree of size %d is not a prefix of the one of size %d it showed "
            "before; dropping every cached tile and answer",
            head.size,
            trusted.head.size,
        )
        self._reset()
        return True

    # --- proofs ------------------------------------------------------------------

    async def inclusion(self, index: int, tree_size: int | None = None) -> InclusionProof | None:
        """PATH(index, tree_size), or at the latest checkpoint (returned with it)."""
        now = self._clock()
        self._last_demand = now
        newest = self._newest
        if newest is None or now >= self._public_until:
            return None
        if tree_size is None:
            if now - self._confirmed_at > self._stale_after or index >= newest.size:
                return None
            need = newest.size
        elif not 0 <= index < tree_size:
            return None  # the node names the error (400 or 404)
        else:
            need = tree_size
        # The hot path is synchronous: a trusted checkpoint and every tile already held.
        trusted = self._trusted
        if trusted is None or trusted.head.size < need or trusted.head.origin != newest.origin:
            trusted = await self._trusted_at_least(need)
            if trusted is None:
                return None
        size = trusted.head.size if tree_size is None else tree_size
        memo = trusted.paths if size == trusted.head.size else None

        def prove(
            node: merkle.NodeReader, missing: set[TileKey] | None
        ) -> tuple[list[bytes], bytes]:
            return inclusion_path(index, size, node, memo, missing), node(0, index)

        try:
            hashes, leaf_hash = prove(trusted.reader, None)
        except TileMissingError:
            answer = await self._compute_or_none(trusted, prove)
            if answer is None:
                return None
            hashes, leaf_hash = answer
        note = trusted.head.note if tree_size is None else ""
        return InclusionProof(index, size, leaf_hash, hashes, note)

    async def consistency(self, first: int, second: int) -> ConsistencyProof | None:
        """PROOF(first, D[0:second])."""
        now = self._clock()
        self._last_demand = now
        if now >= self._public_until or not 0 <= first <= second:
            return None
        trusted = await self._trusted_at_least(second)
        if trusted is None:
            return None
        hashes: list[bytes] | None = []
        if 0 < first < second:
            hashes = await self._compute_or_none(
                trusted, lambda node, _: merkle.consistency_proof(first, second, node)
            )
        if hashes is None:
            return None
        return ConsistencyProof(first, second, hashes)

    # --- adopting checkpoints ----------------------------------------------------

    async def _trusted_at_least(self, size: int) -> _Trusted | None:
        """A trusted checkpoint of `size` or more, of the newest log seen; None if there is
        none (the node has not shown one, or checking it failed)."""
        for _ in range(2):
            newest = self._newest
            if newest is None or newest.size < size:
                return None
            trusted = self._trusted
            if (
                trusted is not None
                and trusted.head.size >= size
                and trusted.head.origin == newest.origin
            ):
                return trusted
            adopting = self._adopt_newest()
            if adopting is None:
                return None
            await asyncio.shield(adopting)
        trusted = self._trusted
        if trusted is not None and trusted.head.size >= size:
            return trusted
        return None

    def _adopt_newest(self) -> asyncio.Future[None] | None:
        """The running adoption, or a new one of the newest checkpoint if it is not
        trusted yet; None when that checkpoint failed a moment ago."""
        if self._adopting is not None and not self._adopting.done():
            return self._adopting
        head = self._newest
        trusted = self._trusted
        if head is None or (
            trusted is not None
            and trusted.head.origin == head.origin
            and trusted.head.size >= head.size
        ):
            return None
        if self._failed is not None:
            failed, retry_at = self._failed
            if failed == head and self._clock() < retry_at:
                return None
        self._adopting = asyncio.ensure_future(self._adopt(head))
        return self._adopting

    async def _adopt(self, head: TreeHead) -> None:
        previous = self._trusted
        try:
            edge = await asyncio.gather(
                *(self._edge_tile(k, previous, head) for k in edge_keys(head.size))
            )
            check_edge(head.size, head.root_hash, edge)
            tiles = {tile_code(t.level, t.index): t for t in edge}
            candidate = self._trust(head, tiles)
            same_log = previous is not None and previous.head.origin == head.origin
            if previous is not None and not (
                same_log and await self._extends(previous.head, candidate)
            ):
                self._reset()
                candidate = self._trust(head, tiles)
        except (ProblemError, TileMismatchError, TileMissingError) as exc:
            detail = exc.problem.detail if isinstance(exc, ProblemError) else str(exc)
            log.warning(
                "cannot follow checkpoint %s at size %d (%s); its proofs are asked of the node",
                head.origin,
                head.size,
                detail,
            )
            self._failed = (head, self._clock() + _RETRY_S)
            return
        self._trusted = candidate
        self._failed = None

    async def _edge_tile(self, key: TileKey, previous: _Trusted | None, head: TreeHead) -> HashTile:
        """A right-edge tile: the one of the previous checkpoint when it has not grown (the
        upper levels rarely do), else fetched. check_edge checks either against the root."""
        if previous is not None and previous.head.origin == head.origin:
            tile = previous.edge.get(key.code)
            if tile is not None and tile.width == key.width:
                return tile
        return await self._fetch(key)

    async def _extends(self, old: TreeHead, new: _Trusted) -> bool:
        """Whether the tree of `new` extends the one of `old`, by a consistency proof
        computed from the tiles (those checked under `old` among them) and verified."""
        if old.size == 0:
            return True
        if old.size == new.head.size:
            return old.root_hash == new.head.root_hash
        try:
            proof = await self._compute(
                new, lambda node, _: merkle.consistency_proof(old.size, new.head.size, node)
            )
            merkle.verify_consistency(
                old.size, new.head.size, old.root_hash, new.head.root_hash, proof
            )
        except (ConsistencyError, TileMismatchError) as exc:
            log.error(
                "the node's tree of size %d does not extend the one of size %d it showed "
                "before (%s); dropping every cached tile and answer",
                new.head.size,
                old.size,
                exc,
            )
            return False
        return True

    def _reset(self) -> None:
        self._epoch += 1
        self._tiles.clear()
        if self._on_reset is not None:
            self._on_reset()

    # --- tiles -------------------------------------------------------------------

    def _trust(self, head: TreeHead, edge: dict[int, HashTile]) -> _Trusted:
        reader = tile_reader(head.size, self._lookup(edge, {}))
        return _Trusted(head, edge, self._epoch, reader)

    def _lookup(self, edge: dict[int, HashTile], fresh: dict[int, HashTile]) -> TileLookup:
        tiles = self._tiles

        def lookup(code: int) -> HashTile | None:
            tile = edge.get(code)
            if tile is None:
                tile = tiles.get(code)
                if tile is not None:
                    tiles.move_to_end(code)
                elif fresh:
                    tile = fresh.get(code)
            return tile

        return lookup

    async def _compute_or_none(self, trusted: _Trusted, fn: _Proving[T]) -> T | None:
        try:
            return await self._compute(trusted, fn)
        except (ProblemError, TileMismatchError, TileMissingError) as exc:
            detail = exc.problem.detail if isinstance(exc, ProblemError) else str(exc)
            log.warning("proof from tiles failed (%s); asking the node", detail)
            return None

    async def _compute(self, trusted: _Trusted, fn: _Proving[T]) -> T:
        """fn over a reader of the trusted tree, after fetching and checking what it lacks
        (fn is given the reader and the set of tiles it found missing so far)."""
        try:
            return fn(trusted.reader, None)  # the usual case: every tile is held
        except TileMissingError:
            pass
        size = trusted.head.size
        fresh: dict[int, HashTile] = {}  # fetched for this computation, whatever the LRU evicts
        for _ in range(_PASSES):
            missing: set[TileKey] = set()
            result = fn(tile_reader(size, self._lookup(trusted.edge, fresh), missing), missing)
            if not missing:
                return result
            await self._load(trusted, missing, fresh)
        raise TileMissingError(f"tiles still missing after {_PASSES} passes at size {size}")

    async def _load(
        self, trusted: _Trusted, missing: set[TileKey], fresh: dict[int, HashTile]
    ) -> None:
        """Fetches the missing full tiles and the unchecked ones above them, then checks
        them top down, each against the (already checked) tile above it."""
        size = trusted.head.size
        lookup = self._lookup(trusted.edge, fresh)
        wanted = set(missing)
        todo = list(missing)
        while todo:
            key = todo.pop()
            if not key.full:
                # The only partial tiles of a tree are its right edge, which is held.
                raise TileMissingError(f"partial tile {key} is not on the trusted right edge")
            parent = parent_key(key, size)
            held = lookup(parent.code)
            if parent not in wanted and (held is None or held.width < parent.width):
                wanted.add(parent)
                todo.append(parent)
        tiles = await asyncio.gather(*(self._fetch(k) for k in wanted))
        keep = trusted.epoch == self._epoch
        for tile in sorted(tiles, key=lambda t: -t.level):
            check_full(tile, size, lookup)
            code = tile_code(tile.level, tile.index)
            fresh[code] = tile
            if keep:
                self._keep(code, tile)

    def _keep(self, code: int, tile: HashTile) -> None:
        if self._max_tiles <= 0:
            return
        self._tiles[code] = tile
        self._tiles.move_to_end(code)
        while len(self._tiles) > self._max_tiles:
            self._tiles.popitem(last=False)

    def _fetch(self, key: TileKey) -> Awaitable[HashTile]:
        """One fetch per tile however many requests want it at once."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._download(key))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._fetched(key, done))
        return asyncio.shield(task)

    def _fetched(self, key: TileKey, task: asyncio.Future[HashTile]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here too: every waiter may have gone

    async def _download(self, key: TileKey) -> HashTile:
        data = await self._source.tile(key)
        if self._on_fetch is not None:
            self._on_fetch()
        if len(data) != key.width * merkle.HASH_SIZE:
            raise TileMismatchError(
                f"tile {key.level}/{key.index} came as {len(data)} bytes, not {key.width} hashes"
            )
        return HashTile(key.level, key.index, data)
