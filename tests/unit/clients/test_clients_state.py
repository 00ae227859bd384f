"""The verifying state tracker against a real gRPC server that lies: rollbacks and forks
are detected with both checkpoints and the proof as evidence, and trust never moves."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from clients import AsyncLedgerClient, LedgerClient, RetryPolicy, StateTracker
from clients.cli import run
from provledger.errors import ConsistencyError, SignatureError
from provledger.note import Signer
from tests.unit.clients.lying_server import LyingLedger, leaves, serve

ORIGIN = "example.org/provledger/lying"


@pytest.fixture
def ledger() -> LyingLedger:
    return LyingLedger(Signer.generate(ORIGIN))  # type: ignore[abstract]


def client(address: str, ledger: LyingLedger) -> LedgerClient:
    return LedgerClient(
        f"grpc://{address}",
        verifier_key=ledger.signer.verifier_key,
        retry=RetryPolicy(attempts=1),
    )


def test_honest_growth_advances_and_persists(tmp_path: Path, ledger: LyingLedger) -> None:
    honest = leaves("a", 20)
    tracker = StateTracker(tmp_path / "state" / "trusted.json")
    with serve(ledger) as address, client(address, ledger) as c:
        ledger.served = honest[:5]
        first = c.verify_checkpoint(tracker)
        assert first.previous is None and first.current.tree_size == 5

        ledger.served = honest[:13]
        second = c.verify_checkpoint(tracker)
        assert second.previous is not None and second.previous.tree_size == 5
        assert second.current.tree_size == 13 and second.advanced and second.proof

        same = c.verify_checkpoint(tracker)
        assert not same.advanced and same.current.tree_size == 13

    data = json.loads((tmp_path / "state" / "trusted.json").read_text())
    record = data["logs"][ORIGIN]
    assert record["tree_size"] == 13
    assert StateTracker(tmp_path / "state" / "trusted.json").trusted(ORIGIN).tree_size == 13  # type: ignore[union-attr]
    # Nothing but the state file and its lock remain: the temporary file was renamed.
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "trusted.json",
        "trusted.json.lock",
    ]


def test_rollback_is_detected(tmp_path: Path, ledger: LyingLedger) -> None:
    honest = leaves("a", 12)
    tracker = StateTracker(tmp_path / "trusted.json")
    with serve(ledger) as address, client(address, ledger) as c:
        ledger.served = honest[:9]
        trusted = c.verify_checkpoint(tracker).current
        ledger.served = honest[:5]  # a validly signed, older checkpoint
        served_note = ledger.note()
        with pytest.raises(ConsistencyError) as caught:
            c.verify_checkpoint(tracker)
    e = caught.value
    assert "rollback" in e.detail and "size 5" in e.detail and "size 9" in e.detail
    assert e.old_checkpoint == trusted.note
    assert e.new_checkpoint == served_note
    assert tracker.trusted(ORIGIN).tree_size == 9  # type: ignore[union-attr]


def test_a_replica_that_catches_up_is_not_a_rollback(tmp_path: Path, ledger: LyingLedger) -> None:
    honest = leaves("a", 12)
    tracker = StateTracker(tmp_path / "trusted.json")
    with serve(ledger) as address, client(address, ledger) as c:
        ledger.served = honest[:9]
        c.verify_checkpoint(tracker)
        ledger.served = honest[:5]  # a lagging follower answers first...
        catch_up = threading.Timer(0.5, lambda: setattr(ledger, "served", honest))
        catch_up.start()
        advance = c.verify_checkpoint(tracker)  # ...then the replica catches up
        catch_up.join()
    assert advance.previous is not None and advance.previous.tree_size == 9
    assert advance.current.tree_size == 12
    assert ledger.calls["GetCheckpoint"] >= 3  # asked again while it was behind


def test_fork_is_detected_with_the_proof(tmp_path: Path, ledger: LyingLedger) -> None:
    honest = leaves("a", 9)
    forked = honest[:3] + leaves("b", 9, start=3)  # rewrites entries 3.. and grows
    tracker = StateTracker(tmp_path / "trusted.json")
    with serve(ledger) as address, client(address, ledger) as c:
        ledger.served = honest
        trusted = c.verify_checkpoint(tracker).current
        ledger.served = forked
        with pytest.raises(ConsistencyError) as caught:
            c.verify_checkpoint(tracker)
    e = caught.value
    assert "fork" in e.detail and "size 12" in e.detail and "size 9" in e.detail
    assert e.old_checkpoint == trusted.note
    assert "\n12\n" in e.new_checkpoint
    assert e.proof  # the forked server's own proof, as evidence
    assert tracker.trusted(ORIGIN).tree_size == 9  # type: ignore[union-attr]


def test_same_size_fork_is_detected(tmp_path: Path, ledger: LyingLedger) -> None:
    tracker = StateTracker(tmp_path / "trusted.json")
    with serve(ledger) as address, client(address, ledger) as c:
        ledger.served = leaves("a", 7)
        c.verify_checkpoint(tracker)
        ledger.served = leaves("a", 6) + leaves("b", 1, start=6)
        with pytest.raises(ConsistencyError, match="fork: two checkpoints of size 7"):
            c.verify_checkpoint(tracker)


def test_unprovable_growth_is_a_consistency_error(tmp_path: Path, ledger: LyingLedger) -> None:
    # The server signs a bigger checkpoint but cannot produce a proof for it.
    tracker = StateTracker(tmp_path / "trusted.json")
    with serve(ledger) as address, client(address, ledger) as c:
        ledger.served = leaves("a", 4)
        c.verify_checkpoint(tracker)
        ledger.served = leaves("a", 10)
        note = ledger.note()
        ledger.served = leaves("a", 4)  # proofs are made from this short tree
        with pytest.raises(ConsistencyError, match="cannot prove"):
            tracker.advance(
                note, ledger.signer.verifier, lambda a, b: c.consistency_proof(a, b).hashes
            )


def test_checkpoint_under_another_key_is_refused(tmp_path: Path, ledger: LyingLedger) -> None:
    impostor = Signer.generate(ORIGIN)
    tracker = StateTracker(tmp_path / "trusted.json")
    with serve(ledger) as address:
        ledger.served = leaves("a", 3)
        with (
            LedgerClient(f"grpc://{address}", verifier_key=impostor.verifier_key) as c,
            pytest.raises(SignatureError),
        ):
            c.verify_checkpoint(tracker)
    assert not (tmp_path / "trusted.json").exists()


def test_tampered_state_file_is_refused(tmp_path: Path, ledger: LyingLedger) -> None:
    path = tmp_path / "trusted.json"
    tracker = StateTracker(path)
    with serve(ledger) as address, client(address, ledger) as c:
        ledger.served = leaves("a", 3)
        c.verify_checkpoint(tracker)
        data = json.loads(path.read_text())
        note = data["logs"][ORIGIN]["checkpoint"]
        data["logs"][ORIGIN]["checkpoint"] = note.replace("\n3\n", "\n2\n")
        path.write_text(json.dumps(data))
        with pytest.raises(SignatureError, match="trusted for"):
            c.verify_checkpoint(tracker)


def test_async_client_detects_rollback(tmp_path: Path, ledger: LyingLedger) -> None:
    honest = leaves("a", 10)
    tracker = StateTracker(tmp_path / "trusted.json")

    async def scenario(address: str) -> None:
        async with AsyncLedgerClient(
            f"grpc://{address}", verifier_key=ledger.signer.verifier_key
        ) as c:
            ledger.served = honest[:4]
            await c.verify_checkpoint(tracker)
            ledger.served = honest[:10]
            advance = await c.verify_checkpoint(tracker)
            assert advance.current.tree_size == 10 and advance.advanced
            ledger.served = honest[:6]
            with pytest.raises(ConsistencyError, match="rollback"):
                await c.verify_checkpoint(tracker)

    with serve(ledger) as address:
        asyncio.run(scenario(address))


def cli_verify(address: str, key: str, state: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(
        [
            "verify",
            "--url",
            f"grpc://{address}",
            "--key",
            key,
            "--state",
            str(state),
            "--retries",
            "0",
            *extra,
        ],
        env={},
        out=out,
        err=err,
    )
    return code, out.getvalue(), err.getvalue()


def test_cli_verify_names_both_checkpoints_on_fork(tmp_path: Path, ledger: LyingLedger) -> None:
    state = tmp_path / "trusted.json"
    key = ledger.signer.verifier_key
    with serve(ledger) as address:
        ledger.served = leaves("a", 6)
        code, out, err = cli_verify(address, key, state)
        assert code == 0, err
        assert "first checkpoint trusted" in out

        ledger.served = leaves("a", 8)
        code, out, err = cli_verify(address, key, state, "--index", "7")
        assert code == 0, err
        assert "consistent with the trusted checkpoint at size 6" in out
        assert "entry 7 is included" in out

        ledger.served = leaves("a", 2) + leaves("b", 9, start=2)
        code, out, err = cli_verify(address, key, state, "--json")
        assert code == 1
        assert "fork" in err
        assert "trusted checkpoint:" in err and "served checkpoint:" in err
        evidence = json.loads(out)
        assert evidence["ok"] is False
        assert "\n8\n" in evidence["old_checkpoint"] and "\n11\n" in evidence["new_checkpoint"]
        assert evidence["proof"]

        ledger.served = leaves("a", 3)
        code, _, err = cli_verify(address, key, state)
        assert code == 1
        assert "rollback" in err and "size 3" in err and "size 8" in err


def test_cli_executable_detects_rollback(tmp_path: Path, ledger: LyingLedger) -> None:
    state = tmp_path / "trusted.json"
    exe = Path(sys.executable).parent / "provledger"
    with serve(ledger) as address:
        args = [
            str(exe),
            "verify",
            "--url",
            f"grpc://{address}",
            "--key",
            ledger.signer.verifier_key,
            "--state",
            str(state),
        ]
        ledger.served = leaves("a", 9)
        first = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        ledger.served = leaves("a", 4)
        second = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "rollback" in second.stderr
    assert "Traceback" not in second.stderr
