"""The node's gRPC service: protobuf in and out, and the one error-to-status table."""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any, NoReturn, TypeVar

import grpc

from ledger._auth import Principal
from ledger._node import EntryView, ExportFrontier, LedgerNode
from ledger._peers import FORWARDED_KEY
from ledger._replica import decode_block
from ledger.sequencer import BlockReceipt, Committed, Outcome, Receipt
from ledger.storage import BlockRecord
from provledger.errors import (
    InvalidEventError,
    InvalidRequestError,
    LedgerError,
    TooLargeError,
    UnavailableError,
)
from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import ledger_pb2_grpc as pb_grpc
from provledger.v1 import replication_pb2 as rpb
from provledger.v1 import replication_pb2_grpc as rpb_grpc

__all__ = ["LedgerService", "ReplicationService", "serve"]

log = logging.getLogger(__name__)

MAX_BATCH = 10_000
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
FORWARD_TIMEOUT = 120.0
PROBLEM_KEY = "provledger-problem-bin"

STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}

T = TypeVar("T")


def problem_of(error: LedgerError) -> pb.Problem:
    p = pb.Problem(status=error.status, title=error.title, detail=error.detail)
    if isinstance(error, InvalidEventError):
        p.errors.extend(pb.FieldError(path=e.path, message=e.message) for e in error.errors)
    if isinstance(error, UnavailableError):
        p.retry_after = error.retry_after
    return p


def abort(context: grpc.ServicerContext, error: LedgerError) -> NoReturn:
    context.set_trailing_metadata(
        (("provledger-problem-bin", problem_of(error).SerializeToString()),)
    )
    context.abort(STATUS_CODES.get(error.status, grpc.StatusCode.INTERNAL), error.detail)
    raise AssertionError("unreachable")


