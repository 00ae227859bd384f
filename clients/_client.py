"""The SDK: `LedgerClient` (blocking) and `AsyncLedgerClient` (asyncio).

A client talks to a node over gRPC (`grpc://host:port`, `grpcs://` for TLS) or to the
REST gateway (`http(s)://...`). Calls that fail with UnavailableError (no leader, a
restart, a refused connection) are retried with exponential backoff and full jitter:
appends are idempotent by `(source, id)` (SPEC §1), so a retry of an append that did
commit returns the original receipt instead of a second entry.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from clients._model import (
    BatchResult,
    Block,
    ConsistencyProof,
    Entry,
    InclusionProof,
    LogInfo,
    Page,
    Receipt,
    SignedCheckpoint,
)
from clients._state import Advance, StateTracker
from clients._tls import TlsFiles
from clients._verify import VerifiedReceipt, as_verifier, verify_entry, verify_receipt
from provledger.errors import UnavailableError
from provledger.events import canonical_json
from provledger.note import Verifier

# Followers apply a block a few milliseconds to a second after the leader commits it: a
# checkpoint smaller than the trusted one is asked for again for this long before it
# counts as a rollback.
REPLICA_LAG_S = 2.0
LAG_POLL_S = 0.2

__all__ = [
    "AsyncLedgerClient",
    "Event",
    "ExportSummary",
    "LedgerClient",
    "RetryPolicy",
    "encode_event",
    "parse_url",
]

Event = Mapping[str, Any] | bytes
"""An event as a JSON-ready mapping, or its JSON bytes sent exactly as given."""

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, for UnavailableError only.

    Attempt n (from 0) sleeps a uniform random time in [0, min(max_backoff,
    initial_backoff * multiplier**n)], but never less than the server's retry hint.
    """

    attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")

    def delay(self, attempt: int, retry_after: float = 0.0) -> float:
        cap = min(self.max_backoff, self.initial_backoff * self.multiplier**attempt)
        return max(random.uniform(0.0, cap), min(float(retry_after), self.max_backoff))


NO_RETRY = RetryPolicy(attempts=1)


@dataclass(frozen=True, slots=True)
class ExportSummary:
    lines: int
    bytes: int


def parse_url(url: str) -> tuple[str, str]:
    """("grpc" | "grpcs", "host:port") or ("http", base URL); ValueError if neither."""
    parts = urlsplit(url)
    if parts.scheme in ("grpc", "grpcs"):
        if not parts.hostname or parts.port is None:
            raise ValueError(f"{url!r}: a gRPC URL is grpc://host:port")
        return parts.scheme, parts.netloc
    if parts.scheme in ("http", "https"):
        if not parts.netloc:
            raise ValueError(f"{url!r}: no host")
        return "http", url.rstrip("/")
    raise ValueError(f"{url!r}: expected grpc://host:port or an http(s):// gateway URL")


def encode_event(event: Event) -> bytes:
    """The JSON bytes sent for an event: its RFC 8785 form, which is also the event part
    of its leaf (and takes the node's fastest admission path). Bytes pass through
    untouched."""
    if isinstance(event, bytes | bytearray):
        return bytes(event)
    return canonical_json(event)


def _decoded(event: Event) -> Any:
    return json.loads(event) if isinstance(event, bytes | bytearray) else event


class _Transport(Protocol):
    target: str

    def close(self) -> None: ...
    def append(self, event: bytes) -> Receipt: ...
    def append_batch(self, events: list[bytes], idempotency_key: str | None) -> BatchResult: ...
    def get_entry(self, index: int) -> Entry: ...
    def lookup_event(self, source: str, id: str) -> Entry: ...
    def query_events(
        self, type_: str | None, subject: str | None, after: int | None, limit: int
    ) -> Page: ...
    def get_block(self, height: int) -> Block: ...
    def list_blocks(self, from_height: int, limit: int) -> tuple[Block, ...]: ...
    def checkpoint(self) -> SignedCheckpoint: ...
    def log_info(self) -> LogInfo: ...
    def inclusion_proof(
        self, index: int | None, leaf_hash: bytes | None, tree_size: int | None
    ) -> InclusionProof: ...
    def consistency_proof(self, first: int, second: int) -> ConsistencyProof: ...
    def export_lines(self, from_height: int, to_height: int | None) -> Iterator[bytes]: ...


