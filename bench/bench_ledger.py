"""Single-node ledger benchmark: durable append throughput, latency, proofs, RSS and restart at scale.

Clients run in other processes over real gRPC on loopback against `python -m ledger`.
Limits printed beside each figure: the raw RFC 9162 LevelDB store (leaves, leaf-hash
index and subtree nodes in 1,000-record synchronous batches, measured here) and SHA-256.

    python bench/bench_ledger.py            # 1 M entries (several minutes)
    python bench/bench_ledger.py --quick    # 100 k entries
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    append_latencies,
    cpu_seconds,
    header,
    median,
    percentile,
    row,
    rss_mb,
    run_clients,
    started_pss_mb,
    training_event,
)
from tests.harness.procs import free_port  # below the ephemeral range, as the tests' ports


def raw_store_rate(path: Path, leaves: int = 100_000) -> float:
    """Leaves/s of a bare RFC 9162 store on plyvel (the node's settings, uncompressed):
    the ceiling for the node's storage."""
    import plyvel

    from provledger import merkle

    db = plyvel.DB(
        str(path),
        create_if_missing=True,
        bloom_filter_bits=10,
        write_buffer_size=32 << 20,
        block_size=64 << 10,
        compression=None,
    )
    leaf = training_event("urn:bench:raw")
    compact = merkle.CompactRange()
    start = time.perf_counter()
    for first in range(0, leaves, 1000):
        wb = db.write_batch(sync=True)
        for i in range(first, first + 1000):
            h = merkle.leaf_hash(leaf + i.to_bytes(8, "big"))
            key = i.to_bytes(8, "big")
            wb.put(b"L" + key, leaf)
            wb.put(b"H" + h, key)
            for level, index, node in compact.append(h):
                wb.put(b"N" + bytes((level,)) + index.to_bytes(8, "big"), node)
        wb.write()
    elapsed = time.perf_counter() - start
    db.close()
    return leaves / elapsed


def sha256_rate(size: int = 500, n: int = 200_000) -> float:
    data = b"x" * size
    start = time.perf_counter()
    for _ in range(n):
        hashlib.sha256(data).digest()
    return n / (time.perf_counter() - start)


def _kill_at_exit(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """A run that stops early (an exception, Ctrl-C) must not leave its node behind."""

    def kill() -> None:
        if proc.poll() is None:
            proc.kill()

    atexit.register(kill)
    return proc


def start_node(tmp: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    config = tmp / "node.toml"
    config.write_text(
        f'node_id = "bench-1"\ndata_dir = "{tmp / "data"}"\nlisten = "127.0.0.1:{port}"\n'
        'origin = "bench.provledger.local/log"\nmax_block_entries = 1000\nmax_block_delay_ms = 20\n'
    )
    proc = _kill_at_exit(spawn_node(config, tmp / "node.log", env))
    wait_ready(f"127.0.0.1:{port}", proc)
    return proc


def spawn_node(
    config: Path, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`python -m ledger` with `config` (and `env`), its output appended to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "ledger", "--config", str(config), "--log-level", "WARNING"],
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def wait_ready(address: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> float:
    import grpc

    from provledger.v1 import ledger_pb2 as pb
    from provledger.v1 import ledger_pb2_grpc as pb_grpc

    start = time.perf_counter()
    channel = grpc.insecure_channel(address)
    stub = pb_grpc.LedgerStub(channel)
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"node exited with {proc.returncode}")
        try:
            stub.GetStatus(pb.GetStatusRequest(), timeout=0.5)
            channel.close()
            return time.perf_counter() - start
        except grpc.RpcError:
            time.sleep(0.01)
    raise SystemExit("node did not become ready")


# client processes


def _batch_worker(  # type: ignore[no-untyped-def]
    address: str, worker: int, total: int, batch: int, canonical: bool, queue: mp.Queue
) -> None:
    import grpc

    from provledger.v1 import ledger_pb2 as pb
    from provledger.v1 import ledger_pb2_grpc as pb_grpc

    stub = pb_grpc.LedgerStub(
        grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 256 << 20)])
    )
    source = f"urn:bench:batch:{worker}:{os.getpid()}"
    # Events are made before the clock starts (a load generator, not a producer, shares
    # these two cores with the node); only the fill to 1 M makes them as it goes.
    ready = total <= 50_000
    made = [training_event(source, canonical=canonical) for _ in range(total if ready else 0)]
    sent = 0
    start = time.perf_counter()
    while sent < total:
        events = (
            made[sent : sent + batch]
            if ready
            else [training_event(source, canonical=canonical) for _ in range(batch)]
        )
        response = stub.AppendBatch(pb.AppendBatchRequest(events=events), timeout=120)
        assert all(r.WhichOneof("outcome") == "committed" for r in response.results)
        sent += len(events)
    queue.put((sent, time.perf_counter() - start))


