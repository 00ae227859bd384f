"""The client's one translation boundary: gRPC statuses and problem+json into LedgerError.

A node puts the problem of a refused call in trailing metadata (`provledger-problem-bin`,
a serialized `provledger.v1.Problem`); the gateway answers `application/problem+json`.
Both become the same `provledger.errors` exception, so callers never see grpc or httpx.
"""

from __future__ import annotations

from typing import Any

import grpc

from provledger.errors import (
    ERRORS_BY_STATUS,
    AuthenticationError,
    ConflictError,
    FieldError,
    InvalidEventError,
    InvalidRequestError,
    LedgerError,
    NotFoundError,
    PermissionDeniedError,
    TooLargeError,
    UnavailableError,
)
from provledger.v1 import ledger_pb2

__all__ = ["PROBLEM_KEY", "from_grpc", "from_problem", "from_problem_json"]

PROBLEM_KEY = "provledger-problem-bin"

# Used only when a status arrives without a Problem (a proxy, or the transport itself).
_BY_CODE: dict[Any, type[LedgerError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequestError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: ConflictError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: TooLargeError,
}


def from_problem(
    status: int, detail: str, errors: list[FieldError], retry_after: int
) -> LedgerError:
    """The LedgerError for an HTTP-style status and its problem fields."""
    if status == 503:
        return UnavailableError(detail or "the ledger is unavailable", retry_after)
    if status == 422:
        return InvalidEventError(errors, detail)
    cls = ERRORS_BY_STATUS.get(status)
    if cls is None or cls is InvalidEventError or cls is UnavailableError:
        err = LedgerError(detail or f"the ledger answered status {status}")
        err.status = status
        return err
    return cls(detail)


def from_problem_json(status: int, body: Any, retry_after: int = 0) -> LedgerError:
    """Translates a gateway problem+json body (or any error body) with its HTTP status."""
    if not isinstance(body, dict):
        return from_problem(status, f"HTTP {status}", [], retry_after)
    errors = [
        FieldError(str(e.get("path", "")), str(e.get("message", "")))
        for e in body.get("errors") or []
        if isinstance(e, dict)
    ]
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    return from_problem(int(body.get("status") or status), detail, errors, retry_after)


def _problem_from_metadata(error: Any) -> Any:
    try:
        trailers = error.trailing_metadata() or ()
    except Exception:  # a transport failure has no trailers to read
        return None
    for key, value in trailers:
        if key == PROBLEM_KEY:
            problem = ledger_pb2.Problem()
            try:
                problem.ParseFromString(value)
            except Exception:
                return None
            return problem
    return None


def from_grpc(error: Any) -> LedgerError:
    """Translates a grpc.RpcError (sync) or grpc.aio.AioRpcError."""
    code = error.code()
    details = error.details() or ""
    problem = _problem_from_metadata(error)
    if problem is not None and problem.status:
        errors = [FieldError(e.path, e.message) for e in problem.errors]
        return from_problem(
            problem.status, problem.detail or details, errors, int(problem.retry_after)
        )
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        # No hint from a server that did not answer: the retry policy decides.
        return UnavailableError(details or "the ledger is unavailable", 0)
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(details or code.name)
    return LedgerError(f"gRPC {code.name}: {details}")