class _AsyncTransport(Protocol):
    target: str

    async def close(self) -> None: ...
    async def append(self, event: bytes) -> Receipt: ...
    async def append_batch(
        self, events: list[bytes], idempotency_key: str | None
    ) -> BatchResult: ...
    async def get_entry(self, index: int) -> Entry: ...
    async def lookup_event(self, source: str, id: str) -> Entry: ...
    async def query_events(
        self, type_: str | None, subject: str | None, after: int | None, limit: int
    ) -> Page: ...
    async def get_block(self, height: int) -> Block: ...
    async def list_blocks(self, from_height: int, limit: int) -> tuple[Block, ...]: ...
    async def checkpoint(self) -> SignedCheckpoint: ...
    async def log_info(self) -> LogInfo: ...
    async def inclusion_proof(
        self, index: int | None, leaf_hash: bytes | None, tree_size: int | None
    ) -> InclusionProof: ...
    async def consistency_proof(self, first: int, second: int) -> ConsistencyProof: ...
    def export_lines(self, from_height: int, to_height: int | None) -> AsyncIterator[bytes]: ...


def _resolve(own: Verifier | None, given: Verifier | str | None) -> Verifier:
    if given is not None:
        return as_verifier(given)
    if own is None:
        raise ValueError(
            "verification needs the log's verifier key: pass verifier_key= to the client "
            "or verifier= to the call (never take it from the server being verified)"
        )
    return own


