"""The gateway's gRPC side: one reused channel per node, leader discovery, read spreading.

Writes go to the leader. With one configured node that node is assumed to be it (it
answers UNAVAILABLE itself if not); with several, `GetStatus` finds it, and a write that
meets UNAVAILABLE re-discovers the leader and is sent once more (appends are idempotent
by `(source, id)` and batches by their idempotency key, so the retry cannot duplicate).
Reads go round-robin to the reachable nodes; a node that fails at the transport level
is skipped for a moment.

Every `AioRpcError` leaves this module as a `ProblemError`, translated by
`_problems.from_rpc_error`: the gateway's one gRPC boundary.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from gateway._config import TlsConfig
from gateway._problems import ProblemError, from_rpc_error, unavailable
from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import ledger_pb2_grpc as pb_grpc

__all__ = ["NodePool", "channel_credentials"]

log = logging.getLogger(__name__)

# Large enough for a batch of 10,000 receipts and a full entry bundle (256 leaves of up
# to 64 KiB); the node accepts the same.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_DOWN_FOR_S = 1.0
_STATUS_TIMEOUT_S = 2.0
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
_LAGGING = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT})

Metadata = tuple[tuple[str, str], ...]


def channel_credentials(tls: TlsConfig) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=tls.ca.read_bytes(),
        private_key=tls.key.read_bytes(),
        certificate_chain=tls.cert.read_bytes(),
    )


def metadata(authorization: str | None) -> Metadata:
    """The caller's credentials, forwarded as they came (the node decides)."""
    return (("authorization", authorization),) if authorization else ()


