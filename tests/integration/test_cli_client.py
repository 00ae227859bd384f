"""The real `provledger` executable, as a subprocess, against a real node (gRPC) and a
real gateway (HTTP): append, get, proof, verify, export and audit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import (
    Dataset,
    DatasetRef,
    GitRef,
    Model,
    commitment,
    cost_event,
    data_event,
    deployment_event,
    inference_event,
    sha256_digest,
    training_event,
)
from provledger import merkle
from provledger.note import Verifier, verify_checkpoint
from tests.harness.gateway import GatewayHandle, start_gateway
from tests.harness.node import NodeHandle, start_node
from tests.harness.procs import free_port

pytestmark = pytest.mark.integration

EXE = str(Path(sys.executable).parent / "provledger")
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    handle = start_node(tmp_path_factory.mktemp("cli"))
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def gateway(node: NodeHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    handle = start_gateway(tmp_path_factory.mktemp("cli-gw"), [node.address])
    yield handle
    handle.stop()


@pytest.fixture(scope="module", params=["grpc", "http"])
def url(request: pytest.FixtureRequest, node: NodeHandle) -> str:
    if request.param == "grpc":
        return f"grpc://{node.address}"
    gw: GatewayHandle = request.getfixturevalue("gateway")
    return gw.url


def cli(
    url: str | None, *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}
    if url is not None:
        env["PROVLEDGER_URL"] = url
    return subprocess.run(
        [EXE, *args], input=stdin, capture_output=True, text=True, timeout=120, env=env, cwd=cwd
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def five_kinds(tag: str) -> list[dict[str, object]]:
    model = Model("fraud", "2.0.0", sha256_digest(b"weights " + tag.encode()))
    src = f"urn:cli-test:{tag}"
    return [
        data_event(
            source=src,
            operation="ingest",
            dataset=Dataset("clicks", "s3://b/clicks", sha256_digest(b"clicks")),
            subject=f"dataset:clicks:{tag}",
        ),
        training_event(
            source=src,
            run_id=f"run-{tag}",
            model=model,
            datasets=[DatasetRef("clicks", sha256_digest(b"clicks"))],
            code=GitRef("https://git.example/ml", COMMIT),
            subject=f"model:fraud:{tag}",
        ),
        deployment_event(
            source=src,
            action="deploy",
            model=model,
            environment="prod",
            git=GitRef("https://git.example/deploy", COMMIT, "apps/fraud.yaml"),
            subject=f"model:fraud:{tag}",
        ),
        inference_event(
            source=src,
            model_name="fraud",
            model_version="2.0.0",
            input_commitment=commitment(b"k" * 32, b"in"),
            output_commitment=commitment(b"k" * 32, b"out"),
            count=3,
        ),
        cost_event(
            source=src,
            billed_cost="1.25",
            effective_cost="1.10",
            currency="EUR",
            period_start="2025-01-01T00:00:00Z",
            period_end="2025-01-02T00:00:00Z",
            service_name="GPU",
            charge_category="Usage",
            model_name="fraud",
        ),
    ]


def log_key(url: str) -> str:
    info = json.loads(ok(cli(url, "get", "--log", "--json")))
    Verifier.from_string(info["verifier_key"])
    return str(info["verifier_key"])


def test_append_five_kinds_prints_verifiable_receipts(url: str, tmp_path: Path) -> None:
    events = five_kinds(f"five-{url[:4]}")
    path = tmp_path / "events.ndjson"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    key = log_key(url)
    out = ok(cli(url, "append", str(path), "--key", key))
    receipts = [json.loads(line) for line in out.splitlines()]
    assert len(receipts) == 5
    verifier = Verifier.from_string(key)
    for r in receipts:
        cp = verify_checkpoint(r["checkpoint"], verifier)
        merkle.verify_inclusion(
            r["index"],
            r["tree_size"],
            bytes.fromhex(r["leaf_hash"]),
            [bytes.fromhex(h) for h in r["inclusion"]["hashes"]],
            cp.root_hash,
        )
    # The entry at a receipt's index holds the event that was sent.
    entry = json.loads(ok(cli(url, "get", str(receipts[1]["index"]), "--json")))
    assert entry["entry"]["event"] == events[1]
    assert entry["entry"]["submitter"] == "local"

    # Appending the same file again is an idempotent retry: the same indexes.
    again = [json.loads(line) for line in ok(cli(url, "append", str(path))).splitlines()]
    assert [r["index"] for r in again] == [r["index"] for r in receipts]


def test_append_single_event_from_stdin(url: str) -> None:
    event = five_kinds(f"stdin-{url[:4]}")[0]
    out = ok(cli(url, "append", "-", stdin=json.dumps(event, indent=2)))
    receipt = json.loads(out)
    assert set(receipt) == {
        "index",
        "leaf_hash",
        "block_height",
        "tree_size",
        "inclusion",
        "checkpoint",
    }


def test_append_reports_refused_events_in_place(url: str, tmp_path: Path) -> None:
    good, bad = five_kinds(f"mixed-{url[:4]}")[:2]
    broken = json.loads(json.dumps(bad))
    broken["data"]["model"]["digest"]["sha256"] = "XYZ"
    path = tmp_path / "mixed.ndjson"
    path.write_text(json.dumps(good) + "\n" + json.dumps(broken) + "\n")
    result = cli(url, "append", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert json.loads(lines[0])["index"] >= 0 and lines[1] == "null"
    assert "line 2" in result.stderr and "data.model.digest.sha256" in result.stderr


def test_append_in_several_batches_prints_receipts_in_input_order(url: str, tmp_path: Path) -> None:
    # Batches of 2 over 11 events: several batches under way at once, answered in any
    # order by the ledger, printed in the order of the input's lines all the same.
    events = five_kinds(f"order-a-{url[:4]}") + five_kinds(f"order-b-{url[:4]}")
    broken = json.loads(json.dumps(events[6]))
    del broken["data"]["run_id"]
    lines = [*events[:6], broken, *events[6:]]
    path = tmp_path / "many.ndjson"
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))

    result = cli(url, "append", str(path), "--batch-size", "2", "--key", log_key(url))
    assert result.returncode == 1, result.stderr
    printed = result.stdout.splitlines()
    assert len(printed) == len(lines)
    assert printed[6] == "null"
    assert "line 7" in result.stderr and "data.run_id" in result.stderr
    for event, line in zip(lines, printed, strict=True):
        if event is broken:
            continue
        entry = json.loads(ok(cli(url, "get", str(json.loads(line)["index"]), "--json")))
        assert entry["entry"]["event"] == event


def test_get_by_identity_query_block_and_checkpoint(url: str, tmp_path: Path) -> None:
    tag = f"get-{url[:4]}"
    events = five_kinds(tag)
    path = tmp_path / "e.ndjson"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    receipts = [json.loads(x) for x in ok(cli(url, "append", str(path))).splitlines()]

    by_id = json.loads(
        ok(
            cli(
                url,
                "get",
                "--source",
                str(events[2]["source"]),
                "--id",
                str(events[2]["id"]),
                "--json",
            )
        )
    )
    assert by_id["index"] == receipts[2]["index"]

    table = ok(cli(url, "get", "--subject", f"model:fraud:{tag}"))
    assert table.splitlines()[0].split()[:3] == ["INDEX", "BLOCK", "TYPE"]
    assert len(table.splitlines()) == 3  # header + training + deployment

    page = [
        json.loads(x)
        for x in ok(cli(url, "get", "--type", "provledger.cost.v1", "--all", "--json")).splitlines()
    ]
    assert receipts[4]["index"] in [e["index"] for e in page]

    block = json.loads(ok(cli(url, "get", "--block", str(receipts[0]["block_height"]), "--json")))
    assert block["header"]["height"] == receipts[0]["block_height"]

    note = ok(cli(url, "get", "--checkpoint"))
    verify_checkpoint(note, Verifier.from_string(log_key(url)))

    missing = cli(url, "get", "999999999")
    assert missing.returncode == 1 and "999999999" in missing.stderr


def test_proofs(url: str) -> None:
    key = log_key(url)
    out = ok(cli(url, "proof", "inclusion", "--index", "0", "--key", key))
    assert "verified: leaf 0" in out
    info = json.loads(ok(cli(url, "get", "--log", "--json")))
    size = info["tree_size"]
    proof = json.loads(
        ok(cli(url, "proof", "consistency", "--first", "1", "--second", str(size), "--json"))
    )
    assert proof["first"] == 1 and proof["second"] == size
    assert cli(url, "proof", "consistency", "--first", "5", "--second", "2").returncode == 2
    beyond = cli(url, "proof", "inclusion", "--index", "0", "--tree-size", str(size + 100))
    assert beyond.returncode == 2, beyond.stderr


def test_verify_advances_then_proves_an_entry(url: str, tmp_path: Path) -> None:
    key = log_key(url)
    state = tmp_path / "trusted.json"
    first = ok(cli(url, "verify", "--key", key, "--state", str(state)))
    assert "first checkpoint trusted" in first
    event = five_kinds(f"verify-{url[:4]}")[3]
    receipt = json.loads(ok(cli(url, "append", "-", stdin=json.dumps(event))))
    second = json.loads(
        ok(
            cli(
                url,
                "verify",
                "--key",
                key,
                "--state",
                str(state),
                "--index",
                str(receipt["index"]),
                "--json",
            )
        )
    )
    assert second["ok"] and second["advanced"]
    assert second["entry"]["leaf_hash"] == receipt["leaf_hash"]
    third = ok(
        cli(
            url,
            "verify",
            "--key",
            key,
            "--state",
            str(state),
            "--source",
            str(event["source"]),
            "--id",
            str(event["id"]),
        )
    )
    assert f"entry {receipt['index']} is included" in third


def test_export_then_audit(url: str, tmp_path: Path) -> None:
    key = log_key(url)
    bundle = tmp_path / "bundle.ndjson"
    ok(cli(url, "export", "--out", str(bundle)))
    assert not (tmp_path / "bundle.ndjson.part").exists()
    out = ok(cli(None, "audit", str(bundle), "--key", key))
    assert "audit OK" in out

    report = json.loads(ok(cli(None, "audit", str(bundle), "--key", key, "--json")))
    lines = bundle.read_text().splitlines()
    assert report["blocks"] == len(lines) - 1
    assert json.loads(lines[-1])["checkpoint"] == report["checkpoint"]

    # A partial export starts with a frontier and audits too.
    if report["blocks"] >= 3:
        part = tmp_path / "part.ndjson"
        ok(cli(url, "export", "--out", str(part), "--from", "2"))
        assert "frontier" in json.loads(part.read_text().splitlines()[0])
        assert "audit OK" in ok(cli(None, "audit", str(part), "--key", key))

    # The node keys listed by the log check the node signatures.
    keys = tmp_path / "log.json"
    keys.write_text(ok(cli(url, "get", "--log", "--json")))
    assert "audit OK" in ok(cli(None, "audit", str(bundle), "--key", key, "--node-keys", str(keys)))

    lines[0] = lines[0].replace('"count":', '"count": ', 1)  # harmless respacing
    obj = json.loads(lines[0])
    obj["header"]["timestamp"] = "2000-01-01T00:00:00.000Z"
    lines[0] = json.dumps(obj)
    tampered = tmp_path / "tampered.ndjson"
    tampered.write_text("\n".join(lines) + "\n")
    bad = cli(None, "audit", str(tampered), "--key", key)
    assert bad.returncode == 1
    assert "block 0" in bad.stderr and "leader signature" in bad.stderr


def test_export_over_grpc_equals_export_over_http(
    node: NodeHandle, gateway: GatewayHandle, tmp_path: Path
) -> None:
    a, b = tmp_path / "grpc.ndjson", tmp_path / "http.ndjson"
    ok(cli(f"grpc://{node.address}", "export", "--out", str(a), "--to", "2"))
    ok(cli(gateway.url, "export", "--out", str(b), "--to", "2"))
    assert a.read_bytes() == b.read_bytes()


def test_unavailable_ledger_exits_3() -> None:
    for url in (f"grpc://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"):
        result = cli(url, "get", "--log", "--retries", "1")
        assert result.returncode == 3, result.stderr
        assert "unavailable" in result.stderr and "Traceback" not in result.stderr


def test_usage_errors_exit_2(node: NodeHandle) -> None:
    url = f"grpc://{node.address}"
    assert cli(url, "get", "--source", "x").returncode == 2
    assert cli(url, "verify").returncode == 2  # --key is required
    assert cli(url, "verify", "--key", "nonsense").returncode == 2
    assert cli(url, "get", "--log", "--url", "ftp://x").returncode == 2
    assert cli(url, "append", "-", stdin="[1, 2").returncode == 2
    for args in (
        ["anchor"],
        ["reconcile", "--repo", ".", "--branch", "main"],
    ):
        result = cli(url, *args)
        assert result.returncode == 2
        assert "not available" in result.stderr


def test_verbose_shows_the_traceback() -> None:
    url = f"grpc://127.0.0.1:{free_port()}"
    quiet = cli(url, "get", "--log", "--retries", "0")
    loud = cli(url, "get", "--log", "--retries", "0", "--verbose")
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr
    assert quiet.returncode == loud.returncode == 3


def test_sdk_over_the_gateway_sync_and_async(gateway: GatewayHandle, tmp_path: Path) -> None:
    import asyncio
    import io

    from clients import AsyncLedgerClient, LedgerClient, StateTracker, audit_bundle

    key = log_key(gateway.url)
    tracker = StateTracker(tmp_path / "trusted.json")
    events = five_kinds("sdk-http")
    with LedgerClient(gateway.url, verifier_key=key) as c:
        proven = c.append_and_prove(events[0])
        batch = c.append_batch(events[1:3])
        assert batch.status == "success"
        c.verify_checkpoint(tracker)
        bundle = io.BytesIO()
        c.export(bundle)
    report = audit_bundle(io.BytesIO(bundle.getvalue()), Verifier.from_string(key))
    assert report.ok, report.failure
    assert report.tree_size > proven.index

    async def scenario() -> None:
        async with AsyncLedgerClient(gateway.url, verifier_key=key) as c:
            again = await c.append_and_prove(events[0])
            assert again.index == proven.index
            entry = await c.lookup(str(events[1]["source"]), str(events[1]["id"]))
            assert entry.event == events[1]
            assert [e.index async for e in c.iter_entries(subject="model:fraud:sdk-http")]
            await c.append(events[3])
            advance = await c.verify_checkpoint(tracker)
            assert advance.advanced
            out = io.BytesIO()
            await c.export(out, from_height=1)
            assert b'"frontier"' in out.getvalue().split(b"\n")[0]

    asyncio.run(scenario())