def _stream_worker(  # type: ignore[no-untyped-def]
    address: str, worker: int, total: int, per_stream: int, chunk: int, queue: mp.Queue
) -> None:
    import grpc

    from provledger.v1 import ledger_pb2 as pb
    from provledger.v1 import ledger_pb2_grpc as pb_grpc

    stub = pb_grpc.LedgerStub(
        grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 256 << 20)])
    )
    source = f"urn:bench:stream:{worker}:{os.getpid()}"
    streams = [
        [
            pb.AppendRequest(events=[training_event(source) for _ in range(chunk)])
            for _ in range(per_stream // chunk)
        ]
        for _ in range(-(-total // per_stream))
    ]
    sent = 0
    start = time.perf_counter()
    for events in streams:
        response = stub.AppendStream(iter(events), timeout=120)
        assert all(r.WhichOneof("outcome") == "committed" for r in response.results)
        sent += len(response.results)
    queue.put((sent, time.perf_counter() - start))


def _latency_worker(address: str, threads: int, seconds: float, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    import grpc

    from provledger.v1 import ledger_pb2_grpc as pb_grpc

    stub = pb_grpc.LedgerStub(grpc.insecure_channel(address))
    queue.put(append_latencies(stub, threads, seconds, timeout=30))


def proof_latencies(address: str, size: int, n: int) -> tuple[list[float], list[float]]:
    import grpc

    from provledger.v1 import ledger_pb2 as pb
    from provledger.v1 import ledger_pb2_grpc as pb_grpc

    stub = pb_grpc.LedgerStub(grpc.insecure_channel(address))
    rng = random.Random(1)
    inclusion, consistency = [], []
    for _ in range(n):
        i = rng.randrange(size)
        t0 = time.perf_counter()
        stub.GetInclusionProof(pb.InclusionProofRequest(index=i, tree_size=size))
        inclusion.append(time.perf_counter() - t0)
        a = rng.randrange(1, size)
        t0 = time.perf_counter()
        stub.GetConsistencyProof(pb.ConsistencyProofRequest(first=a, second=size))
        consistency.append(time.perf_counter() - t0)
    return inclusion, consistency


def batch_rows(label: str, results: list[tuple[int, float]], node_cpu: float, raw: float) -> None:
    """The rate of a phase of batch clients next to the raw store, and the node's CPU per
    event in it (`node_cpu` seconds, all its threads and admission workers)."""
    events = sum(r[0] for r in results)
    rate = events / max(r[1] for r in results)
    per_event = node_cpu / events
    row(label, f"{rate:,.0f} events/s", f"{raw:,.0f} leaves/s raw store", f"{rate / raw:.2f}")
    row(
        "  node CPU per event, all its threads and admission workers (same phase)",
        f"{per_event * 1e6:,.0f} µs",
        f"{2 / per_event:,.0f} events/s if it had both cores to itself",
    )


def batch_phase(
    label: str,
    address: str,
    node_pid: int,
    raw: float,
    per_client: int,
    batch: int,
    canonical: bool,
) -> None:
    """Two batch clients of `per_client` events each, timed, and their `batch_rows`."""
    cpu_before = cpu_seconds(node_pid)
    results = run_clients(
        _batch_worker, [(address, w, per_client, batch, canonical) for w in range(2)]
    )
    batch_rows(label, results, cpu_seconds(node_pid) - cpu_before, raw)


def settle(pid: int, quiet: float = 0.05, most: float = 60.0) -> float:
    """Waits until the process (with its children) spends less than `quiet` of a core
    over a second, at most `most` seconds; returns the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < most:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - before < quiet:
            break
    return time.perf_counter() - start


def status_rtt(address: str, n: int = 2000) -> float:
    """p50 of a bare GetStatus round trip, in µs."""
    import grpc

    from provledger.v1 import ledger_pb2 as pb
    from provledger.v1 import ledger_pb2_grpc as pb_grpc

    stub = pb_grpc.LedgerStub(grpc.insecure_channel(address))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        stub.GetStatus(pb.GetStatusRequest())
        times.append(time.perf_counter() - t0)
    return median(times) * 1e6


def store_proof_latencies(data_dir: Path, size: int, n: int) -> tuple[list[float], list[float]]:
    """Proof generation inside the node's store, without the RPC (node stopped)."""
    from ledger.storage import LevelDBStore
    from provledger import merkle

    store = LevelDBStore(data_dir / "db")
    rng = random.Random(2)
    inc, con = [], []
    for _ in range(n):
        i = rng.randrange(size)
        t0 = time.perf_counter()
        merkle.inclusion_proof(i, size, store.node)
        inc.append(time.perf_counter() - t0)
        a = rng.randrange(1, size)
        t0 = time.perf_counter()
        merkle.consistency_proof(a, size, store.node)
        con.append(time.perf_counter() - t0)
    store.close()
    return inc, con


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100 k entries, shorter phases")
    args = parser.parse_args()
    target = 100_000 if args.quick else args.entries
    with tempfile.TemporaryDirectory(prefix="provledger-bench-") as tmp_name:
        tmp = Path(tmp_name)
        header("Limits measured in this run")
        raw = raw_store_rate(tmp / "raw", 50_000 if args.quick else 200_000)
        sha = sha256_rate()
        row("raw RFC 9162 LevelDB store (1,000-leaf sync batches)", f"{raw:,.0f} leaves/s")
        row("SHA-256 of a 500-byte leaf", f"{sha:,.0f} /s")

        port = free_port()
        address = f"127.0.0.1:{port}"
        node = start_node(tmp, port)
        header("Durable appends (clients in other processes, gRPC on loopback)")
        # Untimed: the node starts its admission worker on its first large batch.
        run_clients(_batch_worker, [(address, w, 2_000, 1000, True) for w in range(2)])
        phase = 20_000 if args.quick else 60_000
        for canonical, label in (
            (True, "RFC 8785 events, as the SDK sends"),
            (False, "unsorted JSON"),
        ):
            batch_phase(
                f"AppendBatch (2 clients, 1,000 events/batch, ~500 B {label})",
                address,
                node.pid,
                raw,
                phase // 2,
                1000,
                canonical,
            )
        # Two clients keep at most two batches in flight: the node's stages (admission
        # worker, sequencer, fsync) then wait on each other. Four clients, or two bulk
        # loaders with 5,000 events a batch (each request fills several blocks), show
        # what it does with its pipeline full.
        results = run_clients(
            _batch_worker, [(address, w, phase // 4, 1000, True) for w in range(4)]
        )
        rate4 = sum(r[0] for r in results) / max(r[1] for r in results)
        row(
            "AppendBatch (4 clients, 1,000 events/batch, RFC 8785 events)",
            f"{rate4:,.0f} events/s",
            f"{raw:,.0f} leaves/s raw store",
            f"{rate4 / raw:.2f}",
        )
        batch_phase(
            "AppendBatch (2 clients, 5,000 events/batch, RFC 8785 events: bulk loads)",
            address,
            node.pid,
            raw,
            phase // 2,
            5000,
            True,
        )
        for chunk in (1, 100):
            results = run_clients(
                _stream_worker, [(address, w, phase // 2, 5000, chunk) for w in range(2)]
            )
            rate_s = sum(r[0] for r in results) / max(r[1] for r in results)
            row(
                f"AppendStream (2 clients, 5,000 events/stream, {chunk} per message)",
                f"{rate_s:,.0f} events/s",
                f"{raw:,.0f} leaves/s raw store",
                f"{rate_s / raw:.2f}",
            )
        lat = run_clients(_latency_worker, [(address, 32, 5.0)])[0]
        row("Append, 32 concurrent unary callers: throughput", f"{len(lat) / 5.0:,.0f} events/s")
        row(
            "Append latency p50 / p99, 32 callers (blocks gather up to 20 ms)",
            f"{median(lat) * 1e3:.1f} / {percentile(lat, 99) * 1e3:.1f} ms",
        )
        lat = run_clients(_latency_worker, [(address, 1, 3.0)])[0]
        row(
            "Append latency p50 / p99, 1 caller (alone in the node: sealed at once)",
            f"{median(lat) * 1e3:.1f} / {percentile(lat, 99) * 1e3:.1f} ms",
        )

        import grpc

        from provledger.v1 import ledger_pb2 as pb
        from provledger.v1 import ledger_pb2_grpc as pb_grpc

        stub = pb_grpc.LedgerStub(grpc.insecure_channel(address))
        size = stub.GetCheckpoint(pb.GetCheckpointRequest()).tree_size
        if size < target:
            # The last part of the fill is timed: the same load as above on a large log,
            # where LevelDB's compactions cost what they will cost from then on.
            timed = min(200_000, (target - size) // 2)
            t0 = time.perf_counter()
            for part, fill in enumerate((target - size - timed, timed)):
                if fill == 0:
                    continue
                cpu_before = cpu_seconds(node.pid)
                results = run_clients(
                    _batch_worker,
                    [
                        (address, 10 + 2 * part + w, fill // 2 + (fill % 2) * (w == 0), 1000, True)
                        for w in range(2)
                    ],
                )
            filled_in = time.perf_counter() - t0
            batch_rows(
                f"AppendBatch as the log grows from {target - timed:,} to {target:,} entries "
                "(2 clients, RFC 8785 events)",
                results,
                cpu_seconds(node.pid) - cpu_before,
                raw,
            )
            print(f"(filled to {target:,} entries in {filled_in:.0f} s)", flush=True)
        size = stub.GetCheckpoint(pb.GetCheckpointRequest()).tree_size
        header(f"At {size:,} entries")
        node_mb, workers_mb = rss_mb(node.pid), started_pss_mb(node.pid)
        row("node RSS", f"{node_mb:,.0f} MB", "300 MB target", f"{node_mb / 300:.2f}")
        row(
            "node RSS + admission workers' PSS (forkserver and workers)",
            f"{node_mb + workers_mb:,.0f} MB ({workers_mb:,.0f} MB in workers)",
            "300 MB target",
            f"{(node_mb + workers_mb) / 300:.2f}",
        )
        # Right after the fill LevelDB is still compacting what it took in: measured then,
        # and again once the node's CPU has gone quiet (a log at rest, as most reads find it).
        for when in ("right after the fill", "at rest"):
            if when == "at rest":
                quiet = settle(node.pid)
                when = f"at rest ({quiet:.0f} s after the fill)"
            inc, con = proof_latencies(address, size, 2000)
            row(
                f"inclusion proof over gRPC p50 / p99, {when}",
                f"{median(inc) * 1e6:,.0f} / {percentile(inc, 99) * 1e6:,.0f} µs",
                "1 ms target",
            )
            row(
                f"consistency proof over gRPC p50 / p99, {when}",
                f"{median(con) * 1e6:,.0f} / {percentile(con, 99) * 1e6:,.0f} µs",
                "1 ms target",
            )
        row(
            "bare GetStatus round trip p50 (the transport's floor)",
            f"{status_rtt(address):,.0f} µs",
        )

        node.send_signal(signal.SIGKILL)
        node.wait()
        inc_s, con_s = store_proof_latencies(tmp / "data", size, 2000)
        row(
            "inclusion proof in the store p50 / p99 (cold start)",
            f"{median(inc_s) * 1e6:,.0f} / {percentile(inc_s, 99) * 1e6:,.0f} µs",
            f"{1e6 / sha:.1f} µs per SHA-256",
        )
        row(
            "consistency proof in the store p50 / p99",
            f"{median(con_s) * 1e6:,.0f} / {percentile(con_s, 99) * 1e6:,.0f} µs",
        )
        t0 = time.perf_counter()
        proc = _kill_at_exit(spawn_node(tmp / "node.toml", tmp / "node.log"))
        wait_ready(address, proc)
        ready = time.perf_counter() - t0
        row(
            "restart after SIGKILL until serving (process start included)",
            f"{ready:.2f} s",
            "2 s target",
            f"{ready / 2:.2f}",
        )
        assert stub.GetCheckpoint(pb.GetCheckpointRequest()).tree_size == size
        settle(proc.pid)  # the identity filter is rebuilt in the background at start
        inc, con = proof_latencies(address, size, 2000)
        row(
            "inclusion / consistency proof over gRPC p50 / p99, after the restart",
            f"{median(inc) * 1e6:,.0f} / {percentile(inc, 99) * 1e6:,.0f} µs, "
            f"{median(con) * 1e6:,.0f} / {percentile(con, 99) * 1e6:,.0f} µs",
            "1 ms target",
        )
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
