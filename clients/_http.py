"""HTTP transports (sync and asyncio) to the REST gateway (SPEC §3), through httpx.

Each call is described once as a `_Call` (method, path, parameters, how to read the
answer) and run by either the blocking or the asyncio client.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from clients._errors import from_problem_json
from clients._model import (
    BatchFailure,
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
from provledger.errors import LedgerError, UnavailableError
from provledger.note import parse_checkpoint, parse_note

__all__ = ["AsyncHttpTransport", "HttpTransport"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Call(Generic[_T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], _T]
    params: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _json(response: httpx.Response) -> Any:
    return json.loads(response.content)


def _error(response: httpx.Response) -> LedgerError:
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        body = {"detail": response.text[:200] or response.reason_phrase}
    try:
        retry_after = int(response.headers.get("retry-after", "0"))
    except ValueError:
        retry_after = 0
    return from_problem_json(response.status_code, body, retry_after)


def _transport_error(e: httpx.TransportError) -> UnavailableError:
    return UnavailableError(f"cannot reach the gateway: {e}", 0)


def _batch(response: httpx.Response) -> BatchResult:
    body = _json(response)
    receipts = tuple(None if r is None else Receipt.from_json(r) for r in body.get("receipts", []))
    failures = tuple(
        BatchFailure(
            int(f["position"]), from_problem_json(int(f["error"].get("status", 422)), f["error"])
        )
        for f in body.get("failed", [])
    )
    return BatchResult(receipts, failures)


def _checkpoint(response: httpx.Response) -> SignedCheckpoint:
    note = response.text
    cp = parse_checkpoint(parse_note(note).text)
    return SignedCheckpoint(note=note, tree_size=cp.size, root_hash=cp.root_hash)


def _params(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


class _Calls:
    """The REST request for each operation of the SDK."""

    @staticmethod
    def append(event: bytes) -> _Call[Receipt]:
        return _Call(
            "POST",
            "/v1/events",
            lambda r: Receipt.from_json(_json(r), duplicate=r.status_code == 200),
            content=event,
            headers={"content-type": "application/json"},
        )

    @staticmethod
    def append_batch(events: Sequence[bytes], idempotency_key: str | None) -> _Call[BatchResult]:
        # The events are spliced in as sent, so their bytes reach the gateway unchanged.
        body = b'{"events":[' + b",".join(events) + b"]}"
        headers = {"content-type": "application/json"}
        if idempotency_key:
            headers["idempotency-key"] = idempotency_key
        return _Call("POST", "/v1/events:batch", _batch, content=body, headers=headers)

    @staticmethod
    def get_entry(index: int) -> _Call[Entry]:
        return _Call("GET", f"/v1/entries/{index}", lambda r: Entry.from_json(_json(r)))

    @staticmethod
    def lookup_event(source: str, id: str) -> _Call[Entry]:
        return _Call(
            "GET",
            "/v1/events",
            lambda r: Entry.from_json(_json(r)),
            params={"source": source, "id": id},
        )

    @staticmethod
    def query_events(
        type_: str | None, subject: str | None, after: int | None, limit: int
    ) -> _Call[Page]:
        def parse(r: httpx.Response) -> Page:
            body = _json(r)
            nxt = body.get("next_after")
            return Page(
                tuple(Entry.from_json(e) for e in body["entries"]),
                None if nxt is None else int(nxt),
            )

        params = _params(type=type_, subject=subject, after=after, limit=limit or None)
        return _Call("GET", "/v1/events", parse, params=params)

    @staticmethod
    def get_block(height: int) -> _Call[Block]:
        return _Call("GET", f"/v1/blocks/{height}", lambda r: Block.from_json(_json(r)))

    @staticmethod
    def list_blocks(from_height: int, limit: int) -> _Call[tuple[Block, ...]]:
        return _Call(
            "GET",
            "/v1/blocks",
            lambda r: tuple(Block.from_json(b) for b in _json(r)["blocks"]),
            params=_params(**{"from": from_height, "limit": limit or None}),
        )

    @staticmethod
    def checkpoint() -> _Call[SignedCheckpoint]:
        return _Call("GET", "/v1/checkpoint", _checkpoint)

    @staticmethod
    def log_info() -> _Call[LogInfo]:
        return _Call("GET", "/v1/log", lambda r: LogInfo.from_json(_json(r)))

    @staticmethod
    def inclusion_proof(
        index: int | None, leaf_hash: bytes | None, tree_size: int | None
    ) -> _Call[InclusionProof]:
        if leaf_hash is not None:
            params = _params(leaf_hash=leaf_hash.hex(), tree_size=tree_size)
        elif index is not None:
            params = _params(index=index, tree_size=tree_size)
        else:
            raise ValueError("an inclusion proof needs an index or a leaf hash")
        return _Call(
            "GET",
            "/v1/proof/inclusion",
            lambda r: InclusionProof.from_json(_json(r)),
            params=params,
        )

    @staticmethod
    def consistency_proof(first: int, second: int) -> _Call[ConsistencyProof]:
        return _Call(
            "GET",
            "/v1/proof/consistency",
            lambda r: ConsistencyProof.from_json(_json(r)),
            params={"first": first, "second": second},
        )


def _headers(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def _export_params(from_height: int, to_height: int | None) -> dict[str, Any]:
    return _params(**{"from": from_height or None, "to": to_height})


class HttpTransport:
    """Blocking calls to a gateway."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        verify: bool | str = True,
        timeout: float = 30.0,
    ) -> None:
        self.target = base_url
        self._client = httpx.Client(
            base_url=base_url, headers=_headers(token), timeout=timeout, verify=verify
        )

    def close(self) -> None:
        self._client.close()

    def _run(self, call: _Call[_T]) -> _T:
        try:
            response = self._client.request(
                call.method,
                call.path,
                params=call.params,
                content=call.content,
                headers=call.headers,
            )
        except httpx.TransportError as e:
            raise _transport_error(e) from None
        if response.status_code >= 400:
            raise _error(response)
        return call.parse(response)

    def append(self, event: bytes) -> Receipt:
        return self._run(_Calls.append(event))

    def append_batch(self, events: Sequence[bytes], idempotency_key: str | None) -> BatchResult:
        return self._run(_Calls.append_batch(events, idempotency_key))

    def get_entry(self, index: int) -> Entry:
        return self._run(_Calls.get_entry(index))

    def lookup_event(self, source: str, id: str) -> Entry:
        return self._run(_Calls.lookup_event(source, id))

    def query_events(
        self, type_: str | None, subject: str | None, after: int | None, limit: int
    ) -> Page:
        return self._run(_Calls.query_events(type_, subject, after, limit))

    def get_block(self, height: int) -> Block:
        return self._run(_Calls.get_block(height))

    def list_blocks(self, from_height: int, limit: int) -> tuple[Block, ...]:
        return self._run(_Calls.list_blocks(from_height, limit))

    def checkpoint(self) -> SignedCheckpoint:
        return self._run(_Calls.checkpoint())

    def log_info(self) -> LogInfo:
        return self._run(_Calls.log_info())

    def inclusion_proof(
        self, index: int | None, leaf_hash: bytes | None, tree_size: int | None
    ) -> InclusionProof:
        return self._run(_Calls.inclusion_proof(index, leaf_hash, tree_size))

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        return self._run(_Calls.consistency_proof(first, second))

    def export_lines(self, from_height: int, to_height: int | None) -> Iterator[bytes]:
        """The NDJSON bytes as the gateway streams them (chunks, not necessarily lines)."""
        params = _export_params(from_height, to_height)
        try:
            with self._client.stream("GET", "/v1/export", params=params, timeout=None) as r:
                if r.status_code >= 400:
                    r.read()
                    raise _error(r)
                yield from r.iter_bytes()
        except httpx.TransportError as e:
            raise _transport_error(e) from None


