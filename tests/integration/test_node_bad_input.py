"""Bad input is refused with the field path or reason and the right status; nothing of it is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from provledger.v1 import ledger_pb2 as pb
from tests.harness.node import NodeHandle, start_node

pytestmark = pytest.mark.integration


def training_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "run-1",
        "source": "mlflow://tracking.test",
        "type": "provledger.training.v1",
        "time": "2026-11-26T12:00:00Z",
        "subject": "model:fraud@3",
        "data": {
            "run_id": "r-1",
            "model": {"name": "fraud", "version": "3", "digest": {"sha256": "c" * 64}},
            "datasets": [{"name": "tx-2026", "digest": {"sha256": "d" * 64}}],
            "code": {"repo": "https://git.example/ml.git", "commit": "e" * 40},
        },
    }
    event.update(overrides)
    return event


def problem(exc: grpc.RpcError) -> pb.Problem:
    for key, value in exc.trailing_metadata() or ():
        if key == "provledger-problem-bin":
            return pb.Problem.FromString(value)
    raise AssertionError(f"no problem in trailing metadata of {exc}")


def refused(
    node: NodeHandle, raw: bytes, token: str | None = None
) -> tuple[grpc.StatusCode, pb.Problem]:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with pytest.raises(grpc.RpcError) as info:
        node.stub().Append(pb.AppendRequest(event=raw), metadata=metadata, timeout=10)
    return info.value.code(), problem(info.value)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    handle = start_node(tmp_path_factory.mktemp("bad-input"), max_event_bytes=4096)
    yield handle
    handle.stop()


def tree_size(node: NodeHandle) -> int:
    return int(node.stub().GetCheckpoint(pb.GetCheckpointRequest()).tree_size)


def test_malformed_json_is_400(node: NodeHandle) -> None:
    code, p = refused(node, b'{"specversion": "1.0",')
    assert code == grpc.StatusCode.INVALID_ARGUMENT and p.status == 400
    assert "JSON" in p.detail


@pytest.mark.parametrize(
    ("event", "path"),
    [
        (training_event(type="provledger.trainig.v1"), "type"),
        (training_event(specversion="0.3"), "specversion"),
        (training_event(time="2026-11-26T12:00:00+02:00"), "time"),
        (training_event(id=""), "id"),
        ({k: v for k, v in training_event().items() if k != "source"}, "source"),
        (
            training_event(
                data={**training_event()["data"], "model": {"name": "fraud", "version": "3"}}
            ),
            "data.model.digest",
        ),
        (
            training_event(
                data={**training_event()["data"], "code": {"repo": "r", "commit": "xyz"}}
            ),
            "data.code.commit",
        ),
        (training_event(data={**training_event()["data"], "datasets": []}), "data.datasets"),
    ],
)
def test_schema_violation_names_the_field(
    node: NodeHandle, event: dict[str, Any], path: str
) -> None:
    before = tree_size(node)
    code, p = refused(node, json.dumps(event).encode())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and p.status == 422
    assert any(e.path.startswith(path) for e in p.errors), (path, p)
    assert tree_size(node) == before


def test_non_i_json_number_is_refused(node: NodeHandle) -> None:
    raw = json.dumps(training_event()).replace(
        '"run_id": "r-1"', '"run_id": "r-1", "epochs": 9007199254740993'
    )
    _code, p = refused(node, raw.encode())
    assert p.status == 422 and any("data.epochs" in e.path for e in p.errors), p
    _code, p = refused(node, json.dumps(training_event()).replace('"r-1"', "NaN").encode())
    assert p.status in (400, 422)


def test_too_large_event_is_413(node: NodeHandle) -> None:
    event = training_event()
    event["data"]["notes"] = "x" * 5000
    code, p = refused(node, json.dumps(event).encode())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and p.status == 413
    assert "4096" in p.detail


def test_conflicting_duplicate_is_409_and_identical_retry_is_idempotent(node: NodeHandle) -> None:
    raw = json.dumps(training_event(id="dup-1")).encode()
    first = node.stub().Append(pb.AppendRequest(event=raw), timeout=10)
    again = node.stub().Append(pb.AppendRequest(event=raw), timeout=10)
    assert again.duplicate and again.index == first.index and again.leaf_hash == first.leaf_hash
    size = tree_size(node)
    other = training_event(id="dup-1", subject="model:other@1")
    code, p = refused(node, json.dumps(other).encode())
    assert code == grpc.StatusCode.ALREADY_EXISTS and p.status == 409
    assert tree_size(node) == size
    # the node keeps serving
    ok = node.stub().Append(
        pb.AppendRequest(event=json.dumps(training_event(id="after")).encode()), timeout=10
    )
    assert ok.index == size


def test_tokens_and_roles(tmp_path: Path) -> None:
    handle = start_node(
        tmp_path,
        public_reads=False,
        principals=[
            {
                "name": "ci",
                "token": "ci-token",
                "roles": ["writer"],
                "types": ["provledger.training.v1"],
            },
            {"name": "ops", "token": "ops-token", "roles": ["admin"]},
            {"name": "auditor", "token": "aud-token", "roles": ["auditor"]},
        ],
    )
    try:
        raw = json.dumps(training_event()).encode()
        code, p = refused(handle, raw)
        assert code == grpc.StatusCode.UNAUTHENTICATED and p.status == 401
        code, p = refused(handle, raw, token="wrong")
        assert code == grpc.StatusCode.UNAUTHENTICATED
        code, p = refused(handle, raw, token="aud-token")
        assert code == grpc.StatusCode.PERMISSION_DENIED and p.status == 403
        data_event = {
            **training_event(id="d1", type="provledger.data.v1"),
            "data": {
                "operation": "ingest",
                "dataset": {"name": "tx", "uri": "s3://b/tx", "digest": {"sha256": "a" * 64}},
            },
        }
        code, p = refused(handle, json.dumps(data_event).encode(), token="ci-token")
        assert code == grpc.StatusCode.PERMISSION_DENIED and "provledger.data.v1" in p.detail
        anchor = training_event(id="a1", type="provledger.anchor.v1", data={"anchors": []})
        code, p = refused(handle, json.dumps(anchor).encode(), token="ci-token")
        assert code == grpc.StatusCode.PERMISSION_DENIED and "admin" in p.detail
        stub = handle.stub()
        receipt = stub.Append(
            pb.AppendRequest(event=raw),
            metadata=(("authorization", "Bearer ci-token"),),
            timeout=10,
        )
        entry = stub.GetEntry(
            pb.GetEntryRequest(index=receipt.index),
            metadata=(("authorization", "Bearer aud-token"),),
        )
        assert json.loads(entry.leaf)["submitter"] == "ci"
        stub.Append(
            pb.AppendRequest(event=json.dumps(anchor).encode()),
            metadata=(("authorization", "Bearer ops-token"),),
            timeout=10,
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.GetEntry(pb.GetEntryRequest(index=0))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        handle.stop()


def test_a_stream_of_chunks_keeps_each_events_place_and_refusal(node: NodeHandle) -> None:
    good = [json.dumps(training_event(id=f"chunk-{i}")).encode() for i in range(5)]
    messages = [
        pb.AppendRequest(event=good[0], events=[good[1], b"{not json", good[2]]),
        pb.AppendRequest(events=[good[3]]),
        pb.AppendRequest(event=b""),  # an empty event is refused in its place
        pb.AppendRequest(event=good[4]),
    ]
    size = tree_size(node)
    response = node.stub().AppendStream(iter(messages), timeout=10)
    outcomes = [r.WhichOneof("outcome") for r in response.results]
    assert outcomes == ["committed"] * 2 + ["error"] + ["committed"] * 2 + ["error", "committed"]
    assert response.results[2].error.status == 400
    assert [r.committed for r in response.results if r.HasField("committed")] == list(
        range(size, size + 5)
    )
    with pytest.raises(grpc.RpcError) as info:
        node.stub().Append(pb.AppendRequest(event=good[0], events=[good[1]]), timeout=10)
    code, p = info.value.code(), problem(info.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and p.status == 400
    assert p.detail.startswith("events: Append takes one event")


@pytest.mark.parametrize("after", [2**64 - 2, 2**64 - 1])
@pytest.mark.parametrize("field", ["type", "subject", None])
def test_a_query_after_the_largest_index_is_an_empty_page(
    node: NodeHandle, after: int, field: str | None
) -> None:
    node.stub().Append(pb.AppendRequest(event=json.dumps(training_event(id="q-1")).encode()))
    request = pb.QueryEventsRequest(after=after, limit=10)
    if field == "type":
        request.type = "provledger.training.v1"
    elif field == "subject":
        request.subject = "model:fraud@3"
    page = node.stub().QueryEvents(request, timeout=10)
    assert list(page.entries) == [] and not page.HasField("next_after")
