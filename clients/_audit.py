"""Offline audit of an export bundle (SPEC §3 `/v1/export` NDJSON) in one streaming pass.

Trusting only the log's verifier key (and, optionally, node keys), it recomputes every
leaf hash, each block's entries root, the header chain (height, prev_hash, first_index),
the whole tree's root after every block (from a compact range: O(log n) memory) and
checks every leader signature and the final checkpoint. Memory is one block plus the
tree's right edge, whatever the size of the log. Ed25519 costs about 150 µs per
signature, so signatures are checked per block and nothing is verified per leaf but
two SHA-256 calls.

The first failure stops the audit and is reported by line, block height and, when one
leaf is at fault, its index; an entries-root mismatch cannot tell which leaf of the
block changed, so it names the block's index range.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients._verify import checked_checkpoint
from provledger import merkle
from provledger.blocks import BlockHeader, BlockSignature
from provledger.errors import SignatureError
from provledger.merkle import CompactRange
from provledger.note import Verifier, parse_note, verify_cosignature

__all__ = ["AuditFailure", "AuditReport", "audit_bundle", "load_node_keys"]

_MAX_LEAF_BYTES = 65_535  # the tlog-tiles entry limit (SPEC §1)
_MAX_LEAF_BASE64 = 4 * ((_MAX_LEAF_BYTES + 2) // 3)
_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class AuditFailure:
    line: int
    """1-based line of the bundle"""
    height: int | None
    """block height (as expected at that point of the chain, or as the line claims)"""
    index: int | None
    """leaf index, when one leaf is at fault"""
    message: str

    def where(self) -> str:
        parts = []
        if self.height is not None:
            parts.append(f"block {self.height}")
        if self.index is not None:
            parts.append(f"leaf {self.index}")
        parts.append(f"line {self.line}")
        return ", ".join(parts)

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "height": self.height,
            "index": self.index,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class AuditReport:
    failure: AuditFailure | None
    blocks: int
    leaves: int
    first_height: int | None
    last_height: int | None
    tree_size: int
    root_hash: bytes
    node_signatures: int
    """node signatures verified under the given node keys"""
    unchecked_signatures: int
    """signatures by keys that were not given (neither the log key nor a node key)"""
    checkpoint: str | None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failure": None if self.failure is None else self.failure.to_json(),
            "blocks": self.blocks,
            "leaves": self.leaves,
            "first_height": self.first_height,
            "last_height": self.last_height,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "node_signatures": self.node_signatures,
            "unchecked_signatures": self.unchecked_signatures,
            "checkpoint": self.checkpoint,
        }


class _Failed(Exception):
    def __init__(self, failure: AuditFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def _extend(tree: CompactRange, leaf_hashes: list[bytes]) -> CompactRange:
    """`tree` grown by a block's leaf hashes, as a new CompactRange.

    The same merge as CompactRange.append, without the per-leaf list of completed nodes
    that an auditor does not need: about half the cost per leaf, which matters at a
    million leaves. Its result is checked against every signed header's tree root.
    """
    edge = tree.hashes()
    size = tree.size
    pop = edge.pop
    push = edge.append
    sha = _sha256
    for h in leaf_hashes:
        index = size
        while index & 1:
            h = sha(b"\x01" + pop() + h).digest()
            index >>= 1
        push(h)
        size += 1
    return CompactRange.from_frontier(size, edge)


def load_node_keys(path: Path) -> list[Verifier]:
    """Node verifier keys from a file: one key string per line (# comments allowed), a
    JSON list of key strings, or the JSON of `/v1/log` (its `nodes`)."""
    text = path.read_text(encoding="utf-8")
    stripped = text.strip()
    keys: list[str]
    if stripped.startswith(("{", "[")):
        data = json.loads(stripped)
        if isinstance(data, dict):
            data = data.get("nodes", [])
        keys = [str(k["verifier_key"]) if isinstance(k, dict) else str(k) for k in data]
    else:
        keys = [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    return [Verifier.from_string(k) for k in keys]


class _Auditor:
    def __init__(self, log_key: Verifier, node_keys: Iterable[Verifier]) -> None:
        self.log_key = log_key
        self.log_kid = log_key.key_id.hex()
        self.node_keys: dict[str, Verifier] = {v.key_id.hex(): v for v in node_keys}
        self.node_names: dict[str, Verifier] = {v.name: v for v in self.node_keys.values()}
        self.tree: CompactRange | None = None
        self.frontier_seen = False
        self.start_size = 0
        self.expected_height: int | None = None
        self.prev_hash: bytes | None = None
        self.blocks = 0
        self.first_height: int | None = None
        self.node_signatures = 0
        self.unchecked = 0
        self.checkpoint: str | None = None
        self.line = 0

    def fail(self, message: str, height: int | None = -1, index: int | None = None) -> _Failed:
        """A failure at `height` (-1: the block expected next; None: not in a block)."""
        if height == -1:
            height = self.expected_height
        return _Failed(AuditFailure(self.line, height, index, message))

    def frontier(self, obj: Any) -> None:
        if self.line != 1:
            raise self.fail("a frontier line may only come first")
        try:
            size = int(obj["tree_size"])
            hashes = [bytes.fromhex(h) for h in obj["hashes"]]
            if size < 0 or any(len(h) != 32 for h in hashes):
                raise ValueError("bad sizes")
            self.tree = CompactRange.from_frontier(size, hashes)
        except (KeyError, TypeError, ValueError) as e:
            raise self.fail(f"malformed frontier: {e}") from None
        self.frontier_seen = True
        self.start_size = size

    def block(self, obj: dict[str, Any]) -> None:
        raw_header = obj.get("header")
        claimed = raw_header.get("height") if isinstance(raw_header, dict) else None
        where = claimed if isinstance(claimed, int) else self.expected_height
        try:
            header = BlockHeader.from_json(raw_header)
        except ValueError as e:
            raise self.fail(str(e), where) from None
        height = header.height
        header_bytes = header.canonical()
        block_hash = _sha256(header_bytes).digest()

        # Signatures first: they say whether the header is the log's at all.
        try:
            signatures = [BlockSignature.from_json(s) for s in obj.get("signatures") or []]
        except ValueError as e:
            raise self.fail(str(e), height) from None
        leader = [s for s in signatures if s.key_id == self.log_kid]
        if not leader:
            raise self.fail(
                f"no leader signature under the log key {self.log_key.name}+{self.log_kid}",
                height,
            )
        for s in leader:
            if not self.log_key.verify(header_bytes, s.signature):
                raise self.fail(
                    f"leader signature (node {s.node}, key id {s.key_id}) does not verify "
                    "under the log key",
                    height,
                )
        for s in signatures:
            if s.key_id == self.log_kid:
                continue
            key = self.node_keys.get(s.key_id)
            if key is None:
                named = self.node_names.get(s.node)
                if named is not None:
                    raise self.fail(
                        f"signature of node {s.node} has key id {s.key_id}, "
                        f"but that node's key id is {named.key_id.hex()}",
                        height,
                    )
                self.unchecked += 1
                continue
            if s.node != key.name or not key.verify(header_bytes, s.signature):
                raise self.fail(
                    f"signature of node {s.node} (key id {s.key_id}) does not verify", height
                )
            self.node_signatures += 1

        if obj.get("hash") != block_hash.hex():
            raise self.fail(
                f"hash field {obj.get('hash')!r} is not the SHA-256 of the header "
                f"({block_hash.hex()})",
                height,
            )

        # The chain.
        if self.expected_height is None:
            if self.tree is None:  # a bundle from genesis
                if height != 0:
                    raise self.fail(
                        f"the first block has height {height}, but there is no frontier line "
                        "(a bundle that does not start at height 0 needs one)",
                        height,
                    )
                self.tree = CompactRange()
            self.first_height = height
        else:
            if height != self.expected_height:
                raise self.fail(
                    f"height {height} where {self.expected_height} was expected "
                    "(a block is missing, repeated or out of order)",
                    self.expected_height,
                )
            if header.prev_hash != self.prev_hash:
                raise self.fail(
                    f"prev_hash {header.prev_hash.hex()} is not the hash of block "
                    f"{height - 1} ({self.prev_hash.hex() if self.prev_hash else '?'})",
                    height,
                )
        tree = self.tree
        assert tree is not None
        if header.first_index != tree.size:
            raise self.fail(
                f"first_index {header.first_index}, but the blocks before it hold "
                f"{tree.size} leaves",
                height,
            )

        # The leaves.
        leaves = obj.get("leaves")
        if not isinstance(leaves, list):
            raise self.fail("block line has no 'leaves' list", height)
        if len(leaves) != header.count:
            raise self.fail(
                f"header count is {header.count} but the block carries {len(leaves)} leaves",
                height,
            )
        first = header.first_index
        hashes = self._leaf_hashes(leaves, height, first)
        entries_root = merkle.root(hashes)
        if entries_root != header.entries_root:
            last = first + header.count - 1
            raise self.fail(
                f"the leaves (indexes {first}..{last}) hash to entries root "
                f"{entries_root.hex()}, not the header's {header.entries_root.hex()}",
                height,
            )
        extended = _extend(tree, hashes)
        tree_root = extended.root()
        if tree_root != header.tree_root:
            raise self.fail(
                f"the tree of size {extended.size} has root {tree_root.hex()}, not the "
                f"header's {header.tree_root.hex()}"
                + (" (the frontier line is wrong)" if self.frontier_seen else ""),
                height,
            )
        self.tree = extended
        self.blocks += 1
        self.prev_hash = block_hash
        self.expected_height = height + 1

    def _leaf_hashes(self, leaves: list[Any], height: int, first: int) -> list[bytes]:
        """Leaf hashes of a block: one comprehension on the fast path; when it fails, a
        second pass finds the leaf to name."""
        a2b = binascii.a2b_base64
        sha = _sha256
        try:
            if max(map(len, leaves), default=0) <= _MAX_LEAF_BASE64:
                return [sha(b"\x00" + a2b(s, strict_mode=True)).digest() for s in leaves]
        except (binascii.Error, TypeError, ValueError):
            pass
        hashes = []
        for i, encoded in enumerate(leaves):
            try:
                leaf = a2b(encoded, strict_mode=True)
            except (binascii.Error, TypeError, ValueError):
                raise self.fail("leaf is not standard base64", height, first + i) from None
            if len(leaf) > _MAX_LEAF_BYTES:
                raise self.fail(
                    f"leaf is {len(leaf)} bytes, beyond the {_MAX_LEAF_BYTES}-byte limit",
                    height,
                    first + i,
                )
            hashes.append(sha(b"\x00" + leaf).digest())
        return hashes

    def final(self, obj: dict[str, Any]) -> None:
        note = obj.get("checkpoint")
        if not isinstance(note, str):
            raise self.fail("the checkpoint line holds no note", None)
        try:
            checkpoint = checked_checkpoint(note, self.log_key)
        except SignatureError as e:
            raise self.fail(f"final checkpoint: {e.detail}", None) from None
        tree = self.tree or CompactRange()
        root = tree.root()
        if checkpoint.size != tree.size or checkpoint.root_hash != root:
            raise self.fail(
                f"final checkpoint is for size {checkpoint.size} root "
                f"{checkpoint.root_hash.hex()}, but the blocks make size {tree.size} "
                f"root {root.hex()}",
                None,
            )
        signers = {(s.name, s.key_id) for s in parse_note(note).signatures}
        for key in self.node_keys.values():
            if (key.name, key.cosignature_key_id) in signers:
                try:
                    verify_cosignature(note, key)
                except (SignatureError, ValueError) as e:
                    raise self.fail(f"final checkpoint cosignature: {e}", None) from None
                self.node_signatures += 1
        self.checkpoint = note

    def report(self, failure: AuditFailure | None) -> AuditReport:
        tree = self.tree or CompactRange()
        return AuditReport(
            failure=failure,
            blocks=self.blocks,
            leaves=tree.size - self.start_size,
            first_height=self.first_height,
            last_height=None if self.expected_height is None else self.expected_height - 1,
            tree_size=tree.size,
            root_hash=tree.root(),
            node_signatures=self.node_signatures,
            unchecked_signatures=self.unchecked,
            checkpoint=self.checkpoint,
        )


def audit_bundle(
    lines: Iterable[bytes],
    log_key: Verifier,
    node_keys: Iterable[Verifier] = (),
    *,
    progress: Callable[[int, int, int], None] | None = None,
) -> AuditReport:
    """Audits a bundle read line by line; `progress(bytes, blocks, leaves)` after each line."""
    auditor = _Auditor(log_key, node_keys)
    done = False
    consumed = 0
    try:
        for raw in lines:
            auditor.line += 1
            consumed += len(raw)
            if done:
                raise auditor.fail("data after the final checkpoint", None)
            try:
                obj = json.loads(raw)
            except ValueError:
                raise auditor.fail(
                    "not a complete JSON line (the bundle is truncated or corrupted)"
                ) from None
            if not isinstance(obj, dict):
                raise auditor.fail("not a JSON object")
            if "header" in obj:
                auditor.block(obj)
            elif "frontier" in obj:
                auditor.frontier(obj["frontier"])
            elif "checkpoint" in obj:
                auditor.final(obj)
                done = True
            else:
                raise auditor.fail(f"unknown line with keys {sorted(obj)[:4]}")
            if progress is not None:
                progress(consumed, auditor.blocks, (auditor.tree.size if auditor.tree else 0))
        if not done:
            auditor.line += 1
            raise auditor.fail(
                "the bundle ends without its final checkpoint line (truncated?)", None
            )
    except _Failed as f:
        return auditor.report(f.failure)
    return auditor.report(None)
