"""Storage benchmark: the node's LevelDB write path alone, and what LevelDB's
compactions cost it.

Writes blocks of 1,000 ~500-byte leaves through `LevelDBStore.apply_block` (one
synchronous WriteBatch per block: leaves, both digest indexes, type and subject
indexes, tree nodes, header, head), timing the writing thread's CPU and, apart, the CPU
of LevelDB's background thread (memtable flushes and compactions). The limit beside it
is a bare plyvel loop writing the same keys in the same batches; a second loop writes
format 2's keys (a key per tree node of levels 0 to 3, where format 3 writes a tile per
16 leaves) for comparison.

    python bench/bench_storage.py            # 1 M events (about 2 minutes)
    python bench/bench_storage.py --quick    # 200 k events
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import header, row

BLOCK = 1_000
_Block = TypeVar("_Block")
_FILLER = b"x" * 430  # with the id and framing, a leaf of about 500 bytes
_SUBJECTS = [f"model:fraud-{i}" for i in range(7)]


def _thread_cpu() -> dict[str, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        out[tid] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def _leaves(first: int) -> list[tuple[bytes, bytes, bytes, str, str]]:
    """(leaf, leaf hash, identity digest, type, subject) of one block's events."""
    from ledger.storage import event_digest
    from provledger import merkle

    out = []
    for n in range(first, first + BLOCK):
        leaf = b'{"event":{"id":"e-%d","source":"urn:bench:storage"},"pad":"%s"}' % (n, _FILLER)
        out.append(
            (
                leaf,
                merkle.leaf_hash(leaf),
                event_digest("urn:bench:storage", f"e-{n}"),
                "provledger.training.v1",
                _SUBJECTS[n % len(_SUBJECTS)],
            )
        )
    return out


def measure(
    prepare: Callable[[int], _Block], write: Callable[[_Block], None], events: int
) -> tuple[float, float, float]:
    """(events/s, writing thread µs/event, background threads µs/event) of `write`,
    called once per block with what `prepare` made of it outside the timing."""
    me = str(threading.get_native_id())
    before = _thread_cpu()
    mine = 0.0
    elapsed = 0.0
    for first in range(0, events, BLOCK):
        block = prepare(first)
        start_cpu, start = time.thread_time(), time.perf_counter()
        write(block)
        mine += time.thread_time() - start_cpu
        elapsed += time.perf_counter() - start
    after = _thread_cpu()
    others = sum(v - before.get(t, 0.0) for t, v in after.items() if t != me)
    return events / elapsed, mine / events * 1e6, others / events * 1e6


def store_run(path: Path, events: int) -> tuple[float, float, float]:
    from ledger.sequencer import LogState, extend_tree
    from ledger.storage import BlockRecord, Head, LevelDBStore, NewLeaf
    from provledger import merkle

    store = LevelDBStore(path)
    state = LogState(0, merkle.EMPTY_ROOT, None, b"\0" * 32, 0, "", ())

    def prepare(first: int) -> tuple[Any, ...]:
        nonlocal state
        made = [NewLeaf(*leaf) for leaf in _leaves(first)]
        compact, _, nodes = extend_tree(state, [leaf.leaf_hash for leaf in made])
        height = first // BLOCK
        state = LogState(compact.size, b"", height, b"", 0, "", tuple(compact.hashes()))
        record = BlockRecord(height, b"{}", b"h" * 32, ({"node": "n"},), first, BLOCK)
        return (record, made, nodes, Head(height, b"h" * 32, compact.size, 0))

    def write(block: tuple[Any, ...]) -> None:
        store.apply_block(*block)

    try:
        return measure(prepare, write, events)
    finally:
        store.close()


