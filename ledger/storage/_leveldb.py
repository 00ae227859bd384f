"""The node's LevelDB database (the only module that imports plyvel)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import plyvel

from ledger.storage import _codec as codec
from ledger.storage._upper_levels import HASH, UpperLevels
from provledger.errors import NotFoundError, StorageError

__all__ = ["BlockRecord", "Head", "LevelDBStore", "NewLeaf", "event_digest"]

log = logging.getLogger(__name__)

# Every level above the tiles, subtrees of 16 leaves and up: 4 MB at a million entries.
_LOWEST_KEPT_LEVEL = codec.TILE_LEVELS
_KEPT_LEVELS_BUDGET = 16 * 1024 * 1024

event_digest = codec.event_digest


@dataclass(frozen=True, slots=True)
class Head:
    """The committed tip: the last block and the tree it leaves."""

    height: int
    header_hash: bytes
    tree_size: int
    term: int


class NewLeaf(NamedTuple):
    """What the store writes for one new leaf: any tuple of these fields, in this order
    (a block makes a thousand; the sequencer passes plain tuples)."""

    leaf: bytes
    leaf_hash: bytes
    identity: bytes  # event_digest(source, id)
    type: str
    subject: str | None


@dataclass(frozen=True, slots=True)
class BlockRecord:
    height: int
    header: bytes
    header_hash: bytes
    signatures: tuple[dict[str, str], ...]
    first_index: int
    count: int


def _unzip(nodes: Sequence[tuple[int, bytes]]) -> tuple[tuple[int, ...], tuple[bytes, ...]]:
    """(indexes, hashes) of (index, hash) pairs."""
    if not nodes:
        return (), ()
    indexes, hashes = zip(*nodes, strict=True)
    return indexes, hashes


class LevelDBStore:
    """Leaves, indexes, stored subtree hashes and signed block headers of one log."""

    def __init__(self, path: Path, *, create: bool = True, compress: bool = False) -> None:
        path.mkdir(parents=True, exist_ok=True)
        try:
            self._db = plyvel.DB(
                str(path),
                create_if_missing=create,
                bloom_filter_bits=10,
                # Snappy halves the leaves on disk (55 % for events with random digests)
                # but costs about a tenth of the node's CPU under load, in every flush
                # and compaction (perf, bench_ledger's batch phase). Off by default: a
                # node on two cores runs out of CPU long before it runs out of disk.
                # Either setting reads what the other wrote.
                compression="snappy" if compress else None,
                # 64 KB table blocks rather than LevelDB's 4 KB: at 1 M entries a proof
                # in the store reads about a quarter faster (fewer index blocks), and
                # compactions, which cost a node about as much CPU as its writes, took
                # 0 to 25 % less in our runs (bench/bench_storage.py compares).
                block_size=64 * 1024,
                lru_cache_size=64 * 1024 * 1024,
                write_buffer_size=32 * 1024 * 1024,
            )
        except plyvel.Error as exc:
            raise StorageError(f"cannot open LevelDB at {path}: {exc}") from exc
        self._write_lock = threading.Lock()
        self._recent_tile: tuple[int, int, bytes] = (-1, 0, b"")  # see `node`
        version = self._db.get(codec.meta_key("format"))
        if version is None:
            if self._db.get(codec.meta_key("head")) is not None:
                raise StorageError(f"{path}: database has data but no format version")
        elif version not in codec.READABLE_VERSIONS:
            readable = ", ".join(repr(v) for v in codec.READABLE_VERSIONS)
            raise StorageError(
                f"{path}: unsupported storage format {version!r}, this node reads {readable}"
            )
        if version is not None and version != codec.FORMAT_VERSION:
            self._copy_lower_nodes_into_tiles()
        if version != codec.FORMAT_VERSION:
            # From now on blocks are written as format 3 (tiles; index runs, which
            # format 1 lacked), which a node that reads only an earlier format must not
            # be given.
            self._db.put(codec.meta_key("format"), codec.FORMAT_VERSION, sync=True)
        self._drop_lower_node_keys()
        # Most of a proof's path lies in the upper levels: they are read once, here.
        self._upper = UpperLevels(_LOWEST_KEPT_LEVEL, _KEPT_LEVELS_BUDGET)
        head = self.head()
        if head is not None:
            self._upper.load(head.tree_size, self._level_hashes)

    def close(self) -> None:
        self._db.close()

    # metadata

    def get_meta(self, name: str) -> bytes | None:
        value: bytes | None = self._db.get(codec.meta_key(name))
        return value

    def put_meta(self, name: str, value: bytes) -> None:
        self._db.put(codec.meta_key(name), value, sync=True)

    def head(self) -> Head | None:
        raw = self.get_meta("head")
        if raw is None:
            return None
        obj = json.loads(raw)
        return Head(
            height=obj["height"],
            header_hash=bytes.fromhex(obj["hash"]),
            tree_size=obj["tree_size"],
            term=obj["term"],
        )

    # reads

    def leaf(self, index: int) -> bytes:
        value: bytes | None = self._db.get(codec.leaf_key(index))
        if value is None:
            raise NotFoundError(f"no entry at index {index}")
        return value

    def leaves(self, start: int, count: int) -> Iterator[bytes]:
        it = self._db.iterator(
            start=codec.leaf_key(start), stop=codec.leaf_key(start + count), include_key=False
        )
        with it:
            yield from it

    def index_of_leaf_hash(self, leaf_hash: bytes) -> int | None:
        value = self._db.get(codec.leaf_hash_key(leaf_hash))
        return None if value is None else codec.read_u64(value)

    def index_of_event(self, source: str, event_id: str) -> int | None:
        return self.index_of_event_digest(codec.event_digest(source, event_id))

    def index_of_event_digest(self, digest: bytes) -> int | None:
        value = self._db.get(codec.EVENT_ID + digest)
        return None if value is None else codec.read_u64(value)

    def event_digests(self) -> Iterator[bytes]:
        """The identity digest of every stored event, in key order."""
        it = self._db.iterator(prefix=codec.EVENT_ID, include_value=False)
        with it:
            for key in it:
                yield key[1:]

    def node(self, level: int, index: int) -> bytes:
        if level < codec.TILE_LEVELS:
            return self._tiled_node(level, index)
        value: bytes | None = self._upper.get(level, index)
        if value is None:
            value = self._db.get(codec.node_key(level, index))
            if value is None:
                raise StorageError(f"missing tree node at level {level}, index {index}")
        return value

    def _tiled_node(self, level: int, index: int) -> bytes:
        shift = codec.TILE_LEVELS - level
        tile = index >> shift
        position = HASH * (index - (tile << shift))
        # A proof reads up to four nodes of one tile in a row: the last tile read is kept.
        # Its nodes never change; a tile read before the log grew past it only lacks the
        # newer ones, so a node it lacks is looked up again.
        kept, width, value = self._recent_tile
        if kept == tile:
            hashes = codec.tile_level(value, width, level)
            if position < len(hashes):
                return hashes[position : position + HASH]
        found = self._tile(tile)
        if found is not None:
            width, value = found
            self._recent_tile = (tile, width, value)
            hashes = codec.tile_level(value, width, level)
            if position < len(hashes):
                return hashes[position : position + HASH]
        raise StorageError(f"missing tree node at level {level}, index {index}")

    def _tile(self, tile: int) -> tuple[int, bytes] | None:
        """(width, value) of a stored tile; None if it is missing or malformed."""
        value: bytes | None = self._db.get(codec.tile_key(tile))
        if value is None:
            return None
        width = codec.tile_width(value)
        return None if width is None else (width, value)

    def _level_hashes(self, level: int, count: int) -> bytes:
        """The first `count` hashes of a level, joined, or those before the first gap or
        malformed value."""
        it = self._db.iterator(
            start=codec.node_key(level, 0), stop=codec.node_key(level, count), include_key=False
        )
        with it:
            values = list(it)
        # `count` distinct keys below `count` are all of them.
        if len(values) == count and all(len(value) == HASH for value in values):
            return b"".join(values)
        found = []
        it = self._db.iterator(start=codec.node_key(level, 0), stop=codec.node_key(level, count))
        with it:
            for expected, (key, value) in enumerate(it):
                if key != codec.node_key(level, expected) or len(value) != HASH:
                    break
                found.append(value)
        return b"".join(found)

    def nodes(self, level: int, start: int, count: int) -> list[bytes]:
        if level < codec.TILE_LEVELS:
            found = self._tiled_nodes(level, start, count)
        else:
            it = self._db.iterator(
                start=codec.node_key(level, start),
                stop=codec.node_key(level, start + count),
                include_key=False,
            )
            with it:
                found = list(it)
        if len(found) != count:
            raise StorageError(f"missing tree nodes at level {level} from index {start}")
        return found

    def _tiled_nodes(self, level: int, start: int, count: int) -> list[bytes]:
        """Nodes `start` .. `start + count - 1` of a tiled level, fewer if some are missing."""
        shift = codec.TILE_LEVELS - level
        first_tile, last_tile = start >> shift, (start + count - 1) >> shift
        it = self._db.iterator(start=codec.tile_key(first_tile), stop=codec.tile_key(last_tile + 1))
        joined = []
        with it:
            for expected, (key, value) in enumerate(it, first_tile):
                width = codec.tile_width(value)
                if key != codec.tile_key(expected) or width is None:
                    break
                joined.append(codec.tile_level(value, width, level))
        hashes = b"".join(joined)
        offset = HASH * (start - (first_tile << shift))
        hashes = hashes[offset : offset + HASH * count]
        return [hashes[i : i + HASH] for i in range(0, len(hashes), HASH)]

    def block(self, height: int) -> BlockRecord:
        header = self._db.get(codec.block_key(height))
        if header is None:
            raise NotFoundError(f"no block at height {height}")
        signatures = json.loads(self._db.get(codec.signatures_key(height)) or b"[]")
        meta = json.loads(header)
        return BlockRecord(
            height=height,
            header=header,
            header_hash=hashlib.sha256(header).digest(),
            signatures=tuple(signatures),
            first_index=meta["first_index"],
            count=meta["count"],
        )

    def block_height_of_index(self, index: int) -> int:
        it = self._db.iterator(
            start=codec.BLOCK_START,
            stop=codec.block_start_key(index + 1),
            reverse=True,
            include_key=False,
        )
        with it:
            for value in it:
                return codec.read_u64(value)
        raise NotFoundError(f"no block holds index {index}")

    def query(
        self, event_type: str | None, subject: str | None, after: int | None, limit: int
    ) -> list[int]:
        """Indexes > after of entries matching type and subject, at most `limit`, in order."""
        first = 0 if after is None else after + 1
        found: list[int] = []
        if subject is not None:
            prefix = codec.subject_prefix(subject)
            want = None if event_type is None else event_type.encode()
            for key_index, value in self._runs_from(prefix, first):
                for index, kind in codec.read_subject_run(key_index, value):
                    if index >= first and (want is None or kind == want):
                        found.append(index)
                        if len(found) >= limit:
                            return found
        elif event_type is not None:
            prefix = codec.type_prefix(event_type)
            for key_index, value in self._runs_from(prefix, first):
                for index in codec.read_index_run(key_index, value):
                    if index >= first:
                        found.append(index)
                        if len(found) >= limit:
                            return found
        else:
            it = self._db.iterator(
                start=codec.leaf_key(first), stop=codec.LEAF + b"\xff" * 9, include_value=False
            )
            with it:
                for key in it:
                    found.append(codec.read_u64(key, 1))
                    if len(found) >= limit:
                        break
        return found

    def _runs_from(self, prefix: bytes, first: int) -> Iterator[tuple[int, bytes]]:
        """(key index, value) of the index runs under `prefix`, in order, from the one
        that may hold `first` (the last stored at or before it) on."""
        start = first
        it = self._db.iterator(
            start=prefix, stop=prefix + codec.u64(first + 1), reverse=True, include_value=False
        )
        with it:
            for key in it:
                start = codec.read_u64(key, len(prefix))
                break
        it = self._db.iterator(start=prefix + codec.u64(start), stop=prefix + b"\xff" * 9)
        with it:
            for key, value in it:
                yield codec.read_u64(key, len(prefix)), value

    def idempotency(self, key: str) -> bytes | None:
        value: bytes | None = self._db.get(codec.idempotency_key(key))
        return value

    def put_idempotency(self, key: str, value: bytes) -> None:
        self._db.put(codec.idempotency_key(key), value, sync=True)

    def idempotency_records(self) -> Iterator[tuple[str, bytes]]:
        """Every stored idempotency record: (key, value), in key order."""
        it = self._db.iterator(prefix=codec.IDEMPOTENCY)
        with it:
            for key, value in it:
                yield key[len(codec.IDEMPOTENCY) :].decode(), value

    def delete_idempotency(self, keys: Sequence[str]) -> None:
        with self._db.write_batch(sync=True) as wb:
            for key in keys:
                wb.delete(codec.idempotency_key(key))

    # the one write path

    def apply_block(
        self,
        block: BlockRecord,
        leaves: Sequence[NewLeaf],
        nodes: Sequence[tuple[int, int, bytes]],
        head: Head,
        *,
        sync: bool = True,
    ) -> None:
        """Writes one block, its leaves, indexes, tree nodes and the new head atomically."""
        head_value = json.dumps(
            {
                "height": head.height,
                "hash": head.header_hash.hex(),
                "tree_size": head.tree_size,
                "term": head.term,
            }
        ).encode()
        with self._write_lock:
            try:
                wb = self._db.write_batch(sync=sync)
                put = wb.put
                u64 = codec.u64
                leaf_family, hash_family, id_family = codec.LEAF, codec.LEAF_HASH, codec.EVENT_ID
                # The type and subject index entries as runs, one per type and subject.
                by_type: dict[str, list[int]] = {}
                by_subject: dict[str, list[tuple[int, str]]] = {}
                index = block.first_index
                for leaf, leaf_hash, identity, event_type, subject in leaves:
                    key = u64(index)
                    put(leaf_family + key, leaf)
                    put(hash_family + leaf_hash, key)
                    put(id_family + identity, key)
                    of_type = by_type.get(event_type)
                    if of_type is None:
                        by_type[event_type] = [index]
                    else:
                        of_type.append(index)
                    if subject is not None:
                        of_subject = by_subject.get(subject)
                        if of_subject is None:
                            by_subject[subject] = [(index, event_type)]
                        else:
                            of_subject.append((index, event_type))
                    index += 1
                for event_type, indexes in by_type.items():
                    put(codec.type_prefix(event_type) + u64(indexes[0]), codec.index_run(indexes))
                for subject, entries in by_subject.items():
                    put(
                        codec.subject_prefix(subject) + u64(entries[0][0]),
                        codec.subject_run(entries),
                    )
                level_prefixes = codec.NODE_LEVEL_PREFIXES
                tiled: list[list[tuple[int, bytes]]] = [[] for _ in range(codec.TILE_LEVELS)]
                for level, node_index, h in nodes:
                    if level < codec.TILE_LEVELS:
                        tiled[level].append((node_index, h))
                    else:
                        put(level_prefixes[level] + u64(node_index), h)
                for tile, value in self._tiles_of(block.first_index, head.tree_size, tiled):
                    put(codec.tile_key(tile), value)
                put(codec.block_key(block.height), block.header)
                put(codec.signatures_key(block.height), json.dumps(list(block.signatures)).encode())
                put(codec.block_start_key(block.first_index), codec.u64(block.height))
                put(codec.meta_key("head"), head_value)
                wb.write()
            except plyvel.Error as exc:
                raise StorageError(f"cannot write block {block.height}: {exc}") from exc
            self._upper.extend(nodes, head.tree_size)

    def _tiles_of(
        self, first: int, tree_size: int, new: list[list[tuple[int, bytes]]]
    ) -> Iterator[tuple[int, bytes]]:
        """Each tile over leaves `first` .. `tree_size - 1`, whole, from the new nodes of
        each tiled level (`new[level]`: (index, hash), every node the leaves complete)
        and those the first tile already held, if the leaves start inside it."""
        shift = codec.TILE_LEVELS
        first_tile = first >> shift
        held: tuple[bytes, ...] = (b"",) * shift
        if first & (codec.TILE_WIDTH - 1):
            stored = self._tile(first_tile)
            if stored is None:
                raise StorageError(f"missing the tile of tree nodes over leaf {first}")
            width, value = stored
            held = tuple(codec.tile_level(value, width, level) for level in range(shift))
        # Each level's nodes from the first tile's first on, joined.
        rows = []
        for level, nodes in enumerate(new):
            start = (first_tile << (shift - level)) + len(held[level]) // HASH
            wanted = tuple(range(start, tree_size >> level))
            indexes, hashes = _unzip(nodes)
            if indexes != wanted:  # not in index order, or not these nodes
                indexes, hashes = _unzip(sorted(nodes))
                if indexes != wanted:
                    raise StorageError(
                        f"tree nodes at level {level} do not complete leaves {first} to "
                        f"{tree_size - 1}"
                    )
            rows.append(held[level] + b"".join(hashes))
        for tile in range(first_tile, ((tree_size - 1) >> shift) + 1):
            width = min(codec.TILE_WIDTH, tree_size - (tile << shift))
            parts = []
            for level, row in enumerate(rows):
                at = ((tile - first_tile) << (shift - level)) * HASH
                parts.append(row[at : at + (width >> level) * HASH])
            yield tile, b"".join(parts)

    # upgrades from formats 1 and 2

    def _copy_lower_nodes_into_tiles(self) -> None:
        """Writes the tiles of a format-1 or format-2 database from its node keys (which
        stay until the format key says 3; see `_drop_lower_node_keys`)."""
        head = self.head()
        if head is None or head.tree_size == 0:
            return
        size = head.tree_size
        # About 13 s at a million entries on a two-core machine, once.
        log.warning("upgrading the storage format to 3: tiles for %d entries", size)
        started = time.monotonic()
        tiles_per_batch = 4096
        last_tile = (size - 1) >> codec.TILE_LEVELS
        for first_tile in range(0, last_tile + 1, tiles_per_batch):
            stop = min(size, (first_tile + tiles_per_batch) << codec.TILE_LEVELS)
            start = first_tile << codec.TILE_LEVELS
            nodes = [
                list(self._stored_nodes(level, start >> level, stop >> level))
                for level in range(codec.TILE_LEVELS)
            ]
            # Synchronous: the tiles are durable before the format key says they exist.
            with self._db.write_batch(sync=True) as wb:
                for tile, value in self._tiles_of(start, stop, nodes):
                    wb.put(codec.tile_key(tile), value)
        log.info("storage format 3: tiles written in %.1f s", time.monotonic() - started)

    def _stored_nodes(self, level: int, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        it = self._db.iterator(start=codec.node_key(level, start), stop=codec.node_key(level, stop))
        with it:
            for key, value in it:
                yield codec.read_u64(key, 2), value

    def _drop_lower_node_keys(self) -> None:
        """Deletes node keys of the tiled levels that an upgrade left (at once, or after
        a crash in the middle of it)."""
        stop = codec.node_key(codec.TILE_LEVELS, 0)
        while True:
            it = self._db.iterator(start=codec.NODE, stop=stop, include_value=False)
            with it:
                keys = [key for key, _ in zip(it, range(100_000), strict=False)]
            if not keys:
                return
            with self._db.write_batch(sync=True) as wb:
                for key in keys:
                    wb.delete(key)

    def put_signatures(
        self, height: int, signatures: Sequence[dict[str, str]], *, sync: bool = True
    ) -> None:
        self._db.put(codec.signatures_key(height), json.dumps(list(signatures)).encode(), sync=sync)
