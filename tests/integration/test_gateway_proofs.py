"""Proofs the gateway computes from the node's hash tiles, through real processes.

Each one must equal, byte for byte, the node's own answer (GetInclusionProof /
GetConsistencyProof) and the answer of a gateway that asks the node for every proof,
and verify against roots recomputed here from the leaves and against the signed
checkpoint it comes with. The gateway's metrics tell which proofs were computed from
tiles, so that these tests fail if the local path is silently not taken. Reads that are
not public stay the node's to authorize.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from provledger import merkle
from provledger.note import Checkpoint, Verifier, verify_checkpoint
from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import ledger_pb2_grpc as pb_grpc
from tests.harness.gateway import GatewayHandle, sample_event, start_gateway
from tests.harness.node import NodeHandle, start_node

pytestmark = pytest.mark.integration

# Enough leaves for several full level-0 tiles, a partial one and a level-1 tile.
BATCHES = (700, 300, 999, 1)


@dataclass
class Stack:
    node: NodeHandle
    tiles: GatewayHandle  # proofs from tiles (the default)
    forwarding: GatewayHandle  # every proof asked of the node
    stub: pb_grpc.LedgerStub
    verifier: Verifier
    leaf_hashes: list[bytes]  # of the whole log, from the node's export
    checkpoints: dict[int, Checkpoint]  # verified, from the receipts, by tree size

    def root(self, size: int) -> bytes:
        return merkle.root(self.leaf_hashes[:size])


def _events(n: int) -> list[dict[str, object]]:
    return [sample_event("inference", f"proof-{uuid.uuid4()}") for _ in range(n)]


def _export_leaf_hashes(stub: pb_grpc.LedgerStub) -> list[bytes]:
    hashes = []
    for item in stub.Export(pb.ExportRequest()):
        if item.WhichOneof("item") == "block":
            hashes += [merkle.leaf_hash(leaf) for leaf in item.block.leaves]
    return hashes


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("gateway-proofs")
    node = start_node(tmp, max_block_delay_ms=5)
    gateways: list[GatewayHandle] = []
    try:
        gateways.append(start_gateway(tmp, [node.address], cache_entries=0))
        gateways.append(start_gateway(tmp, [node.address], cache_entries=0, local_proofs=False))
        channel = node.channel()
        stub = pb_grpc.LedgerStub(channel)
        with gateways[0].client() as c:
            verifier = Verifier.from_string(c.get("/v1/log").json()["verifier_key"])
            checkpoints = {}
            for n in BATCHES:
                answer = c.post("/v1/events:batch", json={"events": _events(n)})
                assert answer.status_code == 200 and answer.json()["status"] == "success"
                for receipt in answer.json()["receipts"]:
                    cp = verify_checkpoint(receipt["checkpoint"], verifier)
                    checkpoints[cp.size] = cp
        leaf_hashes = _export_leaf_hashes(stub)
        assert len(leaf_hashes) == sum(BATCHES) == max(checkpoints)
        yield Stack(node, gateways[0], gateways[1], stub, verifier, leaf_hashes, checkpoints)
        channel.close()
    finally:
        for gateway in gateways:
            gateway.stop()
        node.stop()


def proofs_computed(gateway: GatewayHandle) -> dict[str, float]:
    text = httpx.get(f"{gateway.url}/metrics").text
    found = re.findall(
        r'^provledger_gateway_proofs_computed_total\{source="(\w+)"\} (\S+)$', text, re.M
    )
    return {source: float(value) for source, value in found}


def hashes_of(body: dict[str, object]) -> list[bytes]:
    hashes = body["hashes"]
    assert isinstance(hashes, list)
    return [bytes.fromhex(h) for h in hashes]


def test_pinned_inclusion_proofs_equal_the_nodes(stack: Stack) -> None:
    rng = random.Random(1)
    size = len(stack.leaf_hashes)
    sizes = sorted(stack.checkpoints)
    before = proofs_computed(stack.tiles)
    asked = 0
    with stack.tiles.client() as tiles, stack.forwarding.client() as forwarding:
        for _ in range(150):
            m = rng.choice(sizes) if rng.random() < 0.5 else rng.randint(1, size)
            i = rng.choice([0, m - 1, rng.randrange(m)])
            params = {"index": i, "tree_size": m}
            ours = tiles.get("/v1/proof/inclusion", params=params)
            theirs = forwarding.get("/v1/proof/inclusion", params=params)
            asked += 1
            assert ours.status_code == 200, ours.text
            assert ours.content == theirs.content
            node = stack.stub.GetInclusionProof(pb.InclusionProofRequest(index=i, tree_size=m))
            body = ours.json()
            assert (body["index"], body["tree_size"]) == (i, m)
            assert bytes.fromhex(body["leaf_hash"]) == node.leaf_hash == stack.leaf_hashes[i]
            assert hashes_of(body) == list(node.hashes)
            merkle.verify_inclusion(i, m, node.leaf_hash, hashes_of(body), stack.root(m))
            if m in stack.checkpoints:
                assert stack.checkpoints[m].root_hash == stack.root(m)
    after = proofs_computed(stack.tiles)
    assert after["tiles"] - before["tiles"] == asked
    assert after["node"] == before["node"]


def test_latest_inclusion_proofs_come_with_their_checkpoint(stack: Stack) -> None:
    rng = random.Random(2)
    size = len(stack.leaf_hashes)
    latest = stack.stub.GetCheckpoint(pb.GetCheckpointRequest())
    before = proofs_computed(stack.tiles)
    with stack.tiles.client() as tiles, stack.forwarding.client() as forwarding:
        for i in [0, size - 1, *(rng.randrange(size) for _ in range(60))]:
            ours = tiles.get("/v1/proof/inclusion", params={"index": i})
            theirs = forwarding.get("/v1/proof/inclusion", params={"index": i})
            assert ours.status_code == 200, ours.text
            assert ours.content == theirs.content  # nothing is appended meanwhile
            body = ours.json()
            assert body["checkpoint"] == latest.note
            checkpoint = verify_checkpoint(body["checkpoint"], stack.verifier)
            assert checkpoint.size == body["tree_size"] == latest.tree_size
            merkle.verify_inclusion(
                i, checkpoint.size, stack.leaf_hashes[i], hashes_of(body), checkpoint.root_hash
            )
    after = proofs_computed(stack.tiles)
    assert after["tiles"] - before["tiles"] == 62
    assert after["node"] == before["node"]


def test_consistency_proofs_equal_the_nodes(stack: Stack) -> None:
    rng = random.Random(3)
    size = len(stack.leaf_hashes)
    sizes = sorted(stack.checkpoints)
    before = proofs_computed(stack.tiles)
    pairs = [(0, size), (size, size), (1, size), (sizes[0], sizes[-1])]
    for _ in range(60):
        a, b = (
            rng.sample(sizes, 2)
            if len(pairs) < 24
            else (rng.randint(0, size), rng.randint(0, size))
        )
        pairs.append((min(a, b), max(a, b)))
    with stack.tiles.client() as tiles, stack.forwarding.client() as forwarding:
        for first, second in pairs:
            params = {"first": first, "second": second}
            ours = tiles.get("/v1/proof/consistency", params=params)
            theirs = forwarding.get("/v1/proof/consistency", params=params)
            assert ours.status_code == 200, ours.text
            assert ours.content == theirs.content
            node = stack.stub.GetConsistencyProof(
                pb.ConsistencyProofRequest(first=first, second=second)
            )
            assert hashes_of(ours.json()) == list(node.hashes)
            merkle.verify_consistency(
                first, second, stack.root(first), stack.root(second), hashes_of(ours.json())
            )
    after = proofs_computed(stack.tiles)
    assert after["tiles"] - before["tiles"] == len(pairs)


def test_errors_and_leaf_hash_lookups_are_the_nodes(stack: Stack) -> None:
    size = len(stack.leaf_hashes)
    with stack.tiles.client() as tiles, stack.forwarding.client() as forwarding:
        for path, params in (
            ("/v1/proof/inclusion", {"index": size + 5}),
            ("/v1/proof/inclusion", {"index": 3, "tree_size": size + 1}),
            ("/v1/proof/inclusion", {"index": 9, "tree_size": 9}),
            ("/v1/proof/inclusion", {"index": size, "tree_size": size}),
            ("/v1/proof/consistency", {"first": 1, "second": size + 1}),
            ("/v1/proof/inclusion", {"leaf_hash": stack.leaf_hashes[17].hex()}),
            ("/v1/proof/inclusion", {"leaf_hash": "ab" * 32}),
        ):
            ours = tiles.get(path, params=params)
            theirs = forwarding.get(path, params=params)
            assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())
        assert ours.status_code == 404
        by_hash = tiles.get(
            "/v1/proof/inclusion", params={"leaf_hash": stack.leaf_hashes[17].hex()}
        ).json()
        assert by_hash["index"] == 17 and "checkpoint" in by_hash


def test_appends_are_covered_at_once(stack: Stack) -> None:
    """Once an append through the gateway is acknowledged, the latest proofs cover it;
    one appended past the gateway (straight to the node) is proven by the node."""
    with stack.tiles.client() as tiles:
        for _ in range(3):
            receipt = tiles.post("/v1/events", json=_events(1)[0])
            assert receipt.status_code == 201, receipt.text
            r = receipt.json()
            for index in (r["index"], 0):
                body = tiles.get("/v1/proof/inclusion", params={"index": index}).json()
                checkpoint = verify_checkpoint(body["checkpoint"], stack.verifier)
                assert checkpoint.size == body["tree_size"] >= r["tree_size"]
                leaf_hash = bytes.fromhex(body["leaf_hash"])
                if index == r["index"]:
                    assert leaf_hash == bytes.fromhex(r["leaf_hash"])
                merkle.verify_inclusion(
                    index, checkpoint.size, leaf_hash, hashes_of(body), checkpoint.root_hash
                )
        direct = stack.stub.Append(pb.AppendRequest(event=json.dumps(_events(1)[0]).encode()))
        body = tiles.get("/v1/proof/inclusion", params={"index": direct.index}).json()
        checkpoint = verify_checkpoint(body["checkpoint"], stack.verifier)
        assert checkpoint.size >= direct.tree_size
        assert bytes.fromhex(body["leaf_hash"]) == direct.leaf_hash
        merkle.verify_inclusion(
            direct.index, checkpoint.size, direct.leaf_hash, hashes_of(body), checkpoint.root_hash
        )


# --- reads that are not public --------------------------------------------------------

PRINCIPALS = [
    {"name": "ops", "token": "admin-token", "roles": ["admin"]},
    {"name": "dash", "token": "reader-token", "roles": ["reader"]},
]
ADMIN = {"Authorization": "Bearer admin-token"}
READER = {"Authorization": "Bearer reader-token"}
WRONG = {"Authorization": "Bearer wrong-token"}


def _auth_stack(tmp: Path, public_reads: bool) -> tuple[NodeHandle, GatewayHandle]:
    node = start_node(tmp, principals=PRINCIPALS, public_reads=public_reads)
    try:
        gateway = start_gateway(tmp, [node.address], cache_entries=0)
    except BaseException:
        node.stop()
        raise
    with gateway.client(headers=ADMIN) as c:
        assert c.post("/v1/events:batch", json={"events": _events(300)}).status_code == 200
    return node, gateway


@pytest.mark.parametrize("public_reads", [False, True])
def test_the_node_authorizes_reads(tmp_path: Path, public_reads: bool) -> None:
    node, gateway = _auth_stack(tmp_path, public_reads)
    try:
        with gateway.client() as c:
            before = proofs_computed(gateway)
            for path in ("/v1/proof/inclusion?index=5", "/v1/proof/consistency?first=3&second=300"):
                anonymous = c.get(path)
                assert anonymous.status_code == (200 if public_reads else 401), anonymous.text
                assert c.get(path, headers=WRONG).status_code == 401
                assert c.get(path, headers=READER).status_code == 200
                assert c.get(f"{path}&tree_size=300" if "index" in path else path).status_code == (
                    200 if public_reads else 401
                )
            after = proofs_computed(gateway)
        # Only credential-less callers of a public log are served from tiles; anyone with
        # a token (right or wrong) is the node's to judge.
        assert after["tiles"] - before["tiles"] == (4 if public_reads else 0)
        assert after["node"] - before["node"] == (4 if public_reads else 8)
    finally:
        gateway.stop()
        node.stop()
