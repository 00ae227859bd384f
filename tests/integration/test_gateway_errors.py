"""Every bad request of the gateway's acceptance gets its documented status (SPEC §3) and
an application/problem+json body, through a real node that enforces tokens and roles."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.gateway import GatewayHandle, sample_event, start_gateway
from tests.harness.node import NodeHandle, start_node

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer admin-token"}
WRITER = {"Authorization": "Bearer writer-token"}  # may write data events only
READER = {"Authorization": "Bearer reader-token"}

PRINCIPALS = [
    {"name": "ops", "token": "admin-token", "roles": ["admin"]},
    {"name": "etl", "token": "writer-token", "roles": ["writer"], "types": ["provledger.data.v1"]},
    {"name": "dash", "token": "reader-token", "roles": ["reader"]},
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    tmp = tmp_path_factory.mktemp("gateway-errors")
    node = start_node(tmp, principals=PRINCIPALS, public_reads=False, max_block_delay_ms=5)
    try:
        gw = start_gateway(tmp, [node.address], max_event_bytes=128 * 1024)
    except BaseException:
        node.stop()
        raise
    with gw.client(headers=ADMIN) as c:
        for i in range(3):
            assert c.post("/v1/events", json=event("data", f"seed-{i}")).status_code == 201
    yield gw
    gw.stop()
    node.stop()


def event(kind: str = "data", event_id: str | None = None) -> dict[str, Any]:
    return sample_event(kind, event_id or str(uuid.uuid4()), source="urn:test:errors")


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    assert all(isinstance(body[k], str) and body[k] for k in ("type", "title", "detail"))
    return body


@pytest.fixture()
def anon(gateway: GatewayHandle) -> Iterator[httpx.Client]:
    with gateway.client() as c:
        yield c


@pytest.fixture()
def admin(gateway: GatewayHandle) -> Iterator[httpx.Client]:
    with gateway.client(headers=ADMIN) as c:
        yield c


# --- credentials and roles ------------------------------------------------------------


def test_missing_or_wrong_token_is_401(anon: httpx.Client) -> None:
    assert_problem(anon.post("/v1/events", json=event()), 401)
    assert_problem(anon.get("/v1/checkpoint"), 401)
    assert_problem(anon.get("/v1/entries/0"), 401)
    wrong = {"Authorization": "Bearer not-a-token"}
    assert_problem(anon.get("/v1/proof/inclusion?index=0", headers=wrong), 401)
    assert_problem(anon.post("/v1/events", json=event(), headers=wrong), 401)
    assert_problem(anon.get("/v1/log", headers={"Authorization": "Basic eDp5"}), 401)
    # Not printable ASCII: no gRPC metadata can carry it, so the gateway refuses it itself.
    latin = [(b"Authorization", "Bearer t\xe9".encode("latin-1"))]
    assert_problem(anon.get("/v1/checkpoint", headers=latin), 401)
    assert_problem(anon.post("/v1/events", json=event(), headers=latin), 401)


def test_roles_are_enforced(anon: httpx.Client) -> None:
    # A reader reads; it does not write.
    assert anon.get("/v1/checkpoint", headers=READER).status_code == 200
    assert_problem(anon.post("/v1/events", json=event(), headers=READER), 403)
    # A writer limited to data events may post those, and nothing else.
    assert anon.post("/v1/events", json=event("data"), headers=WRITER).status_code == 201
    body = assert_problem(anon.post("/v1/events", json=event("inference"), headers=WRITER), 403)
    assert "provledger.inference.v1" in body["detail"]
    # System types are the admin's.
    anchor = dict(event(), type="provledger.anchor.v1", data={})
    assert_problem(anon.post("/v1/events", json=anchor, headers=WRITER), 403)
    batch = anon.post("/v1/events:batch", json={"events": [event("cost")]}, headers=WRITER)
    assert batch.status_code == 200
    assert batch.json()["failed"][0]["error"]["status"] == 403


# --- bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_wrong_content_type_is_400(admin: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps(event()).encode()
    for path in ("/v1/events", "/v1/events:batch"):
        request = admin.build_request("POST", path, content=body, headers=headers)
        if content_type is None and "Content-Type" in request.headers:
            del request.headers["Content-Type"]
        problem = assert_problem(admin.send(request), 400)
        assert problem["title"] == "Unsupported media type"


@pytest.mark.parametrize(
    "raw", [b"", b"{", b'{"specversion": "1.0",}', b"\xff\xfe", b"[1, 2", b"nul"]
)
def test_broken_json_is_400(admin: httpx.Client, raw: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    assert_problem(admin.post("/v1/events", content=raw, headers=headers), 400)
    assert_problem(admin.post("/v1/events:batch", content=raw, headers=headers), 400)


def test_schema_violations_are_422_with_paths(admin: httpx.Client) -> None:
    bad = event("training")
    bad["data"]["model"]["digest"] = {"sha256": "XYZ"}
    del bad["data"]["run_id"]
    body = assert_problem(admin.post("/v1/events", json=bad), 422)
    paths = {e["path"] for e in body["errors"]}
    assert {"data.model.digest.sha256", "data.run_id"} <= paths
    assert_problem(admin.post("/v1/events", json=[1, 2]), 422)
    for batch in ({}, {"events": []}, {"events": {}}, [], {"events": "x"}):
        assert_problem(admin.post("/v1/events:batch", json=batch), 422)
    # What is not I-JSON inside one event fails that event alone, with its path.
    nan = b'{"events": [{"id": NaN}]}'
    response = admin.post(
        "/v1/events:batch", content=nan, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    failure = response.json()["failed"][0]
    assert failure["position"] == 0 and failure["error"]["status"] == 422
    assert failure["error"]["errors"][0]["path"] == "id"


def test_conflicting_duplicate_is_409(admin: httpx.Client) -> None:
    first = event("data")
    assert admin.post("/v1/events", json=first).status_code == 201
    changed = dict(first, subject="something else")
    assert_problem(admin.post("/v1/events", json=changed), 409)
    # The same event from another principal is a conflict too (SPEC §1).
    assert_problem(admin.post("/v1/events", json=first, headers=WRITER), 409)


def test_too_large_is_413(admin: httpx.Client) -> None:
    # Beyond the node's event limit (60,000 canonical bytes), within the gateway's body limit.
    big = event("data")
    big["data"]["notes"] = "x" * 70_000
    assert_problem(admin.post("/v1/events", json=big), 413)
    # Beyond the gateway's body limit (128 KiB here): refused before reaching a node.
    big["data"]["notes"] = "x" * 200_000
    assert_problem(admin.post("/v1/events", json=big), 413)
    many = {"events": [{}] * 10_001}
    assert_problem(admin.post("/v1/events:batch", json=many), 413)


def test_idempotency_key_misuse_is_422_and_bad_keys_400(admin: httpx.Client) -> None:
    key = str(uuid.uuid4())
    one = {"events": [event()]}
    assert admin.post("/v1/events:batch", json=one, headers={"Idempotency-Key": key}).is_success
    other = {"events": [event()]}
    assert_problem(
        admin.post("/v1/events:batch", json=other, headers={"Idempotency-Key": key}), 422
    )
    for bad in ("", "k" * 257, "ключ"):
        request = admin.build_request("POST", "/v1/events:batch", json=one)
        request.headers["Idempotency-Key"] = bad
        assert_problem(admin.send(request), 400)


# --- parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/entries/-1",
        "/v1/entries/abc",
        "/v1/entries/1.5",
        "/v1/entries/99999999999999999999999999",
        "/v1/blocks/-3",
        "/v1/blocks/x",
        "/v1/blocks?from=-1",
        "/v1/blocks?limit=0",
        "/v1/blocks?limit=1001",
        "/v1/proof/inclusion",
        "/v1/proof/inclusion?index=-1",
        "/v1/proof/inclusion?index=0&leaf_hash=" + "00" * 32,
        "/v1/proof/inclusion?leaf_hash=xyz",
        "/v1/proof/inclusion?index=0&tree_size=abc",
        "/v1/proof/inclusion?index=0&tree_size=1000000000",
        "/v1/proof/inclusion?index=0&tree_size=99999999999999999999",
        "/v1/proof/consistency?first=2&second=1",
        "/v1/proof/consistency?first=1",
        "/v1/proof/consistency?first=1&second=1000000000",
        "/v1/proof/consistency?first=-1&second=2",
        "/v1/events?limit=0",
        "/v1/events?limit=1001",
        "/v1/events?after=-5",
        "/v1/events?type=provledger.unknown.v1",
        "/v1/events?source=urn:x",
        "/v1/events?source=urn:x&id=1&type=provledger.data.v1",
        "/v1/export?from=3&to=1",
        "/v1/export?from=abc",
        "/v1/tile/0/x000/001",
        "/v1/tile/00/000",
        "/v1/tile/entries/000.p/256",
    ],
)
def test_bad_parameters_are_400(admin: httpx.Client, path: str) -> None:
    assert_problem(admin.get(path), 400)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/entries/1000000000",
        "/v1/blocks/1000000000",
        "/v1/events?source=urn:none&id=none",
        "/v1/proof/inclusion?leaf_hash=" + "00" * 32,
        "/v1/tile/0/x001/000",
        "/v1/tile/entries/x001/000",
        "/v1/nowhere",
    ],
)
def test_unknown_things_are_404(admin: httpx.Client, path: str) -> None:
    assert_problem(admin.get(path), 404)


def test_wrong_method_is_405_with_allow(admin: httpx.Client) -> None:
    response = admin.delete("/v1/events")
    assert_problem(response, 405)
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_export_refusal_comes_before_the_stream(admin: httpx.Client) -> None:
    # Heights beyond the log are a query parameter beyond the log: 400 (SPEC §3).
    assert_problem(admin.get("/v1/export?from=1000000"), 400)


# --- no node -----------------------------------------------------------------------------


def test_no_reachable_node_is_503_with_retry_after(tmp_path: Path) -> None:
    node: NodeHandle = start_node(tmp_path)
    gw = start_gateway(tmp_path, [node.address])
    try:
        with gw.client() as c:
            assert c.get("/readyz").status_code == 200
            node.stop()
            for response in (
                c.get("/v1/checkpoint"),
                c.post("/v1/events", json=event()),
                c.get("/readyz"),
                c.get("/v1/export"),
            ):
                assert_problem(response, 503)
                assert int(response.headers["retry-after"]) >= 1
            assert c.get("/healthz").status_code == 200
    finally:
        gw.stop()
        node.stop()
