"""Free loopback ports for processes this machine starts: cluster members and nodes
(`provledger cluster init`), and the test harness."""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]

_PORTS_FROM = 20000
_given: set[int] = set()


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range and not given before
    by this process.

    A port from bind(0) is an ephemeral one: until the process it is meant for binds it,
    any outgoing connection on this machine (a client of etcd or of a peer) may take it,
    and that process then fails with "Address already in use" (test clusters did).
    Outgoing connections never take ports below the ephemeral range."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(_PORTS_FROM, _ephemeral_low())
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise OSError(f"no free loopback port between {_PORTS_FROM} and {_ephemeral_low()}")


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
