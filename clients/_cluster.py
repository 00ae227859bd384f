"""`provledger cluster init|up|status`: a local multi-node cluster on one machine.

`init` writes, under one directory, everything a cluster needs: a private CA and mutual
TLS certificates (nodes, gateway, a client for the CLI), the log key that every node
shares (SPEC §2) and one key per node, the node and gateway configurations, and three
etcd member configurations, all on free loopback ports. `up` starts the etcd members
(the system's `etcd`), the nodes and a gateway, records each PID in `run/<name>.pid`,
and stops them all on Ctrl-C or SIGTERM. `status` asks every node for its role, term,
height and head.

Layout of the directory:

    cluster.json                 what `up` and `status` read (names, addresses, files)
    ca/ca.pem, ca/ca-key.pem     the private CA
    keys/log.key                 the log key (base64 Ed25519 seed, mode 0600)
    nodes/<id>/node.toml         node.key, node.pem, node-key.pem, data/
    gateway/gateway.toml         gateway.pem, gateway-key.pem
    client/client.pem            client-key.pem (for `status` and client commands)
    etcd/<name>.yml              etcd/<name>/ (the member's data)
    run/<name>.pid, logs/<name>.log
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import ipaddress
import json
import os
import secrets
import shutil
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from clients._children import Child, Stop, spawn, supervising
from provledger.note import Signer

__all__ = [
    "ClusterError",
    "InitOptions",
    "StartupError",
    "cluster_status",
    "init_cluster",
    "load_manifest",
    "run_cluster",
]

MANIFEST = "cluster.json"
DEFAULT_HTTP_PORT = 8080


class ClusterError(Exception):
    """The directory or the command line asks for something impossible (exit 2)."""


class StartupError(Exception):
    """A process of the cluster did not come up (exit 1)."""


@dataclass(frozen=True, slots=True)
class InitOptions:
    nodes: int = 3
    etcd_members: int = 3
    tls: bool = True
    origin: str = ""  # empty: "localhost/provledger/<8 hex>"
    http_port: int = DEFAULT_HTTP_PORT
    heartbeat_ms: int = 100  # etcd's defaults; tests use 50 / 500
    election_ms: int = 1000
    lease_ttl_s: int = 2
    node_settings: dict[str, Any] = field(default_factory=dict)
    coordinator_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= 9:
            raise ClusterError("--nodes: between 1 and 9")
        if self.etcd_members not in (1, 3, 5):
            raise ClusterError("etcd members: 1, 3 or 5")


# -- files ----------------------------------------------------------------------------


# `init` writes ports that `up` binds later, maybe much later. A port from bind(0) is an
# ephemeral one, which any outgoing connection (a node's to etcd or to a peer) may hold
# by then: the member or node that should listen on it fails with "Address already in
# use". Outgoing connections never take ports below the kernel's ephemeral range, so the
# ports come from there, in a band of their own: tests/harness/procs.py picks the ports
# of its own processes from 20000 up, and the two never draw the same port.
INIT_PORTS = (10000, 20000)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class PortPicker:
    """Distinct loopback ports from [low, high), free when picked, and below the kernel's
    ephemeral range whatever `high` says."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, min(high, _ephemeral_low())
        self._picked: set[int] = set()

    def __call__(self) -> int:
        for _ in range(1000):
            port = secrets.randbelow(self.high - self.low) + self.low
            if port in self._picked:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            self._picked.add(port)
            return port
        raise ClusterError(f"no free loopback port in [{self.low}, {self.high})")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string literal is a valid TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_document(plain: dict[str, Any], tables: dict[str, dict[str, Any]]) -> str:
    lines = [f"{k} = {_toml(v)}" for k, v in plain.items()]
    for name, table in tables.items():
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in table.items())
    return "# Written by `provledger cluster init`.\n" + "\n".join(lines) + "\n"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_seed(path: Path) -> bytes:
    seed = secrets.token_bytes(32)
    _write_private(path, base64.b64encode(seed) + b"\n")
    return seed


# -- certificates ---------------------------------------------------------------------


