"""Start a real cluster for tests: three etcd members and ledger nodes on free loopback ports.

The files come from `provledger cluster init` (clients._cluster.init_cluster), with etcd
tuned for tests (`--heartbeat-interval 50 --election-timeout 500`); every process is a
harness Proc, stopped by PID, and each node can be killed, paused, resumed and restarted.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from clients._cluster import InitOptions, etcd_healthy, etcd_tls_context, init_cluster
from provledger import receipts
from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import ledger_pb2_grpc as pb_grpc
from provledger.v1 import replication_pb2_grpc as rpb_grpc
from tests.harness.procs import Proc, python_module, spawn, wait_until

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 << 20),
    ("grpc.max_send_message_length", 256 << 20),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


@dataclass
class EtcdMember:
    name: str
    config: Path
    client: str
    log_path: Path
    root: Path
    manifest: dict[str, Any]
    proc: Proc | None = None

    def start(self) -> None:
        binary = shutil.which("etcd")
        if binary is None:
            raise RuntimeError("the etcd binary is missing (apt-get install etcd-server)")
        self.proc = spawn(self.name, [binary, "--config-file", str(self.config)], self.log_path)

    @property
    def _member(self) -> dict[str, Any]:
        return next(m for m in self.manifest["etcd"] if m["name"] == self.name)

    def healthy(self) -> bool:
        return etcd_healthy(self.root, self.manifest, self._member)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """A call to the member's HTTP/JSON API (over mutual TLS in a TLS cluster)."""
        verify = etcd_tls_context(self.root, self.manifest)
        r = httpx.post(f"{self._member['url']}{path}", json=body, timeout=2, verify=verify)
        return r.json()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=5)


@dataclass
class EtcdCluster:
    members: list[EtcdMember]

    @property
    def endpoints(self) -> list[str]:
        return [m.client for m in self.members]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.alive():
                wait_until(m.healthy, timeout, f"etcd member {m.name}", m.proc)

    def stop(self) -> None:
        for m in self.members:
            m.stop()


@dataclass
class ClusterNode:
    name: str
    address: str
    config: Path
    data_dir: Path
    credentials: grpc.ChannelCredentials | None
    proc: Proc | None = None
    _channel: grpc.Channel | None = None

    @property
    def log_path(self) -> Path:
        return self.config.parent / "node.log"

    def start(self) -> None:
        self.proc = spawn(
            self.name, python_module("ledger", "--config", str(self.config)), self.log_path
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            if self.credentials is None:
                self._channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
            else:
                self._channel = grpc.secure_channel(
                    self.address, self.credentials, options=CHANNEL_OPTIONS
                )
        return self._channel

    def stub(self) -> pb_grpc.LedgerStub:
        return pb_grpc.LedgerStub(self.channel())

    def replication(self) -> rpb_grpc.ReplicationStub:
        return rpb_grpc.ReplicationStub(self.channel())

    def status(self, timeout: float = 1.0) -> pb.NodeStatus:
        status: pb.NodeStatus = self.stub().GetStatus(pb.GetStatusRequest(), timeout=timeout)
        return status

    def log(self) -> str:
        return self.proc.log() if self.proc is not None else ""

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.pause()

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.resume()

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.proc.resume()
            self.proc.stop(timeout=15)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


@dataclass
class Cluster:
    root: Path
    manifest: dict[str, Any]
    etcd: EtcdCluster
    nodes: list[ClusterNode]
    credentials: grpc.ChannelCredentials | None
    extra: list[Proc] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.nodes]

    def etcd_client(self, timeout: float = 5.0) -> Any:
        """A client of the cluster's etcd, over mutual TLS (the cluster's client
        certificate) when the cluster uses TLS, as the nodes reach it."""
        import etcd3

        creds = None
        if self.manifest.get("tls"):
            creds = grpc.ssl_channel_credentials(
                root_certificates=(self.root / "ca" / "ca.pem").read_bytes(),
                private_key=(self.root / "client" / "client-key.pem").read_bytes(),
                certificate_chain=(self.root / "client" / "client.pem").read_bytes(),
            )
        endpoints = [
            etcd3.Endpoint(host, int(port), secure=creds is not None, creds=creds, time_retry=1.0)
            for host, port in (m["client"].rsplit(":", 1) for m in self.manifest["etcd"])
        ]
        return etcd3.MultiEndpointEtcd3Client(endpoints=endpoints, timeout=timeout, failover=True)

    def node(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.name == name)

    def leader(self, timeout: float = 30.0, exclude: ClusterNode | None = None) -> ClusterNode:
        """The node that answers as leader (waiting for one); `exclude` is never chosen."""
        found: list[ClusterNode] = []

        def check() -> bool:
            found.clear()
            for n in self.nodes:
                if n is exclude or not n.alive():
                    continue
                with contextlib.suppress(grpc.RpcError):
                    if n.status(timeout=0.5).role == "leader":
                        found.append(n)
                        return True
            return False

        wait_until(check, timeout, "a leader")
        return found[0]

    def followers(self, leader: ClusterNode) -> list[ClusterNode]:
        return [n for n in self.nodes if n is not leader]

    def wait_converged(self, timeout: float = 60.0) -> pb.NodeStatus:
        """Waits until every running node holds the same head; returns one status."""
        statuses: list[pb.NodeStatus] = []

        def same() -> bool:
            statuses.clear()
            for n in self.nodes:
                if n.alive():
                    statuses.append(n.status())
            heads = {(s.height, bytes(s.head_hash)) for s in statuses}
            return len(heads) == 1 and statuses[0].HasField("height")

        wait_until(same, timeout, "all nodes at the same head")
        return statuses[0]

    def stop(self) -> None:
        for p in self.extra:
            p.stop()
        for n in self.nodes:
            n.close_channel()
            n.stop()
        self.etcd.stop()