class InternalErrors(grpc.ServerInterceptor):  # type: ignore[misc]
    """An exception a handler did not mean (a bug) becomes INTERNAL with a Problem that
    names the method, and its traceback goes to the node's log; without this gRPC would
    answer UNKNOWN with the exception's own words. A handler's own abort, and a client
    that went away (an RpcError), pass through as they are."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=_guarded(handler.unary_unary, method))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=_guarded(handler.stream_unary, method))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=_guarded_stream(handler.unary_stream, method))
        return handler._replace(stream_stream=_guarded_stream(handler.stream_stream, method))


def _guarded(behavior: Callable[[Any, Any], Any], method: str) -> Callable[[Any, Any], Any]:
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:
            _internal(context, method, exc)

    return run


def _guarded_stream(
    behavior: Callable[[Any, Any], Iterator[Any]], method: str
) -> Callable[[Any, Any], Iterator[Any]]:
    def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from behavior(request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:
            _internal(context, method, exc)

    return run


def _internal(context: grpc.ServicerContext, method: str, exc: Exception) -> NoReturn:
    if context.code() is not None:  # the handler aborted, or set its status, on purpose
        raise exc
    log.error("%s failed", method, exc_info=exc)
    abort(context, LedgerError(f"internal error in {method}; the node's log has the details"))


def receipt_pb(r: Receipt) -> pb.Receipt:
    out = pb.Receipt()
    _fill_receipt(out, r)
    return out


def _fill_receipt(out: pb.Receipt, r: Receipt) -> None:
    # Filling a message in place is three times faster than building one and copying
    # it into a batch answer (bench_ledger.py).
    out.SetInParent()  # present even if every field were at its default
    out.index = r.index
    out.leaf_hash = r.leaf_hash
    out.block_height = r.block_height
    out.tree_size = r.tree_size
    out.inclusion.extend(r.inclusion)
    out.checkpoint = r.checkpoint
    if r.duplicate:
        out.duplicate = True


def entry_pb(e: EntryView) -> pb.Entry:
    return pb.Entry(index=e.index, leaf_hash=e.leaf_hash, leaf=e.leaf, block_height=e.block_height)


def block_pb(record: BlockRecord, leaves: list[bytes] | None = None) -> pb.Block:
    return pb.Block(
        header=record.header,
        hash=record.header_hash,
        signatures=[pb.BlockSignature(**s) for s in record.signatures],
        leaves=leaves or (),
        first_index=record.first_index,
        count=record.count,
    )


class LedgerService(pb_grpc.LedgerServicer):
    def __init__(self, node: LedgerNode) -> None:
        self.node = node
        # One lock per idempotency key in use, with the number of requests holding or
        # awaiting it; dropped when that reaches zero, so two requests with one key never
        # run at once and failed requests leave nothing behind.
        self._key_locks: dict[str, tuple[threading.Lock, list[int]]] = {}
        self._key_locks_guard = threading.Lock()

    # plumbing

    def _principal(self, context: grpc.ServicerContext) -> Principal:
        authorization = None
        for key, value in context.invocation_metadata():
            if key == "authorization":
                authorization = value if isinstance(value, str) else value.decode()
        return self.node.auth.authenticate(authorization)

    def _leader_address(self, context: grpc.ServicerContext) -> str | None:
        """Where a write goes instead of this node: None when this node takes it."""
        cluster = self.node.cluster
        if cluster is None or cluster.role == "leader":
            return None
        info = cluster.leader()
        forwarded = any(key == FORWARDED_KEY for key, _ in context.invocation_metadata())
        if info is None:
            raise UnavailableError("no node leads the cluster at the moment; retry", retry_after=1)
        if forwarded or info.node == self.node.config.node_id:
            # One hop only: a follower that meets another follower's belief answers 503.
            raise UnavailableError(
                f"node {self.node.config.node_id} does not lead; the leader is {info.node} "
                f"at {info.address} (term {info.term}); retry",
                retry_after=1,
            )
        return info.address

    def _forward(
        self, address: str, method: str, request: Any, context: grpc.ServicerContext
    ) -> Any:
        """Sends a write on to the leader with the caller's credentials; relays its answer."""
        assert self.node.cluster is not None
        metadata = [(k, v) for k, v in context.invocation_metadata() if k == "authorization"]
        metadata.append((FORWARDED_KEY, self.node.config.node_id))
        stub = self.node.cluster.peers.ledger(address)
        try:
            return getattr(stub, method)(request, metadata=metadata, timeout=FORWARD_TIMEOUT)
        except grpc.RpcError as exc:
            trailing = [(k, v) for k, v in (exc.trailing_metadata() or ()) if k == PROBLEM_KEY]
            if not trailing:
                abort(
                    context,
                    UnavailableError(
                        f"the leader at {address} did not answer ({exc.code().name}); retry",
                        retry_after=1,
                    ),
                )
            context.set_trailing_metadata(trailing)
            context.abort(exc.code(), exc.details() or "")
            raise AssertionError("unreachable") from None

    def _read(self, context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
        try:
            self.node.auth.require_reader(self._principal(context))
            return fn()
        except LedgerError as exc:
            abort(context, exc)

    # writes

    def Append(self, request: pb.AppendRequest, context: grpc.ServicerContext) -> pb.Receipt:
        try:
            leader = self._leader_address(context)
            if leader is not None:
                reply: pb.Receipt = self._forward(leader, "Append", request, context)
                return reply
            if request.events:
                raise InvalidRequestError(
                    "events: Append takes one event in `event`; use AppendBatch or AppendStream"
                )
            outcome = self.node.append([request.event], self._principal(context))[0]
            if isinstance(outcome, LedgerError):
                raise outcome
            return receipt_pb(outcome.receipt() if isinstance(outcome, Committed) else outcome)
        except LedgerError as exc:
            abort(context, exc)

    def AppendBatch(
        self, request: pb.AppendBatchRequest, context: grpc.ServicerContext
    ) -> pb.AppendBatchResponse:
        try:
            leader = self._leader_address(context)
            if leader is not None:
                reply: pb.AppendBatchResponse = self._forward(
                    leader, "AppendBatch", request, context
                )
                return reply
            principal = self._principal(context)
            self.node.auth.require_writer(principal)
            count = len(request.events)
            if count == 0:
                raise InvalidEventError([], "events: a batch needs 1 to 10000 events, got 0")
            if count > MAX_BATCH:
                raise TooLargeError(
                    f"events: a batch holds at most {MAX_BATCH} events, got {count}"
                )
            if not request.idempotency_key:
                return self._append_all(list(request.events), principal)
            return self._append_idempotent(request, principal)
        except LedgerError as exc:
            abort(context, exc)

    def _append_idempotent(
        self, request: pb.AppendBatchRequest, principal: Principal
    ) -> pb.AppendBatchResponse:
        key = request.idempotency_key
        if len(key) > 256:
            raise InvalidRequestError("Idempotency-Key: at most 256 characters")
        digest = request.request_digest or _digest_events(request.events)
        scoped = f"{principal.name}\x00{key}"
        lock = self._acquire_key(scoped)
        try:
            with lock:
                seen = self.node.idempotent_batch(scoped)
                if seen is not None:
                    if seen["digest"] != digest.hex():
                        raise InvalidEventError(
                            [],
                            f"Idempotency-Key {key!r} was used with a different request body",
                        )
                    return self._replay(seen)
                results = self.node.append(list(request.events), principal)
                self.node.remember_batch(scoped, _batch_record(digest, results))
                response = _batch_response(results)
        finally:
            self._release_key(scoped)
        return response

    def _replay(self, record: dict[str, Any]) -> pb.AppendBatchResponse:
        """The first answer again, rebuilt from its compact record (see _batch_record)."""
        if "response" in record:  # the earlier format kept the whole answer
            return pb.AppendBatchResponse.FromString(base64.b64decode(record["response"]))
        outcomes: list[Any] = record["results"]
        retried = [(o[0], o[1], True) for o in outcomes if isinstance(o, list) and o[2]]
        receipts = iter(self.node.receipts_at(retried))
        blocks: dict[int, BlockReceipt] = {}
        results: list[Outcome | pb.Problem] = []
        for outcome in outcomes:
            if not isinstance(outcome, list):
                results.append(pb.Problem.FromString(base64.b64decode(outcome["problem"])))
            elif outcome[2]:
                results.append(next(receipts))
            else:
                index, size, _ = outcome
                block = blocks.get(size)
                if block is None:
                    block = blocks[size] = self.node.block_receipt(size)
                results.append(Committed(block, index))
        return _batch_response(results)

    def _acquire_key(self, scoped: str) -> threading.Lock:
        with self._key_locks_guard:
            lock, users = self._key_locks.setdefault(scoped, (threading.Lock(), [0]))
            users[0] += 1
        return lock

    def _release_key(self, scoped: str) -> None:
        with self._key_locks_guard:
            _, users = self._key_locks[scoped]
            users[0] -= 1
            if users[0] == 0:
                del self._key_locks[scoped]

    def _append_all(self, events: list[bytes], principal: Principal) -> pb.AppendBatchResponse:
        return _batch_response(self.node.append(events, principal))

    def AppendStream(
        self, request_iterator: Iterator[pb.AppendRequest], context: grpc.ServicerContext
    ) -> pb.AppendBatchResponse:
        try:
            leader = self._leader_address(context)
            if leader is not None:
                reply: pb.AppendBatchResponse = self._forward(
                    leader, "AppendStream", request_iterator, context
                )
                return reply
            principal = self._principal(context)
            self.node.auth.require_writer(principal)
            return _batch_response(self.node.append(_streamed_events(request_iterator), principal))
        except LedgerError as exc:
            abort(context, exc)

    # reads

    def GetEntry(self, request: pb.GetEntryRequest, context: grpc.ServicerContext) -> pb.Entry:
        return self._read(context, lambda: entry_pb(self.node.entry(request.index)))

    def LookupEvent(
        self, request: pb.LookupEventRequest, context: grpc.ServicerContext
    ) -> pb.Entry:
        return self._read(context, lambda: entry_pb(self.node.lookup(request.source, request.id)))

    def QueryEvents(
        self, request: pb.QueryEventsRequest, context: grpc.ServicerContext
    ) -> pb.QueryEventsResponse:
        def run() -> pb.QueryEventsResponse:
            after = request.after if request.HasField("after") else None
            entries, next_after = self.node.query(
                request.type or None, request.subject or None, after, request.limit or 100
            )
            out = pb.QueryEventsResponse(entries=[entry_pb(e) for e in entries])
            if next_after is not None:
                out.next_after = next_after
            return out

        return self._read(context, run)

    def GetBlock(self, request: pb.GetBlockRequest, context: grpc.ServicerContext) -> pb.Block:
        def run() -> pb.Block:
            record = self.node.block(request.height)
            leaves = self.node.block_leaves(record) if request.include_leaves else None
            return block_pb(record, leaves)

        return self._read(context, run)

    def ListBlocks(
        self, request: pb.ListBlocksRequest, context: grpc.ServicerContext
    ) -> pb.ListBlocksResponse:
        return self._read(
            context,
            lambda: pb.ListBlocksResponse(
                blocks=[
                    block_pb(b) for b in self.node.blocks(request.from_height, request.limit or 100)
                ]
            ),
        )

    def GetCheckpoint(
        self, request: pb.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> pb.Checkpoint:
        def run() -> pb.Checkpoint:
            state = self.node.state
            out = pb.Checkpoint(
                note=state.served_checkpoint, tree_size=state.tree_size, root_hash=state.root_hash
            )
            if state.height is not None:
                out.block_height = state.height
            return out

        return self._read(context, run)

    def GetLogInfo(
        self, request: pb.GetLogInfoRequest, context: grpc.ServicerContext
    ) -> pb.LogInfo:
        def run() -> pb.LogInfo:
            state = self.node.state
            out = pb.LogInfo(
                origin=self.node.origin,
                tree_size=state.tree_size,
                root_hash=state.root_hash,
                verifier_key=self.node.log_signer.verifier_key,
                checkpoint=state.served_checkpoint,
                nodes=[pb.NodeKey(node=n, verifier_key=k) for n, k in self.node.node_keys()],
            )
            if state.height is not None:
                out.block_height = state.height
            return out

        return self._read(context, run)

    def GetInclusionProof(
        self, request: pb.InclusionProofRequest, context: grpc.ServicerContext
    ) -> pb.InclusionProof:
        def run() -> pb.InclusionProof:
            target = request.WhichOneof("target")
            index = request.index if target == "index" else None
            leaf_hash = request.leaf_hash if target == "leaf_hash" else None
            if target is None:
                raise InvalidRequestError("index or leaf_hash: one is required")
            size = request.tree_size if request.HasField("tree_size") else None
            i, n, h, proof, checkpoint = self.node.inclusion(index, leaf_hash, size)
            return pb.InclusionProof(
                index=i, tree_size=n, leaf_hash=h, hashes=proof, checkpoint=checkpoint
            )

        return self._read(context, run)

    def GetConsistencyProof(
        self, request: pb.ConsistencyProofRequest, context: grpc.ServicerContext
    ) -> pb.ConsistencyProof:
        return self._read(
            context,
            lambda: pb.ConsistencyProof(
                first=request.first,
                second=request.second,
                hashes=self.node.consistency(request.first, request.second),
            ),
        )

    def Export(
        self, request: pb.ExportRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportItem]:
        try:
            self.node.auth.require_reader(self._principal(context))
            end = request.to_height if request.HasField("to_height") else None
            for item in self.node.export(request.from_height, end):
                if isinstance(item, ExportFrontier):
                    yield pb.ExportItem(
                        frontier=pb.Frontier(tree_size=item.tree_size, hashes=item.hashes)
                    )
                elif isinstance(item, str):
                    yield pb.ExportItem(checkpoint=item)
                else:
                    record, leaves = item
                    yield pb.ExportItem(block=block_pb(record, leaves))
        except LedgerError as exc:
            abort(context, exc)

    def GetTile(self, request: pb.GetTileRequest, context: grpc.ServicerContext) -> pb.Tile:
        return self._read(
            context,
            lambda: pb.Tile(
                data=self.node.tile(
                    request.level, request.index, request.width or 256, request.entries
                )
            ),
        )

    def GetStatus(
        self, request: pb.GetStatusRequest, context: grpc.ServicerContext
    ) -> pb.NodeStatus:
        status = self.node.status()
        out = pb.NodeStatus(
            node=status["node"],
            role=status["role"],
            leader=status["leader"],
            leader_address=status["leader_address"],
            term=status["term"],
            head_hash=status["head_hash"],
            tree_size=status["tree_size"],
            pid=status["pid"],
        )
        if status["height"] is not None:
            out.height = status["height"]
        return out


class ReplicationService(rpb_grpc.ReplicationServicer):
    """Node to node: a peer fetches blocks to catch up; the leader pushes committed ones.

    With mutual TLS the caller's CA-signed certificate admits it; without, fetching needs
    what reading needs. A pushed block is verified whoever sends it.
    """

    def __init__(self, node: LedgerNode, ledger: LedgerService) -> None:
        self.node = node
        self._ledger = ledger

    def FetchBlocks(
        self, request: rpb.FetchBlocksRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Block]:
        try:
            if self.node.config.tls is None:
                self.node.auth.require_reader(self._ledger._principal(context))
            height = self.node.state.height
            if height is None:
                return
            last = min(request.to_height, height) if request.HasField("to_height") else height
            for h in range(request.from_height, last + 1):
                record = self.node.store.block(h)
                yield block_pb(record, self.node.block_leaves(record))
        except LedgerError as exc:
            abort(context, exc)

    def PushBlock(self, request: pb.Block, context: grpc.ServicerContext) -> rpb.PushBlockResponse:
        return self._offer(lambda: request, context)

    def PushPayload(
        self, request: rpb.BlockPayload, context: grpc.ServicerContext
    ) -> rpb.PushBlockResponse:
        return self._offer(lambda: decode_block(request.payload), context)

    def _offer(
        self, block: Callable[[], pb.Block], context: grpc.ServicerContext
    ) -> rpb.PushBlockResponse:
        cluster = self.node.cluster
        try:
            if cluster is None:
                raise UnavailableError("this node is not a cluster member", retry_after=60)
            outcome = cluster.replica.offer(block(), sender=context.peer(), confirm=True)
        except LedgerError as exc:
            abort(context, exc)
        response = rpb.PushBlockResponse(
            height=max(outcome.next_height - 1, 0),
            next_height=outcome.next_height,
            cosignature=outcome.cosignature,
        )
        if outcome.signature is not None:
            response.signature.CopyFrom(pb.BlockSignature(**outcome.signature.to_json()))
        return response


def _batch_response(results: Sequence[Outcome | pb.Problem]) -> pb.AppendBatchResponse:
    """One result per event: its index in a block receipt sent once per block, a whole
    receipt (an idempotent retry), or its refusal (an error, or a stored Problem)."""
    out = pb.AppendBatchResponse()
    add = out.results.add
    blocks: set[int] = set()
    for r in results:
        if isinstance(r, Committed):
            add().committed = r.leaf_index
            block = r.block
            if block.height not in blocks:
                blocks.add(block.height)
                _fill_block_receipt(out.blocks.add(), block)
        elif isinstance(r, Receipt):
            _fill_receipt(add().receipt, r)
        else:
            add().error.CopyFrom(problem_of(r) if isinstance(r, LedgerError) else r)
    return out


def _fill_block_receipt(out: pb.BlockReceipt, b: BlockReceipt) -> None:
    out.block_height = b.height
    out.first_index = b.first_index
    out.tree_size = b.tree_size
    out.checkpoint = b.checkpoint
    out.frontier.extend(b.frontier)
    out.leaf_hashes = b"".join(b.leaf_hashes)


def _batch_record(digest: bytes, results: list[Outcome]) -> dict[str, Any]:
    """What a batch under an Idempotency-Key stores: per event its index, the tree size its
    receipt was issued at and whether it was a retry, or its Problem. About 20 bytes an
    event, against a kilobyte for the whole answer, which these rebuild byte for byte."""
    return {
        "digest": digest.hex(),
        "created": time.time(),
        "results": [
            {"problem": base64.b64encode(problem_of(r).SerializeToString()).decode()}
            if isinstance(r, LedgerError)
            else [r.leaf_index, r.block.tree_size, 0]
            if isinstance(r, Committed)
            else [r.index, r.tree_size, int(r.duplicate)]
            for r in results
        ],
    }


def _streamed_events(requests: Iterator[pb.AppendRequest]) -> Iterator[bytes]:
    """The events of a stream in order: each message's `event`, then its `events`."""
    for request in requests:
        if request.events:
            if request.event:
                yield request.event
            yield from request.events
        else:
            yield request.event  # even when empty: refused in its place, not skipped


def _digest_events(events: Any) -> bytes:
    h = hashlib.sha256()
    for raw in events:
        h.update(len(raw).to_bytes(4, "big"))
        h.update(raw)
    return h.digest()


def server_credentials(node: LedgerNode) -> grpc.ServerCredentials | None:
    tls = node.config.tls
    if tls is None:
        return None
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=tls.ca.read_bytes(),
        require_client_auth=True,
    )


def serve(node: LedgerNode, extra: Callable[[grpc.Server], None] | None = None) -> grpc.Server:
    """Starts the gRPC server on the configured address (the node must already be started)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=node.config.workers, thread_name_prefix="grpc"),
        interceptors=[InternalErrors()],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    ledger = LedgerService(node)
    pb_grpc.add_LedgerServicer_to_server(ledger, server)
    rpb_grpc.add_ReplicationServicer_to_server(ReplicationService(node, ledger), server)
    if extra is not None:
        extra(server)
    credentials = server_credentials(node)
    if credentials is None:
        port = server.add_insecure_port(node.config.listen)
    else:
        port = server.add_secure_port(node.config.listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {node.config.listen}")
    server.start()
    return server
