"""The node's configuration: one frozen object, built and validated in `__main__`."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provledger.events import EVENT_TYPES, MAX_EVENT_BYTES

__all__ = ["NodeConfig", "PrincipalConfig", "TLSConfig", "load_config"]

ROLES = frozenset({"writer", "reader", "auditor", "admin"})


@dataclass(frozen=True, slots=True)
class PrincipalConfig:
    name: str
    token_sha256: bytes
    roles: frozenset[str]
    types: frozenset[str]  # event types a writer may append; empty: every user type


@dataclass(frozen=True, slots=True)
class TLSConfig:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_id: str
    data_dir: Path
    listen: str = "127.0.0.1:7400"
    advertise: str = ""  # the address peers and the gateway use; default: listen
    origin: str = ""  # empty: generated on first start
    public_reads: bool = True
    max_block_entries: int = 1000
    max_block_bytes: int = 1024 * 1024
    max_block_delay_ms: float = 20.0
    max_event_bytes: int = MAX_EVENT_BYTES
    principals: tuple[PrincipalConfig, ...] = ()
    tls: TLSConfig | None = None
    coordinator: dict[str, Any] = field(default_factory=lambda: {"kind": "local"})
    workers: int = 128  # each unary Append holds a worker until its block commits
    # Processes that check large batches beside the node's own; None: one per spare core.
    admission_workers: int | None = None
    compress_storage: bool = False  # Snappy in LevelDB: about half the disk, more CPU
    # Key files kept outside data_dir (a cluster: the shared log key, this node's key), so
    # that a node whose database is lost rebuilds under the same keys. None: data_dir/keys.
    log_key_file: Path | None = None
    node_key_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.node_id or any(c.isspace() or c == "+" for c in self.node_id):
            raise ValueError(f"node_id: {self.node_id!r} must be non-empty, no spaces or '+'")
        if not 1 <= self.max_block_entries <= 100_000:
            raise ValueError("max_block_entries: must be between 1 and 100000")
        if not 1 <= self.max_event_bytes <= MAX_EVENT_BYTES:
            raise ValueError(f"max_event_bytes: must be between 1 and {MAX_EVENT_BYTES}")
        workers = self.admission_workers
        if workers is not None and (type(workers) is not int or not 0 <= workers <= 64):
            raise ValueError("admission_workers: must be between 0 and 64")
        if type(self.compress_storage) is not bool:
            raise ValueError("compress_storage: must be true or false")
        if self.max_block_delay_ms < 0:
            raise ValueError("max_block_delay_ms: must not be negative")
        kind = self.coordinator.get("kind", "local")
        if kind not in ("local", "etcd"):
            raise ValueError(f"coordinator.kind: {kind!r} is not 'local' or 'etcd'")
        if kind == "etcd" and not self.origin:
            raise ValueError("origin: a cluster member needs the log's origin configured")

    @property
    def clustered(self) -> bool:
        return bool(self.coordinator.get("kind", "local") == "etcd")

    @property
    def advertised(self) -> str:
        return self.advertise or self.listen


def _principal(raw: dict[str, Any], where: str) -> PrincipalConfig:
    import hashlib

    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name: required")
    if "token_sha256" in raw:
        digest = bytes.fromhex(str(raw["token_sha256"]))
    elif isinstance(raw.get("token"), str) and raw["token"]:
        digest = hashlib.sha256(raw["token"].encode()).digest()
    else:
        raise ValueError(f"{where}.token: required (or token_sha256)")
    roles = frozenset(raw.get("roles", []))
    if not roles or not roles <= ROLES:
        raise ValueError(f"{where}.roles: one or more of {sorted(ROLES)}")
    types = frozenset(raw.get("types", []))
    if not types <= EVENT_TYPES:
        raise ValueError(f"{where}.types: unknown event types {sorted(types - EVENT_TYPES)}")
    return PrincipalConfig(name=name, token_sha256=digest, roles=roles, types=types)


def load_config(path: Path | None, overrides: dict[str, Any]) -> NodeConfig:
    """Reads the TOML file (if any) and applies flag/environment overrides on top."""
    raw: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    base = path.parent if path is not None else Path.cwd()
    data_dir = Path(raw.pop("data_dir", "provledger-data/node"))
    if not data_dir.is_absolute():
        data_dir = base / data_dir
    principals = tuple(
        _principal(p, f"principals[{i}]") for i, p in enumerate(raw.pop("principals", []))
    )
    tls_raw = raw.pop("tls", None)
    tls = None
    if tls_raw:
        tls = TLSConfig(**{k: (base / v) for k, v in tls_raw.items() if k in ("ca", "cert", "key")})
    for name in ("log_key_file", "node_key_file"):
        if raw.get(name) is not None:
            key_path = Path(raw[name])
            raw[name] = key_path if key_path.is_absolute() else base / key_path
    known = set(NodeConfig.__dataclass_fields__) - {"data_dir", "principals", "tls"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
    return NodeConfig(data_dir=data_dir, principals=principals, tls=tls, **raw)
