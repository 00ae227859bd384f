"""Admission workers: a large batch is checked in other processes with exactly the outcome
the node's own checks give, a dead worker costs nothing, and workers leave with the node."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from provledger.events import canonical_json
from provledger.receipts import expand
from provledger.v1 import ledger_pb2 as pb
from tests.harness.node import NodeHandle, start_node
from tests.harness.procs import wait_until
from tests.integration.test_node_bad_input import training_event

pytestmark = pytest.mark.integration

PRINCIPALS = [
    {"name": "ci", "token": "ci-token", "roles": ["writer"], "types": ["provledger.training.v1"]},
    {"name": "ops", "token": "ops-token", "roles": ["admin"]},
]


def started_by(pid: int) -> list[int]:
    """The processes `pid` started, and those they started, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = [], {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found.extend(frontier)
    return found


def mixed_batch(run: str) -> list[bytes]:
    """300 events, most valid (canonical and not), with every kind of refusal among them."""
    data_event = {
        **training_event(id=f"{run}-data", type="provledger.data.v1"),
        "data": {
            "operation": "ingest",
            "dataset": {"name": "tx", "uri": "s3://b/tx", "digest": {"sha256": "a" * 64}},
        },
    }
    too_large = training_event(id=f"{run}-large")
    too_large["data"]["notes"] = "x" * 5000
    refusals: dict[int, bytes] = {
        3: b'{"specversion": "1.0",',
        40: json.dumps(training_event(id=f"{run}-t", type="provledger.trainig.v1")).encode(),
        77: json.dumps(
            {k: v for k, v in training_event(id=f"{run}-s").items() if k != "source"}
        ).encode(),
        120: json.dumps(too_large).encode(),
        150: json.dumps(training_event(id=f"{run}-n"))
        .replace('"r-1"', "9007199254740993")
        .encode(),
        151: canonical_json(training_event(id=f"{run}-0", subject="model:other@1")),  # conflict
        200: json.dumps(data_event).encode(),  # a type this writer may not append
        201: b'{"data": {}, "id": "x", "id": "y"}',  # a duplicate key
        299: b"",
    }
    events = []
    for i in range(300):
        if i in refusals:
            events.append(refusals[i])
        elif i % 2:
            events.append(json.dumps(training_event(id=f"{run}-{i}")).encode())
        else:
            events.append(canonical_json(training_event(id=f"{run}-{i}")))
    return events


def outcomes(node: NodeHandle, events: list[bytes]) -> list[Any]:
    response = node.stub().AppendBatch(
        pb.AppendBatchRequest(events=events),
        metadata=(("authorization", "Bearer ci-token"),),
        timeout=60,
    )
    found: list[Any] = []
    for result in expand(response):
        if isinstance(result, pb.Receipt):
            r = result
            found.append(
                ("receipt", r.index, r.leaf_hash, r.tree_size, list(r.inclusion), r.duplicate)
            )
        else:
            found.append(("error", result.SerializeToString(deterministic=True)))
    return found


@pytest.fixture
def pooled(tmp_path: Path) -> Any:
    handle = start_node(tmp_path, admission_workers=1, max_event_bytes=4096, principals=PRINCIPALS)
    yield handle
    handle.stop()


def test_batches_checked_in_workers_have_the_nodes_own_outcomes(
    pooled: NodeHandle, tmp_path: Path
) -> None:
    inline = start_node(
        tmp_path / "inline", admission_workers=0, max_event_bytes=4096, principals=PRINCIPALS
    )
    try:
        first = mixed_batch("a")
        assert outcomes(pooled, first) == outcomes(inline, first)
        assert started_by(pooled.proc.pid), "the large batch should have started a worker"
        assert not started_by(inline.proc.pid)
        again = outcomes(pooled, first)  # every valid event now an idempotent retry
        assert again == outcomes(inline, first)
        assert sum(1 for o in again if o[0] == "receipt" and o[-1]) == 300 - 9
    finally:
        inline.stop()


def test_a_killed_worker_costs_nothing(pooled: NodeHandle) -> None:
    stub = pooled.stub()
    outcomes(pooled, mixed_batch("warm"))
    for pid in started_by(pooled.proc.pid):
        os.kill(pid, signal.SIGKILL)
    for run in ("after-kill", "restarted"):
        results = outcomes(pooled, mixed_batch(run))
        assert sum(1 for o in results if o[0] == "receipt") == 300 - 9, run
    assert "admission workers failed" in pooled.proc.log()
    assert stub.GetCheckpoint(pb.GetCheckpointRequest()).tree_size == 3 * (300 - 9)


def test_workers_leave_with_a_killed_node(pooled: NodeHandle) -> None:
    outcomes(pooled, mixed_batch("k"))
    workers = started_by(pooled.proc.pid)
    assert workers
    pooled.kill()

    def gone() -> bool:
        return not any(os.path.exists(f"/proc/{pid}") for pid in workers)

    wait_until(gone, 10, "the admission workers to exit after the node was killed")