def start_etcd_cluster(root: Path, manifest: dict[str, Any]) -> EtcdCluster:
    """The etcd members `manifest` (written by init_cluster under `root`) describes."""
    members = [
        EtcdMember(
            name=m["name"],
            config=root / m["config"],
            client=m["client"],
            log_path=root / "logs" / f"{m['name']}.log",
            root=root,
            manifest=manifest,
        )
        for m in manifest["etcd"]
    ]
    cluster = EtcdCluster(members)
    for m in members:
        m.start()
    try:
        cluster.wait_healthy()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def client_credentials(root: Path, name: str = "client") -> grpc.ChannelCredentials:
    folder = root / ("client" if name == "client" else name)
    return grpc.ssl_channel_credentials(
        root_certificates=(root / "ca" / "ca.pem").read_bytes(),
        private_key=(folder / f"{name}-key.pem").read_bytes(),
        certificate_chain=(folder / f"{name}.pem").read_bytes(),
    )


def start_cluster(
    tmp_path: Path,
    nodes: int = 3,
    *,
    tls: bool = True,
    node_settings: dict[str, Any] | None = None,
    coordinator_settings: dict[str, Any] | None = None,
    wait_leader: bool = True,
) -> Cluster:
    """A fresh cluster in tmp_path/cluster: etcd members up, nodes started, a leader found."""
    root = tmp_path / "cluster"
    settings = {"max_block_delay_ms": 10.0, "workers": 24}
    settings.update(node_settings or {})
    manifest = init_cluster(
        root,
        InitOptions(
            nodes=nodes,
            tls=tls,
            origin="test.provledger.local/cluster",
            heartbeat_ms=50,
            election_ms=500,
            node_settings=settings,
            coordinator_settings=coordinator_settings or {},
        ),
    )
    credentials = client_credentials(root) if tls else None
    etcd = start_etcd_cluster(root, manifest)
    handles = [
        ClusterNode(
            name=n["node"],
            address=n["address"],
            config=root / n["config"],
            data_dir=root / n["data_dir"],
            credentials=credentials,
        )
        for n in manifest["nodes"]
    ]
    cluster = Cluster(root, manifest, etcd, handles, credentials)
    try:
        for n in handles:
            n.start()
        for n in handles:
            assert n.proc is not None
            wait_until(lambda n=n: n.status() is not None, 60, f"{n.name} answering", n.proc)
        if wait_leader:
            cluster.leader(timeout=60)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def running_cluster(tmp_path: Path, **kwargs: Any) -> Iterator[Cluster]:
    cluster = start_cluster(tmp_path, **kwargs)
    try:
        yield cluster
    finally:
        cluster.stop()


def wait_for(seconds: float) -> None:
    time.sleep(seconds)


# -- load: several clients that retry until acknowledged --------------------------------


def make_event(source: str, event_id: str) -> bytes:
    """A valid, small inference event (SPEC §1)."""
    import json

    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": "provledger.inference.v1",
            "time": "2026-11-26T12:00:00Z",
            "subject": "model:fraud",
            "data": {
                "model": {"name": "fraud", "version": "1"},
                "input_commitment": "1f" * 32,
                "output_commitment": "2e" * 32,
            },
        },
        separators=(",", ":"),
    ).encode()


@dataclass
class Ack:
    index: int
    leaf_hash: bytes
    started: float
    finished: float