class _CA:
    """A private CA (ECDSA P-256) issuing leaf certificates for loopback use."""

    def __init__(self, directory: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._ser, self._ec = x509, hashes, serialization, ec
        self._name_oid = NameOID
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provledger cluster CA")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem_path = directory / "ca.pem"
        self.pem_path.parent.mkdir(parents=True, exist_ok=True)
        self.pem_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        _write_private(directory / "ca-key.pem", self._key_pem(self.key))

    def _key_pem(self, key: Any) -> bytes:
        ser = self._ser
        pem: bytes = key.private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
        )
        return pem

    def issue(self, cert_path: Path, key_path: Path, name: str, *, server: bool) -> None:
        """A certificate for `name`: client auth always, server auth (loopback SANs) if asked."""
        x509, oid = self._x509, self._x509.oid.ExtendedKeyUsageOID
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usages = [oid.CLIENT_AUTH] + ([oid.SERVER_AUTH] if server else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(self._name_oid.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName(name),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        )
        cert = builder.sign(self.key, self._hashes.SHA256())
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.write_bytes(cert.public_bytes(self._ser.Encoding.PEM))
        _write_private(key_path, self._key_pem(key))


# -- init -----------------------------------------------------------------------------


def init_cluster(directory: Path, options: InitOptions) -> dict[str, Any]:
    """Writes a new cluster into `directory` (which must not hold one); returns the manifest."""
    root = directory.resolve()
    if (root / MANIFEST).exists():
        raise ClusterError(f"{root} already holds a cluster ({MANIFEST}); choose another --dir")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    origin = options.origin or f"localhost/provledger/{secrets.token_hex(4)}"
    log_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in origin)

    log_seed = _write_seed(root / "keys" / "log.key")
    log_signer = Signer.from_seed(origin, log_seed)
    ca = _CA(root / "ca") if options.tls else None

    free_port = PortPicker(*INIT_PORTS)
    etcd = []
    for i in range(options.etcd_members):
        etcd.append({"name": f"etcd-{i + 1}", "client": free_port(), "peer": free_port()})
    # With TLS, etcd serves clients and peers over TLS and admits only certificates of
    # this CA: the commit point of the log is closed to anyone else on the network.
    scheme = "https" if ca is not None else "http"
    initial = ",".join(f"{m['name']}={scheme}://127.0.0.1:{m['peer']}" for m in etcd)
    token = f"provledger-{secrets.token_hex(4)}"
    for m in etcd:
        member_dir = root / "etcd"
        member_dir.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {
            "name": m["name"],
            "data-dir": str(member_dir / str(m["name"])),
            "listen-client-urls": f"{scheme}://127.0.0.1:{m['client']}",
            "advertise-client-urls": f"{scheme}://127.0.0.1:{m['client']}",
            "listen-peer-urls": f"{scheme}://127.0.0.1:{m['peer']}",
            "initial-advertise-peer-urls": f"{scheme}://127.0.0.1:{m['peer']}",
            "initial-cluster": initial,
            "initial-cluster-state": "new",
            "initial-cluster-token": token,
            "heartbeat-interval": options.heartbeat_ms,
            "election-timeout": options.election_ms,
            # The ledger's leader deletes collected blocks and compacts; this is the net.
            "auto-compaction-mode": "revision",
            "auto-compaction-retention": "10000",
            "max-request-bytes": 3 * 1024 * 1024,
            # Given a config file, etcd 3.4 leaves its HTTP/JSON gateway off unless asked.
            "enable-grpc-gateway": True,
            "logger": "zap",
            "log-level": "warn",
        }
        if ca is not None:
            cert, key = member_dir / f"{m['name']}.pem", member_dir / f"{m['name']}-key.pem"
            ca.issue(cert, key, str(m["name"]), server=True)
            security = {
                "cert-file": str(cert),
                "key-file": str(key),
                "trusted-ca-file": str(ca.pem_path),
                "client-cert-auth": True,
            }
            settings["client-transport-security"] = security
            settings["peer-transport-security"] = security
        # JSON is YAML: etcd --config-file reads it as is.
        (member_dir / f"{m['name']}.yml").write_text(json.dumps(settings, indent=2) + "\n")
    endpoints = [f"{scheme}://127.0.0.1:{m['client']}" for m in etcd]

    nodes = []
    for i in range(options.nodes):
        node_id = f"node-{i + 1}"
        node_dir = root / "nodes" / node_id
        node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        seed = _write_seed(node_dir / "node.key")
        address = f"127.0.0.1:{free_port()}"
        plain: dict[str, Any] = {
            "node_id": node_id,
            "data_dir": "data",
            "listen": address,
            "origin": origin,
            "log_key_file": "../../keys/log.key",
            "node_key_file": "node.key",
            "public_reads": True,
        }
        plain.update(options.node_settings)
        tables: dict[str, dict[str, Any]] = {}
        if ca is not None:
            ca.issue(node_dir / "node.pem", node_dir / "node-key.pem", node_id, server=True)
            tables["tls"] = {"ca": "../../ca/ca.pem", "cert": "node.pem", "key": "node-key.pem"}
        tables["coordinator"] = {
            "kind": "etcd",
            "endpoints": endpoints,
            "log": log_name,
            "lease_ttl_s": options.lease_ttl_s,
            **options.coordinator_settings,
        }
        (node_dir / "node.toml").write_text(_toml_document(plain, tables))
        nodes.append(
            {
                "node": node_id,
                "address": address,
                "config": f"nodes/{node_id}/node.toml",
                "data_dir": f"nodes/{node_id}/data",
                "verifier_key": Signer.from_seed(node_id, seed).verifier_key,
            }
        )

    gateway_dir = root / "gateway"
    gateway_dir.mkdir(parents=True, exist_ok=True)
    gateway_tables: dict[str, dict[str, Any]] = {}
    if ca is not None:
        ca.issue(
            gateway_dir / "gateway.pem", gateway_dir / "gateway-key.pem", "gateway", server=False
        )
        gateway_tables["tls"] = {
            "ca": "../ca/ca.pem",
            "cert": "gateway.pem",
            "key": "gateway-key.pem",
        }
        ca.issue(
            root / "client" / "client.pem",
            root / "client" / "client-key.pem",
            "client",
            server=False,
        )
    (gateway_dir / "gateway.toml").write_text(
        _toml_document(
            {
                "listen": f"127.0.0.1:{options.http_port}",
                "nodes": [n["address"] for n in nodes],
            },
            gateway_tables,
        )
    )
    manifest: dict[str, Any] = {
        "origin": origin,
        "log": log_name,
        "verifier_key": log_signer.verifier_key,
        "tls": ca is not None,
        "nodes": nodes,
        "etcd": [
            {
                "name": m["name"],
                "config": f"etcd/{m['name']}.yml",
                "client": f"127.0.0.1:{m['client']}",
                "url": f"{scheme}://127.0.0.1:{m['client']}",
                "peer": f"127.0.0.1:{m['peer']}",
            }
            for m in etcd
        ],
        "gateway": {"config": "gateway/gateway.toml", "listen": f"127.0.0.1:{options.http_port}"},
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClusterError(
            f"{directory} holds no cluster (run `provledger cluster init`)"
        ) from None
    except ValueError as e:
        raise ClusterError(f"{path}: {e}") from None
    return manifest


# -- status ---------------------------------------------------------------------------


def _channel_credentials(root: Path, manifest: dict[str, Any]) -> Any:
    import grpc

    if not manifest.get("tls"):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=(root / "ca" / "ca.pem").read_bytes(),
        private_key=(root / "client" / "client-key.pem").read_bytes(),
        certificate_chain=(root / "client" / "client.pem").read_bytes(),
    )


