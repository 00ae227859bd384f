"""Batch idempotency in the node's service (real LevelDB, no gRPC): concurrent requests
with one key run one at a time and get one answer; no per-key lock outlives its requests."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from ledger._config import NodeConfig
from ledger._node import IDEMPOTENCY_TTL, LedgerNode
from ledger.service import LedgerService
from provledger.errors import InvalidEventError
from provledger.events import canonical_json
from provledger.v1 import ledger_pb2 as pb


def event(i: int) -> bytes:
    return canonical_json(
        {
            "specversion": "1.0",
            "id": f"idem-{i}",
            "source": "urn:test:idempotency",
            "type": "provledger.data.v1",
            "time": "2026-11-27T00:00:00Z",
            "data": {
                "operation": "ingest",
                "dataset": {"name": "d", "uri": "s3://b/d", "digest": {"sha256": "a" * 64}},
            },
        }
    )


@pytest.fixture
def service(tmp_path: Path) -> Any:
    node = LedgerNode(NodeConfig(node_id="n1", data_dir=tmp_path, max_block_delay_ms=5))
    node.start()
    yield LedgerService(node)
    node.close()


def test_concurrent_requests_with_one_key_get_one_answer(service: LedgerService) -> None:
    principal = service.node.auth.authenticate(None)
    request = pb.AppendBatchRequest(events=[event(i) for i in range(20)], idempotency_key="k1")
    answers: list[bytes] = []
    start = threading.Barrier(8)

    def call() -> None:
        start.wait()
        answers.append(service._append_idempotent(request, principal).SerializeToString())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 8 and len(set(answers)) == 1
    first = pb.AppendBatchResponse.FromString(answers[0])
    assert not any(r.receipt.duplicate for r in first.results)  # the first run's answer
    assert service.node.state.tree_size == 20
    assert service._key_locks == {}


def test_a_refused_request_leaves_no_lock_and_no_answer(service: LedgerService) -> None:
    principal = service.node.auth.authenticate(None)
    service._append_idempotent(
        pb.AppendBatchRequest(events=[event(0)], idempotency_key="k2"), principal
    )
    with pytest.raises(InvalidEventError, match="different request body"):
        service._append_idempotent(
            pb.AppendBatchRequest(events=[event(1)], idempotency_key="k2"), principal
        )
    assert service._key_locks == {}


def test_the_answer_is_replayed_byte_for_byte_from_a_compact_record(
    service: LedgerService,
) -> None:
    principal = service.node.auth.authenticate(None)
    service.node.append([event(100)], principal)  # committed before: a retry in the batch
    events = [event(i) for i in range(100, 130)] + [b"{not json"]
    request = pb.AppendBatchRequest(events=events, idempotency_key="k3")
    first = service._append_idempotent(request, principal)
    outcomes = [r.WhichOneof("outcome") for r in first.results]
    # The retry gets its receipt whole; the new events share their blocks' receipts.
    assert outcomes == ["receipt"] + ["committed"] * 29 + ["error"]
    assert first.results[0].receipt.duplicate and first.blocks
    record = service.node.store.idempotency(f"{principal.name}\x00k3")
    assert record is not None and len(record) < 40 * len(events) + 400
    service.node.append([event(i) for i in range(200, 240)], principal)  # the log grows
    again = service._append_idempotent(request, principal)
    assert again.SerializeToString() == first.SerializeToString()


def test_records_expire(service: LedgerService) -> None:
    node = service.node
    principal = node.auth.authenticate(None)
    request = pb.AppendBatchRequest(events=[event(300)], idempotency_key="k4")
    service._append_idempotent(request, principal)
    scoped = f"{principal.name}\x00k4"
    record = node.idempotent_batch(scoped)
    assert record is not None
    old = dict(record, created=record["created"] - IDEMPOTENCY_TTL - 1)
    node.remember_batch(scoped, old)
    assert node.idempotent_batch(scoped) is None  # past its TTL: not replayed
    assert node.forget_expired_batches(now=record["created"]) == 0  # kept twice as long
    assert node.forget_expired_batches(now=record["created"] + IDEMPOTENCY_TTL) == 1
    assert node.store.idempotency(scoped) is None
