"""Durable storage of one node: the only package that touches LevelDB."""

from ledger.storage._leveldb import BlockRecord, Head, LevelDBStore, NewLeaf, event_digest

__all__ = ["BlockRecord", "Head", "LevelDBStore", "NewLeaf", "event_digest"]
