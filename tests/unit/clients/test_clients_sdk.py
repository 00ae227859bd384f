"""The SDK against a real in-process gRPC server: retries, error translation,
append_and_prove, and the event builders."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import grpc
import pytest

from clients import (
    AsyncLedgerClient,
    Dataset,
    DatasetRef,
    GitRef,
    LedgerClient,
    Model,
    RetryPolicy,
    commitment,
    cost_event,
    data_event,
    deployment_event,
    encode_event,
    inference_event,
    parse_url,
    rfc3339,
    sha256_digest,
    training_event,
    uuid7,
)
from provledger.errors import (
    ConflictError,
    InvalidEventError,
    UnavailableError,
    VerificationError,
)
from provledger.events import make_entry
from provledger.note import Signer
from provledger.v1 import ledger_pb2
from tests.unit.clients.lying_server import LyingLedger, leaves, serve

FAST = RetryPolicy(attempts=4, initial_backoff=0.001, max_backoff=0.01)
DIGEST = sha256_digest(b"model weights")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def ledger() -> LyingLedger:
    # The generated servicer declares every RPC abstract; the rest answer UNIMPLEMENTED.
    return LyingLedger(Signer.generate("example.org/sdk"), served=leaves("a", 3))  # type: ignore[abstract]


def sample_event() -> dict[str, object]:
    return data_event(
        source="urn:test:sdk",
        operation="ingest",
        dataset=Dataset("clicks", "s3://b/clicks", sha256_digest(b"clicks")),
    )


def test_retries_unavailable_then_succeeds(ledger: LyingLedger) -> None:
    ledger.unavailable = 2
    with serve(ledger) as address, LedgerClient(f"grpc://{address}", retry=FAST) as c:
        info = c.log_info()
    assert info.tree_size == 3
    assert ledger.calls["GetLogInfo"] == 3


def test_gives_up_after_the_last_attempt(ledger: LyingLedger) -> None:
    ledger.unavailable = 10
    with (
        serve(ledger) as address,
        LedgerClient(f"grpc://{address}", retry=FAST) as c,
        pytest.raises(UnavailableError, match="no leader"),
    ):
        c.checkpoint()
    assert ledger.calls["GetCheckpoint"] == 4


def test_refused_connection_is_unavailable() -> None:
    from tests.harness.procs import free_port

    url = f"grpc://127.0.0.1:{free_port()}"
    with (
        LedgerClient(url, retry=RetryPolicy(attempts=2, initial_backoff=0.001)) as c,
        pytest.raises(UnavailableError),
    ):
        c.checkpoint()


def test_backoff_grows_with_jitter_and_honours_the_hint() -> None:
    policy = RetryPolicy(attempts=5, initial_backoff=0.1, max_backoff=1.0)
    for attempt in range(6):
        cap = min(1.0, 0.1 * 2**attempt)
        assert all(0 <= policy.delay(attempt) <= cap for _ in range(50))
    assert policy.delay(0, retry_after=3) == 1.0  # hint, capped at max_backoff
    assert len({policy.delay(3) for _ in range(20)}) > 1  # jittered


def test_problem_metadata_becomes_the_error(ledger: LyingLedger) -> None:
    problem = ledger_pb2.Problem(
        status=422,
        title="Invalid event",
        detail="bad digest",
        errors=[ledger_pb2.FieldError(path="data.dataset.digest.sha256", message="expected hex")],
    )
    ledger.append_problem = (grpc.StatusCode.INVALID_ARGUMENT, problem)
    with (
        serve(ledger) as address,
        LedgerClient(f"grpc://{address}", retry=FAST) as c,
        pytest.raises(InvalidEventError) as caught,
    ):
        c.append(sample_event())
    assert caught.value.errors[0].path == "data.dataset.digest.sha256"
    assert caught.value.status == 422

    ledger.append_problem = (
        grpc.StatusCode.ALREADY_EXISTS,
        ledger_pb2.Problem(status=409, detail="taken"),
    )
    with (
        serve(ledger) as address,
        LedgerClient(f"grpc://{address}", retry=FAST) as c,
        pytest.raises(ConflictError, match="taken"),
    ):
        c.append(sample_event())
    assert ledger.calls["Append"] == 2  # refusals are not retried


def test_append_and_prove(ledger: LyingLedger) -> None:
    key = ledger.signer.verifier_key
    with serve(ledger) as address, LedgerClient(f"grpc://{address}", verifier_key=key) as c:
        event = sample_event()
        proven = c.append_and_prove(event)
    assert proven.index == 3
    assert proven.checkpoint.size == 4
    assert proven.submitter == "local"


def test_append_and_prove_catches_a_ledger_that_stores_another_event(
    ledger: LyingLedger,
) -> None:
    ledger.store_other_event = True
    key = ledger.signer.verifier_key
    with (
        serve(ledger) as address,
        LedgerClient(f"grpc://{address}", verifier_key=key) as c,
        pytest.raises(VerificationError, match="another event"),
    ):
        c.append_and_prove(sample_event())


def test_append_and_prove_refuses_a_receipt_under_another_key(ledger: LyingLedger) -> None:
    other = Signer.generate(ledger.signer.name).verifier_key
    with (
        serve(ledger) as address,
        LedgerClient(f"grpc://{address}", verifier_key=other) as c,
        pytest.raises(VerificationError),
    ):
        c.append_and_prove(sample_event())


def test_append_and_prove_needs_a_key(ledger: LyingLedger) -> None:
    with (
        serve(ledger) as address,
        LedgerClient(f"grpc://{address}") as c,
        pytest.raises(ValueError, match="verifier key"),
    ):
        c.append_and_prove(sample_event())


def test_async_client_append_and_prove_with_retry(ledger: LyingLedger) -> None:
    ledger.unavailable = 1

    async def scenario(address: str) -> int:
        async with AsyncLedgerClient(
            f"grpc://{address}", verifier_key=ledger.signer.verifier_key, retry=FAST
        ) as c:
            proven = await c.append_and_prove(sample_event())
            return proven.index

    with serve(ledger) as address:
        assert asyncio.run(scenario(address)) == 3
    assert ledger.calls["Append"] == 2


# -- builders ---------------------------------------------------------------------


def test_uuid7_layout() -> None:
    ids = [uuid7() for _ in range(50)]
    for text in ids:
        u = uuid.UUID(text)
        assert u.version == 7 and u.variant == uuid.RFC_4122
    assert len(set(ids)) == 50
    ms = int(ids[0].replace("-", "")[:12], 16)
    assert abs(ms / 1000 - datetime.now(UTC).timestamp()) < 60


def test_rfc3339_is_utc_z() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rfc3339())
    with pytest.raises(ValueError):
        rfc3339(datetime(2025, 1, 1))


def test_every_builder_makes_a_valid_event() -> None:
    model = Model("fraud", "3.1.0", DIGEST)
    events = [
        sample_event(),
        training_event(
            source="mlflow://tracking",
            run_id="run-7",
            model=model,
            datasets=[DatasetRef("clicks", sha256_digest(b"clicks"))],
            code=GitRef("https://git.example/ml", COMMIT),
            subject="model:fraud",
        ),
        deployment_event(
            source="argo://prod",
            action="deploy",
            model=model,
            environment="prod",
            git=GitRef("https://git.example/deploy", COMMIT, "apps/fraud.yaml"),
        ),
        inference_event(
            source="urn:app:mobile-backend:eu-1",
            model_name="fraud",
            model_version="3.1.0",
            input_commitment=commitment(b"k" * 32, b"input"),
            output_commitment=commitment(b"k" * 32, b"output"),
            count=12,
            latency_ms=8.5,
        ),
        cost_event(
            source="focus://billing",
            billed_cost=Decimal("12.50"),
            effective_cost="11.00",
            currency="EUR",
            period_start=datetime(2025, 1, 1, tzinfo=UTC),
            period_end=datetime(2025, 1, 2, tzinfo=UTC),
            service_name="GPU",
            charge_category="Usage",
            model_name="fraud",
        ),
    ]
    kinds = [e["type"] for e in events]
    assert kinds == [
        f"provledger.{k}.v1" for k in ("data", "training", "deployment", "inference", "cost")
    ]
    for event in events:
        entry = make_entry(event, "local")
        assert entry.id == event["id"]


def test_builders_refuse_invalid_fields_with_the_path() -> None:
    with pytest.raises(InvalidEventError) as caught:
        data_event(source="urn:x", operation="ingest", dataset=Dataset("d", "s3://d", "not-hex"))
    assert any("data.dataset.digest" in e.path for e in caught.value.errors)
    with pytest.raises(TypeError):
        cost_event(
            source="urn:x",
            billed_cost=1.5,  # type: ignore[arg-type]
            effective_cost="1",
            currency="EUR",
            period_start="2025-01-01T00:00:00Z",
            period_end="2025-01-02T00:00:00Z",
            service_name="s",
            charge_category="Usage",
        )


def test_encode_event_sends_rfc8785_and_refuses_what_is_not_i_json() -> None:
    assert encode_event({"b": [1, 2.5], "a": "é"}) == '{"a":"é","b":[1,2.5]}'.encode()
    with pytest.raises(InvalidEventError) as caught:
        encode_event({"x": float("nan")})
    assert [e.path for e in caught.value.errors] == ["x"]
    assert encode_event(b'{"raw": 1}') == b'{"raw": 1}'


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("grpc://127.0.0.1:7400", ("grpc", "127.0.0.1:7400")),
        ("grpcs://ledger.example:443", ("grpcs", "ledger.example:443")),
        ("http://127.0.0.1:8080/", ("http", "http://127.0.0.1:8080")),
    ],
)
def test_parse_url(url: str, expected: tuple[str, str]) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["grpc://host", "ftp://x", "127.0.0.1:7400"])
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)
