"""A node SIGKILLed at random moments under load loses no acknowledged event and corrupts nothing."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest

from provledger import merkle
from provledger.note import Verifier, verify_checkpoint
from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import ledger_pb2_grpc as pb_grpc
from tests.harness.node import start_node, wait_ready
from tests.harness.procs import python_module, spawn
from tests.integration.ledger_checks import check_whole_log

pytestmark = pytest.mark.integration


def inference_event(source: str, event_id: str) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": "provledger.inference.v1",
            "time": "2026-11-26T12:00:00Z",
            "subject": "model:fraud@1",
            "data": {
                "model": {"name": "fraud", "version": "1"},
                "input_commitment": "a" * 64,
                "output_commitment": "b" * 64,
            },
        }
    ).encode()


class Client(threading.Thread):
    """Appends events one by one, retrying each with the same (source, id) until acknowledged."""

    def __init__(self, address: str, name: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.source = f"urn:test:{name}"
        self.stop_flag = stop
        self.acked: dict[str, int] = {}
        self.duplicates = 0

    def run(self) -> None:
        channel = grpc.insecure_channel(self.address)
        stub = pb_grpc.LedgerStub(channel)
        while not self.stop_flag.is_set():
            event_id = str(uuid.uuid4())
            raw = inference_event(self.source, event_id)
            while not self.stop_flag.is_set():
                try:
                    receipt = stub.Append(pb.AppendRequest(event=raw), timeout=5)
                except grpc.RpcError as exc:
                    assert exc.code() in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    ), exc
                    time.sleep(0.05)
                    continue
                self.acked[event_id] = receipt.index
                self.duplicates += receipt.duplicate
                break
        channel.close()


def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    node = start_node(tmp_path, max_block_delay_ms=5)
    stub = node.stub()
    stop = threading.Event()
    clients = [Client(node.address, f"client-{i}", stop) for i in range(4)]
    for c in clients:
        c.start()
    rng = random.Random(7)
    seen_checkpoints: list[str] = []
    proc = node.proc
    for _ in range(4):
        time.sleep(rng.uniform(0.3, 1.2))
        seen_checkpoints.append(stub.GetCheckpoint(pb.GetCheckpointRequest()).note)
        proc.kill()
        proc = spawn(
            proc.name, python_module("ledger", "--config", str(node.config_path)), proc.log_path
        )
        wait_ready(node.address, proc)
    time.sleep(0.5)
    stop.set()
    for c in clients:
        c.join(timeout=30)
    try:
        acked = sum(len(c.acked) for c in clients)
        assert acked > 50, "the load generator acknowledged too little to mean anything"
        identities = check_whole_log(stub)
        for c in clients:
            for event_id, index in c.acked.items():
                assert identities.get((c.source, event_id)) == index, f"{event_id} lost or moved"
        # Every checkpoint seen before a crash is a prefix of the final log.
        info = stub.GetLogInfo(pb.GetLogInfoRequest())
        verifier = Verifier.from_string(info.verifier_key)
        for note in seen_checkpoints:
            old = verify_checkpoint(note, verifier)
            proof = stub.GetConsistencyProof(
                pb.ConsistencyProofRequest(first=old.size, second=info.tree_size)
            )
            merkle.verify_consistency(
                old.size, info.tree_size, old.root_hash, info.root_hash, list(proof.hashes)
            )
        # Proofs for a sample of acknowledged entries verify against the final root.
        sample = rng.sample(sorted(identities.values()), min(50, len(identities)))
        for index in sample:
            p = stub.GetInclusionProof(pb.InclusionProofRequest(index=index))
            merkle.verify_inclusion(index, p.tree_size, p.leaf_hash, list(p.hashes), info.root_hash)
    finally:
        proc.stop()
