"""Prometheus metrics of one gateway process, in a registry of its own (no globals)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

# Commits take one block delay (20 ms by default) plus an fsync, or an etcd round in a
# cluster; batches of thousands take longer.
_COMMIT_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        appends = Counter(
            "provledger_gateway_appends",
            "Events submitted through the gateway, by outcome "
            "(accepted: newly appended; duplicate: an idempotent retry; refused)",
            ["outcome"],
            registry=self.registry,
        )
        self.accepted = appends.labels("accepted")
        self.duplicate = appends.labels("duplicate")
        self.refused = appends.labels("refused")
        commit = Histogram(
            "provledger_gateway_commit_seconds",
            "Time from forwarding an append (single or batch) to the node's committed answer",
            ["kind"],
            buckets=_COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.commit_single = commit.labels("single")
        self.commit_batch = commit.labels("batch")
        proofs = Counter(
            "provledger_gateway_proof_requests",
            "Proof requests served or refused, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.inclusion_proofs = proofs.labels("inclusion")
        self.consistency_proofs = proofs.labels("consistency")
        computed = Counter(
            "provledger_gateway_proofs_computed",
            "Proofs answered other than from the answer cache, by where they were computed "
            "(tiles: here, from the nodes' hash tiles; node: by a node)",
            ["source"],
            registry=self.registry,
        )
        self.proofs_from_tiles = computed.labels("tiles")
        self.proofs_from_node = computed.labels("node")
        self.tile_fetches = Counter(
            "provledger_gateway_tile_fetches",
            "Hash tiles fetched from a node to compute proofs",
            registry=self.registry,
        )
        cache = Counter(
            "provledger_gateway_cache_lookups",
            "Lookups of immutable answers in the gateway's cache, by result",
            ["result"],
            registry=self.registry,
        )
        self.cache_hit = cache.labels("hit")
        self.cache_miss = cache.labels("miss")
        self.tree_size = Gauge(
            "provledger_gateway_tree_size",
            "Largest tree size seen in a node's answer",
            registry=self.registry,
        )
        self._largest_tree = 0

    def saw_tree_size(self, size: int) -> None:
        if size > self._largest_tree:
            self._largest_tree = size
            self.tree_size.set(size)

    def render(self) -> bytes:
        return generate_latest(self.registry)
