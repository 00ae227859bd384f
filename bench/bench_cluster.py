"""Cluster benchmark: 3 ledger nodes and 3 etcd members on this machine, mutual TLS on.

Measured in one run, so that the figures can be compared: the raw etcd rate of the
fenced transaction the leader commits each block with (block-sized payloads: a block is
stored zlib-compressed, about 47 KiB for these 1,000 events and 700 KiB raw); cluster
throughput with clients in other processes sending batches; commit latency of single
appends; the same two figures for one standalone node; and failover time (leader
SIGKILLed: until a new leader answers, and until a client's retried write succeeds).
Each system gets an untimed warm-up load first; the raw etcd rate is measured after the
cluster's throughput, so that its writes do not weigh on etcd during it.

    python bench/bench_cluster.py            # about 3 minutes
    python bench/bench_cluster.py --quick    # about 1.5 minutes
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    append_latencies,
    cpu_seconds,
    header,
    median,
    percentile,
    row,
    run_clients,
    training_event,
)
from bench.bench_ledger import free_port, spawn_node, start_node

TlsPaths = tuple[str, str, str] | None  # ca, cert, key


def _stub(address: str, tls: TlsPaths) -> Any:
    import grpc

    from provledger.v1 import ledger_pb2_grpc as pb_grpc

    options = [
        ("grpc.max_receive_message_length", 256 << 20),
        ("grpc.max_send_message_length", 256 << 20),
    ]
    if tls is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        ca, cert, key = (Path(p).read_bytes() for p in tls)
        credentials = grpc.ssl_channel_credentials(ca, key, cert)
        channel = grpc.secure_channel(address, credentials, options=options)
    return pb_grpc.LedgerStub(channel)


# -- client processes -----------------------------------------------------------------


def _batch_worker(
    address: str,
    tls: TlsPaths,
    worker: int,
    total: int,
    batch: int,
    queue: mp.Queue,  # type: ignore[type-arg]
) -> None:
    from provledger.v1 import ledger_pb2 as pb

    stub = _stub(address, tls)
    source = f"urn:bench:cluster:{worker}:{os.getpid()}"
    # Events are built before the clock starts: the client's JSON work is not the ledger's.
    batches = [[training_event(source) for _ in range(batch)] for _ in range(total // batch)]
    start = time.perf_counter()
    for events in batches:
        response = stub.AppendBatch(pb.AppendBatchRequest(events=events), timeout=300)
        assert all(r.WhichOneof("outcome") == "committed" for r in response.results)
    queue.put((len(batches) * batch, time.perf_counter() - start))


def _latency_worker(
    address: str, tls: TlsPaths, threads: int, seconds: float, queue: mp.Queue
) -> None:  # type: ignore[type-arg]
    queue.put(append_latencies(_stub(address, tls), threads, seconds, timeout=60))


def warm_up(address: str, tls: TlsPaths) -> None:
    """An untimed first load: the leader starts its admission worker on its first large
    batch (a second's start-up that is not throughput)."""
    throughput(address, tls, 2, 4_000, 1000)


def throughput(address: str, tls: TlsPaths, clients: int, events: int, batch: int) -> float:
    per = events // clients
    results = run_clients(_batch_worker, [(address, tls, w, per, batch) for w in range(clients)])
    return sum(r[0] for r in results) / max(r[1] for r in results)


# -- raw etcd ---------------------------------------------------------------------------


def raw_etcd_rate(
    endpoints: list[str], tls: TlsPaths, payload_bytes: int, seconds: float
) -> tuple[float, float, float]:
    """Blocks/s, p50 and p99 (ms) of the leader's fenced commit transaction, sequential,
    over mutual TLS as the nodes reach etcd when `tls` is given."""
    import etcd3
    import grpc

    creds = None
    if tls is not None:
        ca, cert, key = (Path(p).read_bytes() for p in tls)
        creds = grpc.ssl_channel_credentials(ca, private_key=key, certificate_chain=cert)
    client = etcd3.MultiEndpointEtcd3Client(
        endpoints=[
            etcd3.Endpoint(h, int(p), secure=creds is not None, creds=creds, time_retry=1.0)
            for h, p in (e.rsplit(":", 1) for e in endpoints)
        ],
        timeout=10,
        failover=True,
    )
    prefix = f"/bench/raw-{payload_bytes}/"
    tx = client.transactions
    lease = client.lease(30)
    client.put(prefix + "leader", "bench", lease=lease.id)
    _, meta = client.get(prefix + "leader")
    term = meta.create_revision
    payload = os.urandom(payload_bytes)
    prev = b"genesis"
    client.put(prefix + "head", prev)
    latencies = []
    height = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        head = f"{height}".encode()
        t0 = time.perf_counter()
        ok, _ = client.transaction(
            compare=[tx.create(prefix + "leader") == term, tx.value(prefix + "head") == prev],
            success=[
                tx.put(f"{prefix}blocks/{height:020d}", payload),
                tx.put(prefix + "head", head),
            ],
            failure=[],
        )
        latencies.append(time.perf_counter() - t0)
        assert ok
        prev = head
        height += 1
        if height % 64 == 0:  # keep etcd's window small, as the ledger's GC does
            client.delete_prefix(f"{prefix}blocks/")
    client.delete_prefix(prefix)
    lease.revoke()
    client.close()
    return len(latencies) / seconds, median(latencies) * 1e3, percentile(latencies, 99) * 1e3


# -- the cluster ------------------------------------------------------------------------


class Cluster:
    def __init__(self, root: Path, tls: bool = True) -> None:
        from clients._cluster import InitOptions, init_cluster

        self.root = root
        self.manifest = init_cluster(
            root,
            InitOptions(
                nodes=3,
                tls=tls,
                origin="bench.provledger.local/cluster",
                node_settings={
                    "max_block_entries": 1000,
                    "max_block_delay_ms": 20.0,
                    "workers": 32,
                },
            ),
        )
        self.tls: TlsPaths = None
        if tls:
            self.tls = (
                str(root / "ca" / "ca.pem"),
                str(root / "client" / "client.pem"),
                str(root / "client" / "client-key.pem"),
            )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        etcd = shutil.which("etcd")
        if etcd is None:
            raise SystemExit("no etcd binary (apt-get install etcd-server etcd-client)")
        for m in self.manifest["etcd"]:
            self._spawn(m["name"], [etcd, "--config-file", str(root / m["config"])])
        self.endpoints = [m["client"] for m in self.manifest["etcd"]]
        for n in self.manifest["nodes"]:
            self.start_node(n["node"])
        self.leader(timeout=60)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def start_node(self, name: str) -> None:
        config = self.root / next(n["config"] for n in self.manifest["nodes"] if n["node"] == name)
        self.procs[name] = spawn_node(config, self.root / f"{name}.log")

    def address(self, name: str) -> str:
        return str(next(n["address"] for n in self.manifest["nodes"] if n["node"] == name))

    def leader(self, timeout: float = 30.0, exclude: str | None = None) -> str:
        from provledger.v1 import ledger_pb2 as pb

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.manifest["nodes"]:
                name = n["node"]
                if name == exclude or self.procs[name].poll() is not None:
                    continue
                try:
                    if (
                        _stub(n["address"], self.tls)
                        .GetStatus(pb.GetStatusRequest(), timeout=0.5)
                        .role
                        == "leader"
                    ):
                        return str(name)
                except Exception:  # not up yet
                    continue
            time.sleep(0.02)
        raise SystemExit("no leader")

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _write_until_accepted(
    stubs: list[Any], killed_at: float, events: list[bytes], result: list[float]
) -> None:
    """Appends the same batch to the surviving nodes, retrying, until one call succeeds."""
    import grpc

    from provledger.v1 import ledger_pb2 as pb

    turn = 0
    deadline = killed_at + 60
    while time.monotonic() < deadline:
        stub = stubs[turn % len(stubs)]
        turn += 1
        try:
            stub.AppendBatch(pb.AppendBatchRequest(events=events), timeout=5)
        except grpc.RpcError:
            time.sleep(0.05)
            continue
        result.append(time.monotonic() - killed_at)
        return


def failover(cluster: Cluster, rounds: int) -> tuple[list[float], list[float]]:
    """(kill -> a new leader answers, kill -> a retried client write succeeds), per round."""
    elected, resumed = [], []
    for r in range(rounds):
        leader = cluster.leader()
        others = [n["node"] for n in cluster.manifest["nodes"] if n["node"] != leader]
        stubs = [_stub(cluster.address(n), cluster.tls) for n in others]
        events = [training_event(f"urn:bench:failover:{r}") for _ in range(50)]
        result: list[float] = []
        time.sleep(1.0)
        killed_at = time.monotonic()
        cluster.kill(leader)
        thread = threading.Thread(
            target=_write_until_accepted, args=(stubs, killed_at, events, result)
        )
        thread.start()
        cluster.leader(exclude=leader)
        elected.append(time.monotonic() - killed_at)
        thread.join(timeout=90)
        resumed.append(result[0] if result else float("nan"))
        cluster.start_node(leader)
        time.sleep(2.0)
    return elected, resumed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    events = 40_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory(prefix="provledger-bench-cluster-") as tmp_name:
        tmp = Path(tmp_name)

        header("Single node (standalone, no TLS), same clients")
        port = free_port()
        (tmp / "single").mkdir()
        single = start_node(tmp / "single", port)
        address = f"127.0.0.1:{port}"
        warm_up(address, None)
        single_rate = throughput(address, None, 2, events // 2, 1000)
        row("AppendBatch, 2 client processes, 1,000 events/batch", f"{single_rate:,.0f} events/s")
        lat = run_clients(_latency_worker, [(address, None, 32, 5.0)])[0]
        single_lat = (median(lat) * 1e3, percentile(lat, 99) * 1e3)
        row("Append latency p50 / p99, 32 callers", f"{single_lat[0]:.1f} / {single_lat[1]:.1f} ms")
        lat = run_clients(_latency_worker, [(address, None, 1, 3.0)])[0]
        single_one = (median(lat) * 1e3, percentile(lat, 99) * 1e3)
        row(
            "Append latency p50 / p99, 1 caller (alone in the node: sealed at once)",
            f"{single_one[0]:.1f} / {single_one[1]:.1f} ms",
        )
        single.terminate()
        single.wait()

        plain = Cluster(tmp / "plain", tls=False)
        try:
            warm_up(plain.address(plain.leader()), None)
            plain_rate = throughput(plain.address(plain.leader()), None, 2, events // 2, 1000)
        finally:
            plain.stop()

        cluster = Cluster(tmp / "cluster")
        try:
            leader = cluster.leader()
            address = cluster.address(leader)
            header("Cluster: 3 nodes + 3 etcd members, mutual TLS, clients in other processes")
            warm_up(address, cluster.tls)
            before = {name: cpu_seconds(p.pid) for name, p in cluster.procs.items()}
            cluster_rate = throughput(address, cluster.tls, 2, events, 1000)
            spent = {name: cpu_seconds(p.pid) - before[name] for name, p in cluster.procs.items()}
            row(
                "AppendBatch to the leader, 2 client processes, 1,000 events/batch",
                f"{cluster_rate:,.0f} events/s",
                f"{single_rate:,.0f} events/s single node",
                f"{cluster_rate / single_rate:.2f}",
            )
            followers = [n for n in spent if n.startswith("node-") and n != leader]
            etcds = [n for n in spent if n.startswith("etcd-")]
            row(
                "  CPU per event: leader / each follower / each etcd member (same phase)",
                f"{spent[leader] / events * 1e6:,.0f} / "
                f"{sum(spent[n] for n in followers) / len(followers) / events * 1e6:,.0f} / "
                f"{sum(spent[n] for n in etcds) / len(etcds) / events * 1e6:,.0f} µs",
                f"{sum(spent.values()) / events * 1e6:,.0f} µs in all on two cores",
            )
            row(
                "the same without TLS (a separate cluster)",
                f"{plain_rate:,.0f} events/s",
                f"{single_rate:,.0f} events/s single node",
                f"{plain_rate / single_rate:.2f}",
            )
            follower = next(n["node"] for n in cluster.manifest["nodes"] if n["node"] != leader)
            forwarded = throughput(cluster.address(follower), cluster.tls, 2, events // 2, 1000)
            row(
                "AppendBatch to a follower (forwarded to the leader)",
                f"{forwarded:,.0f} events/s",
                f"{cluster_rate:,.0f} events/s to the leader",
                f"{forwarded / cluster_rate:.2f}",
            )
            lat = run_clients(_latency_worker, [(address, cluster.tls, 32, 5.0)])[0]
            p50, p99 = median(lat) * 1e3, percentile(lat, 99) * 1e3
            row(
                "Append latency p50 / p99, 32 callers (commit = etcd txn)",
                f"{p50:.1f} / {p99:.1f} ms",
                f"{single_lat[0]:.1f} / {single_lat[1]:.1f} ms single node",
            )
            row("Append throughput, 32 unary callers", f"{len(lat) / 5.0:,.0f} events/s")
            lat = run_clients(_latency_worker, [(address, cluster.tls, 1, 3.0)])[0]
            row(
                "Append latency p50 / p99, 1 caller (sealed at once, then the etcd txn)",
                f"{median(lat) * 1e3:.1f} / {percentile(lat, 99) * 1e3:.1f} ms",
                f"{single_one[0]:.1f} / {single_one[1]:.1f} ms single node",
            )

            header(
                "Raw etcd: the leader's fenced commit transaction, sequential "
                "(3 members, mutual TLS)"
            )
            raw = {}
            for size in (4 * 1024, 64 * 1024, 600 * 1024):
                rate, p50, p99 = raw_etcd_rate(
                    cluster.endpoints, cluster.tls, size, 4.0 if args.quick else 8.0
                )
                raw[size] = rate
                row(
                    f"txn with a {size // 1024} KiB block",
                    f"{rate:,.0f} blocks/s",
                    f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
                    f"= {rate * 1000:,.0f} events/s at 1,000 events/block" if size > 4096 else "",
                )

            header("Failover: leader SIGKILLed (lease TTL 2 s)")
            elected, resumed = failover(cluster, 2 if args.quick else 3)
            row(
                "kill -> a new leader answers",
                ", ".join(f"{x:.2f}" for x in elected) + " s",
                f"median {statistics.median(elected):.2f} s",
            )
            row(
                "kill -> a retried write succeeds",
                ", ".join(f"{x:.2f}" for x in resumed) + " s",
                f"median {statistics.median(resumed):.2f} s",
            )
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
