"""Child processes of the CLI's supervisors (`provledger run`, `provledger cluster up`).

Each child runs in its own process group, logs to a file (or the terminal), dies with
the supervisor, and is stopped in reverse start order when a signal asks the
supervisor to stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

__all__ = ["Child", "Stop", "spawn", "supervising"]

# `spawn` forks (its preexec_fn rules out vfork), and a supervisor uses gRPC before it
# starts some children (the gateway after the node answers). gRPC's fork support then
# restarts its poller in the child, where it can meet the descriptors that close_fds has
# just closed and abort the child before it execs (grpc/grpc#43055: 5 children in 300
# here, and `provledger run` once failed so). A child never uses the parent's gRPC, so the
# supervisor turns fork support off; gRPC reads this when first imported, which the
# supervisors do only after importing this module.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def _die_with_parent() -> None:
    # Linux: a child gets SIGTERM if the supervisor dies without stopping it (SIGKILL).
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None
    """None: the child writes to the supervisor's terminal"""
    pid_path: Path | None = None
    reported: bool = False

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float) -> int:
        """SIGTERM, then SIGKILL after `timeout` seconds; the exit status."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # An etcd member that lost its quorum during shutdown can hang: SIGKILL.
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait()
        if self.pid_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.pid_path.unlink()
        return self.popen.returncode

    def tail(self, chars: int) -> str:
        """The end of the child's log, for an error message ("" without a log file)."""
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def spawn(
    name: str,
    args: list[str],
    logs: Path | None,
    *,
    cwd: Path | None = None,
    pid_dir: Path | None = None,
) -> Child:
    """Starts `args` with its output in `logs/<name>.log` (the terminal if `logs` is None)
    and, given `pid_dir`, its PID in `pid_dir/<name>.pid`."""
    log_path = None
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
    log = None if log_path is None else log_path.open("ab")
    try:
        # Own process group: Ctrl-C reaches the supervisor only, which stops the children
        # in order instead of all of them racing to exit.
        popen = subprocess.Popen(
            args,
            stdout=log,
            stderr=None if log is None else subprocess.STDOUT,
            cwd=cwd,
            process_group=0,
            preexec_fn=_die_with_parent,
        )
    finally:
        if log is not None:
            log.close()
    pid_path = None
    if pid_dir is not None:
        pid_path = pid_dir / f"{name}.pid"
        pid_path.parent.mkdir(parents=True, exist_ok=True)
        pid_path.write_text(f"{popen.pid}\n")
    return Child(name, popen, log_path, pid_path)


class Stop(Exception):
    """Raised in the supervisor's main thread by the first SIGINT or SIGTERM."""


@contextlib.contextmanager
def supervising(children: list[Child], stop_timeout: float) -> Iterator[None]:
    """Turns the first SIGINT or SIGTERM into `Stop`; on leaving, stops `children`
    (appended to by the body) last started first, then restores the signal handlers."""
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise Stop

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        # Signals that arrive while stopping must not interrupt the shutdown itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            child.stop(timeout=stop_timeout)
        for s, handler in previous.items():
            signal.signal(s, handler)
