"""`provledger run`, the real executable: first start writes configs and keys, prints the
URL and verifier key; SIGTERM stops node and gateway; a second start reuses data and keys."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.harness.procs import free_port

pytestmark = pytest.mark.integration

EXE = str(Path(sys.executable).parent / "provledger")


class Running:
    """`provledger run` as a child in its own session; its stdout read line by line."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}
        self.popen = subprocess.Popen(
            [EXE, "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def line(self, timeout: float = 90.0) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise AssertionError("provledger run printed nothing in time") from None
        if line is None:
            stderr = self.popen.stderr.read() if self.popen.stderr else ""
            raise AssertionError(f"provledger run exited ({self.popen.wait()}):\n{stderr}")
        return line

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            raise


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def cli(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args, "--url", url], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_run_first_start_restart_and_stop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    http_port, grpc_port = free_port(), free_port()
    first = Running(
        "--data-dir",
        str(data),
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--json",
    )
    try:
        facts = json.loads(first.line())
        assert facts["url"] == f"http://127.0.0.1:{http_port}"
        assert facts["auth"] == "local"
        key = facts["verifier_key"]
        assert key.startswith(facts["origin"] + "+")
        assert (data / "node.toml").is_file() and (data / "gateway.toml").is_file()

        event = {
            "specversion": "1.0",
            "id": "run-1",
            "source": "urn:test:run",
            "type": "provledger.data.v1",
            "time": "2025-01-01T00:00:00Z",
            "data": {
                "operation": "ingest",
                "dataset": {"name": "d", "uri": "s3://d", "digest": {"sha256": "ab" * 32}},
            },
        }
        appended = cli(facts["url"], "append", "-", "--key", key, stdin=json.dumps(event))
        assert appended.returncode == 0, appended.stderr
        assert httpx.get(f"{facts['url']}/v1/log").json()["verifier_key"] == key
    finally:
        code = first.stop()
    assert code == 0, first.popen.stderr.read() if first.popen.stderr else ""
    assert port_closed(http_port) and port_closed(grpc_port)

    # The second start reuses the configuration, the data and the keys; it says that
    # local callers write as `local`.
    second = Running("--data-dir", str(data))
    try:
        text = "".join(second.line() for _ in range(7))
        assert f"http://127.0.0.1:{http_port}" in text
        assert key in text
        assert "accepted as principal `local`" in text
        entry = cli(f"http://127.0.0.1:{http_port}", "get", "0", "--json")
        assert entry.returncode == 0, entry.stderr
        assert json.loads(entry.stdout)["entry"]["event"]["id"] == "run-1"
    finally:
        assert second.stop() == 0
    assert port_closed(http_port) and port_closed(grpc_port)


def test_run_refuses_a_port_that_contradicts_the_config(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "node.toml").write_text(
        f'node_id = "node-1"\ndata_dir = "{data / "node"}"\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    (data / "gateway.toml").write_text(
        f'listen = "127.0.0.1:{free_port()}"\nnodes = ["127.0.0.1:1"]\n'
    )
    result = subprocess.run(
        [EXE, "run", "--data-dir", str(data), "--grpc-port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--grpc-port" in result.stderr and "node.toml" in result.stderr


def test_node_and_gateway_commands_exec_the_servers(tmp_path: Path) -> None:
    from clients import LedgerClient
    from tests.harness.gateway import write_gateway_config
    from tests.harness.node import write_node_config
    from tests.harness.procs import spawn, wait_until

    grpc_port, http_port = free_port(), free_port()
    node_cfg = write_node_config(
        tmp_path / "node.toml",
        {
            "node_id": "node-1",
            "data_dir": str(tmp_path / "data"),
            "listen": f"127.0.0.1:{grpc_port}",
        },
    )
    gw_cfg = write_gateway_config(
        tmp_path / "gateway.toml",
        {"listen": f"127.0.0.1:{http_port}", "nodes": [f"127.0.0.1:{grpc_port}"]},
    )
    node = spawn("node", [EXE, "node", "--config", str(node_cfg)], tmp_path / "node.log")
    gateway = spawn("gateway", [EXE, "gateway", "--config", str(gw_cfg)], tmp_path / "gw.log")
    try:
        with LedgerClient(f"grpc://127.0.0.1:{grpc_port}") as c:
            wait_until(lambda: c.log_info().tree_size == 0, 60, "node", node)
        url = f"http://127.0.0.1:{http_port}"
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 60, "gateway", gateway)
    finally:
        assert gateway.stop() is not None
        assert node.stop() is not None
    missing = subprocess.run(
        [EXE, "node", "--config", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
