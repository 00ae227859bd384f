"""Benchmark: `provledger audit` throughput and peak memory on large bundles.

Builds bundles of realistic ~560-byte inference events (real leaves from
provledger.events.make_entry, blocks of --block-size signed with an Ed25519 log key),
caches them in a temporary directory, runs the real `provledger audit` executable on
each and reports events/s and the child's peak RSS, next to the SHA-256 limit measured
in the same run: hashlib over the same leaves (the leaf hashes alone, and with the one
interior node hash per leaf a Merkle tree adds).

    .venv/bin/python bench/bench_audit.py                 # 100k and 1M events
    .venv/bin/python bench/bench_audit.py --events 20000  # a quick run

Targets (issue 4): at least 100,000 events/s, and flat memory (RSS at 100k ~ at 1M).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provledger import merkle
from provledger.blocks import GENESIS_PREV_HASH, BlockHeader, sign_header, timestamp_ms
from provledger.events import make_entry
from provledger.note import Checkpoint, Signer, sign_checkpoint

ORIGIN = "bench.provledger.local/audit"
EXE = Path(sys.executable).parent / "provledger"


def event(n: int) -> dict[str, object]:
    h = hashlib.sha256(n.to_bytes(8, "big")).hexdigest()
    return {
        "specversion": "1.0",
        "id": f"0190a1b2-c3d4-7{n % 4096:03x}-8{n % 4096:03x}-{n:012x}",
        "source": "urn:app:mobile-backend:eu-1",
        "type": "provledger.inference.v1",
        "time": "2025-01-31T12:00:00.123Z",
        "subject": f"user:{n % 100_000}",
        "data": {
            "model": {"name": "fraud-detector", "version": "3.1.0"},
            "input_commitment": h,
            "output_commitment": h[::-1],
            "count": 1 + n % 5,
            "latency_ms": 7.5,
            "x_request_id": f"req-{n:016d}-{h[:40]}",
        },
    }


def build(path: Path, events: int, block_size: int, signer: Signer) -> None:
    tmp = path.with_suffix(".tmp")
    compact = merkle.CompactRange()
    prev = GENESIS_PREV_HASH
    started = time.monotonic()
    with tmp.open("wb") as out:
        for height, first in enumerate(range(0, events, block_size)):
            count = min(block_size, events - first)
            leaves = [make_entry(event(first + i), "local").leaf for i in range(count)]
            hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
            for h in hashes:
                compact.append(h)
            header = BlockHeader(
                height=height,
                prev_hash=prev,
                first_index=first,
                count=count,
                entries_root=merkle.root(hashes),
                tree_size=compact.size,
                tree_root=compact.root(),
                timestamp=timestamp_ms(),
                leader="node-1",
                term=1,
            )
            header_bytes = header.canonical()
            line = {
                "header": json.loads(header_bytes),
                "hash": hashlib.sha256(header_bytes).hexdigest(),
                "signatures": [sign_header(header_bytes, "node-1", signer).to_json()],
                "leaves": [base64.b64encode(leaf).decode("ascii") for leaf in leaves],
            }
            out.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
            prev = hashlib.sha256(header_bytes).digest()
            if (height + 1) % 100 == 0:
                rate = compact.size / (time.monotonic() - started)
                print(
                    f"\r  building {compact.size:,}/{events:,} ({rate:,.0f}/s)",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
        note = sign_checkpoint(Checkpoint(ORIGIN, compact.size, compact.root()), signer)
        out.write(json.dumps({"checkpoint": note}, separators=(",", ":")).encode() + b"\n")
    print(file=sys.stderr)
    tmp.rename(path)


def bundle(cache: Path, events: int, block_size: int) -> tuple[Path, str]:
    cache.mkdir(parents=True, exist_ok=True)
    seed_path = cache / "log.seed"
    if not seed_path.exists():
        seed_path.write_bytes(os.urandom(32))
    signer = Signer.from_seed(ORIGIN, seed_path.read_bytes())
    path = cache / f"bundle-{events}-{block_size}.ndjson"
    if not path.exists():
        print(f"building {path} (cached for later runs)", file=sys.stderr)
        build(path, events, block_size, signer)
    return path, signer.verifier_key


def sha256_limit(path: Path) -> tuple[float, float, int]:
    """Leaves/s of hashlib alone over the bundle's leaves: leaf hashes, and leaf hashes
    plus one node hash per leaf (what any RFC 9162 verifier must at least compute)."""
    leaf_time = node_time = 0.0
    leaves_total = 0
    with path.open("rb") as f:
        for raw in f:
            obj = json.loads(raw)
            if "leaves" not in obj:
                continue
            leaves = [binascii.a2b_base64(s) for s in obj["leaves"]]
            sha = hashlib.sha256
            t0 = time.perf_counter()
            hashes = [sha(b"\x00" + leaf).digest() for leaf in leaves]
            t1 = time.perf_counter()
            pairs = [
                sha(b"\x01" + hashes[i - 1] + hashes[i]).digest() for i in range(1, len(hashes))
            ]
            t2 = time.perf_counter()
            del pairs
            leaf_time += t1 - t0
            node_time += t2 - t1
            leaves_total += len(leaves)
    return leaves_total / leaf_time, leaves_total / (leaf_time + node_time), leaves_total


def audit(path: Path, key: str) -> tuple[float, float, int, dict[str, object]]:
    """(wall seconds, audit seconds as the CLI reports them, peak RSS KiB, report)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(EXE), "audit", str(path), "--key", key, "--json"], stdout=out, stderr=err
        )
        # wait4 reaps the child and returns its own rusage (ru_maxrss in KiB on Linux).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"audit failed ({proc.returncode}): {stdout.decode()} {stderr.decode()}")
    report = json.loads(stdout)
    return wall, float(report["seconds"]), int(usage.ru_maxrss), report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events",
        type=int,
        nargs="*",
        default=[100_000, 1_000_000],
        help="bundle sizes (default 100000 1000000)",
    )
    parser.add_argument("--block-size", type=int, default=1000)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "provledger-bench-audit"
    )
    args = parser.parse_args()

    rows = []
    for n in sorted(args.events):
        path, key = bundle(args.cache, n, args.block_size)
        wall, seconds, rss, report = audit(path, key)
        assert report["ok"] and report["leaves"] == n, report
        leaf_rate, tree_rate, _ = sha256_limit(path)
        rows.append((n, path.stat().st_size, wall, seconds, rss, leaf_rate, tree_rate))

    print(f"\nprovledger audit, blocks of {args.block_size} (one Ed25519 check per block)")
    print(
        f"{'events':>10} {'bundle MB':>10} {'audit s':>8} {'events/s':>10} "
        f"{'wall s':>7} {'peak RSS MB':>12} {'SHA-256 leaf/s':>15} {'+node/s':>10} {'ratio':>6}"
    )
    for n, size, wall, seconds, rss, leaf_rate, tree_rate in rows:
        rate = n / seconds
        print(
            f"{n:>10,} {size / 1e6:>10,.0f} {seconds:>8.2f} {rate:>10,.0f} {wall:>7.2f} "
            f"{rss / 1024:>12.1f} {leaf_rate:>15,.0f} {tree_rate:>10,.0f} "
            f"{rate / tree_rate:>6.2f}"
        )
    if len(rows) > 1:
        print(
            f"peak RSS {rows[-1][0]:,} vs {rows[0][0]:,} events: "
            f"{rows[-1][4] / rows[0][4]:.2f}x (flat memory: close to 1)"
        )
    print("target: >= 100,000 events/s; ratio = audit rate / hashlib rate for leaf + node hashes")


if __name__ == "__main__":
    main()
