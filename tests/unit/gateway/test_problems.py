"""The gateway's one gRPC-to-HTTP translation, on real grpc.aio error objects."""

from __future__ import annotations

import json

import grpc
import pytest

from gateway._problems import (
    PROBLEM_MEDIA_TYPE,
    PROBLEM_TRAILER,
    Problem,
    from_ledger_error,
    from_rpc_error,
    problem_response,
)
from provledger.errors import (
    ConflictError,
    FieldError,
    InvalidEventError,
    InvalidRequestError,
    UnavailableError,
)
from provledger.v1 import ledger_pb2 as pb


def rpc_error(
    code: grpc.StatusCode, details: str = "", trailer: bytes | None = None
) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata()
    if trailer is not None:
        trailing.add(PROBLEM_TRAILER, trailer)
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=details)


def body_of(problem: Problem) -> tuple[int, dict[str, object], dict[str, str]]:
    response = problem_response(problem)
    return response.status_code, json.loads(bytes(response.body)), dict(response.headers)


def test_the_nodes_problem_wins_over_the_status_code() -> None:
    message = pb.Problem(
        status=422,
        title="Invalid event",
        detail="data.model.digest.sha256: expected 64 lowercase hex characters",
        errors=[pb.FieldError(path="data.model.digest.sha256", message="expected 64 hex")],
    )
    problem = from_rpc_error(
        rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "x", message.SerializeToString())
    )
    status, body, headers = body_of(problem)
    assert status == 422
    assert headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert body == {
        "type": "urn:provledger:problem:unprocessable",
        "title": "Invalid event",
        "status": 422,
        "detail": "data.model.digest.sha256: expected 64 lowercase hex characters",
        "errors": [{"path": "data.model.digest.sha256", "message": "expected 64 hex"}],
    }


def test_400_and_422_share_one_grpc_code() -> None:
    for status in (400, 422):
        trailer = pb.Problem(status=status, title="t", detail="d").SerializeToString()
        error = rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "d", trailer)
        assert from_rpc_error(error).status == status


def test_unavailable_carries_retry_after() -> None:
    trailer = pb.Problem(status=503, title="No leader", detail="d", retry_after=3)
    problem = from_rpc_error(
        rpc_error(grpc.StatusCode.UNAVAILABLE, "d", trailer.SerializeToString())
    )
    status, body, headers = body_of(problem)
    assert (status, headers["retry-after"], body["title"]) == (503, "3", "No leader")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 503),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.UNIMPLEMENTED, 500),
    ],
)
def test_without_a_trailer_the_code_decides(code: grpc.StatusCode, status: int) -> None:
    problem = from_rpc_error(rpc_error(code, "connection refused"))
    got, body, headers = body_of(problem)
    assert got == status == body["status"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert ("retry-after" in headers) == (status == 503)


@pytest.mark.parametrize("trailer", [b"\xff\xff\xff", pb.Problem(status=200).SerializeToString()])
def test_a_damaged_or_meaningless_trailer_falls_back_to_the_code(trailer: bytes) -> None:
    problem = from_rpc_error(rpc_error(grpc.StatusCode.NOT_FOUND, "no entry 9", trailer))
    assert (problem.status, problem.detail) == (404, "no entry 9")


def test_ledger_errors_from_the_edge() -> None:
    assert from_ledger_error(InvalidRequestError("malformed JSON: x")).status == 400
    assert from_ledger_error(ConflictError("taken")).status == 409
    invalid = from_ledger_error(InvalidEventError([FieldError("events[0].id", "required")]))
    assert invalid.status == 422
    assert invalid.to_json()["errors"] == [{"path": "events[0].id", "message": "required"}]
    busy = from_ledger_error(UnavailableError("busy", retry_after=5))
    assert (busy.status, busy.retry_after) == (503, 5)


def test_problem_refuses_a_success_status() -> None:
    with pytest.raises(ValueError):
        Problem(200, "OK", "fine")