class LoadClients:
    """Threads that append batches to any node and retry the same events until acknowledged.

    Each event is acknowledged once per client call that succeeds; a retry that meets an
    event committed before (its first answer lost) gets the same index back (SPEC §1).
    """

    def __init__(
        self, cluster: Cluster, clients: int = 4, batch: int = 20, timeout: float = 5.0
    ) -> None:
        import threading

        self.cluster = cluster
        self.batch = batch
        self.timeout = timeout
        self.acks: dict[tuple[str, str], Ack] = {}
        self.errors: list[str] = []
        self.calls = 0
        self.failed_calls = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)
        ]

    def start(self) -> LoadClients:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def acked_after(self, moment: float) -> list[Ack]:
        """Acknowledgements of calls that were sent after `moment` (time.monotonic)."""
        with self._lock:
            return [a for a in self.acks.values() if a.started > moment]

    def count(self) -> int:
        with self._lock:
            return len(self.acks)

    def _run(self, worker: int) -> None:
        source = f"urn:test:load:{worker}"
        sequence = 0
        turn = worker
        while not self._stop.is_set():
            ids = [f"{worker}-{sequence + i}" for i in range(self.batch)]
            sequence += self.batch
            request = pb.AppendBatchRequest(events=[make_event(source, i) for i in ids])
            while not self._stop.is_set():
                live = [n for n in self.cluster.nodes if n.alive()] or self.cluster.nodes
                node = live[turn % len(live)]
                turn += 1
                started = time.monotonic()
                self.calls += 1
                try:
                    response = node.stub().AppendBatch(request, timeout=self.timeout)
                except grpc.RpcError as exc:
                    self.failed_calls += 1
                    if exc.code() not in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.CANCELLED,
                    ):
                        self.errors.append(f"{node.name}: {exc.code().name}: {exc.details()}")
                    time.sleep(0.05)
                    continue
                finished = time.monotonic()
                outcomes = [r.WhichOneof("outcome") for r in response.results]
                if "error" in outcomes:
                    statuses = {r.error.status for r in response.results if r.HasField("error")}
                    if statuses - {503}:
                        self.errors.append(f"{node.name}: refused with {sorted(statuses)}")
                    self.failed_calls += 1
                    time.sleep(0.05)
                    continue  # the same events again: idempotent by (source, id)
                with self._lock:
                    for event_id, receipt in zip(ids, receipts.expand(response), strict=True):
                        assert isinstance(receipt, pb.Receipt)
                        key = (source, event_id)
                        ack = Ack(receipt.index, bytes(receipt.leaf_hash), started, finished)
                        before = self.acks.get(key)
                        if before is not None and (before.index, before.leaf_hash) != (
                            ack.index,
                            ack.leaf_hash,
                        ):
                            self.errors.append(
                                f"{key} acknowledged at {before.index} and {ack.index}"
                            )
                        self.acks.setdefault(key, ack)
                break


def check_cluster(cluster: Cluster, load: LoadClients | None = None) -> dict[tuple[str, str], int]:
    """Every running node: the same head, the whole log valid (chain, roots, leader
    signatures, no (source, id) twice), and every acknowledged event at its acknowledged
    index with its acknowledged leaf hash. Returns (source, id) -> index."""
    from provledger import merkle
    from tests.integration.ledger_checks import check_whole_log

    cluster.wait_converged()
    logs = {n.name: check_whole_log(n.stub()) for n in cluster.nodes if n.alive()}
    checkpoints = {
        n.name: n.stub().GetCheckpoint(pb.GetCheckpointRequest())
        for n in cluster.nodes
        if n.alive()
    }
    roots = {(c.tree_size, bytes(c.root_hash)) for c in checkpoints.values()}
    assert len(roots) == 1, f"nodes disagree on the tree: {roots}"
    first = next(iter(logs.values()))
    for name, identities in logs.items():
        assert identities == first, f"{name} holds other entries than the others"
    if load is not None:
        assert not load.errors, load.errors[:5]
        for key, ack in load.acks.items():
            assert key in first, f"acknowledged event {key} is missing"
            assert first[key] == ack.index, (
                f"{key} acknowledged at {ack.index}, stored at {first[key]}"
            )
        reader = next(n for n in cluster.nodes if n.alive()).stub()
        for key, ack in list(load.acks.items())[:: max(1, len(load.acks) // 200)]:
            entry = reader.GetEntry(pb.GetEntryRequest(index=ack.index))
            assert merkle.leaf_hash(entry.leaf) == ack.leaf_hash, key
    return first
