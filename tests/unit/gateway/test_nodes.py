"""The node pool against fake nodes: real grpc.aio servers on loopback whose answers the
test scripts, so leader discovery, failover and read spreading can be checked without a
cluster."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import pytest

from gateway import GatewayConfig, ProblemError, create_app
from gateway._nodes import NodePool
from gateway._problems import PROBLEM_TRAILER
from provledger.v1 import ledger_pb2 as pb
from provledger.v1 import ledger_pb2_grpc as pb_grpc


class FakeNode(pb_grpc.LedgerServicer):
    """Answers as a leader or a follower; counts what it was asked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.role = "follower"
        self.term = 1
        self.leader_address = ""
        self.address = ""
        self.appends = 0
        self.reads = 0
        self.bad_leaf = False
        self.size = 1

    async def GetStatus(self, request: Any, context: Any) -> pb.NodeStatus:
        return pb.NodeStatus(
            node=self.name, role=self.role, term=self.term, leader_address=self.leader_address
        )

    async def GetCheckpoint(self, request: Any, context: Any) -> pb.Checkpoint:
        self.reads += 1
        return pb.Checkpoint(note=f"{self.name}\n1\n", tree_size=1)

    async def GetEntry(self, request: Any, context: Any) -> pb.Entry:
        self.reads += 1
        if request.index >= self.size:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no entry {request.index}")
        leaf = b"not json" if self.bad_leaf else b'{"event":{},"submitter":"x"}'
        return pb.Entry(index=request.index, leaf_hash=bytes(32), leaf=leaf, block_height=0)

    async def Append(self, request: Any, context: Any) -> pb.Receipt:
        if self.role != "leader":
            problem = pb.Problem(status=503, title="Not the leader", detail="x", retry_after=2)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "not the leader",
                trailing_metadata=((PROBLEM_TRAILER, problem.SerializeToString()),),
            )
        self.appends += 1
        return pb.Receipt(index=self.appends - 1, leaf_hash=bytes(32), tree_size=self.appends)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def with_nodes(
    count: int, body: Callable[[list[FakeNode], list[str]], Awaitable[None]]
) -> None:
    nodes = [FakeNode(f"node-{i}") for i in range(count)]
    servers = []
    for node in nodes:
        server = grpc.aio.server()
        pb_grpc.add_LedgerServicer_to_server(node, server)
        node.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        await server.start()
        servers.append(server)
    try:
        await body(nodes, [n.address for n in nodes])
    finally:
        for server in servers:
            await server.stop(None)


def test_writes_go_to_the_leader_and_reads_spread() -> None:
    async def body(nodes: list[FakeNode], addresses: list[str]) -> None:
        follower, leader = nodes
        leader.role = "leader"
        follower.leader_address = leader.address
        pool = NodePool(addresses)
        try:
            for _ in range(3):
                await pool.write("Append", pb.AppendRequest(event=b"{}"), None)
            assert (leader.appends, follower.appends) == (3, 0)
            assert pool.leader == leader.address
            for _ in range(6):
                await pool.read("GetCheckpoint", pb.GetCheckpointRequest(), None)
            assert leader.reads == follower.reads == 3
        finally:
            await pool.close()

    asyncio.run(with_nodes(2, body))


def test_a_write_follows_a_new_leader_once() -> None:
    async def body(nodes: list[FakeNode], addresses: list[str]) -> None:
        old, new = nodes
        old.role = "leader"
        pool = NodePool(addresses)
        try:
            await pool.write("Append", pb.AppendRequest(event=b"{}"), None)
            assert pool.leader == old.address
            # The leader steps down; the next write meets UNAVAILABLE, looks again, retries.
            old.role, new.role, new.term = "follower", "leader", 2
            await pool.write("Append", pb.AppendRequest(event=b"{}"), None)
            assert (old.appends, new.appends) == (1, 1)
            assert pool.leader == new.address
        finally:
            await pool.close()

    asyncio.run(with_nodes(2, body))


def test_no_leader_is_503_with_the_nodes_retry_hint() -> None:
    async def body(nodes: list[FakeNode], addresses: list[str]) -> None:
        pool = NodePool(addresses)
        try:
            with pytest.raises(ProblemError) as caught:
                await pool.write("Append", pb.AppendRequest(event=b"{}"), None)
            assert caught.value.problem.status == 503
            with pytest.raises(ProblemError):
                await pool.find_leader(refresh=True)
            # A single configured node is taken as the leader; its own refusal comes back.
            single = NodePool(addresses[:1])
            try:
                with pytest.raises(ProblemError) as caught:
                    await single.write("Append", pb.AppendRequest(event=b"{}"), None)
                assert (caught.value.problem.status, caught.value.problem.retry_after) == (503, 2)
                assert caught.value.problem.title == "Not the leader"
            finally:
                await single.close()
        finally:
            await pool.close()

    asyncio.run(with_nodes(2, body))


def test_what_a_lagging_follower_lacks_is_read_from_the_leader() -> None:
    async def body(nodes: list[FakeNode], addresses: list[str]) -> None:
        follower, leader = nodes
        leader.role, leader.size = "leader", 5
        follower.leader_address, follower.size = leader.address, 3
        pool = NodePool(addresses)
        try:
            for _ in range(4):  # round-robin: half of these go to the follower first
                entry = await pool.read("GetEntry", pb.GetEntryRequest(index=4), None)
                assert entry.index == 4
            assert follower.reads == 2 and leader.reads == 4
            with pytest.raises(ProblemError) as caught:
                await pool.read("GetEntry", pb.GetEntryRequest(index=9), None)
            assert caught.value.problem.status == 404
        finally:
            await pool.close()

    asyncio.run(with_nodes(2, body))


def test_reads_skip_an_unreachable_node() -> None:
    async def body(nodes: list[FakeNode], addresses: list[str]) -> None:
        dead = f"127.0.0.1:{free_port()}"
        pool = NodePool([dead, *addresses], read_timeout=5)
        try:
            for _ in range(4):
                answer = await pool.read("GetCheckpoint", pb.GetCheckpointRequest(), None)
                assert answer.note.startswith("node-0")
        finally:
            await pool.close()
        unreachable = NodePool([dead], read_timeout=5)
        try:
            with pytest.raises(ProblemError) as caught:
                await unreachable.read("GetCheckpoint", pb.GetCheckpointRequest(), None)
            assert caught.value.problem.status == 503
        finally:
            await unreachable.close()

    asyncio.run(with_nodes(1, body))


def test_a_node_bug_is_a_500_problem_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def body(nodes: list[FakeNode], addresses: list[str]) -> None:
        nodes[0].bad_leaf = True
        app = create_app(GatewayConfig(nodes=tuple(addresses)))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                response = await client.get("/v1/entries/0")
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 500
        assert "Traceback" not in response.text

    asyncio.run(with_nodes(1, body))
    assert any("unexpected error on GET /v1/entries/0" in r.message for r in caplog.records)
