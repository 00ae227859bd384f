"""RFC 9457 problem details: the one shape every gateway error takes on the wire.

Errors reach the HTTP edge from three places, each translated exactly once into a
`Problem`: gRPC failures from a node (`from_rpc_error`, reading the node's own
`provledger-problem-bin` trailer), `provledger` errors raised while parsing at the edge
(`from_ledger_error`), and the gateway's own request checks (`ProblemError` raised
directly). `problem_response` is the only place a problem becomes bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from starlette.responses import Response

from provledger.errors import FieldError, InvalidEventError, LedgerError, UnavailableError
from provledger.v1 import ledger_pb2

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_TRAILER",
    "Problem",
    "ProblemError",
    "bad_request",
    "from_ledger_error",
    "from_rpc_error",
    "problem_response",
    "unavailable",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TRAILER = "provledger-problem-bin"

# Problem `type` URIs by status. The node names a precise `title`; the type says which
# family of SPEC §3 errors it belongs to, so clients can branch without parsing text.
_TYPES: dict[int, str] = {
    400: "urn:provledger:problem:bad-request",
    401: "urn:provledger:problem:unauthorized",
    403: "urn:provledger:problem:forbidden",
    404: "urn:provledger:problem:not-found",
    405: "urn:provledger:problem:method-not-allowed",
    409: "urn:provledger:problem:conflict",
    413: "urn:provledger:problem:too-large",
    422: "urn:provledger:problem:unprocessable",
    500: "urn:provledger:problem:internal",
    503: "urn:provledger:problem:unavailable",
}

_DEFAULT_TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    422: "Unprocessable content",
    500: "Internal error",
    503: "Service unavailable",
}

# When a node fails without a Problem trailer (a transport failure, or a bug), the gRPC
# code alone decides. Anything not listed is a node bug and surfaces as 500.
_STATUS_BY_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
    grpc.StatusCode.ABORTED: 503,
    grpc.StatusCode.CANCELLED: 503,
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem object. `retry_after` (seconds) is sent as a header for 503."""

    status: int
    title: str
    detail: str
    errors: tuple[FieldError, ...] = ()
    retry_after: int | None = None
    type: str = field(default="")

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"problem status {self.status} is not an error status")

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type or _TYPES.get(self.status, "about:blank"),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = [{"path": e.path, "message": e.message} for e in self.errors]
        return body


class ProblemError(Exception):
    """Raised anywhere below the routes; rendered by the app's exception handler."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def bad_request(detail: str, title: str = "Bad request") -> ProblemError:
    return ProblemError(Problem(400, title, detail))


def unavailable(detail: str, retry_after: int = 1) -> ProblemError:
    return ProblemError(Problem(503, "Service unavailable", detail, retry_after=retry_after))


def from_ledger_error(error: LedgerError) -> Problem:
    status = error.status if 400 <= error.status <= 599 else 500
    errors = tuple(error.errors) if isinstance(error, InvalidEventError) else ()
    retry = error.retry_after if isinstance(error, UnavailableError) else None
    return Problem(status, error.title, error.detail, errors, retry)


def from_problem_message(message: ledger_pb2.Problem) -> Problem | None:
    """A node's serialized Problem, or None when it does not name an error status."""
    if not 400 <= message.status <= 599:
        return None
    retry = message.retry_after or (1 if message.status == 503 else None)
    return Problem(
        status=message.status,
        title=message.title or _DEFAULT_TITLES.get(message.status, "Error"),
        detail=message.detail,
        errors=tuple(FieldError(e.path, e.message) for e in message.errors),
        retry_after=retry,
    )


def from_rpc_error(error: grpc.aio.AioRpcError) -> Problem:
    """The gateway's single gRPC-to-HTTP translation."""
    for key, value in error.trailing_metadata() or ():
        if key == PROBLEM_TRAILER and isinstance(value, bytes):
            message = ledger_pb2.Problem()
            try:
                message.ParseFromString(value)
            except DecodeError:  # a damaged trailer: fall back to the status code
                break
            problem = from_problem_message(message)
            if problem is not None:
                return problem
            break
    code = error.code()
    status = _STATUS_BY_CODE.get(code, 500)
    if status == 503:
        return Problem(503, "Service unavailable", _unavailable_detail(error), retry_after=1)
    detail = error.details() or code.name
    if status == 500:
        # Status codes the node never sends on purpose: a node bug, surfaced as such.
        detail = f"node answered {code.name}: {detail}"
    return Problem(status, _DEFAULT_TITLES.get(status, "Error"), detail)


def _unavailable_detail(error: grpc.aio.AioRpcError) -> str:
    code = error.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "the ledger node did not answer in time; retrying with the same event is safe"
    return "no ledger node reachable; retrying with the same event is safe"


def problem_response(problem: Problem) -> Response:
    headers = {}
    if problem.status == 503:
        headers["Retry-After"] = str(problem.retry_after or 1)
    body = json.dumps(problem.to_json(), separators=(",", ":")).encode()
    return Response(
        body, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )
