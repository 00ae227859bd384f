"""gRPC transports (sync and asyncio) to one node, speaking provledger.v1.Ledger.

The only module that touches grpc calls; every RpcError leaves it as a LedgerError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio

from clients._bundle import block_line, checkpoint_line, frontier_line
from clients._errors import from_grpc, from_problem
from clients._model import (
    BatchFailure,
    BatchResult,
    Block,
    ConsistencyProof,
    Entry,
    InclusionProof,
    LogInfo,
    NodeKey,
    Page,
    Receipt,
    SignedCheckpoint,
)
from clients._tls import TlsFiles
from provledger.blocks import BlockSignature
from provledger.errors import FieldError
from provledger.receipts import expand
from provledger.v1 import ledger_pb2, ledger_pb2_grpc

__all__ = ["AsyncGrpcTransport", "GrpcTransport"]

_T = TypeVar("_T")

# Export blocks and large batches exceed gRPC's 4 MiB default.
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 512 * 1024 * 1024),
    ("grpc.max_send_message_length", 512 * 1024 * 1024),
]


# -- protobuf -> domain values ------------------------------------------------


def _receipt(pb: Any) -> Receipt:
    return Receipt(
        index=pb.index,
        leaf_hash=bytes(pb.leaf_hash),
        block_height=pb.block_height,
        tree_size=pb.tree_size,
        inclusion=tuple(pb.inclusion),  # upb gives each hash as bytes already
        checkpoint=pb.checkpoint,
        duplicate=pb.duplicate,
    )


def _batch(pb: Any) -> BatchResult:
    receipts: list[Receipt | None] = []
    failures: list[BatchFailure] = []
    for position, result in enumerate(expand(pb)):
        if isinstance(result, ledger_pb2.Receipt):
            receipts.append(_receipt(result))
        else:
            p = result
            errors = [FieldError(e.path, e.message) for e in p.errors]
            failures.append(
                BatchFailure(position, from_problem(p.status, p.detail, errors, p.retry_after))
            )
            receipts.append(None)
    return BatchResult(tuple(receipts), tuple(failures))


def _entry(pb: Any) -> Entry:
    return Entry(
        index=pb.index,
        leaf_hash=bytes(pb.leaf_hash),
        leaf=bytes(pb.leaf),
        block_height=pb.block_height,
    )


def _block(pb: Any) -> Block:
    return Block(
        header_bytes=bytes(pb.header),
        hash=bytes(pb.hash),
        signatures=tuple(BlockSignature(s.node, s.key_id, s.sig) for s in pb.signatures),
    )


def _page(pb: Any) -> Page:
    return Page(
        entries=tuple(_entry(e) for e in pb.entries),
        next_after=pb.next_after if pb.HasField("next_after") else None,
    )


def _checkpoint(pb: Any) -> SignedCheckpoint:
    return SignedCheckpoint(
        note=pb.note,
        tree_size=pb.tree_size,
        root_hash=bytes(pb.root_hash),
        block_height=pb.block_height if pb.HasField("block_height") else None,
    )


def _log_info(pb: Any) -> LogInfo:
    return LogInfo(
        origin=pb.origin,
        tree_size=pb.tree_size,
        root_hash=bytes(pb.root_hash),
        block_height=pb.block_height if pb.HasField("block_height") else None,
        verifier_key=pb.verifier_key,
        checkpoint=pb.checkpoint,
        nodes=tuple(NodeKey(n.node, n.verifier_key) for n in pb.nodes),
    )


def _inclusion(pb: Any) -> InclusionProof:
    return InclusionProof(
        index=pb.index,
        tree_size=pb.tree_size,
        leaf_hash=bytes(pb.leaf_hash),
        hashes=tuple(bytes(h) for h in pb.hashes),
        checkpoint=pb.checkpoint or None,
    )


def _consistency(pb: Any) -> ConsistencyProof:
    return ConsistencyProof(
        first=pb.first, second=pb.second, hashes=tuple(bytes(h) for h in pb.hashes)
    )


def _export_line(item: Any) -> bytes:
    kind = item.WhichOneof("item")
    if kind == "frontier":
        f = item.frontier
        return frontier_line(f.tree_size, [bytes(h) for h in f.hashes])
    if kind == "block":
        b = item.block
        sigs = (BlockSignature(s.node, s.key_id, s.sig) for s in b.signatures)
        return block_line(bytes(b.header), bytes(b.hash), sigs, (bytes(x) for x in b.leaves))
    if kind == "checkpoint":
        return checkpoint_line(item.checkpoint)
    raise ValueError(f"unknown export item {kind!r}")


# -- requests -----------------------------------------------------------------


def _inclusion_request(index: int | None, leaf_hash: bytes | None, tree_size: int | None) -> Any:
    request = ledger_pb2.InclusionProofRequest()
    if leaf_hash is not None:
        request.leaf_hash = leaf_hash
    elif index is not None:
        request.index = index
    else:
        raise ValueError("an inclusion proof needs an index or a leaf hash")
    if tree_size is not None:
        request.tree_size = tree_size
    return request


def _query_request(type_: str | None, subject: str | None, after: int | None, limit: int) -> Any:
    request = ledger_pb2.QueryEventsRequest(type=type_ or "", subject=subject or "", limit=limit)
    if after is not None:
        request.after = after
    return request


def _metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


class GrpcTransport:
    """Blocking calls to one node."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: TlsFiles | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.target = target
        if tls is None:
            self._channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
        else:
            self._channel = grpc.secure_channel(target, tls.credentials(), options=_CHANNEL_OPTIONS)
        self._stub = ledger_pb2_grpc.LedgerStub(self._channel)
        self._metadata = _metadata(token)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., Any], request: Any, convert: Callable[[Any], _T]) -> _T:
        try:
            response = method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_grpc(e) from None
        return convert(response)

    def append(self, event: bytes) -> Receipt:
        return self._call(self._stub.Append, ledger_pb2.AppendRequest(event=event), _receipt)

    def append_batch(self, events: Sequence[bytes], idempotency_key: str | None) -> BatchResult:
        request = ledger_pb2.AppendBatchRequest(
            events=list(events), idempotency_key=idempotency_key or ""
        )
        return self._call(self._stub.AppendBatch, request, _batch)

    def get_entry(self, index: int) -> Entry:
        return self._call(self._stub.GetEntry, ledger_pb2.GetEntryRequest(index=index), _entry)

    def lookup_event(self, source: str, id: str) -> Entry:
        request = ledger_pb2.LookupEventRequest(source=source, id=id)
        return self._call(self._stub.LookupEvent, request, _entry)

    def query_events(
        self, type_: str | None, subject: str | None, after: int | None, limit: int
    ) -> Page:
        request = _query_request(type_, subject, after, limit)
        return self._call(self._stub.QueryEvents, request, _page)

    def get_block(self, height: int) -> Block:
        return self._call(self._stub.GetBlock, ledger_pb2.GetBlockRequest(height=height), _block)

    def list_blocks(self, from_height: int, limit: int) -> tuple[Block, ...]:
        request = ledger_pb2.ListBlocksRequest(from_height=from_height, limit=limit)
        return self._call(
            self._stub.ListBlocks, request, lambda pb: tuple(_block(b) for b in pb.blocks)
        )

    def checkpoint(self) -> SignedCheckpoint:
        return self._call(self._stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest(), _checkpoint)

    def log_info(self) -> LogInfo:
        return self._call(self._stub.GetLogInfo, ledger_pb2.GetLogInfoRequest(), _log_info)

    def inclusion_proof(
        self, index: int | None, leaf_hash: bytes | None, tree_size: int | None
    ) -> InclusionProof:
        request = _inclusion_request(index, leaf_hash, tree_size)
        return self._call(self._stub.GetInclusionProof, request, _inclusion)

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        request = ledger_pb2.ConsistencyProofRequest(first=first, second=second)
        return self._call(self._stub.GetConsistencyProof, request, _consistency)

    def export_lines(self, from_height: int, to_height: int | None) -> Iterator[bytes]:
        request = ledger_pb2.ExportRequest(from_height=from_height)
        if to_height is not None:
            request.to_height = to_height
        # No deadline: an export of a large log legitimately takes minutes.
        stream = self._stub.Export(request, metadata=self._metadata)
        try:
            for item in stream:
                yield _export_line(item)
        except grpc.RpcError as e:
            raise from_grpc(e) from None
        finally:
            stream.cancel()


class AsyncGrpcTransport:
    """asyncio calls to one node (grpc.aio)."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: TlsFiles | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.target = target
        if tls is None:
            self._channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.secure_channel(
                target, tls.credentials(), options=_CHANNEL_OPTIONS
            )
        self._stub = ledger_pb2_grpc.LedgerStub(self._channel)
        self._metadata = _metadata(token)
        self._timeout = timeout

    async def close(self) -> None:
        await self._channel.close()

    async def _call(
        self, method: Callable[..., Awaitable[Any]], request: Any, convert: Callable[[Any], _T]
    ) -> _T:
        try:
            response = await method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as e:
            raise from_grpc(e) from None
        return convert(response)

    async def append(self, event: bytes) -> Receipt:
        return await self._call(self._stub.Append, ledger_pb2.AppendRequest(event=event), _receipt)

    async def append_batch(
        self, events: Sequence[bytes], idempotency_key: str | None
    ) -> BatchResult:
        request = ledger_pb2.AppendBatchRequest(
            events=list(events), idempotency_key=idempotency_key or ""
        )
        return await self._call(self._stub.AppendBatch, request, _batch)

    async def get_entry(self, index: int) -> Entry:
        return await self._call(
            self._stub.GetEntry, ledger_pb2.GetEntryRequest(index=index), _entry
        )

    async def lookup_event(self, source: str, id: str) -> Entry:
        request = ledger_pb2.LookupEventRequest(source=source, id=id)
        return await self._call(self._stub.LookupEvent, request, _entry)

    async def query_events(
        self, type_: str | None, subject: str | None, after: int | None, limit: int
    ) -> Page:
        request = _query_request(type_, subject, after, limit)
        return await self._call(self._stub.QueryEvents, request, _page)

    async def get_block(self, height: int) -> Block:
        return await self._call(
            self._stub.GetBlock, ledger_pb2.GetBlockRequest(height=height), _block
        )

    async def list_blocks(self, from_height: int, limit: int) -> tuple[Block, ...]:
        request = ledger_pb2.ListBlocksRequest(from_height=from_height, limit=limit)
        return await self._call(
            self._stub.ListBlocks, request, lambda pb: tuple(_block(b) for b in pb.blocks)
        )

    async def checkpoint(self) -> SignedCheckpoint:
        return await self._call(
            self._stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest(), _checkpoint
        )

    async def log_info(self) -> LogInfo:
        return await self._call(self._stub.GetLogInfo, ledger_pb2.GetLogInfoRequest(), _log_info)

    async def inclusion_proof(
        self, index: int | None, leaf_hash: bytes | None, tree_size: int | None
    ) -> InclusionProof:
        request = _inclusion_request(index, leaf_hash, tree_size)
        return await self._call(self._stub.GetInclusionProof, request, _inclusion)

    async def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        request = ledger_pb2.ConsistencyProofRequest(first=first, second=second)
        return await self._call(self._stub.GetConsistencyProof, request, _consistency)

    async def export_lines(self, from_height: int, to_height: int | None) -> AsyncIterator[bytes]:
        request = ledger_pb2.ExportRequest(from_height=from_height)
        if to_height is not None:
            request.to_height = to_height
        stream = self._stub.Export(request, metadata=self._metadata)
        try:
            async for item in stream:
                yield _export_line(item)
        except grpc.aio.AioRpcError as e:
            raise from_grpc(e) from None
        finally:
            stream.cancel()
