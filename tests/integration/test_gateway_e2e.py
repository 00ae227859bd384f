"""End to end through real processes: a ledger node, the REST gateway, an HTTP client.

Everything the gateway returns is checked the way an outside verifier would: notes with
the verifier key from /v1/log, proofs with `provledger.merkle`, leaves against hashes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from provledger import merkle
from provledger.blocks import BlockHeader, BlockSignature, verify_header_signature
from provledger.events import canonical_json
from provledger.note import Checkpoint, Verifier, verify_checkpoint
from tests.harness.gateway import KINDS, GatewayHandle, sample_event, start_gateway
from tests.harness.node import NodeHandle, start_node

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeHandle, GatewayHandle]]:
    tmp = tmp_path_factory.mktemp("gateway-e2e")
    node = start_node(tmp, max_block_delay_ms=5)
    try:
        gateway = start_gateway(tmp, [node.address])
    except BaseException:
        node.stop()
        raise
    yield node, gateway
    gateway.stop()
    node.stop()


@pytest.fixture()
def client(stack: tuple[NodeHandle, GatewayHandle]) -> Iterator[httpx.Client]:
    with stack[1].client() as c:
        yield c


def verifier_of(client: httpx.Client) -> Verifier:
    info = client.get("/v1/log")
    assert info.status_code == 200
    return Verifier.from_string(info.json()["verifier_key"])


def checkpoint_of(client: httpx.Client, verifier: Verifier) -> Checkpoint:
    response = client.get("/v1/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    return verify_checkpoint(response.text, verifier)


def append(client: httpx.Client, event: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = client.post("/v1/events", json=event)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def verify_receipt(receipt: dict[str, Any], verifier: Verifier) -> bytes:
    """Checks that a receipt proves itself against the checkpoint it carries; its leaf hash."""
    carried = verify_checkpoint(receipt["checkpoint"], verifier)
    assert carried.size == receipt["tree_size"]
    leaf_hash = bytes.fromhex(receipt["leaf_hash"])
    merkle.verify_inclusion(
        receipt["index"],
        receipt["tree_size"],
        leaf_hash,
        [bytes.fromhex(h) for h in receipt["inclusion"]["hashes"]],
        carried.root_hash,
    )
    return leaf_hash


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def test_five_kinds_are_appended_and_verifiable(client: httpx.Client) -> None:
    verifier = verifier_of(client)
    before = checkpoint_of(client, verifier)

    events = [sample_event(kind, unique(kind)) for kind in KINDS]
    receipts = [append(client, e) for e in events[:2]]
    middle = checkpoint_of(client, verifier)
    receipts += [append(client, e) for e in events[2:]]
    after = checkpoint_of(client, verifier)
    assert after.size >= middle.size >= before.size + 2
    assert after.size >= before.size + 5

    for event, receipt in zip(events, receipts, strict=True):
        leaf_hash = verify_receipt(receipt, verifier)

        # The entry's leaf is the proven leaf, and decodes to what was appended.
        entry = client.get(f"/v1/entries/{receipt['index']}").json()
        leaf = base64.b64decode(entry["leaf"])
        assert merkle.leaf_hash(leaf) == leaf_hash
        assert entry["leaf_hash"] == receipt["leaf_hash"]
        assert json.loads(leaf) == {"event": event, "submitter": "local"}
        assert entry["entry"] == {"event": event, "submitter": "local"}
        assert entry["block_height"] == receipt["block_height"]

        # A proof against the latest checkpoint, by index and by leaf hash.
        for params in ({"index": receipt["index"]}, {"leaf_hash": receipt["leaf_hash"]}):
            pinned = client.get(
                "/v1/proof/inclusion", params={**params, "tree_size": after.size}
            ).json()
            assert "checkpoint" not in pinned
            assert (pinned["index"], pinned["tree_size"]) == (receipt["index"], after.size)
            merkle.verify_inclusion(
                receipt["index"],
                after.size,
                leaf_hash,
                [bytes.fromhex(h) for h in pinned["hashes"]],
                after.root_hash,
            )
        latest = client.get("/v1/proof/inclusion", params={"index": receipt["index"]}).json()
        latest_cp = verify_checkpoint(latest["checkpoint"], verifier)
        assert latest["tree_size"] == latest_cp.size
        merkle.verify_inclusion(
            receipt["index"],
            latest_cp.size,
            leaf_hash,
            [bytes.fromhex(h) for h in latest["hashes"]],
            latest_cp.root_hash,
        )

    # The log only grew: consistency between the checkpoints seen along the way.
    for older in (before, middle):
        proof = client.get(
            "/v1/proof/consistency", params={"first": older.size, "second": after.size}
        ).json()
        assert (proof["first"], proof["second"]) == (older.size, after.size)
        merkle.verify_consistency(
            older.size,
            after.size,
            older.root_hash,
            after.root_hash,
            [bytes.fromhex(h) for h in proof["hashes"]],
        )
    same = client.get("/v1/proof/consistency", params={"first": after.size, "second": after.size})
    assert same.status_code == 200 and same.json()["hashes"] == []
    zero = client.get("/v1/proof/consistency", params={"first": 0, "second": after.size})
    assert zero.status_code == 200 and zero.json()["hashes"] == []

    # An identical retry is idempotent: 200, the original index and leaf hash.
    again = append(client, events[0], status=200)
    assert (again["index"], again["leaf_hash"]) == (receipts[0]["index"], receipts[0]["leaf_hash"])


def test_log_info_matches_the_checkpoint(client: httpx.Client) -> None:
    append(client, sample_event("inference", unique("info")))
    info = client.get("/v1/log").json()
    verifier = Verifier.from_string(info["verifier_key"])
    note = verify_checkpoint(info["checkpoint"], verifier)
    assert note.origin == info["origin"] == verifier.name
    assert note.size == info["tree_size"]
    assert note.root_hash.hex() == info["root_hash"]
    assert isinstance(info["block_height"], int)
    assert all({"node", "verifier_key"} <= set(n) for n in info["nodes"])


def test_batch_partial_success_and_idempotency_key(client: httpx.Client) -> None:
    good = [sample_event("inference", unique("batch")) for _ in range(3)]
    invalid = dict(sample_event("inference", unique("bad")), time="yesterday")
    body = {"events": [good[0], invalid, good[1], good[2]]}
    key = unique("key")
    first = client.post("/v1/events:batch", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    result = first.json()
    assert result["status"] == "partial_success"
    assert result["receipts"][1] is None
    assert [f["position"] for f in result["failed"]] == [1]
    error = result["failed"][0]["error"]
    assert error["status"] == 422 and any(e["path"] == "time" for e in error["errors"])
    verifier = verifier_of(client)
    for event, receipt in zip(good, [result["receipts"][i] for i in (0, 2, 3)], strict=True):
        entry = client.get(f"/v1/entries/{receipt['index']}").json()
        assert entry["entry"]["event"] == event
        # The gateway spells each receipt out from the node's shared block receipt.
        verify_receipt(receipt, verifier)
        assert entry["leaf_hash"] == receipt["leaf_hash"]
        assert entry["block_height"] == receipt["block_height"]

    # The same key and an equal body (equal RFC 8785 bytes, not equal text): same answer.
    reordered = json.dumps(body, indent=2, sort_keys=True)
    assert canonical_json(json.loads(reordered)) == canonical_json(body)
    replay = client.post(
        "/v1/events:batch",
        content=reordered,
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert replay.status_code == 200 and replay.json() == result

    # The same key with another body: 422.
    other = client.post(
        "/v1/events:batch", json={"events": good[:1]}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"

    # Without a key every event is still idempotent by (source, id).
    again = client.post("/v1/events:batch", json={"events": good}).json()
    assert again["status"] == "success"
    assert [r["index"] for r in again["receipts"]] == [
        result["receipts"][i]["index"] for i in (0, 2, 3)
    ]

    # Conflicts are per-event failures with their own status.
    conflicting = dict(good[0], subject="another subject")
    mixed = client.post("/v1/events:batch", json={"events": [conflicting]}).json()
    assert mixed["status"] == "failure"
    assert mixed["failed"][0]["error"]["status"] == 409


def test_lookup_and_query_pages(client: httpx.Client) -> None:
    subject = unique("subject")
    events = [dict(sample_event("deployment", unique("page")), subject=subject) for _ in range(5)]
    indexes = [append(client, e)["index"] for e in events]

    found = client.get("/v1/events", params={"source": events[2]["source"], "id": events[2]["id"]})
    assert found.status_code == 200 and found.json()["index"] == indexes[2]
    missing = client.get("/v1/events", params={"source": "urn:none", "id": "none"})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"

    seen: list[int] = []
    after: int | None = None
    for _ in range(10):
        params: dict[str, Any] = {
            "type": "provledger.deployment.v1",
            "subject": subject,
            "limit": 2,
        }
        if after is not None:
            params["after"] = after
        page = client.get("/v1/events", params=params).json()
        seen += [e["index"] for e in page["entries"]]
        assert all(e["entry"]["event"]["subject"] == subject for e in page["entries"])
        after = page["next_after"]
        if after is None:
            break
    assert seen == indexes


def test_blocks_and_export_recompute(client: httpx.Client) -> None:
    for _ in range(3):
        append(client, sample_event("cost", unique("export")))
    verifier = verifier_of(client)

    listed = client.get("/v1/blocks", params={"from": 0, "limit": 1000}).json()["blocks"]
    assert [b["header"]["height"] for b in listed] == list(range(len(listed)))
    for summary in listed[:5]:
        block = client.get(f"/v1/blocks/{summary['header']['height']}").json()
        header_bytes = canonical_json(block["header"])
        assert hashlib.sha256(header_bytes).hexdigest() == block["hash"] == summary["hash"]
        header = BlockHeader.from_bytes(header_bytes)
        assert block["entries"] == list(
            range(header.first_index, header.first_index + header.count)
        )
        verify_header_signature(header_bytes, BlockSignature(**block["signatures"][0]), verifier)

    with client.stream("GET", "/v1/export") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    compact = merkle.CompactRange()
    for line in lines[:-1]:
        header = BlockHeader.from_bytes(canonical_json(line["header"]))
        for leaf in line["leaves"]:
            compact.append(merkle.leaf_hash(base64.b64decode(leaf)))
        assert header.tree_size == compact.size and header.tree_root == compact.root()
    final = verify_checkpoint(lines[-1]["checkpoint"], verifier)
    assert (final.size, final.root_hash) == (compact.size, compact.root())

    # From a later height: a frontier line lets the roots be recomputed from there on.
    start = len(listed) - 2
    with client.stream("GET", "/v1/export", params={"from": start}) as response:
        tail = [json.loads(line) for line in response.iter_lines() if line]
    frontier = tail[0]["frontier"]
    resumed = merkle.CompactRange.from_frontier(
        frontier["tree_size"], [bytes.fromhex(h) for h in frontier["hashes"]]
    )
    assert frontier["tree_size"] == tail[1]["header"]["first_index"]
    for line in tail[1:-1]:
        for leaf in line["leaves"]:
            resumed.append(merkle.leaf_hash(base64.b64decode(leaf)))
        assert line["header"]["tree_root"] == resumed.root().hex()
    assert "checkpoint" in tail[-1]


def test_tiles_match_the_leaves(client: httpx.Client) -> None:
    append(client, sample_event("data", unique("tile")))
    verifier = verifier_of(client)
    size = checkpoint_of(client, verifier).size
    width = size % 256
    full = size // 256
    n_path = f"{full:03d}" if full < 1000 else None
    assert n_path is not None, "the test log stays under 256,000 entries"

    leaves: list[bytes] = []
    for index in range(full * 256, size):
        leaves.append(base64.b64decode(client.get(f"/v1/entries/{index}").json()["leaf"]))

    if width:
        tile = client.get(f"/v1/tile/0/{n_path}.p/{width}")
        assert tile.status_code == 200, tile.text
        assert tile.headers["content-type"] == "application/octet-stream"
        assert tile.content == b"".join(merkle.leaf_hash(leaf) for leaf in leaves)
        bundle = client.get(f"/v1/tile/entries/{n_path}.p/{width}")
        assert bundle.status_code == 200
        data, got = bundle.content, []
        while data:
            length = int.from_bytes(data[:2], "big")
            got.append(data[2 : 2 + length])
            data = data[2 + length :]
        assert got == leaves
        assert "immutable" in tile.headers["cache-control"]

    # A tile the log does not have yet, and malformed paths.
    assert client.get(f"/v1/tile/0/{full + 1:03d}").status_code == 404
    for bad in ("/v1/tile/0/x000/001", "/v1/tile/0/1", "/v1/tile/64/000", "/v1/tile/0/000.p/0"):
        response = client.get(bad)
        assert response.status_code == 400, bad
        assert response.headers["content-type"] == "application/problem+json"


def test_health_readiness_metrics(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    append(client, sample_event("inference", unique("metrics")))
    client.get("/v1/proof/consistency", params={"first": 0, "second": 1})
    text = client.get("/metrics").text
    for name in (
        'provledger_gateway_appends_total{outcome="accepted"}',
        "provledger_gateway_commit_seconds_bucket",
        'provledger_gateway_proof_requests_total{kind="consistency"}',
        "provledger_gateway_tree_size",
    ):
        assert name in text
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert "/v1/proof/inclusion" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_stack_logs_hold_no_credentials(
    stack: tuple[NodeHandle, GatewayHandle], tmp_path: Path
) -> None:
    gateway = stack[1]
    with gateway.client(headers={"Authorization": "Bearer very-secret-token"}) as c:
        c.get("/v1/checkpoint")
        c.post("/v1/events", content=b"{", headers={"Content-Type": "application/json"})
    assert "very-secret-token" not in gateway.proc.log()
