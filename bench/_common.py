"""Shared pieces of the benchmarks: realistic events, client processes, percentiles."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def training_event(
    source: str, event_id: str | None = None, pad: int = 0, *, canonical: bool = True
) -> bytes:
    """A training event of about 500 bytes: in RFC 8785 form, as the SDK sends events,
    or (`canonical=False`) compact JSON in the order a hand-written producer uses."""
    event = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": "provledger.training.v1",
        "time": "2026-11-26T12:00:00.123Z",
        "subject": "model:fraud-detector@sha256:" + "ab" * 8,
        "data": {
            "run_id": "run-" + uuid.uuid4().hex[:12],
            "model": {"name": "fraud-detector", "version": "42", "digest": {"sha256": "c" * 64}},
            "datasets": [{"name": "transactions-2026-11", "digest": {"sha256": "d" * 64}}],
            "code": {"repo": "https://git.example.com/ml/fraud.git", "commit": "e" * 40},
            "metrics": {"auc": "0.931", "f1": "0.874"},
        },
    }
    if pad:
        event["data"]["notes"] = "x" * pad
    if canonical:
        from provledger.events import canonical_json

        return canonical_json(event)
    return json.dumps(event, separators=(",", ":")).encode()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def process_tree(pid: int) -> list[int]:
    """`pid` and every process it started, and they started (a node's admission
    workers and their forkserver, say), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def started_pss_mb(pid: int) -> float:
    """Proportional memory of the processes `pid` started (not its own): pages they
    share, with each other or with `pid`, are counted in parts, not once each."""
    total = 0
    for member in process_tree(pid)[1:]:
        try:
            with open(f"/proc/{member}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (FileNotFoundError, ProcessLookupError, PermissionError, StopIteration):
            continue
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time so far of a process (all its threads) and of every
    process it started (which must still be running to be counted)."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def row(name: str, value: str, limit: str = "", ratio: str = "") -> None:
    print(f"| {name} | {value} | {limit} | {ratio} |", flush=True)


def header(title: str) -> None:
    print(f"\n## {title}\n\n| measure | value | limit | ratio |\n|---|---|---|---|", flush=True)


def cpu_count() -> int:
    return os.cpu_count() or 1


def run_clients(target: Any, args_list: list[tuple[Any, ...]]) -> list[Any]:
    """Runs `target(*args, queue)` in one spawned process per args; what each put on the queue."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, queue)) for a in args_list]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return results


def append_latencies(stub: Any, threads: int, seconds: float, timeout: float) -> list[float]:
    """Seconds per unary Append, from `threads` callers on one stub for `seconds`."""
    from provledger.v1 import ledger_pb2 as pb

    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def loop(n: int) -> None:
        source = f"urn:bench:single:{n}:{os.getpid()}"
        mine = []
        while time.perf_counter() < deadline:
            raw = training_event(source)
            t0 = time.perf_counter()
            stub.Append(pb.AppendRequest(event=raw), timeout=timeout)
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return latencies
