"""Fencing: a leader paused past its lease and resumed commits nothing, and the log does
not fork; and etcd itself refuses a commit under a term that no longer holds the leader
key, whatever the stale leader believes."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from clients._cluster import InitOptions, init_cluster
from ledger._etcd import CommittedHead, EtcdCoordinator, EtcdSettings
from ledger.coordinator import CommitRecord, FencedError
from provledger.blocks import BlockHeader
from provledger.v1 import ledger_pb2 as pb
from tests.harness.cluster import LoadClients, check_cluster, start_cluster, start_etcd_cluster
from tests.harness.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _terms_along_the_chain(stub) -> list[int]:  # type: ignore[no-untyped-def]
    terms = []
    for item in stub.Export(pb.ExportRequest(from_height=0)):
        if item.WhichOneof("item") == "block":
            terms.append(BlockHeader.from_bytes(item.block.header).term)
    return terms


def test_paused_leader_is_fenced_and_the_log_does_not_fork(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path)
    load = LoadClients(cluster, clients=4, batch=20, timeout=2.0)
    try:
        load.start()
        wait_until(lambda: load.count() > 200, 30, "acknowledged writes")
        old = cluster.leader()
        old_term = old.status().term
        old.pause()
        paused_at = time.monotonic()
        new = cluster.leader(exclude=old, timeout=30)
        assert new.status().term > old_term
        wait_until(lambda: load.acked_after(paused_at), 30, "writes under the new leader")
        old.resume()
        wait_until(
            lambda: "lost leadership of term" in old.log(), 30, "the old leader to step down"
        )
        wait_until(lambda: old.status().role == "follower", 30, "the old leader to follow")
        time.sleep(1.0)
        load.stop()
        check_cluster(cluster, load)
        # No fork: one chain whose terms never go back, the old term ends before the new.
        terms = _terms_along_the_chain(new.stub())
        assert terms == sorted(terms)
        assert old_term in terms and new.status().term >= max(terms)
        log = old.log()
        assert f"lost leadership of term {old_term}" in log
        # Whatever it had sealed when it stopped was refused, never applied.
        for line in log.splitlines():
            if "block not committed" in line:
                assert f"term {old_term}" in line or "fenced" in line, line
    finally:
        load.stop()
        cluster.stop()


def test_etcd_refuses_a_commit_from_a_term_that_lost_the_leader_key(tmp_path: Path) -> None:
    root = tmp_path / "etcd-only"
    manifest = init_cluster(
        root,
        InitOptions(nodes=1, tls=False, origin="fence.test/log", heartbeat_ms=50, election_ms=500),
    )
    etcd = start_etcd_cluster(root, manifest)
    endpoints = ",".join(etcd.endpoints)
    # A long lease: the stale leader's keep-alive would notice its loss only seconds
    # later, so it still believes it leads when it commits.
    settings = EtcdSettings.from_mapping(
        {"endpoints": endpoints.split(","), "log": "fence", "lease_ttl_s": 10}, "fence.test/log"
    )
    a = EtcdCoordinator(settings, "node-a", "127.0.0.1:1")
    b = EtcdCoordinator(settings, "node-b", "127.0.0.1:2")
    try:
        import threading

        stop = threading.Event()
        term_a = a.campaign(stop)
        assert term_a is not None and a.is_leader()
        a.begin_term(None)
        genesis = hashlib.sha256(b"block 0").digest()
        a.commit(CommitRecord(0, genesis, bytes(32), term_a, b"payload-0", 7))
        head = a.read_head()
        assert head == CommittedHead.parse(CommittedHead.encode(0, genesis, term_a, 7))

        # The lease of A ends (as when A is paused past its TTL) and B wins a new term.
        lease_id = a._lease_id
        assert lease_id is not None
        b._kv.revoke_lease(lease_id)
        term_b = b.campaign(stop)
        assert term_b is not None and term_b > term_a
        b.begin_term(b.read_head())

        assert a.is_leader(), "the stale leader must still believe it leads for this test"
        stale = CommitRecord(1, hashlib.sha256(b"stale").digest(), genesis, term_a, b"stale", 8)
        with pytest.raises(FencedError, match=f"leader key is at term {term_b}"):
            a.commit(stale)
        assert not a.is_leader()
        assert b.read_head() == head, "the fenced commit changed the head"
        assert b.committed_block(1) is None

        fresh = CommitRecord(1, hashlib.sha256(b"fresh").digest(), genesis, term_b, b"fresh", 8)
        b.commit(fresh)
        assert b.read_head().block_hash == fresh.header_hash  # type: ignore[union-attr]
    finally:
        a.close()
        b.close()
        etcd.stop()
