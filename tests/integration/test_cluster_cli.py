"""`provledger cluster init|up|status`, the real executable: init writes keys,
certificates and configs; up starts etcd, three nodes and a gateway and records their
PIDs; status reports the leader; SIGTERM stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.harness.gateway import sample_event
from tests.harness.procs import free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXE = str(Path(sys.executable).parent / "provledger")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_cluster_init_up_status_and_stop(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    init = subprocess.run(
        [EXE, "cluster", "init", "--nodes", "3", "--dir", str(directory), "--json"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    manifest = json.loads(init.stdout)
    assert len(manifest["nodes"]) == 3 and len(manifest["etcd"]) == 3
    assert (directory / "keys" / "log.key").stat().st_mode & 0o777 == 0o600
    for node in manifest["nodes"]:
        assert (directory / node["config"]).is_file()
        assert (directory / "nodes" / node["node"] / "node.pem").is_file()
    again = subprocess.run(
        [EXE, "cluster", "init", "--dir", str(directory)],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert again.returncode == 2 and "already holds a cluster" in again.stderr

    port = free_port()
    up = subprocess.Popen(
        [EXE, "cluster", "up", "--dir", str(directory), "--http-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,
    )
    pids: dict[str, int] = {}
    try:
        assert up.stdout is not None
        banner = ""
        deadline = time.monotonic() + 120
        while "gateway" not in banner and time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                raise AssertionError(f"cluster up exited:\n{up.stderr.read() if up.stderr else ''}")
            banner += line
        url = f"http://127.0.0.1:{port}"
        assert url in banner
        names = [m["name"] for m in manifest["etcd"]] + [n["node"] for n in manifest["nodes"]]
        for name in [*names, "gateway"]:
            pids[name] = int((directory / "run" / f"{name}.pid").read_text())
            assert _alive(pids[name]), name

        response = httpx.post(
            f"{url}/v1/events", json=sample_event("data", str(uuid.uuid4())), timeout=30
        )
        assert response.status_code == 201, response.text

        status = subprocess.run(
            [EXE, "cluster", "status", "--dir", str(directory), "--json"],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["leader"] in {n["node"] for n in manifest["nodes"]}
        assert report["term"] > 0
        roles = sorted(n["role"] for n in report["nodes"])
        assert roles == ["follower", "follower", "leader"]
        for n in report["nodes"]:
            assert n["pid"] == pids[n["node"]]
            assert set(n) >= {"node", "role", "height", "head_hash", "pid"}
        wait_until(
            lambda: (
                len(
                    {
                        n["head_hash"]
                        for n in json.loads(
                            subprocess.run(
                                [EXE, "cluster", "status", "--dir", str(directory), "--json"],
                                capture_output=True,
                                text=True,
                                env=_env(),
                                timeout=60,
                            ).stdout
                        )["nodes"]
                    }
                )
                == 1
            ),
            30,
            "every node at the same head",
        )
        table = subprocess.run(
            [EXE, "cluster", "status", "--dir", str(directory)],
            capture_output=True,
            text=True,
            env=_env(),
        )
        assert table.returncode == 0 and f"leader: {report['leader']}" in table.stdout
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
    assert code == 0
    for name, pid in pids.items():
        assert not _alive(pid), f"{name} (pid {pid}) still runs"
    assert not list((directory / "run").glob("*.pid"))
    down = subprocess.run(
        [EXE, "cluster", "status", "--dir", str(directory), "--json"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert down.returncode == 3
    assert not any(n["reachable"] for n in json.loads(down.stdout)["nodes"])
