"""`provledger cluster init` writes ports that no outgoing connection can hold when
`cluster up` binds them: distinct, free, below the kernel's ephemeral range, and apart
from the band the test harness hands out."""

from __future__ import annotations

import socket
from pathlib import Path

from clients._cluster import InitOptions, PortPicker, init_cluster
from tests.harness.procs import _PORTS_FROM


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_init_picks_distinct_free_ports_below_the_ephemeral_range(tmp_path: Path) -> None:
    manifest = init_cluster(tmp_path / "c", InitOptions(nodes=9, etcd_members=5, tls=False))
    ports = [_port(n["address"]) for n in manifest["nodes"]]
    for member in manifest["etcd"]:
        ports += [_port(member["client"]), _port(member["peer"])]
    assert len(ports) == 19 and len(set(ports)) == 19
    for port in ports:
        assert port < min(_PORTS_FROM, PortPicker(0, 65536).high), port
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # still free: raises if not
