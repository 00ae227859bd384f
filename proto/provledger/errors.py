"""The one exception tree shared by every provledger package.

    LedgerError
    ├── VerificationError           a proof, signature or chain does not hold
    │   ├── InclusionProofError
    │   ├── ConsistencyError        carries both checkpoints and the proof
    │   └── SignatureError
    ├── InvalidEventError           carries [FieldError(path, message)]
    ├── InvalidRequestError         a malformed query or argument (HTTP 400)
    ├── AuthenticationError         no or bad credentials (401)
    ├── PermissionDeniedError       the principal lacks the role (403)
    ├── NotFoundError               (404)
    ├── ConflictError               (source, id) taken by another leaf (409)
    ├── TooLargeError               (413)
    ├── UnavailableError            no leader, busy, fenced (503, retry_after)
    └── StorageError                the database is damaged or unusable

Each boundary translates these once: gRPC status codes in the node and the client,
problem+json in the gateway, exit codes in the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class LedgerError(Exception):
    """Base of every error the provledger packages raise on purpose."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class VerificationError(LedgerError):
    status = 422
    title = "Verification failed"


class InclusionProofError(VerificationError):
    title = "Inclusion proof does not verify"


class SignatureError(VerificationError):
    title = "Signature does not verify"


class ConsistencyError(VerificationError):
    """Two checkpoints of one log that no consistency proof joins: a fork or rollback."""

    title = "Checkpoints are not consistent"

    def __init__(
        self,
        detail: str,
        *,
        old_checkpoint: str = "",
        new_checkpoint: str = "",
        proof: tuple[bytes, ...] = (),
    ) -> None:
        super().__init__(detail)
        self.old_checkpoint = old_checkpoint
        self.new_checkpoint = new_checkpoint
        self.proof = proof


@dataclass(frozen=True, slots=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidEventError(LedgerError):
    status = 422
    title = "Invalid event"

    def __init__(self, errors: list[FieldError] | FieldError, detail: str = "") -> None:
        self.errors = [errors] if isinstance(errors, FieldError) else list(errors)
        super().__init__(detail or "; ".join(str(e) for e in self.errors))


class InvalidRequestError(LedgerError):
    status = 400
    title = "Bad request"


class AuthenticationError(LedgerError):
    status = 401
    title = "Unauthorized"


class PermissionDeniedError(LedgerError):
    status = 403
    title = "Forbidden"


class NotFoundError(LedgerError):
    status = 404
    title = "Not found"


class ConflictError(LedgerError):
    status = 409
    title = "Conflict"


class TooLargeError(LedgerError):
    status = 413
    title = "Payload too large"


class UnavailableError(LedgerError):
    status = 503
    title = "Service unavailable"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class StorageError(LedgerError):
    status = 500
    title = "Storage error"


def problem(error: LedgerError) -> dict[str, Any]:
    """The RFC 9457 problem object for an error (without `type`, which the edge adds)."""
    body: dict[str, Any] = {"title": error.title, "status": error.status, "detail": error.detail}
    if isinstance(error, InvalidEventError):
        body["errors"] = [{"path": e.path, "message": e.message} for e in error.errors]
    return body


ERRORS_BY_STATUS: dict[int, type[LedgerError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: TooLargeError,
    422: InvalidEventError,
    503: UnavailableError,
}
