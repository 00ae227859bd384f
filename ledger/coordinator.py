"""Who may commit the next block, and where a commit becomes final.

`LocalCoordinator` is the embedded default: one node is always the leader, and the
commit point is the node's own synchronous LevelDB write. The cluster's
`EtcdCoordinator` implements the same calls on etcd; the sequencer above is the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ledger.storage import LevelDBStore
from provledger.errors import UnavailableError

__all__ = ["CommitRecord", "Coordinator", "FencedError", "LocalCoordinator"]


class FencedError(UnavailableError):
    """The commit lost its fence: another leader, or the head moved. Nothing was committed."""


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """What a coordinator needs to commit one block."""

    height: int
    header_hash: bytes
    prev_hash: bytes
    term: int
    payload: bytes  # the whole signed block with leaves, for engines that hold a window of blocks
    tree_size: int = 0


class Coordinator(Protocol):
    """What the sequencer and the node's status need; campaigning differs per engine."""

    needs_payload: bool  # whether commit() stores CommitRecord.payload

    def is_leader(self) -> bool: ...

    def leader(self) -> tuple[str, str] | None:
        """(node id, address) of the current leader, if one is known."""
        ...

    def commit(self, record: CommitRecord) -> None:
        """Makes the block final, or raises FencedError (or UnavailableError if unknown)."""
        ...

    def share_record(self, name: str, value: bytes, ttl_s: int) -> None:
        """Keeps `value` for `ttl_s` seconds where the next leader can read it (nowhere but
        the node's own store, on one machine); raises UnavailableError if it cannot."""
        ...

    def shared_record(self, name: str) -> bytes | None:
        """What `share_record` kept under `name`, if anything."""
        ...

    def close(self) -> None: ...


class LocalCoordinator:
    """One machine: the lease is always held; the fence is a compare on the head in memory."""

    needs_payload = False

    def __init__(self, store: LevelDBStore, node_id: str, address: str) -> None:
        self._store = store
        self._node_id = node_id
        self._address = address
        self._term = 0
        head = store.head()
        self._head_hash = head.header_hash if head is not None else None

    def campaign(self) -> int:
        # Each start is a new term, persisted before serving so terms never repeat.
        raw = self._store.get_meta("term")
        self._term = (json.loads(raw) if raw else 0) + 1
        self._store.put_meta("term", json.dumps(self._term).encode())
        return self._term

    def is_leader(self) -> bool:
        return self._term > 0

    def leader(self) -> tuple[str, str] | None:
        return (self._node_id, self._address) if self._term else None

    def commit(self, record: CommitRecord) -> None:
        # The durable commit is the store's synchronous WriteBatch that follows.
        if record.term != self._term:
            raise FencedError(f"term {record.term} is not the current term {self._term}")
        if self._head_hash is not None and record.prev_hash != self._head_hash:
            raise FencedError(f"block {record.height} does not extend the committed head")
        self._head_hash = record.header_hash

    def on_lost_leadership(self, callback: Callable[[], None]) -> None:
        pass  # never lost

    def share_record(self, name: str, value: bytes, ttl_s: int) -> None:
        pass  # no other leader: the node's own store holds the record

    def shared_record(self, name: str) -> bytes | None:
        return None

    def close(self) -> None:
        pass