class NodePool:
    """Channels to the configured nodes. Create and use inside one running event loop."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        tls: TlsConfig | None = None,
        read_timeout: float = 10.0,
        write_timeout: float = 30.0,
    ) -> None:
        if not addresses:
            raise ValueError("a node pool needs at least one address")
        self._addresses = list(dict.fromkeys(addresses))
        self._credentials = channel_credentials(tls) if tls is not None else None
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Come back quickly after a node restarts instead of backing off for minutes.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if tls is not None and tls.server_name:
            self._options.append(("grpc.ssl_target_name_override", tls.server_name))
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, Any] = {}
        self._turn = 0
        self._down_until: dict[str, float] = {}
        self._leader: str | None = self._addresses[0] if len(self._addresses) == 1 else None
        self._discovery: asyncio.Task[str | None] | None = None

    @property
    def addresses(self) -> list[str]:
        return list(self._addresses)

    @property
    def leader(self) -> str | None:
        """The last known leader's address (None until discovered)."""
        return self._leader

    def _stub(self, address: str) -> Any:
        stub = self._stubs.get(address)
        if stub is None:
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(address, options=self._options)
            else:
                channel = grpc.aio.secure_channel(address, self._credentials, options=self._options)
            self._channels[address] = channel
            stub = self._stubs[address] = pb_grpc.LedgerStub(channel)
        return stub

    async def close(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
        channels, self._channels, self._stubs = self._channels, {}, {}
        await asyncio.gather(*(c.close() for c in channels.values()), return_exceptions=True)

    # reads

    def _read_order(self) -> list[str]:
        n = len(self._addresses)
        if n == 1:
            return self._addresses
        start = self._turn % n
        self._turn += 1
        ring = self._addresses[start:] + self._addresses[:start]
        now = time.monotonic()
        up = [a for a in ring if self._down_until.get(a, 0.0) <= now]
        return up + [a for a in ring if a not in up]

    async def read(self, method: str, request: Any, authorization: str | None) -> Any:
        """A unary read from any reachable node."""
        md = metadata(authorization)
        last: grpc.aio.AioRpcError | None = None
        for address in self._read_order():
            try:
                return await getattr(self._stub(address), method)(
                    request, metadata=md, timeout=self._read_timeout
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == _UNAVAILABLE:
                    self._down_until[address] = time.monotonic() + _DOWN_FOR_S
                    last = exc
                    continue
                if exc.code() in _LAGGING and self._behind(address):
                    # A follower may trail the leader by up to a second (SPEC §2); what a
                    # client just appended (an entry, a tree size) must be readable at
                    # once, so a follower's 404 or 400 is asked again of the leader.
                    return await self._read_from_leader(method, request, md, exc, address)
                raise ProblemError(from_rpc_error(exc)) from None
        assert last is not None
        raise ProblemError(from_rpc_error(last)) from None

    def _behind(self, address: str) -> bool:
        return len(self._addresses) > 1 and address != self._leader

    async def _read_from_leader(
        self, method: str, request: Any, md: Metadata, first: grpc.aio.AioRpcError, asked: str
    ) -> Any:
        try:
            leader = await self.find_leader()
        except ProblemError:
            leader = None
        if leader is None or leader == asked:
            raise ProblemError(from_rpc_error(first)) from None
        try:
            return await getattr(self._stub(leader), method)(
                request, metadata=md, timeout=self._read_timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise ProblemError(from_rpc_error(exc)) from None

    async def read_stream(
        self, method: str, request: Any, authorization: str | None
    ) -> AsyncIterator[Any]:
        """A server stream from one reachable node; the first item is awaited here, so that
        a refusal (404, 400, 401) surfaces before any byte of the response is sent."""
        md = metadata(authorization)
        last: grpc.aio.AioRpcError | None = None
        for address in self._read_order():
            # No deadline: an export of a large log streams for as long as it takes.
            call = getattr(self._stub(address), method)(request, metadata=md)
            try:
                first = await call.read()
            except grpc.aio.AioRpcError as exc:
                if exc.code() == _UNAVAILABLE:
                    self._down_until[address] = time.monotonic() + _DOWN_FOR_S
                    last = exc
                    continue
                raise ProblemError(from_rpc_error(exc)) from None
            return _stream_from(first, call)
        assert last is not None
        raise ProblemError(from_rpc_error(last)) from None

    # writes

    async def write(self, method: str, request: Any, authorization: str | None) -> Any:
        """A unary write to the leader, re-discovered and retried once on UNAVAILABLE."""
        md = metadata(authorization)
        leader = await self.find_leader()
        try:
            return await getattr(self._stub(leader), method)(
                request, metadata=md, timeout=self._write_timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != _UNAVAILABLE:
                raise ProblemError(from_rpc_error(exc)) from None
            log.info(
                "leader %s unavailable (%s); looking for the leader again", leader, exc.details()
            )
            first = exc
        self._forget(leader)
        try:
            leader = await self.find_leader()
        except ProblemError:
            raise ProblemError(from_rpc_error(first)) from None
        try:
            return await getattr(self._stub(leader), method)(
                request, metadata=md, timeout=self._write_timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise ProblemError(from_rpc_error(exc)) from None

    def _forget(self, leader: str) -> None:
        if len(self._addresses) > 1 and self._leader == leader:
            self._leader = None

    async def find_leader(self, *, refresh: bool = False) -> str:
        """The leader's address; ProblemError(503) when no node claims or names one."""
        if self._leader is not None and not refresh:
            return self._leader
        if len(self._addresses) == 1 and not refresh:
            return self._addresses[0]
        # Concurrent requests share one discovery rather than each polling every node.
        if self._discovery is None or self._discovery.done():
            self._discovery = asyncio.ensure_future(self._discover())
        leader = await asyncio.shield(self._discovery)
        if leader is None:
            raise unavailable("no ledger node is the leader at the moment")
        return leader

    async def _discover(self) -> str | None:
        statuses = await asyncio.gather(
            *(self._status(a) for a in self._addresses), return_exceptions=True
        )
        leaders: list[tuple[int, str]] = []
        named: list[str] = []
        for address, status in zip(self._addresses, statuses, strict=True):
            if not isinstance(status, pb.NodeStatus):
                self._down_until[address] = time.monotonic() + _DOWN_FOR_S
                continue
            if status.role == "leader":
                leaders.append((status.term, address))
            elif status.leader_address:
                named.append(status.leader_address)
        leader: str | None = None
        if leaders:
            leader = max(leaders)[1]
        elif named and len(self._addresses) > 1:
            # A follower knows the leader: trust it only if that node answers as leader.
            candidate = max(set(named), key=named.count)
            answer = await self._status_or_none(candidate)
            if answer is not None and answer.role == "leader":
                leader = candidate
        if leader is not None and leader not in self._addresses:
            log.info("leader %s is not among the configured nodes; using it anyway", leader)
        self._leader = leader
        return leader

    async def _status(self, address: str) -> pb.NodeStatus:
        status: pb.NodeStatus = await self._stub(address).GetStatus(
            pb.GetStatusRequest(), timeout=_STATUS_TIMEOUT_S
        )
        return status

    async def _status_or_none(self, address: str) -> pb.NodeStatus | None:
        try:
            return await self._status(address)
        except grpc.aio.AioRpcError:
            return None


async def _stream_from(first: Any, call: Any) -> AsyncIterator[Any]:
    """The rest of a server stream after its first item; translation stays at this boundary."""
    if first is grpc.aio.EOF:
        return
    yield first
    try:
        while True:
            item = await call.read()
            if item is grpc.aio.EOF:
                return
            yield item
    except grpc.aio.AioRpcError as exc:
        raise ProblemError(from_rpc_error(exc)) from None
    finally:
        call.cancel()
