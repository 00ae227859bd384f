"""A real in-process gRPC server of provledger.v1.Ledger whose answers the test controls:
it can serve an honest log, a rolled-back one, a fork, or fail on purpose."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from provledger import merkle
from provledger.events import leaf_bytes
from provledger.note import Checkpoint, Signer, sign_checkpoint
from provledger.v1 import ledger_pb2, ledger_pb2_grpc

PROBLEM_KEY = "provledger-problem-bin"


def leaves(prefix: str, n: int, start: int = 0) -> list[bytes]:
    return [f'{{"leaf":"{prefix}-{i}"}}'.encode() for i in range(start, start + n)]


def abort(context: Any, code: Any, status: int, detail: str, retry_after: int = 0) -> None:
    problem = ledger_pb2.Problem(
        status=status, title="refused", detail=detail, retry_after=retry_after
    )
    context.set_trailing_metadata(((PROBLEM_KEY, problem.SerializeToString()),))
    context.abort(code, detail)


def _receipt(index: int, hashes: list[bytes], note: str) -> Any:
    """The whole receipt of leaf `index` in a tree of `hashes`, one leaf per block."""
    return ledger_pb2.Receipt(
        index=index,
        leaf_hash=hashes[index],
        block_height=index,
        tree_size=len(hashes),
        inclusion=merkle.inclusion_proof(index, len(hashes), merkle.list_reader(hashes)),
        checkpoint=note,
    )


@dataclass
class LyingLedger(ledger_pb2_grpc.LedgerServicer):
    signer: Signer
    served: list[bytes] = field(default_factory=list)
    """the leaves of the tree this server claims, right now"""
    unavailable: int = 0
    """answer UNAVAILABLE (with a Problem) to this many calls first"""
    calls: dict[str, int] = field(default_factory=dict)
    append_problem: Any = None
    store_other_event: bool = False
    batches_together: threading.Barrier | None = None
    """AppendBatch waits (5 s at most) until this many batch requests are under way"""
    most_batches_together: int = 0
    _batches_now: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self, name: str, context: Any) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.unavailable > 0:
            self.unavailable -= 1
            abort(context, grpc.StatusCode.UNAVAILABLE, 503, "no leader", retry_after=0)

    def _hashes(self) -> list[bytes]:
        return [merkle.leaf_hash(leaf) for leaf in self.served]

    def note(self) -> str:
        hashes = self._hashes()
        cp = Checkpoint(self.signer.name, len(hashes), merkle.root(hashes))
        return sign_checkpoint(cp, self.signer)

    def GetCheckpoint(self, request: Any, context: Any) -> Any:
        self._count("GetCheckpoint", context)
        hashes = self._hashes()
        return ledger_pb2.Checkpoint(
            note=self.note(), tree_size=len(hashes), root_hash=merkle.root(hashes)
        )

    def GetLogInfo(self, request: Any, context: Any) -> Any:
        self._count("GetLogInfo", context)
        hashes = self._hashes()
        return ledger_pb2.LogInfo(
            origin=self.signer.name,
            tree_size=len(hashes),
            root_hash=merkle.root(hashes),
            verifier_key=self.signer.verifier_key,
            checkpoint=self.note(),
        )

    def GetConsistencyProof(self, request: Any, context: Any) -> Any:
        self._count("GetConsistencyProof", context)
        size = len(self.served)
        if not request.first <= request.second <= size:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, 400, f"tree size beyond {size}")
        proof = merkle.consistency_proof(
            request.first, request.second, merkle.list_reader(self._hashes())
        )
        return ledger_pb2.ConsistencyProof(first=request.first, second=request.second, hashes=proof)

    def GetEntry(self, request: Any, context: Any) -> Any:
        self._count("GetEntry", context)
        if request.index >= len(self.served):
            abort(context, grpc.StatusCode.NOT_FOUND, 404, f"no entry {request.index}")
        leaf = self.served[request.index]
        return ledger_pb2.Entry(
            index=request.index, leaf_hash=merkle.leaf_hash(leaf), leaf=leaf, block_height=0
        )

    def GetInclusionProof(self, request: Any, context: Any) -> Any:
        self._count("GetInclusionProof", context)
        size = request.tree_size if request.HasField("tree_size") else len(self.served)
        if size > len(self.served) or request.index >= size:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, 400, "beyond the tree")
        hashes = self._hashes()
        proof = merkle.inclusion_proof(request.index, size, merkle.list_reader(hashes[:size]))
        return ledger_pb2.InclusionProof(
            index=request.index, tree_size=size, leaf_hash=hashes[request.index], hashes=proof
        )

    def Append(self, request: Any, context: Any) -> Any:
        self._count("Append", context)
        if self.append_problem is not None:
            code, problem = self.append_problem
            context.set_trailing_metadata(((PROBLEM_KEY, problem.SerializeToString()),))
            context.abort(code, problem.detail)
        event = json.loads(request.event)
        if self.store_other_event:
            event = {**event, "subject": "something-else"}
        self.served.append(leaf_bytes(event, "local"))
        hashes = self._hashes()
        return _receipt(len(hashes) - 1, hashes, self.note())

    def AppendBatch(self, request: Any, context: Any) -> Any:
        self._count("AppendBatch", context)
        with self._lock:
            self._batches_now += 1
            self.most_batches_together = max(self.most_batches_together, self._batches_now)
        try:
            if self.batches_together is not None:
                try:
                    self.batches_together.wait(timeout=5)
                except threading.BrokenBarrierError:
                    abort(context, grpc.StatusCode.FAILED_PRECONDITION, 412, "batch came alone")
            with self._lock:
                first = len(self.served)
                self.served.extend(leaf_bytes(json.loads(e), "local") for e in request.events)
                hashes = self._hashes()
                note = self.note()
            return ledger_pb2.AppendBatchResponse(
                results=[
                    ledger_pb2.AppendResult(receipt=_receipt(i, hashes, note))
                    for i in range(first, first + len(request.events))
                ]
            )
        finally:
            with self._lock:
                self._batches_now -= 1


@contextmanager
def serve(ledger: LyingLedger) -> Iterator[str]:
    """Runs the servicer on a free loopback port; yields "127.0.0.1:PORT"."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ledger_pb2_grpc.add_LedgerServicer_to_server(ledger, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
