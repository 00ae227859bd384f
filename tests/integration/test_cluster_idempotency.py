"""An Idempotency-Key outlives the leader that first answered it (SPEC §3: the same key
and body return the first answer again, another body 422, for at least 24 hours)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from provledger.v1 import ledger_pb2 as pb
from tests.harness.cluster import ClusterNode, make_event, running_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def append_batch(node: ClusterNode, request: pb.AppendBatchRequest) -> pb.AppendBatchResponse:
    """The node's answer, asking again while no leader is known yet (UNAVAILABLE)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            response: pb.AppendBatchResponse = node.stub().AppendBatch(request, timeout=30)
            return response
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_keyed_batch_retried_after_failover_gets_the_first_answer(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        leader = cluster.leader()
        events = [make_event("urn:test:keyed", f"e-{i}") for i in range(100)]
        events.insert(40, b'{"specversion": "1.0"')  # refused in its place, remembered too
        key = "nightly-export-2026-11-27"
        request = pb.AppendBatchRequest(events=events, idempotency_key=key)
        first = append_batch(leader, request)
        outcomes = [r.WhichOneof("outcome") for r in first.results]
        assert outcomes.count("committed") == 100 and outcomes[40] == "error"

        records = [
            meta
            for _, meta in cluster.etcd_client().get_prefix("/provledger/")
            if b"/records/" in meta.key
        ]
        assert len(records) == 1 and records[0].lease_id, "the record is in etcd under a lease"

        leader.kill()
        successor = cluster.leader(exclude=leader)
        again = append_batch(successor, request)
        # Byte for byte: the receipts rebuilt from the log, the deterministic log-signed
        # checkpoints, the refusal's problem. A new leader without the record would have
        # answered each event as an idempotent retry (duplicate: true) instead.
        assert again.SerializeToString(deterministic=True) == first.SerializeToString(
            deterministic=True
        )

        other = pb.AppendBatchRequest(events=events[:50], idempotency_key=key)
        with pytest.raises(grpc.RpcError) as info:
            successor.stub().AppendBatch(other, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "different request body" in (info.value.details() or "")
