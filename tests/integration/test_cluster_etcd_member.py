"""One etcd member (its Raft leader) SIGKILLed under load: writes continue on the other
two, and nothing acknowledged is lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.harness.cluster import LoadClients, check_cluster, start_cluster
from tests.harness.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_writes_continue_when_an_etcd_member_dies(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path)
    load = LoadClients(cluster, clients=4, batch=20, timeout=3.0)
    try:
        load.start()
        wait_until(lambda: load.count() > 200, 30, "acknowledged writes")
        statuses = [m.post("/v3/maintenance/status", {}) for m in cluster.etcd.members]
        raft_leader = statuses[0]["leader"]
        victim = next(
            m
            for m, s in zip(cluster.etcd.members, statuses, strict=True)
            if s["header"]["member_id"] == raft_leader
        )
        killed_at = time.monotonic()
        victim.kill()
        # Writes go on: well after the kill, new calls are still acknowledged.
        wait_until(
            lambda: len(load.acked_after(killed_at + 2.0)) >= 100, 30, "writes after the kill"
        )
        load.stop()
        check_cluster(cluster, load)
    finally:
        load.stop()
        cluster.stop()
