"""Start a real gateway process (`python -m gateway`) in front of real nodes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.harness.procs import Proc, free_port, python_module, spawn, wait_until


@dataclass
class GatewayHandle:
    proc: Proc
    url: str
    config_path: Path

    def stop(self) -> int | None:
        return self.proc.stop()

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_gateway_config(path: Path, settings: dict[str, Any]) -> Path:
    lines = [f"{k} = {_toml(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    for name, table in settings.items():
        if isinstance(table, dict):
            lines.append(f"\n[{name}]")
            lines.extend(f"{k} = {_toml(v)}" for k, v in table.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def start_gateway(
    tmp_path: Path, node_addresses: list[str], timeout: float = 30.0, **overrides: Any
) -> GatewayHandle:
    """A gateway on a free port in front of `node_addresses`; overrides go to its TOML."""
    port = free_port()
    root = tmp_path / f"gateway-{port}"
    root.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {"listen": f"127.0.0.1:{port}", "nodes": list(node_addresses)}
    settings.update(overrides)
    config_path = write_gateway_config(root / "gateway.toml", settings)
    proc = spawn(
        f"gateway@{port}",
        python_module("gateway", "--config", str(config_path), "--log-level", "warning"),
        root / "gateway.log",
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200

    try:
        wait_until(healthy, timeout, f"gateway at {url}", proc)
    except BaseException:
        proc.stop()
        raise
    return GatewayHandle(proc=proc, url=url, config_path=config_path)


def digest(seed: str) -> dict[str, str]:
    return {"sha256": hashlib.sha256(seed.encode()).hexdigest()}


def sample_event(kind: str, event_id: str, source: str = "urn:test:gateway") -> dict[str, Any]:
    """A valid event of one of the five user kinds (SPEC §1)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    model = {"name": "fraud", "version": "3.1.0", "digest": digest("model")}
    data: dict[str, Any] = {
        "data": {
            "operation": "ingest",
            "dataset": {"name": "tx-2025", "uri": "s3://bucket/tx-2025", "digest": digest("ds")},
        },
        "training": {
            "run_id": "run-42",
            "model": model,
            "datasets": [{"name": "tx-2025", "digest": digest("ds")}],
            "code": {"repo": "https://git.example/fraud", "commit": commit},
        },
        "deployment": {
            "action": "deploy",
            "model": model,
            "environment": "prod",
            "git": {"repo": "https://git.example/deploy", "commit": commit, "path": "k8s/fraud"},
        },
        "inference": {
            "model": {"name": "fraud", "version": "3.1.0"},
            "input_commitment": "1f" * 32,
            "output_commitment": "2e" * 32,
            "count": 3,
        },
        "cost": {
            "BilledCost": "12.50",
            "EffectiveCost": "11.00",
            "BillingCurrency": "EUR",
            "ChargePeriodStart": "2025-03-01T00:00:00Z",
            "ChargePeriodEnd": "2025-03-02T00:00:00Z",
            "ServiceName": "GPU inference",
            "ChargeCategory": "Usage",
            "x_ModelName": "fraud",
        },
    }[kind]
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": f"provledger.{kind}.v1",
        "time": "2025-03-04T10:15:02Z",
        "subject": "model:fraud",
        "data": data,
    }


KINDS = ("data", "training", "deployment", "inference", "cost")
