"""Calls from this node to its peers: block pushes, block fetches, forwarded writes.

One reused channel per peer address, with this node's certificate when the cluster uses
mutual TLS (the node certificate serves both as server and as client certificate).
Every gRPC error of a peer call leaves this module as a LedgerError.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from ledger._config import TLSConfig
from provledger.errors import LedgerError, UnavailableError
from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import ledger_pb2_grpc as pb_grpc
from provledger.v1 import replication_pb2 as rpb
from provledger.v1 import replication_pb2_grpc as rpb_grpc

__all__ = ["FORWARDED_KEY", "Peers"]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
FORWARDED_KEY = "provledger-forwarded"  # metadata on a write a follower forwards
# A leader pushes each block as the payload it made once for etcd (zstd: 28 KB rather
# than 700 KB of leaves for 1,000 events), not as a Block each push would serialize.
_PUSH_PAYLOAD = "/provledger.v1.Replication/PushPayload"


class Peers:
    def __init__(self, tls: TLSConfig | None) -> None:
        self._credentials = (
            grpc.ssl_channel_credentials(
                root_certificates=tls.ca.read_bytes(),
                private_key=tls.key.read_bytes(),
                certificate_chain=tls.cert.read_bytes(),
            )
            if tls is not None
            else None
        )
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}

    def channel(self, address: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                options: list[tuple[str, Any]] = [
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    # A restarted peer is found again within a second, not minutes.
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                ]
                if self._credentials is None:
                    channel = grpc.insecure_channel(address, options=options)
                else:
                    channel = grpc.secure_channel(address, self._credentials, options=options)
                self._channels[address] = channel
            return channel

    def close(self) -> None:
        with self._lock:
            channels, self._channels = self._channels, {}
        for channel in channels.values():
            channel.close()

    def ledger(self, address: str) -> pb_grpc.LedgerStub:
        return pb_grpc.LedgerStub(self.channel(address))

    def replication(self, address: str) -> rpb_grpc.ReplicationStub:
        return rpb_grpc.ReplicationStub(self.channel(address))

    def push(self, address: str, payload: bytes, timeout: float) -> rpb.PushBlockResponse:
        """Offers a block as its etcd payload (made once for etcd and every follower)."""
        push = self.channel(address).unary_unary(
            _PUSH_PAYLOAD,
            request_serializer=rpb.BlockPayload.SerializeToString,
            response_deserializer=rpb.PushBlockResponse.FromString,
        )
        try:
            response: rpb.PushBlockResponse = push(
                rpb.BlockPayload(payload=payload), timeout=timeout
            )
        except grpc.RpcError as exc:
            raise _error(address, exc) from None
        return response

    def fetch(self, address: str, first: int, last: int) -> Iterator[pb.Block]:
        """Blocks `first`..`last` with their leaves, as the peer streams them."""
        request = rpb.FetchBlocksRequest(from_height=first, to_height=last)
        call = self.replication(address).FetchBlocks(request, timeout=600)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise _error(address, exc) from None
        finally:
            call.cancel()


def _error(address: str, exc: grpc.RpcError) -> LedgerError:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, None):
        return UnavailableError(f"peer {address}: {details}", retry_after=1)
    error = LedgerError(f"peer {address}: {code.name}: {details}")
    error.status = 422 if code == grpc.StatusCode.INVALID_ARGUMENT else 500
    return error
