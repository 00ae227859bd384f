"""A handler's unintended exception reaches the client as INTERNAL with a Problem that
names the method (not gRPC's UNKNOWN with the exception's words), and its traceback
reaches the log; deliberate refusals pass through unchanged. Real gRPC on loopback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from ledger.service import PROBLEM_KEY, InternalErrors, abort
from provledger.errors import NotFoundError
from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import ledger_pb2_grpc as pb_grpc


class Faulty(pb_grpc.LedgerServicer):
    def GetEntry(self, request: pb.GetEntryRequest, context: grpc.ServicerContext) -> pb.Entry:
        raise ValueError("int too large to convert")

    def GetBlock(self, request: pb.GetBlockRequest, context: grpc.ServicerContext) -> Any:
        abort(context, NotFoundError(f"no block at height {request.height}"))

    def AppendStream(self, requests: Iterator[pb.AppendRequest], context: Any) -> Any:
        for _ in requests:
            raise RuntimeError("a bug in the stream")
        return pb.AppendBatchResponse()

    def Export(self, request: pb.ExportRequest, context: Any) -> Iterator[pb.ExportItem]:
        yield pb.ExportItem(frontier=pb.Frontier(tree_size=1))
        raise KeyError("a bug halfway")


@pytest.fixture
def stub() -> Iterator[pb_grpc.LedgerStub]:
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[InternalErrors()])
    pb_grpc.add_LedgerServicer_to_server(Faulty(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield pb_grpc.LedgerStub(channel)
    finally:
        channel.close()
        server.stop(None)


def _problem(exc: grpc.RpcError) -> pb.Problem:
    for key, value in exc.trailing_metadata() or ():
        if key == PROBLEM_KEY:
            return pb.Problem.FromString(value)
    raise AssertionError("no problem in the trailing metadata")


def test_an_unintended_exception_is_internal_and_logged(
    stub: pb_grpc.LedgerStub, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="ledger.service"),
        pytest.raises(grpc.RpcError) as info,
    ):
        stub.GetEntry(pb.GetEntryRequest(index=1), timeout=5)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "/provledger.v1.Ledger/GetEntry" in info.value.details()
    assert "too large" not in info.value.details()
    assert _problem(info.value).status == 500
    failed = [r for r in caplog.records if "GetEntry failed" in r.getMessage()]
    assert failed and failed[0].exc_info is not None
    assert "int too large to convert" in str(failed[0].exc_info[1])


def test_a_deliberate_refusal_passes_unchanged(stub: pb_grpc.LedgerStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.GetBlock(pb.GetBlockRequest(height=7), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "no block at height 7"
    assert _problem(info.value).status == 404


def test_streams_in_either_direction(stub: pb_grpc.LedgerStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.AppendStream(iter([pb.AppendRequest(event=b"{}")]), timeout=5)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "AppendStream" in info.value.details()
    received = []
    with pytest.raises(grpc.RpcError) as info:
        for item in stub.Export(pb.ExportRequest(), timeout=5):
            received.append(item)
    assert len(received) == 1 and received[0].frontier.tree_size == 1
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "Export" in info.value.details()
