"""Who is calling and what they may do: bearer tokens mapped to principals and roles."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from ledger._config import PrincipalConfig
from provledger.errors import AuthenticationError, PermissionDeniedError
from provledger.events import SYSTEM_EVENT_TYPES

__all__ = ["LOCAL", "Authenticator", "Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    roles: frozenset[str]
    types: frozenset[str]

    def may_write(self, event_type: str) -> None:
        if "admin" in self.roles:
            return
        if event_type in SYSTEM_EVENT_TYPES:
            raise PermissionDeniedError(
                f"principal {self.name!r} lacks the admin role needed to write {event_type}"
            )
        if "writer" not in self.roles:
            raise PermissionDeniedError(f"principal {self.name!r} lacks the writer role")
        if self.types and event_type not in self.types:
            raise PermissionDeniedError(
                f"principal {self.name!r} may not write {event_type} "
                f"(allowed: {', '.join(sorted(self.types))})"
            )


LOCAL = Principal(name="local", roles=frozenset({"admin", "writer", "reader"}), types=frozenset())
ANONYMOUS = Principal(name="anonymous", roles=frozenset(), types=frozenset())


class Authenticator:
    """Maps `authorization: Bearer <token>` to a principal.

    Tokens are compared as SHA-256 digests in constant time; with no principals
    configured every caller is the principal `local` (the embedded default listens
    on 127.0.0.1 only).
    """

    def __init__(self, principals: tuple[PrincipalConfig, ...], public_reads: bool) -> None:
        self._principals = principals
        self.public_reads = public_reads
        self.open = not principals

    def authenticate(self, authorization: str | None) -> Principal:
        if self.open:
            return LOCAL
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("authorization must be 'Bearer <token>'")
        digest = hashlib.sha256(token.strip().encode()).digest()
        found = None
        for p in self._principals:
            if hmac.compare_digest(p.token_sha256, digest):
                found = p
        if found is None:
            raise AuthenticationError("unknown bearer token")
        return Principal(name=found.name, roles=found.roles, types=found.types)

    def require_writer(self, principal: Principal) -> None:
        if principal is ANONYMOUS:
            raise AuthenticationError("writes need 'Authorization: Bearer <token>'")
        if not principal.roles & {"writer", "admin"}:
            raise PermissionDeniedError(f"principal {principal.name!r} lacks the writer role")

    def require_reader(self, principal: Principal) -> None:
        if self.public_reads or self.open:
            return
        if principal is ANONYMOUS:
            raise AuthenticationError("reads need 'Authorization: Bearer <token>'")
        if not principal.roles & {"reader", "auditor", "admin", "writer"}:
            raise PermissionDeniedError(f"principal {principal.name!r} may not read")
