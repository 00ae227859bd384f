"""A follower refuses forged blocks pushed to it (bad signature, wrong prev hash, wrong
root, and a well-formed block that etcd never committed), whether pushed as a Block or
as a compressed payload, and a payload that is no block: each is named in its log and
none is applied; the cluster then carries on with the real blocks."""

from __future__ import annotations

import base64
import hashlib
import itertools
import time
import zlib
from pathlib import Path

import grpc
import pytest

from ledger._replica import encode_payload
from provledger import merkle
from provledger.blocks import BlockHeader, sign_header, timestamp_ms
from provledger.events import leaf_bytes
from provledger.note import Signer
from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import replication_pb2 as rpb
from tests.harness.cluster import ClusterNode, LoadClients, check_cluster, start_cluster
from tests.harness.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _event(i: int) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"forged-{i}",
        "source": "urn:test:forger",
        "type": "provledger.inference.v1",
        "time": "2026-11-26T12:00:00Z",
        "data": {
            "model": {"name": "fraud", "version": "1"},
            "input_commitment": "ab" * 32,
            "output_commitment": "cd" * 32,
        },
    }


def _frontier(node: ClusterNode) -> merkle.CompactRange:
    compact = merkle.CompactRange()
    for item in node.stub().Export(pb.ExportRequest(from_height=0)):
        if item.WhichOneof("item") == "block":
            for leaf in item.block.leaves:
                compact.append(merkle.leaf_hash(leaf))
    return compact


def _block(header: BlockHeader, leaves: list[bytes], signer: Signer) -> pb.Block:
    raw = header.canonical()
    sig = sign_header(raw, header.leader, signer)
    return pb.Block(
        header=raw,
        hash=hashlib.sha256(raw).digest(),
        signatures=[pb.BlockSignature(**sig.to_json())],
        leaves=leaves,
        first_index=header.first_index,
        count=header.count,
    )


def test_forged_blocks_are_refused_and_never_applied(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path)
    load = LoadClients(cluster, clients=2, batch=10, timeout=3.0)
    try:
        load.start()
        wait_until(lambda: load.count() > 100, 30, "acknowledged writes")
        load.stop()
        cluster.wait_converged()
        leader = cluster.leader()
        follower = cluster.followers(leader)[0]
        status = follower.status()
        compact = _frontier(follower)
        origin = cluster.manifest["origin"]
        seed = base64.b64decode((cluster.root / "keys" / "log.key").read_text())
        log_key = Signer.from_seed(origin, seed)

        leaves = [leaf_bytes(_event(i), "local") for i in range(2)]
        hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
        grown = merkle.CompactRange.from_frontier(compact.size, compact.hashes())
        for h in hashes:
            grown.append(h)
        good = BlockHeader(
            height=status.height + 1,
            prev_hash=bytes(status.head_hash),
            first_index=compact.size,
            count=2,
            entries_root=merkle.root(hashes),
            tree_size=grown.size,
            tree_root=grown.root(),
            timestamp=timestamp_ms(),
            leader=leader.name,
            term=leader.status().term,
        )
        forged = {
            "does not verify under the log key": _block(good, leaves, Signer.generate(origin)),
            "does not match the head": _block(
                BlockHeader(**{**_fields(good), "prev_hash": hashlib.sha256(b"x").digest()}),
                leaves,
                log_key,
            ),
            "tree_root does not recompute": _block(
                BlockHeader(**{**_fields(good), "tree_root": hashlib.sha256(b"y").digest()}),
                leaves,
                log_key,
            ),
            "etcd has committed no block": _block(good, leaves, log_key),
        }
        replication = follower.replication()
        pushes = {
            "Block": replication.PushBlock,
            "payload": lambda block, timeout: replication.PushPayload(
                rpb.BlockPayload(payload=encode_payload(block.SerializeToString())),
                timeout=timeout,
            ),
        }
        for (reason, block), (form, push) in itertools.product(forged.items(), pushes.items()):
            with pytest.raises(grpc.RpcError) as refused:
                push(block, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (reason, form)
            assert reason in (refused.value.details() or ""), refused.value.details()
            line = f"refused block (hash {bytes(block.hash).hex()})"
            wait_until(lambda line=line: line in follower.log(), 10, f"the log to name {reason}")
            after = follower.status()
            assert (after.height, after.head_hash) == (status.height, status.head_hash)
        for payload, reason in (
            (b"\x01" + b"not zlib", "block payload does not decompress"),
            (b"\x01" + zlib.compress(b"\xff" * 64), "block payload is not a block"),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                replication.PushPayload(rpb.BlockPayload(payload=payload), timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, reason
            assert reason in (refused.value.details() or ""), refused.value.details()

        # The cluster carries on with real blocks; none of the forged ones is anywhere.
        load = LoadClients(cluster, clients=2, batch=10, timeout=3.0).start()
        wait_until(lambda: load.count() > 50, 30, "writes after the forgeries")
        time.sleep(0.5)
        load.stop()
        check_cluster(cluster, load)
        forged_hashes = {bytes(b.hash) for b in forged.values()}
        for node in cluster.nodes:
            held = node.stub().GetBlock(pb.GetBlockRequest(height=status.height + 1))
            assert bytes(held.hash) not in forged_hashes
    finally:
        load.stop()
        cluster.stop()


def _fields(header: BlockHeader) -> dict[str, object]:
    return {name: getattr(header, name) for name in BlockHeader.__dataclass_fields__}