def _read_pid(root: Path, name: str) -> int | None:
    try:
        pid = int((root / "run" / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def cluster_status(directory: Path, timeout: float = 2.0) -> dict[str, Any]:
    """SPEC §4: `{"leader", "term", "nodes": [{"node", "role", "height", "head_hash", "pid"}]}`
    (each node also says whether it was reachable, its address and the term it knows)."""
    import grpc

    from provledger.v1 import ledger_pb2, ledger_pb2_grpc

    root = directory.resolve()
    manifest = load_manifest(root)
    credentials = _channel_credentials(root, manifest)
    rows = []
    leader: str | None = None
    term = 0
    for node in manifest["nodes"]:
        address = node["address"]
        channel = (
            grpc.secure_channel(address, credentials)
            if credentials is not None
            else grpc.insecure_channel(address)
        )
        row: dict[str, Any] = {
            "node": node["node"],
            "address": address,
            "role": None,
            "term": None,
            "height": None,
            "head_hash": None,
            "pid": _read_pid(root, node["node"]),
            "reachable": False,
        }
        try:
            status = ledger_pb2_grpc.LedgerStub(channel).GetStatus(
                ledger_pb2.GetStatusRequest(), timeout=timeout
            )
        except grpc.RpcError:
            pass
        else:
            row.update(
                role=status.role,
                term=status.term,
                height=status.height if status.HasField("height") else None,
                head_hash=bytes(status.head_hash).hex(),
                pid=status.pid or row["pid"],
                reachable=True,
            )
            if status.role == "leader" and status.term >= term:
                leader, term = node["node"], status.term
            term = max(term, status.term)
        finally:
            channel.close()
        rows.append(row)
    reachable = any(r["reachable"] for r in rows)
    return {"leader": leader, "term": term if reachable else None, "nodes": rows}


# -- up -------------------------------------------------------------------------------


def _wait(child: Child, check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise StartupError(
                f"{child.name} exited with status {child.popen.returncode} before {what}\n"
                f"{child.tail(2000)}"
            )
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise StartupError(f"{child.name}: not {what} after {timeout:.0f} s\n{child.tail(2000)}")


def _spawn(root: Path, name: str, args: list[str]) -> Child:
    return spawn(name, args, root / "logs", cwd=root, pid_dir=root / "run")


def etcd_tls_context(root: Path, manifest: dict[str, Any]) -> ssl.SSLContext | bool:
    """What an HTTP client of the cluster's etcd verifies and presents: the cluster CA and
    the client certificate when the cluster uses TLS (True, the default, otherwise)."""
    if not manifest.get("tls"):
        return True
    context = ssl.create_default_context(cafile=root / "ca" / "ca.pem")
    context.load_cert_chain(root / "client" / "client.pem", root / "client" / "client-key.pem")
    return context


def etcd_healthy(root: Path, manifest: dict[str, Any], member: dict[str, Any]) -> bool:
    """Whether an etcd member of the cluster answers /health with "true" (over TLS with
    the cluster's client certificate when the cluster uses TLS)."""
    import httpx

    url = member.get("url") or f"http://{member['client']}"
    r = httpx.get(f"{url}/health", timeout=1.0, verify=etcd_tls_context(root, manifest))
    return r.status_code == 200 and r.json().get("health") == "true"


def run_cluster(
    directory: Path,
    http_port: int | None,
    out: IO[str],
    err: IO[str],
    startup_timeout: float = 60.0,
) -> int:
    """`cluster up`: runs until Ctrl-C or SIGTERM; the exit status for the CLI."""
    root = directory.resolve()
    manifest = load_manifest(root)
    etcd_binary = shutil.which("etcd")
    if etcd_binary is None:
        raise ClusterError(
            "no `etcd` binary on PATH (Debian: apt-get install etcd-server etcd-client)"
        )
    running = [
        name
        for name in [m["name"] for m in manifest["etcd"]]
        + [n["node"] for n in manifest["nodes"]]
        + ["gateway"]
        if _read_pid(root, name) is not None
    ]
    if running:
        raise ClusterError(f"{root} is already up ({', '.join(running)} running; see run/)")
    listen = manifest["gateway"]["listen"]
    if http_port is not None:
        listen = f"127.0.0.1:{http_port}"
    url = f"http://{listen}"

    children: list[Child] = []
    # Gateway, then nodes, then etcd: nothing loses its dependency while still serving.
    with supervising(children, stop_timeout=10.0):
        try:
            members = []
            for m in manifest["etcd"]:
                child = _spawn(
                    root, m["name"], [etcd_binary, "--config-file", str(root / m["config"])]
                )
                children.append(child)
                members.append((child, m))
            for child, member in members:
                healthy = functools.partial(etcd_healthy, root, manifest, member)
                _wait(child, healthy, startup_timeout, "healthy")
            nodes = []
            for n in manifest["nodes"]:
                args = [sys.executable, "-m", "ledger", "--config", str(root / n["config"])]
                nodes.append(_spawn(root, n["node"], args))
            children.extend(nodes)
            _wait(
                nodes[0],
                lambda: cluster_status(root, timeout=1.0)["leader"] is not None,
                startup_timeout,
                "led by one of the nodes",
            )
            gateway_args = [
                sys.executable,
                "-m",
                "gateway",
                "--config",
                str(root / manifest["gateway"]["config"]),
                "--listen",
                listen,
                "--log-level",
                "warning",
            ]
            gateway = _spawn(root, "gateway", gateway_args)
            children.append(gateway)

            def ready() -> bool:
                import httpx

                return httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200

            _wait(gateway, ready, startup_timeout, "ready")
            status = cluster_status(root, timeout=1.0)
            out.write(
                "provledger cluster is running (Ctrl-C to stop)\n"
                f"  gateway       {url}\n"
                f"  origin        {manifest['origin']}\n"
                f"  verifier key  {manifest['verifier_key']}\n"
                f"  leader        {status['leader']} (term {status['term']})\n"
                + "".join(f"  {n['node']:<13} grpc://{n['address']}\n" for n in manifest["nodes"])
                + "  etcd          "
                + ", ".join(m["client"] for m in manifest["etcd"])
                + "\n"
                f"  directory     {root} (logs in {root / 'logs'}, PIDs in {root / 'run'})\n"
            )
            out.flush()
            while True:
                for child in children:
                    if not child.alive() and not child.reported:
                        child.reported = True
                        # A node's death is what a cluster survives; say so, keep running.
                        err.write(
                            f"provledger cluster: {child.name} exited with status "
                            f"{child.popen.returncode} (see {child.log_path})\n"
                        )
                        err.flush()
                time.sleep(0.2)
        except Stop:
            err.write("provledger cluster: stopping\n")
            return 0