class LedgerClient:
    """A blocking client of one ledger. Use as a context manager, or call close()."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        *,
        token: str | None = None,
        verifier_key: Verifier | str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        tls: TlsFiles | None = None,
    ) -> None:
        scheme, target = parse_url(url)
        self.url = url
        self.verifier = None if verifier_key is None else as_verifier(verifier_key)
        self.retry = retry or RetryPolicy()
        # Each transport imports its library on first use: a CLI run pays for one only.
        self._t: _Transport
        if scheme == "http":
            from clients._http import HttpTransport

            verify: bool | str = str(tls.ca) if tls and tls.ca else True
            self._t = HttpTransport(target, token=token, verify=verify, timeout=timeout)
        else:
            from clients._grpc import GrpcTransport

            if scheme == "grpcs" and tls is None:
                tls = TlsFiles()
            self._t = GrpcTransport(target, token=token, tls=tls, timeout=timeout)

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._t.close()

    def _retrying(self, call: Callable[[], _T]) -> _T:
        for attempt in range(self.retry.attempts):
            try:
                return call()
            except UnavailableError as e:
                if attempt + 1 >= self.retry.attempts:
                    raise
                time.sleep(self.retry.delay(attempt, e.retry_after))
        raise AssertionError("unreachable")

    # -- writes ------------------------------------------------------------

    def append(self, event: Event) -> Receipt:
        """Appends one event; returns once its block is committed."""
        body = encode_event(event)
        return self._retrying(lambda: self._t.append(body))

    def append_batch(
        self, events: Iterable[Event], *, idempotency_key: str | None = None
    ) -> BatchResult:
        """Appends 1 to 10,000 events; each succeeds or fails on its own."""
        bodies = [encode_event(e) for e in events]
        return self._retrying(lambda: self._t.append_batch(bodies, idempotency_key))

    def append_and_prove(
        self, event: Event, *, verifier: Verifier | str | None = None
    ) -> VerifiedReceipt:
        """Appends one event and verifies, here, that the ledger holds it.

        Checks the receipt's checkpoint signature under the log's verifier key, its
        inclusion proof against that checkpoint, and that the stored leaf hashes to the
        proven leaf hash and holds this very event.
        """
        key = _resolve(self.verifier, verifier)
        receipt = self.append(event)
        checkpoint = verify_receipt(receipt, key)
        entry = self.get_entry(receipt.index)
        submitter = verify_entry(entry, receipt, _decoded(event))
        return VerifiedReceipt(receipt, checkpoint, submitter)

    # -- reads -------------------------------------------------------------

    def get_entry(self, index: int) -> Entry:
        return self._retrying(lambda: self._t.get_entry(index))

    def lookup(self, source: str, id: str) -> Entry:
        """The entry of the event `(source, id)`."""
        return self._retrying(lambda: self._t.lookup_event(source, id))

    def query(
        self,
        *,
        type: str | None = None,
        subject: str | None = None,
        after: int | None = None,
        limit: int = 0,
    ) -> Page:
        """One page of entries with index > `after`, filtered by type and/or subject."""
        return self._retrying(lambda: self._t.query_events(type, subject, after, limit))

    def iter_entries(
        self, *, type: str | None = None, subject: str | None = None, after: int | None = None
    ) -> Iterator[Entry]:
        """Every matching entry, page by page."""
        while True:
            page = self.query(type=type, subject=subject, after=after, limit=1000)
            yield from page.entries
            if page.next_after is None:
                return
            after = page.next_after

    def get_block(self, height: int) -> Block:
        return self._retrying(lambda: self._t.get_block(height))

    def list_blocks(self, from_height: int = 0, limit: int = 0) -> tuple[Block, ...]:
        return self._retrying(lambda: self._t.list_blocks(from_height, limit))

    def checkpoint(self) -> SignedCheckpoint:
        """The latest signed checkpoint, as served (see `verify_checkpoint`)."""
        return self._retrying(self._t.checkpoint)

    def log_info(self) -> LogInfo:
        return self._retrying(self._t.log_info)

    def inclusion_proof(
        self,
        index: int | None = None,
        *,
        leaf_hash: bytes | None = None,
        tree_size: int | None = None,
    ) -> InclusionProof:
        return self._retrying(lambda: self._t.inclusion_proof(index, leaf_hash, tree_size))

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        return self._retrying(lambda: self._t.consistency_proof(first, second))

    def verify_checkpoint(
        self,
        tracker: StateTracker,
        *,
        verifier: Verifier | str | None = None,
        replica_lag_s: float = REPLICA_LAG_S,
    ) -> Advance:
        """Fetches the latest checkpoint and advances `tracker` to it if, and only if, it
        verifies and is consistent with the checkpoint trusted before.

        A checkpoint smaller than the trusted one is asked for again for up to
        `replica_lag_s`: behind a gateway that reads from followers it may come from a
        replica a block behind. Only one still smaller after that is a rollback."""
        key = _resolve(self.verifier, verifier)
        note = self.checkpoint().note
        deadline = time.monotonic() + replica_lag_s
        while tracker.is_behind(note, key) and time.monotonic() < deadline:
            time.sleep(LAG_POLL_S)
            note = self.checkpoint().note
        return tracker.advance(
            note, key, lambda first, second: self.consistency_proof(first, second).hashes
        )

    def export(
        self,
        out: IO[bytes],
        *,
        from_height: int = 0,
        to_height: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ExportSummary:
        """Writes the audit bundle (SPEC §3 /v1/export NDJSON) to `out`.

        `progress(lines, bytes)` is called as data arrives. Not retried: a broken
        export is restarted by the caller.
        """
        lines = size = 0
        for chunk in self._t.export_lines(from_height, to_height):
            out.write(chunk)
            lines += chunk.count(b"\n")
            size += len(chunk)
            if progress is not None:
                progress(lines, size)
        return ExportSummary(lines, size)


class AsyncLedgerClient:
    """The asyncio client, with the same methods as LedgerClient as coroutines."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        *,
        token: str | None = None,
        verifier_key: Verifier | str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        tls: TlsFiles | None = None,
    ) -> None:
        scheme, target = parse_url(url)
        self.url = url
        self.verifier = None if verifier_key is None else as_verifier(verifier_key)
        self.retry = retry or RetryPolicy()
        self._t: _AsyncTransport
        if scheme == "http":
            from clients._http import AsyncHttpTransport

            verify: bool | str = str(tls.ca) if tls and tls.ca else True
            self._t = AsyncHttpTransport(target, token=token, verify=verify, timeout=timeout)
        else:
            from clients._grpc import AsyncGrpcTransport

            if scheme == "grpcs" and tls is None:
                tls = TlsFiles()
            self._t = AsyncGrpcTransport(target, token=token, tls=tls, timeout=timeout)

    async def __aenter__(self) -> AsyncLedgerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._t.close()

    async def _retrying(self, call: Callable[[], Awaitable[_T]]) -> _T:
        for attempt in range(self.retry.attempts):
            try:
                return await call()
            except UnavailableError as e:
                if attempt + 1 >= self.retry.attempts:
                    raise
                await asyncio.sleep(self.retry.delay(attempt, e.retry_after))
        raise AssertionError("unreachable")

    async def append(self, event: Event) -> Receipt:
        body = encode_event(event)
        return await self._retrying(lambda: self._t.append(body))

    async def append_batch(
        self, events: Iterable[Event], *, idempotency_key: str | None = None
    ) -> BatchResult:
        bodies = [encode_event(e) for e in events]
        return await self._retrying(lambda: self._t.append_batch(bodies, idempotency_key))

    async def append_and_prove(
        self, event: Event, *, verifier: Verifier | str | None = None
    ) -> VerifiedReceipt:
        key = _resolve(self.verifier, verifier)
        receipt = await self.append(event)
        checkpoint = verify_receipt(receipt, key)
        entry = await self.get_entry(receipt.index)
        submitter = verify_entry(entry, receipt, _decoded(event))
        return VerifiedReceipt(receipt, checkpoint, submitter)

    async def get_entry(self, index: int) -> Entry:
        return await self._retrying(lambda: self._t.get_entry(index))

    async def lookup(self, source: str, id: str) -> Entry:
        return await self._retrying(lambda: self._t.lookup_event(source, id))

    async def query(
        self,
        *,
        type: str | None = None,
        subject: str | None = None,
        after: int | None = None,
        limit: int = 0,
    ) -> Page:
        return await self._retrying(lambda: self._t.query_events(type, subject, after, limit))

    async def iter_entries(
        self, *, type: str | None = None, subject: str | None = None, after: int | None = None
    ) -> AsyncIterator[Entry]:
        while True:
            page = await self.query(type=type, subject=subject, after=after, limit=1000)
            for entry in page.entries:
                yield entry
            if page.next_after is None:
                return
            after = page.next_after

    async def get_block(self, height: int) -> Block:
        return await self._retrying(lambda: self._t.get_block(height))

    async def list_blocks(self, from_height: int = 0, limit: int = 0) -> tuple[Block, ...]:
        return await self._retrying(lambda: self._t.list_blocks(from_height, limit))

    async def checkpoint(self) -> SignedCheckpoint:
        return await self._retrying(self._t.checkpoint)

    async def log_info(self) -> LogInfo:
        return await self._retrying(self._t.log_info)

    async def inclusion_proof(
        self,
        index: int | None = None,
        *,
        leaf_hash: bytes | None = None,
        tree_size: int | None = None,
    ) -> InclusionProof:
        return await self._retrying(lambda: self._t.inclusion_proof(index, leaf_hash, tree_size))

    async def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        return await self._retrying(lambda: self._t.consistency_proof(first, second))

    async def verify_checkpoint(
        self,
        tracker: StateTracker,
        *,
        verifier: Verifier | str | None = None,
        replica_lag_s: float = REPLICA_LAG_S,
    ) -> Advance:
        """`LedgerClient.verify_checkpoint` for asyncio callers."""
        key = _resolve(self.verifier, verifier)
        note = (await self.checkpoint()).note
        deadline = time.monotonic() + replica_lag_s
        while tracker.is_behind(note, key) and time.monotonic() < deadline:
            await asyncio.sleep(LAG_POLL_S)
            note = (await self.checkpoint()).note

        async def fetch(first: int, second: int) -> tuple[bytes, ...]:
            return (await self.consistency_proof(first, second)).hashes

        return await tracker.advance_async(note, key, fetch)

    async def export(
        self,
        out: IO[bytes],
        *,
        from_height: int = 0,
        to_height: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ExportSummary:
        lines = size = 0
        async for chunk in self._t.export_lines(from_height, to_height):
            out.write(chunk)
            lines += chunk.count(b"\n")
            size += len(chunk)
            if progress is not None:
                progress(lines, size)
        return ExportSummary(lines, size)
