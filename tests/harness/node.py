"""Start a real ledger node process (`python -m ledger`) on a free loopback port."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import ledger_pb2_grpc as pb_grpc
from tests.harness.procs import Proc, free_port, python_module, spawn, wait_until


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_node_config(path: Path, settings: dict[str, Any]) -> Path:
    """Writes a node TOML: plain keys, then [[principals]] and [tables]."""
    lines = []
    tables = {k: v for k, v in settings.items() if isinstance(v, dict)}
    principals = settings.get("principals", [])
    for key, value in settings.items():
        if key == "principals" or key in tables:
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables.items():
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    for p in principals:
        lines.append("\n[[principals]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in p.items())
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class NodeHandle:
    proc: Proc
    address: str
    config_path: Path
    data_dir: Path

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def stub(self) -> pb_grpc.LedgerStub:
        return pb_grpc.LedgerStub(self.channel())

    def stop(self) -> int | None:
        return self.proc.stop()

    def kill(self) -> None:
        self.proc.kill()

    def restart(self, timeout: float = 30.0) -> NodeHandle:
        """Starts the node again on the same port and data."""
        self.proc.stop()
        return start_node_from_config(self.config_path, self.address, self.data_dir, timeout)


def wait_ready(address: str, proc: Proc, timeout: float = 30.0) -> None:
    channel = grpc.insecure_channel(address)
    stub = pb_grpc.LedgerStub(channel)
    try:
        wait_until(
            lambda: stub.GetStatus(pb.GetStatusRequest(), timeout=1).role == "leader",
            timeout,
            f"node at {address}",
            proc,
        )
    finally:
        channel.close()


def start_node_from_config(
    config_path: Path, address: str, data_dir: Path, timeout: float = 30.0
) -> NodeHandle:
    proc = spawn(
        f"node@{address}",
        python_module("ledger", "--config", str(config_path)),
        config_path.parent / "node.log",
    )
    wait_ready(address, proc, timeout)
    return NodeHandle(proc=proc, address=address, config_path=config_path, data_dir=data_dir)


def start_node(tmp_path: Path, port: int | None = None, **settings: Any) -> NodeHandle:
    """A fresh node in tmp_path/node (or the data there already); settings override defaults."""
    port = port or free_port()
    root = tmp_path / "node"
    root.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "node_id": "node-1",
        "data_dir": str(root / "data"),
        "listen": f"127.0.0.1:{port}",
        "origin": "test.provledger.local/log",
    }
    config.update(settings)
    path = write_node_config(root / "node.toml", config)
    return start_node_from_config(path, f"127.0.0.1:{port}", Path(config["data_dir"]))
