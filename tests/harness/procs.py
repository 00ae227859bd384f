"""Start real processes on 127.0.0.1 for tests, and stop them by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clients._cluster import PortPicker

REPO_ROOT = Path(__file__).resolve().parents[2]


_PORTS_FROM = 20000
_pick_port = PortPicker(_PORTS_FROM, 65536)


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range and not handed out before.

    A port from bind(0) is an ephemeral one: between its release here and the bind of the
    process it is meant for, an outgoing connection (a client of etcd or of a peer) can
    take it, and that process fails with "Address already in use" (a cluster test did).
    Outgoing connections never take ports below the ephemeral range. `provledger cluster
    init` picks its ports from 10000 to 20000 for the same reason, so the two bands never
    hand out the same port."""
    return _pick_port()


@dataclass
class Proc:
    """A child process whose output goes to a log file beside its data."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def spawn(name: str, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Proc:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    return Proc(name=name, popen=popen, log_path=log_path, args=args)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: Proc | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(
                f"{proc.name} exited ({proc.popen.returncode}) before {what}:\n{proc.log()[-4000:]}"
            )
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    tail = proc.log()[-4000:] if proc else ""
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}\n{tail}")