class AsyncHttpTransport:
    """asyncio calls to a gateway."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        verify: bool | str = True,
        timeout: float = 30.0,
    ) -> None:
        self.target = base_url
        self._client = httpx.AsyncClient(
            base_url=base_url, headers=_headers(token), timeout=timeout, verify=verify
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def _run(self, call: _Call[_T]) -> _T:
        try:
            response = await self._client.request(
                call.method,
                call.path,
                params=call.params,
                content=call.content,
                headers=call.headers,
            )
        except httpx.TransportError as e:
            raise _transport_error(e) from None
        if response.status_code >= 400:
            raise _error(response)
        return call.parse(response)

    async def append(self, event: bytes) -> Receipt:
        return await self._run(_Calls.append(event))

    async def append_batch(
        self, events: Sequence[bytes], idempotency_key: str | None
    ) -> BatchResult:
        return await self._run(_Calls.append_batch(events, idempotency_key))

    async def get_entry(self, index: int) -> Entry:
        return await self._run(_Calls.get_entry(index))

    async def lookup_event(self, source: str, id: str) -> Entry:
        return await self._run(_Calls.lookup_event(source, id))

    async def query_events(
        self, type_: str | None, subject: str | None, after: int | None, limit: int
    ) -> Page:
        return await self._run(_Calls.query_events(type_, subject, after, limit))

    async def get_block(self, height: int) -> Block:
        return await self._run(_Calls.get_block(height))

    async def list_blocks(self, from_height: int, limit: int) -> tuple[Block, ...]:
        return await self._run(_Calls.list_blocks(from_height, limit))

    async def checkpoint(self) -> SignedCheckpoint:
        return await self._run(_Calls.checkpoint())

    async def log_info(self) -> LogInfo:
        return await self._run(_Calls.log_info())

    async def inclusion_proof(
        self, index: int | None, leaf_hash: bytes | None, tree_size: int | None
    ) -> InclusionProof:
        return await self._run(_Calls.inclusion_proof(index, leaf_hash, tree_size))

    async def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        return await self._run(_Calls.consistency_proof(first, second))

    async def export_lines(self, from_height: int, to_height: int | None) -> AsyncIterator[bytes]:
        params = _export_params(from_height, to_height)
        try:
            async with self._client.stream("GET", "/v1/export", params=params, timeout=None) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise _error(r)
                async for chunk in r.aiter_bytes():
                    yield chunk
        except httpx.TransportError as e:
            raise _transport_error(e) from None
