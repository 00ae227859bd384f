"""The gateway's one configuration object, validated when built.

TOML shape (every key but `nodes` optional):

    listen = "127.0.0.1:8080"
    nodes = ["127.0.0.1:7400", "127.0.0.1:7401"]
    rpc_timeout_s = 10.0          # reads
    write_timeout_s = 30.0        # appends wait for their block to commit
    max_event_bytes = 262144      # POST /v1/events body limit (413 beyond)
    max_batch_bytes = 67108864    # POST /v1/events:batch body limit (413 beyond)
    cache_entries = 20000         # immutable answers kept in memory (0: no cache)
    cache_ttl_s = 60.0
    local_proofs = true           # proofs from the nodes' hash tiles while reads are public
    checkpoint_poll_s = 0.05      # how often the latest checkpoint is polled for them
    tile_cache_tiles = 2048       # full hash tiles kept for them (about 16 KiB each)

    [tls]                         # mutual TLS to the nodes
    ca = "ca.pem"
    cert = "gateway.pem"
    key = "gateway-key.pem"
    server_name = "node"          # optional: the name the nodes' certificates carry
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GatewayConfig", "TlsConfig", "parse_address"]

_KNOWN_KEYS = frozenset(
    {
        "listen",
        "nodes",
        "rpc_timeout_s",
        "write_timeout_s",
        "max_event_bytes",
        "max_batch_bytes",
        "cache_entries",
        "cache_ttl_s",
        "local_proofs",
        "checkpoint_poll_s",
        "tile_cache_tiles",
        "tls",
    }
)


_TYPES: dict[str, tuple[type, ...]] = {
    "listen": (str,),
    "rpc_timeout_s": (float, int),
    "write_timeout_s": (float, int),
    "max_event_bytes": (int,),
    "max_batch_bytes": (int,),
    "cache_entries": (int,),
    "cache_ttl_s": (float, int),
    "local_proofs": (bool,),
    "checkpoint_poll_s": (float, int),
    "tile_cache_tiles": (int,),
}


def parse_address(text: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) into its parts; ValueError naming the problem."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {text!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Paths of the PEM files for mutual TLS to the nodes."""

    ca: Path
    cert: Path
    key: Path
    server_name: str | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], base: Path) -> TlsConfig:
        missing = {"ca", "cert", "key"} - raw.keys()
        if missing:
            raise ValueError(f"[tls] needs ca, cert and key; missing {', '.join(sorted(missing))}")
        name = raw.get("server_name")
        if name is not None and not isinstance(name, str):
            raise ValueError("[tls] server_name must be a string")
        return cls(
            ca=base / str(raw["ca"]),
            cert=base / str(raw["cert"]),
            key=base / str(raw["key"]),
            server_name=name,
        )


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    nodes: tuple[str, ...]
    listen: str = "127.0.0.1:8080"
    tls: TlsConfig | None = None
    rpc_timeout_s: float = 10.0
    write_timeout_s: float = 30.0
    max_event_bytes: int = 256 * 1024
    max_batch_bytes: int = 64 * 1024 * 1024
    cache_entries: int = 20_000
    cache_ttl_s: float = 60.0
    local_proofs: bool = True
    checkpoint_poll_s: float = 0.05
    tile_cache_tiles: int = 2048
    host: str = field(init=False)
    port: int = field(init=False)

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ValueError("at least one node address is needed (nodes = [...])")
        for node in self.nodes:
            parse_address(node)
        host, port = parse_address(self.listen)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        for name in ("rpc_timeout_s", "write_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        for name in ("max_event_bytes", "max_batch_bytes"):
            if not getattr(self, name) >= 1024:
                raise ValueError(f"{name} must be at least 1024")
        if self.cache_entries < 0 or self.cache_ttl_s < 0:
            raise ValueError("cache_entries and cache_ttl_s must not be negative")
        if not 0.001 <= self.checkpoint_poll_s <= 10:
            raise ValueError("checkpoint_poll_s must be between 0.001 and 10 seconds")
        if self.tile_cache_tiles < 0:
            raise ValueError("tile_cache_tiles must not be negative")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], base: Path = Path()) -> GatewayConfig:
        """From parsed TOML; relative TLS paths are taken from `base` (the file's folder)."""
        unknown = set(raw) - _KNOWN_KEYS
        if unknown:
            raise ValueError(f"unknown gateway settings: {', '.join(sorted(unknown))}")
        nodes = raw.get("nodes", ())
        if isinstance(nodes, str) or not all(isinstance(n, str) for n in nodes):
            raise ValueError("nodes must be a list of host:port strings")
        for key, kinds in _TYPES.items():
            value = raw.get(key)
            if value is not None and (
                (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds)
            ):
                raise ValueError(f"{key} must be a {kinds[0].__name__}, not {value!r}")
        tls_raw = raw.get("tls")
        if tls_raw is not None and not isinstance(tls_raw, Mapping):
            raise ValueError("[tls] must be a table with ca, cert and key")
        kwargs: dict[str, Any] = {k: raw[k] for k in _KNOWN_KEYS - {"nodes", "tls"} if k in raw}
        return cls(
            nodes=tuple(nodes),
            tls=TlsConfig.from_mapping(tls_raw, base) if tls_raw is not None else None,
            **kwargs,
        )