def raw_run(path: Path, events: int, node_keys: bool = False) -> tuple[float, float, float]:
    import plyvel

    from ledger.storage import _codec as codec

    db = plyvel.DB(
        str(path),
        create_if_missing=True,
        bloom_filter_bits=10,
        compression=None,
        lru_cache_size=64 << 20,
        write_buffer_size=32 << 20,
        block_size=64 << 10,
    )
    tile = b"\x00" * codec.tile_bytes(codec.TILE_WIDTH)

    def per_event(
        index: int, leaf: bytes, leaf_hash: bytes, identity: bytes
    ) -> list[tuple[bytes, bytes]]:
        """The keys written for each event: leaf, leaf hash, identity and the tree nodes
        it completes: from level 4 up a key per node; below, a tile per 16 leaves (format
        3) or a key per node (`node_keys`: format 2)."""
        key = index.to_bytes(8, "big")
        out = [(b"L" + key, leaf), (b"H" + leaf_hash, key), (b"E" + identity, key)]
        level = 0
        while True:  # leaf `index` completes the node above it at each level it ends
            if level >= codec.TILE_LEVELS or node_keys:
                out.append((codec.node_key(level, index >> level), leaf_hash))
            level += 1
            if (index + 1) % (1 << level):
                break
        if not node_keys and index % codec.TILE_WIDTH == codec.TILE_WIDTH - 1:
            out.append((codec.tile_key(index // codec.TILE_WIDTH), tile))
        return out

    def keys(first: int) -> list[tuple[bytes, bytes]]:
        """The store's keys: those of each event, then the block's runs of index entries
        by type and by subject."""
        out = []
        by_type: dict[str, list[int]] = {}
        by_subject: dict[str, list[tuple[int, str]]] = {}
        for index, (leaf, leaf_hash, identity, kind, subject) in enumerate(
            _leaves(first), start=first
        ):
            out += per_event(index, leaf, leaf_hash, identity)
            by_type.setdefault(kind, []).append(index)
            by_subject.setdefault(subject, []).append((index, kind))
        for kind, indexes in by_type.items():
            out.append((codec.type_prefix(kind) + codec.u64(indexes[0]), codec.index_run(indexes)))
        for subject, entries in by_subject.items():
            out.append(
                (
                    codec.subject_prefix(subject) + codec.u64(entries[0][0]),
                    codec.subject_run(entries),
                )
            )
        return out

    def write(block: list[tuple[bytes, bytes]]) -> None:
        with db.write_batch(sync=True) as batch:
            for key, value in block:
                batch.put(key, value)

    try:
        return measure(keys, write, events)
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="200 k events")
    args = parser.parse_args()
    events = 200_000 if args.quick else args.events
    events -= events % BLOCK

    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        root = Path(tmp)
        store = store_run(root / "store", events)
        shutil.rmtree(root / "store")  # a 1 M store takes about 750 MB
        raw = raw_run(root / "raw", events)
        shutil.rmtree(root / "raw")
        raw2 = raw_run(root / "raw2", events, node_keys=True)

    header(f"LevelDB write path, {events:,} events of ~500 bytes in synchronous blocks of 1,000")
    row(
        "LevelDBStore.apply_block",
        f"{store[0]:,.0f} events/s",
        f"{raw[0]:,.0f} events/s bare plyvel, same keys",
        f"{store[0] / raw[0]:.2f}",
    )
    row(
        "  CPU per event: writing thread / LevelDB background (flushes, compactions)",
        f"{store[1]:.1f} / {store[2]:.1f} µs",
        f"{raw[1]:.1f} / {raw[2]:.1f} µs bare plyvel",
        "",
    )
    row(
        "bare plyvel, format 2's keys (a key per tree node of levels 0 to 3, not tiles)",
        f"{raw2[0]:,.0f} events/s; {raw2[1]:.1f} / {raw2[2]:.1f} µs",
        f"{raw[0]:,.0f} events/s with format 3's keys",
        f"CPU {(raw2[1] + raw2[2]) / (raw[1] + raw[2]):.2f}x format 3's",
    )


if __name__ == "__main__":
    main()
