"""The node's gRPC poller: unary round trips with the node on the poller it runs by
default (grpc's pre-EventEngine I/O, set in `ledger/__main__.py`) against grpcio's own
default (the EventEngine), in alternating rounds.

The client is a plain Python gRPC client in this process, with grpcio's defaults. Each
round starts a node, appends 20,000 events, then times GetStatus (the transport's
floor) and proofs as bench_ledger.py does, and reads the node's CPU.

    python bench/bench_grpc_poller.py            # 3 rounds of each
    python bench/bench_grpc_poller.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc  # before any GRPC_EXPERIMENTS below: this client keeps grpcio's defaults

from bench._common import cpu_seconds, header, median, row, training_event
from bench.bench_ledger import proof_latencies, start_node, status_rtt
from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import ledger_pb2_grpc as pb_grpc
from tests.harness.procs import free_port

VARIANTS = {
    "node's default (pre-EventEngine poller)": None,  # GRPC_EXPERIMENTS left unset
    "grpcio's default (EventEngine)": "",  # set but empty: grpc's own defaults
}
CALLS = 2_000


def one_round(experiments: str | None) -> tuple[float, float, float, float]:
    """(GetStatus p50, inclusion proof p50, consistency proof p50, node CPU per call), in µs."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    if experiments is not None:
        env["GRPC_EXPERIMENTS"] = experiments
    with tempfile.TemporaryDirectory(prefix="provledger-bench-") as tmp:
        port = free_port()
        proc = start_node(Path(tmp), port, env)
        try:
            address = f"127.0.0.1:{port}"
            channel = grpc.insecure_channel(address)
            stub = pb_grpc.LedgerStub(channel)
            for _ in range(20):
                events = [training_event("urn:bench:poller") for _ in range(1_000)]
                stub.AppendBatch(pb.AppendBatchRequest(events=events), timeout=60)
            size = stub.GetStatus(pb.GetStatusRequest()).tree_size
            channel.close()
            time.sleep(1.0)  # the last block's compaction, if any
            status_rtt(address, 200)  # warm-up
            before = cpu_seconds(proc.pid)
            status = status_rtt(address, CALLS)
            inclusion, consistency = proof_latencies(address, size, CALLS)
            per_call = (cpu_seconds(proc.pid) - before) / (3 * CALLS)
        finally:
            proc.kill()
            proc.wait()
    return status, median(inclusion) * 1e6, median(consistency) * 1e6, per_call * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, experiments in VARIANTS.items():
            results[name].append(one_round(experiments))
    header(f"Unary calls to a node, Python client on loopback ({args.rounds} rounds, medians)")
    new_name, base_name = VARIANTS
    for label, column in (
        ("GetStatus p50", 0),
        ("inclusion proof p50 (20,000 entries)", 1),
        ("consistency proof p50", 2),
        ("node CPU per call (status, inclusion and consistency)", 3),
    ):
        base = median([r[column] for r in results[base_name]])
        for name in VARIANTS:
            value = median([r[column] for r in results[name]])
            rounds = ", ".join(f"{r[column]:,.0f}" for r in results[name])
            ratio = f"{value / base:.2f}" if name == new_name else ""
            row(f"{label}, {name}", f"{value:,.0f} µs ({rounds})", base_name, ratio)


if __name__ == "__main__":
    main()
