"""`provledger append` benchmark: a bulk import of NDJSON through the CLI into one node.

The CLI reads the file, sends batches of 500 over gRPC (two under way) and prints a
receipt per event. The limit beside it is the same node taking the same number of
events, in the same batches with two under way, from a client that reads and prints
nothing: what is left between the two is the CLI's own work.

    python bench/bench_cli.py            # 200,000 events
    python bench/bench_cli.py --quick    # 50,000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import cpu_seconds, header, row, run_clients, training_event
from bench.bench_ledger import start_node
from tests.harness.procs import free_port

BATCH = 500  # the CLI's default --batch-size


def _silent_importer(address: str, total: int, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    """Sends `total` events in batches of BATCH, two under way, and keeps no answer."""
    import grpc

    from provledger.v1 import ledger_pb2 as pb
    from provledger.v1 import ledger_pb2_grpc as pb_grpc

    stub = pb_grpc.LedgerStub(
        grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 256 << 20)])
    )
    source = f"urn:bench:silent:{os.getpid()}"
    events = [training_event(source, f"e-{i}") for i in range(total)]
    cpu = time.process_time()
    start = time.perf_counter()
    under_way = []
    for first in range(0, total, BATCH):
        request = pb.AppendBatchRequest(events=events[first : first + BATCH])
        under_way.append(stub.AppendBatch.future(request, timeout=120))
        if len(under_way) == 2:
            under_way.pop(0).result()
    for answer in under_way:
        answer.result()
    queue.put((time.perf_counter() - start, time.process_time() - cpu))


def cli_import(address: str, path: Path, total: int) -> tuple[float, float]:
    """Seconds and CPU seconds of `provledger append FILE`, which must print `total` receipts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}
    start = time.perf_counter()
    before = os.times()
    result = subprocess.run(
        [sys.executable, "-m", "clients", "append", str(path), "--url", f"grpc://{address}"],
        capture_output=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - start
    after = os.times()
    if result.returncode != 0:
        raise SystemExit(f"provledger append failed: {result.stderr.decode()[-500:]}")
    receipts = result.stdout.count(b"\n")
    if receipts != total:
        raise SystemExit(f"provledger append printed {receipts} receipts for {total} events")
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    total = 50_000 if args.quick else 200_000

    tmp = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    port = free_port()
    node = start_node(tmp, port)
    address = f"127.0.0.1:{port}"
    try:
        # Warm-up, untimed: the node starts its admission worker on the first large batch.
        run_clients(_silent_importer, [(address, 5_000)])

        path = tmp / "events.ndjson"
        with open(path, "wb") as f:
            f.writelines(training_event("urn:bench:cli", f"e-{i}") + b"\n" for i in range(total))
        node_before = cpu_seconds(node.pid)
        seconds, cli_cpu = cli_import(address, path, total)
        cli_node_cpu = cpu_seconds(node.pid) - node_before

        node_before = cpu_seconds(node.pid)
        [(silent_seconds, silent_cpu)] = run_clients(_silent_importer, [(address, total)])
        silent_node_cpu = cpu_seconds(node.pid) - node_before
    finally:
        node.terminate()
        node.wait()

    cli_rate = total / seconds
    silent_rate = total / silent_seconds
    print(f"# provledger append: {total:,} RFC 8785 events of ~500 B into one node over gRPC")
    header(f"Bulk import, batches of {BATCH}, two under way")
    row(
        "provledger append FILE (receipts printed, in input order)",
        f"{cli_rate:,.0f} events/s",
        f"{silent_rate:,.0f} events/s, a client that prints nothing",
        f"{cli_rate / silent_rate:.2f}",
    )
    row(
        "  CPU per event: the CLI process / the node",
        f"{cli_cpu / total * 1e6:.0f} / {cli_node_cpu / total * 1e6:.0f} µs",
        f"{silent_cpu / total * 1e6:.0f} / {silent_node_cpu / total * 1e6:.0f} µs",
        "",
    )


if __name__ == "__main__":
    main()
