"""A cluster behind the gateway, over mutual TLS with the private CA of `cluster init`:
the gateway follows the leader across a failover, `/v1/log` lists every member's node
key, blocks carry the followers' signatures; and a caller (client or would-be node) that
presents no certificate, or one from another CA, is refused."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import grpc
import httpx
import pytest

from clients._cluster import InitOptions, init_cluster
from provledger.blocks import BlockSignature, verify_header_signature
from provledger.merkle import verify_inclusion
from provledger.note import Verifier, verify_checkpoint, verify_cosignature
from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import ledger_pb2_grpc as pb_grpc
from provledger.v1 import replication_pb2_grpc as rpb_grpc
from tests.harness.cluster import client_credentials, start_cluster
from tests.harness.gateway import sample_event, start_gateway
from tests.harness.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _post_until_accepted(
    client: httpx.Client, event: dict[str, object], timeout: float
) -> httpx.Response:
    """POST, retrying the same event while the answer is 503 (idempotent by (source, id))."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.post("/v1/events", json=event)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_gateway_follows_the_cluster_over_mutual_tls(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path)
    root = cluster.root
    tls = {
        "ca": str(root / "ca" / "ca.pem"),
        "cert": str(root / "gateway" / "gateway.pem"),
        "key": str(root / "gateway" / "gateway-key.pem"),
    }
    gateway = start_gateway(tmp_path, cluster.addresses, tls=tls)
    try:
        with gateway.client() as client:
            wait_until(lambda: client.get("/readyz").status_code == 200, 30, "gateway ready")
            first = _post_until_accepted(client, sample_event("training", str(uuid.uuid4())), 30)
            assert first.status_code == 201, first.text

            log = client.get("/v1/log").json()
            nodes = {n["node"]: n["verifier_key"] for n in log["nodes"]}
            assert nodes == {n["node"]: n["verifier_key"] for n in cluster.manifest["nodes"]}
            assert log["verifier_key"] == cluster.manifest["verifier_key"]

            # The leader stores each follower's verified signature of the block.
            leader = cluster.leader()
            height = first.json()["block_height"]

            def signed_by_all() -> bool:
                block = leader.stub().GetBlock(pb.GetBlockRequest(height=height))
                return {s.node for s in block.signatures} == set(nodes)

            wait_until(signed_by_all, 30, "every node's signature on the block")
            block = leader.stub().GetBlock(pb.GetBlockRequest(height=height))
            for s in block.signatures[1:]:
                verify_header_signature(
                    block.header,
                    BlockSignature(s.node, s.key_id, s.sig),
                    Verifier.from_string(nodes[s.node]),
                )

            # With the log quiet, the leader's latest checkpoint gathers a C2SP
            # cosignature from each follower that applied its block, over the gateway too.
            followers = {f.name for f in cluster.followers(leader)}

            def cosigners() -> set[str]:
                note = client.get("/v1/checkpoint").text
                return {
                    name
                    for name in followers
                    if f"\u2014 {name} " in note
                    and verify_cosignature(note, Verifier.from_string(nodes[name])) > 0
                }

            wait_until(lambda: cosigners() == followers, 30, "the followers' cosignatures")
            note = leader.stub().GetCheckpoint(pb.GetCheckpointRequest()).note
            assert verify_checkpoint(note, Verifier.from_string(log["verifier_key"]))
            for name in followers:
                stamp = verify_cosignature(note, Verifier.from_string(nodes[name]))
                assert abs(stamp - time.time()) < 300

            # A follower serves proofs of its own, under its cosigned checkpoint, and
            # forwards the writes it is sent (here a client stream) to the leader.
            follower = cluster.followers(leader)[0]
            index = first.json()["index"]
            wait_until(
                lambda: follower.stub().GetCheckpoint(pb.GetCheckpointRequest()).tree_size > index,
                30,
                "the follower to hold the entry",
            )
            proof = follower.stub().GetInclusionProof(pb.InclusionProofRequest(index=index))
            checkpoint = verify_checkpoint(
                proof.checkpoint, Verifier.from_string(log["verifier_key"])
            )
            verify_inclusion(
                index,
                proof.tree_size,
                bytes(proof.leaf_hash),
                list(proof.hashes),
                checkpoint.root_hash,
            )
            verify_cosignature(proof.checkpoint, Verifier.from_string(nodes[follower.name]))
            streamed = follower.stub().AppendStream(
                iter(
                    pb.AppendRequest(
                        event=json.dumps(sample_event("cost", str(uuid.uuid4()))).encode()
                    )
                    for _ in range(3)
                ),
                timeout=30,
            )
            assert [r.WhichOneof("outcome") for r in streamed.results] == ["committed"] * 3

            # Failover: the gateway finds the new leader; the client retries on 503.
            leader.kill()
            event = sample_event("deployment", str(uuid.uuid4()))
            after = _post_until_accepted(client, event, 30)
            assert after.status_code == 201, after.text
            again = client.post("/v1/events", json=event)
            assert again.status_code == 200 and again.json()["index"] == after.json()["index"]
            new_leader = cluster.leader(exclude=leader)
            assert new_leader.name != leader.name
            entry = client.get(f"/v1/entries/{first.json()['index']}")
            assert entry.status_code == 200
    finally:
        gateway.stop()
        cluster.stop()


def test_callers_without_a_certificate_of_the_ca_are_refused(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path, nodes=1)
    try:
        node = cluster.nodes[0]
        ca = (cluster.root / "ca" / "ca.pem").read_bytes()
        stranger_root = tmp_path / "stranger"
        init_cluster(stranger_root, InitOptions(nodes=1))  # another CA, another client cert
        attempts = {
            "no certificate": grpc.secure_channel(
                node.address, grpc.ssl_channel_credentials(root_certificates=ca)
            ),
            "a certificate of another CA": grpc.secure_channel(
                node.address,
                grpc.ssl_channel_credentials(
                    root_certificates=ca,
                    private_key=(stranger_root / "client" / "client-key.pem").read_bytes(),
                    certificate_chain=(stranger_root / "client" / "client.pem").read_bytes(),
                ),
            ),
            "no TLS at all": grpc.insecure_channel(node.address),
        }
        for what, channel in attempts.items():
            with pytest.raises(grpc.RpcError) as refused:
                pb_grpc.LedgerStub(channel).GetStatus(pb.GetStatusRequest(), timeout=3)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, what
            with pytest.raises(grpc.RpcError):
                rpb_grpc.ReplicationStub(channel).PushBlock(pb.Block(), timeout=3)
            channel.close()
        # The CA's own client certificate is let in.
        good = grpc.secure_channel(node.address, client_credentials(cluster.root))
        assert pb_grpc.LedgerStub(good).GetStatus(pb.GetStatusRequest(), timeout=3).node
        good.close()
    finally:
        cluster.stop()
