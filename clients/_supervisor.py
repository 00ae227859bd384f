"""`provledger run`: the embedded default, a supervisor of one node and one gateway.

On first start it writes `node.toml` and `gateway.toml` into the data directory; every
start then launches `python -m ledger` and `python -m gateway` as child processes,
waits until both answer, prints where they are and the log's verifier key, and stops
both (gateway first) on Ctrl-C or SIGTERM. The node keeps its keys in its data
directory, so a second start serves the same log under the same key.
"""

from __future__ import annotations

import json
import os
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from clients._children import Child, Stop, spawn, supervising
from clients._model import LogInfo
from provledger.errors import LedgerError

__all__ = ["RunOptions", "UsageError", "run_supervisor"]

NODE_ID = "node-1"
DEFAULT_HTTP_PORT = 8080
DEFAULT_GRPC_PORT = 7400
_TAIL = 3000  # characters of a child's log shown when it fails


class UsageError(Exception):
    """The command line asks for something the data directory contradicts (exit 2)."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    data_dir: Path
    http_port: int | None
    """None: from gateway.toml, else the default"""
    grpc_port: int | None
    startup_timeout: float = 60.0
    json: bool = False
    show_logs: bool = False


def _toml_str(value: str) -> str:
    # A JSON string literal is a valid TOML basic string for everything json.dumps emits.
    return json.dumps(value, ensure_ascii=False)


def _port_of(listen: object, what: Path) -> int:
    if not isinstance(listen, str) or ":" not in listen:
        raise UsageError(f"{what}: 'listen' must be \"host:port\"")
    return int(listen.rsplit(":", 1)[1])


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: {e}") from None


def prepare(options: RunOptions) -> tuple[Path, Path, int, int, dict[str, Any]]:
    """Writes the configuration on first start; checks it against the flags afterwards."""
    data_dir = options.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    node_toml = data_dir / "node.toml"
    gateway_toml = data_dir / "gateway.toml"
    grpc_port = options.grpc_port or DEFAULT_GRPC_PORT
    http_port = options.http_port or DEFAULT_HTTP_PORT
    if not node_toml.exists():
        node_toml.write_text(
            "# Written by `provledger run` on first start. Add [[principals]] with tokens\n"
            "# to require authentication; without any, local callers write as `local`.\n"
            f"node_id = {_toml_str(NODE_ID)}\n"
            f"data_dir = {_toml_str(str(data_dir / 'node'))}\n"
            f"listen = {_toml_str(f'127.0.0.1:{grpc_port}')}\n"
            "public_reads = true\n",
            encoding="utf-8",
        )
    if not gateway_toml.exists():
        gateway_toml.write_text(
            "# Written by `provledger run` on first start.\n"
            f"listen = {_toml_str(f'127.0.0.1:{http_port}')}\n"
            f"nodes = [{_toml_str(f'127.0.0.1:{grpc_port}')}]\n",
            encoding="utf-8",
        )
    node = _load(node_toml)
    gateway = _load(gateway_toml)
    node_port = _port_of(node.get("listen"), node_toml)
    gateway_port = _port_of(gateway.get("listen"), gateway_toml)
    for flag, given, configured, path in (
        ("--grpc-port", options.grpc_port, node_port, node_toml),
        ("--http-port", options.http_port, gateway_port, gateway_toml),
    ):
        if given is not None and given != configured:
            raise UsageError(
                f"{flag} {given} differs from the port {configured} in {path}, written on "
                "the first start: edit that file or drop the flag"
            )
    return node_toml, gateway_toml, gateway_port, node_port, node


def _module_args(module: str, config: Path) -> list[str]:
    return [sys.executable, "-m", module, "--config", str(config)]


def _node_ready(grpc_port: int) -> LogInfo | None:
    from clients._grpc import GrpcTransport  # imported here: `provledger audit` needs no gRPC

    transport = GrpcTransport(f"127.0.0.1:{grpc_port}", timeout=2.0)
    try:
        return transport.log_info()
    except LedgerError:
        return None
    finally:
        transport.close()


def _gateway_ready(http_port: int) -> bool:
    import httpx

    try:
        r = httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=2.0)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def run_supervisor(options: RunOptions, out: IO[str], err: IO[str]) -> int:
    """Runs until a signal or a child's death; the exit status for the CLI."""
    node_toml, gateway_toml, http_port, grpc_port, node_cfg = prepare(options)
    data_dir = node_toml.parent
    logs = None if options.show_logs else data_dir / "logs"

    children: list[Child] = []
    with supervising(children, stop_timeout=15.0):
        try:
            node = spawn("node", _module_args("ledger", node_toml), logs)
            children.append(node)
            info = _wait(node, lambda: _node_ready(grpc_port), options.startup_timeout, err)
            if info is None:
                return 1
            gateway = spawn("gateway", _module_args("gateway", gateway_toml), logs)
            children.append(gateway)
            if (
                _wait(
                    gateway, lambda: _gateway_ready(http_port) or None, options.startup_timeout, err
                )
                is None
            ):
                return 1
            _announce(options, out, info, http_port, grpc_port, data_dir, logs, node_cfg)
            while True:
                for child in children:
                    if not child.alive():
                        err.write(
                            f"provledger run: {child.name} exited with status "
                            f"{child.popen.returncode}; stopping\n{child.tail(_TAIL)}\n"
                        )
                        return 1
                time.sleep(0.2)
        except Stop:
            err.write("provledger run: stopping\n")
            return 0


def _wait(child: Child, check: Callable[[], Any], timeout: float, err: IO[str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            err.write(
                f"provledger run: {child.name} exited with status {child.popen.returncode} "
                f"before it was ready\n{child.tail(_TAIL)}\n"
            )
            return None
        result = check()
        if result is not None and result is not False:
            return result
        time.sleep(0.1)
    err.write(
        f"provledger run: {child.name} not ready after {timeout:.0f} s\n{child.tail(_TAIL)}\n"
    )
    return None


def _announce(
    options: RunOptions,
    out: IO[str],
    info: LogInfo,
    http_port: int,
    grpc_port: int,
    data_dir: Path,
    logs: Path | None,
    node_cfg: dict[str, Any],
) -> None:
    url = f"http://127.0.0.1:{http_port}"
    tokens = bool(node_cfg.get("principals"))
    auth = (
        "tokens configured: writes need `Authorization: Bearer <token>`"
        if tokens
        else "no tokens configured: writes from local callers are accepted as principal `local`"
    )
    if options.json:
        out.write(
            json.dumps(
                {
                    "url": url,
                    "grpc": f"grpc://127.0.0.1:{grpc_port}",
                    "origin": info.origin,
                    "verifier_key": info.verifier_key,
                    "data_dir": str(data_dir),
                    "auth": "tokens" if tokens else "local",
                    "pid": os.getpid(),
                }
            )
            + "\n"
        )
    else:
        out.write(
            "provledger is running (Ctrl-C to stop)\n"
            f"  gateway       {url}\n"
            f"  node (gRPC)   grpc://127.0.0.1:{grpc_port}\n"
            f"  origin        {info.origin}\n"
            f"  verifier key  {info.verifier_key}\n"
            f"  data          {data_dir}" + (f" (logs in {logs})" if logs else "") + "\n"
            f"  auth          {auth}\n"
        )
    out.flush()
