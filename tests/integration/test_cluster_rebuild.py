"""A follower whose data directory is deleted rebuilds its log from its peers (the etcd
window no longer reaches back to block 0) plus the window, verifying every block, and
catches up with the leader."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from provledger.blocks import BlockSignature, verify_header_signature
from provledger.note import Verifier
from provledger.v1 import ledger_pb2 as pb
from tests.harness.cluster import LoadClients, check_cluster, start_cluster
from tests.harness.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_follower_rebuilds_after_losing_its_data(tmp_path: Path) -> None:
    cluster = start_cluster(
        tmp_path,
        node_settings={"max_block_entries": 10},
        coordinator_settings={"gc_keep": 2, "gc_max_window": 10, "housekeeping_s": 0.2},
    )
    load = LoadClients(cluster, clients=3, batch=10, timeout=3.0)
    try:
        load.start()
        wait_until(lambda: load.count() > 1500, 60, "a log of many blocks")
        leader = cluster.leader()
        victim = cluster.followers(leader)[0]
        victim.kill()
        shutil.rmtree(victim.data_dir)
        before = load.count()
        wait_until(lambda: load.count() > before + 300, 30, "writes while the follower is gone")
        victim.start()
        wait_until(lambda: "caught up from peer" in victim.log(), 60, "the rebuild from peers")
        time.sleep(1.0)
        load.stop()
        check_cluster(cluster, load)
        # The rebuilt node verified and signed every block again with its own key.
        info = victim.stub().GetLogInfo(pb.GetLogInfoRequest())
        keys = {k.node: Verifier.from_string(k.verifier_key) for k in info.nodes}
        assert set(keys) == {n.name for n in cluster.nodes}
        block = victim.stub().GetBlock(pb.GetBlockRequest(height=1))
        assert [s.node for s in block.signatures].count(victim.name) == 1
        # Its own, and any peer's it received with the blocks (each verified before kept).
        for s in block.signatures[1:]:
            verify_header_signature(
                block.header, BlockSignature(s.node, s.key_id, s.sig), keys[s.node]
            )
        assert "refused block" not in victim.log()
    finally:
        load.stop()
        cluster.stop()
