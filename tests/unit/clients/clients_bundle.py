"""Builds audit bundles (SPEC §3 /v1/export NDJSON) for tests, with the provledger
contract modules only: real leaves from make_entry, headers signed with the log key,
node signatures and cosignatures with node keys. Written independently of
clients._bundle so that the tests check the format, not the code against itself."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from provledger import merkle
from provledger.blocks import GENESIS_PREV_HASH, BlockHeader, sign_header, timestamp_ms
from provledger.events import make_entry
from provledger.note import Checkpoint, Signer, cosign_checkpoint, sign_checkpoint

ORIGIN = "example.org/provledger/test"


def data_event(n: int) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"event-{n:06d}",
        "source": "urn:test:bundle",
        "type": "provledger.data.v1",
        "time": "2025-01-02T03:04:05Z",
        "subject": f"dataset:d{n % 7}",
        "data": {
            "operation": "ingest",
            "dataset": {
                "name": f"d{n % 7}",
                "uri": f"s3://bucket/d{n % 7}/part-{n}.parquet",
                "digest": {"sha256": f"{n:064x}"},
            },
        },
    }


@dataclass
class Bundle:
    log: Signer
    nodes: list[Signer]
    lines: list[str]
    leaves: list[bytes] = field(default_factory=list)

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def objs(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines]


def build(
    block_sizes: list[int],
    *,
    log: Signer | None = None,
    nodes: list[Signer] | None = None,
    from_height: int = 0,
    cosign: bool = True,
) -> Bundle:
    """Blocks of the given sizes from height 0; the bundle keeps heights >= from_height
    (with a frontier line when from_height > 0) and ends with the signed checkpoint."""
    log = log or Signer.generate(ORIGIN)
    nodes = nodes if nodes is not None else [Signer.generate("node-2")]
    lines: list[str] = []
    compact = merkle.CompactRange()
    prev = GENESIS_PREV_HASH
    all_leaves: list[bytes] = []
    n = 0
    for height, count in enumerate(block_sizes):
        if height == from_height and from_height > 0:
            lines.append(
                json.dumps(
                    {
                        "frontier": {
                            "tree_size": compact.size,
                            "hashes": [h.hex() for h in compact.hashes()],
                        }
                    }
                )
            )
        leaves = [make_entry(data_event(n + i), "local").leaf for i in range(count)]
        n += count
        hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
        first = compact.size
        for h in hashes:
            compact.append(h)
        header = BlockHeader(
            height=height,
            prev_hash=prev,
            first_index=first,
            count=count,
            entries_root=merkle.root(hashes),
            tree_size=compact.size,
            tree_root=compact.root(),
            timestamp=timestamp_ms(),
            leader="node-1",
            term=1,
        )
        header_bytes = header.canonical()
        signatures = [sign_header(header_bytes, "node-1", log)]
        signatures += [sign_header(header_bytes, s.name, s) for s in nodes]
        prev = header.hash()
        all_leaves.extend(leaves)
        if height >= from_height:
            lines.append(
                json.dumps(
                    {
                        "header": header.to_json(),
                        "hash": header.hash().hex(),
                        "signatures": [s.to_json() for s in signatures],
                        "leaves": [base64.b64encode(leaf).decode() for leaf in leaves],
                    }
                )
            )
    note = sign_checkpoint(Checkpoint(log.name, compact.size, compact.root()), log)
    if cosign:
        for s in nodes:
            note = cosign_checkpoint(note, s, 1_700_000_000)
    lines.append(json.dumps({"checkpoint": note}))
    return Bundle(log, nodes, lines, all_leaves)
