"""The leader collects the etcd block window below min(applied) - keep and compacts old
revisions, so etcd stays bounded however long the log grows."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from tests.harness.cluster import LoadClients, check_cluster, start_cluster
from tests.harness.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEEP = 4
MAX_WINDOW = 40


def test_block_window_stays_bounded(tmp_path: Path) -> None:
    cluster = start_cluster(
        tmp_path,
        node_settings={"max_block_entries": 5},
        coordinator_settings={
            "gc_keep": KEEP,
            "gc_max_window": MAX_WINDOW,
            "housekeeping_s": 0.2,
            "compact_keep": 100,
            "compact_every_s": 1.0,
        },
    )
    etcd = cluster.etcd_client()
    prefix = f"/provledger/{cluster.manifest['log']}/blocks/"
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            samples.append(etcd.get_prefix_response(prefix, count_only=True).count)

    sampler = threading.Thread(target=sample, daemon=True)
    load = LoadClients(cluster, clients=3, batch=5, timeout=3.0)
    try:
        load.start()
        sampler.start()
        leader = cluster.leader()
        wait_until(lambda: leader.status().height > 8 * MAX_WINDOW, 90, "a long-ish log")
        early_revision = etcd.get_response(prefix, count_only=True).header.revision
        time.sleep(2.5)  # a compaction or two
        load.stop()
        stop.set()
        sampler.join()
        height = leader.status().height
        # Bounded: the window never held more than gc_max_window blocks, however fast they
        # came between two housekeeping rounds, while the log grew to many times that.
        assert samples and max(samples) <= MAX_WINDOW, max(samples)
        keys = [m.key.decode() for _, m in etcd.get_prefix(prefix, keys_only=True)]
        lowest = min(int(k.rsplit("/", 1)[1]) for k in keys)
        assert lowest > height - MAX_WINDOW
        assert f"{prefix}{height:020d}" in keys, "the head block must stay in the window"
        # Old revisions are compacted away as well.
        with pytest.raises(grpc.RpcError) as compacted:
            etcd.get(prefix + f"{0:020d}", revision=early_revision - 50)
        assert compacted.value.code() == grpc.StatusCode.OUT_OF_RANGE
        check_cluster(cluster, load)
    finally:
        stop.set()
        load.stop()
        etcd.close()
        cluster.stop()
