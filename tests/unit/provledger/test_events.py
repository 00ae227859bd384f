"""provledger.events: SPEC §1 validation with exact field paths, I-JSON decoding, RFC 8785
bytes (the RFC's own vectors, and Hypothesis against rfc8785 for the fast path), leaves
and the size limit."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import struct
from collections.abc import Callable
from typing import Any, cast

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from provledger import events
from provledger.errors import InvalidEventError, InvalidRequestError, TooLargeError
from provledger.events import (
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    SYSTEM_EVENT_TYPES,
    USER_EVENT_TYPES,
    LedgerEntry,
    canonical_json,
    decode_json,
    leaf_bytes,
    make_entry,
    parse_leaf,
)


def sha256(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


MODEL_DIGEST = sha256("fraud-detector-7.onnx")
DATASET_DIGEST = sha256("s3://acme-ml/transactions/2025-02/")

# Realistic events of the five kinds, shaped after the ecosystem research (OpenLineage,
# MLflow, Argo CD / Flux, mobile inference logging, FOCUS 1.2 rows), each with the
# extra fields real producers send.
DATA_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "0193a1c2-7d4e-7b5f-8a21-3c4d5e6f7a81",
    "source": "airflow://etl.prod/dags/transactions_daily",
    "type": "provledger.data.v1",
    "time": "2025-03-01T02:14:09.512Z",
    "subject": f"dataset:s3://acme-ml/transactions/2025-02/@sha256:{DATASET_DIGEST}",
    "datacontenttype": "application/json",
    "data": {
        "operation": "ingest",
        "dataset": {
            "name": "transactions-2025-02",
            "uri": "s3://acme-ml/transactions/2025-02/",
            "digest": {"sha256": DATASET_DIGEST},
            "rowCount": 18234112,
            "classification": "personal",
        },
        "openlineage": {
            "runId": "0193a1c2-0000-7000-8000-00000000aa01",
            "job": {"namespace": "airflow", "name": "transactions_daily"},
        },
    },
}
TRAINING_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "01933b8e-6f2a-7c3e-9a41-5b7f0d2e8c11",
    "source": "mlflow://tracking.prod",
    "type": "provledger.training.v1",
    "time": "2025-03-03T18:40:00Z",
    "subject": f"model:fraud-detector@sha256:{MODEL_DIGEST}",
    "dataschema": "https://schemas.acme.dev/provledger/training/1-0-0.json",
    "tenant": "acme",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "data": {
        "run_id": "5b7f0d2e8c114c1d9a41",
        "model": {"name": "fraud-detector", "version": "7", "digest": {"sha256": MODEL_DIGEST}},
        "datasets": [
            {"name": "transactions-2025-02", "digest": {"sha256": DATASET_DIGEST}},
            {"name": "chargebacks-2025-02", "digest": {"sha256": sha256("chargebacks")}},
        ],
        "code": {
            "repo": "git@git.acme.dev:ml/fraud.git",
            "commit": "e1842e02e8ec868e70cd1b943d678c928ca0e45b",
        },
        "parameters": {"learning_rate": "0.05", "max_depth": "8"},
        "metrics": [{"key": "auc", "value": 0.9731, "step": 12}],
    },
}
DEPLOYMENT_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "01933b8e-6f2a-7c3e-9a41-5b7f0d2e8c12",
    "source": "flux://cluster-eu1/kustomizations/fraud/fraud-prod",
    "type": "provledger.deployment.v1",
    "time": "2025-03-04T10:15:02+00:00",
    "subject": f"model:fraud-detector@sha256:{MODEL_DIGEST}",
    "data": {
        "action": "rollback",
        "model": {"name": "fraud-detector", "version": "6", "digest": {"sha256": MODEL_DIGEST}},
        "environment": "prod",
        "git": {
            "repo": "https://git.acme.dev/ml/deploy-config",
            "commit": "5ab2f8a4323abafb10abb68657d9d39f1a775057",
            "path": "models/fraud-detector/manifest.yaml",
        },
        "gitops": {
            "tool": "flux",
            "revision": "main@sha1:5ab2f8a4323abafb10abb68657d9d39f1a775057",
        },
        "previous": {"eventId": "01933b8e-6f2a-7c3e-9a41-5b7f0d2e8c10"},
    },
}
INFERENCE_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "0193b0f0-1111-7abc-8def-0123456789ab",
    "source": "urn:app:mobile-backend:eu-1",
    "type": "provledger.inference.v1",
    "time": "2025-03-04T10:20:31.004918Z",
    "data": {
        "model": {"name": "fraud-detector", "version": "7"},
        "input_commitment": hashlib.sha256(b"salt-17|request-body").hexdigest(),
        "output_commitment": hashlib.sha256(b"salt-17|score=0.91").hexdigest(),
        "count": 250,
        "latency_ms": 12.75,
        "app": {"id": "com.acme.wallet", "version": "4.2.1", "platform": "android"},
    },
}
COST_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "focus-2025-03-04-123456789012-0001",
    "source": "https://billing.acme.dev/focus/exports/2025-03",
    "type": "provledger.cost.v1",
    "time": "2025-03-05T06:00:00Z",
    "data": {
        "BilledCost": "41.2800",
        "EffectiveCost": "37.1500",
        "BillingCurrency": "EUR",
        "ChargePeriodStart": "2025-03-04T00:00:00Z",
        "ChargePeriodEnd": "2025-03-05T00:00:00+00:00",
        "ServiceName": "Managed Inference",
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ServiceCategory": "AI and Machine Learning",
        "ResourceId": "arn:example:inference:eu-west-1:123456789012:endpoint/fraud-prod",
        "Tags": {"ml-model": "fraud-detector", "ml-model-version": "7", "env": "prod"},
        "x_ModelName": "fraud-detector",
        "x_ModelVersion": "7",
        "x_Environment": "prod",
    },
}
VALID_EVENTS = {
    "data": DATA_EVENT,
    "training": TRAINING_EVENT,
    "deployment": DEPLOYMENT_EVENT,
    "inference": INFERENCE_EVENT,
    "cost": COST_EVENT,
}


def jcs_leaf(event: Any, submitter: str) -> bytes:
    result: bytes = rfc8785.dumps({"event": event, "submitter": submitter})
    return result


def refusal(event: Any) -> list[tuple[str, str]]:
    """The (path, message) pairs make_entry refuses `event` with."""
    with pytest.raises(InvalidEventError) as caught:
        make_entry(event, "alice")
    return [(error.path, error.message) for error in caught.value.errors]


def test_type_sets_match_spec() -> None:
    assert {t.split(".")[1] for t in USER_EVENT_TYPES} == set(VALID_EVENTS)
    assert {
        "provledger.anchor.v1",
        "provledger.reconcile.v1",
        "provledger.policy.v1",
    } == SYSTEM_EVENT_TYPES
    assert EVENT_TYPES == USER_EVENT_TYPES | SYSTEM_EVENT_TYPES
    assert MAX_EVENT_BYTES == 60_000


# --- valid events ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(VALID_EVENTS))
def test_valid_event_of_each_kind(kind: str) -> None:
    event = copy.deepcopy(VALID_EVENTS[kind])
    entry = make_entry(event, "alice")
    assert entry.leaf == jcs_leaf(event, "alice")
    assert entry.event is event  # kept as given: extra fields, time as sent
    assert (entry.source, entry.id, entry.type) == (event["source"], event["id"], event["type"])
    assert entry.subject == event.get("subject")
    assert entry.submitter == "alice"


@pytest.mark.parametrize("kind", sorted(VALID_EVENTS))
def test_decoded_client_text_gives_the_same_leaf(kind: str) -> None:
    event = VALID_EVENTS[kind]
    pretty = json.dumps(event, indent=2, ensure_ascii=True).encode()
    assert make_entry(decode_json(pretty), "alice").leaf == jcs_leaf(event, "alice")


@pytest.mark.parametrize("kind", sorted(VALID_EVENTS))
def test_parse_leaf_inverts_make_entry(kind: str) -> None:
    entry = make_entry(copy.deepcopy(VALID_EVENTS[kind]), "ci-bot@acme")
    parsed = parse_leaf(entry.leaf)
    assert parsed == entry
    assert isinstance(parsed, LedgerEntry)


@pytest.mark.parametrize("event_type", sorted(SYSTEM_EVENT_TYPES))
def test_system_events_need_only_a_data_object(event_type: str) -> None:
    event = {
        "specversion": "1.0",
        "id": "anchor-42",
        "source": "urn:provledger:node:n1",
        "type": event_type,
        "time": "2025-03-04T10:15:02Z",
        "data": {"anything": ["goes", 1, True]},
    }
    assert make_entry(event, "admin").leaf == jcs_leaf(event, "admin")
    assert refusal({**event, "data": "x"}) == [("data", "expected a JSON object")]


@pytest.mark.parametrize(
    "time",
    [
        "2024-02-29T00:00:00Z",
        "2000-02-29T00:00:00Z",
        "2016-12-31T23:59:60Z",
        "2025-03-04T10:15:02.123456789+00:00",
        "0001-01-01T00:00:00Z",
    ],
)
def test_valid_times_are_kept_as_sent(time: str) -> None:
    event = {**TRAINING_EVENT, "time": time}
    assert make_entry(event, "alice").event["time"] == time


@pytest.mark.parametrize(
    "source",
    [
        "mlflow://tracking.prod",
        "urn:app:mobile-backend:eu-1",
        "https://user@[2001:db8::1]:8443/a/b?c=d#e",
        "/relative/path",
        "producer-17",
        "http://example.com/%7Euser",
    ],
)
def test_sources_that_are_uri_references(source: str) -> None:
    assert make_entry({**TRAINING_EVENT, "source": source}, "alice").source == source


# --- invalid events: exact paths ------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]

ENVELOPE_CASES: list[tuple[str, Mutation, str, str]] = [
    ("specversion", lambda e: e.update(specversion="0.3"), "specversion", 'expected "1.0"'),
    ("specversion missing", lambda e: e.pop("specversion"), "specversion", "required"),
    ("id missing", lambda e: e.pop("id"), "id", "required"),
    ("id empty", lambda e: e.update(id=""), "id", "must not be empty"),
    ("id number", lambda e: e.update(id=7), "id", "expected a string"),
    ("id too long", lambda e: e.update(id="x" * 129), "id", "at most 128 characters, got 129"),
    ("source empty", lambda e: e.update(source=""), "source", "must not be empty"),
    (
        "source with space",
        lambda e: e.update(source="my producer"),
        "source",
        "expected a URI-reference (RFC 3986)",
    ),
    (
        "source bad scheme",
        lambda e: e.update(source="1abc:def"),
        "source",
        "expected a URI-reference (RFC 3986)",
    ),
    (
        "source bad percent",
        lambda e: e.update(source="urn:a%zz"),
        "source",
        "expected a URI-reference (RFC 3986)",
    ),
    (
        "source too long",
        lambda e: e.update(source="urn:" + "a" * 509),
        "source",
        "at most 512 characters, got 513",
    ),
    (
        "type unknown",
        lambda e: e.update(type="provledger.model.v1"),
        "type",
        "expected one of " + events._TYPE_LIST,
    ),
    ("type missing", lambda e: e.pop("type"), "type", "required"),
    (
        "time offset",
        lambda e: e.update(time="2025-03-04T10:15:02+01:00"),
        "time",
        'must be in UTC: end with "Z" or "+00:00"',
    ),
    (
        "time space",
        lambda e: e.update(time="2025-03-04 10:15:02Z"),
        "time",
        'expected an RFC 3339 UTC timestamp such as "2025-03-04T10:15:02Z"',
    ),
    (
        "time no zone",
        lambda e: e.update(time="2025-03-04T10:15:02"),
        "time",
        'expected an RFC 3339 UTC timestamp such as "2025-03-04T10:15:02Z"',
    ),
    (
        "time month 13",
        lambda e: e.update(time="2025-13-04T10:15:02Z"),
        "time",
        'expected an RFC 3339 UTC timestamp such as "2025-03-04T10:15:02Z"',
    ),
    (
        "time 29 Feb",
        lambda e: e.update(time="2025-02-29T00:00:00Z"),
        "time",
        "not a valid date",
    ),
    (
        "time 29 Feb 1900",
        lambda e: e.update(time="1900-02-29T00:00:00Z"),
        "time",
        "not a valid date",
    ),
    (
        "time 31 Apr",
        lambda e: e.update(time="2025-04-31T00:00:00Z"),
        "time",
        "not a valid date",
    ),
    (
        "time leap second",
        lambda e: e.update(time="2016-12-31T12:00:60Z"),
        "time",
        "a leap second can only be 23:59:60 UTC",
    ),
    (
        "time number",
        lambda e: e.update(time=1741083302),
        "time",
        "expected an RFC 3339 timestamp string",
    ),
    ("time missing", lambda e: e.pop("time"), "time", "required"),
    ("subject empty", lambda e: e.update(subject=""), "subject", "must not be empty"),
    ("subject null", lambda e: e.update(subject=None), "subject", "expected a string"),
    (
        "datacontenttype",
        lambda e: e.update(datacontenttype="text/plain"),
        "datacontenttype",
        'expected a JSON media type such as "application/json"',
    ),
    (
        "dataschema relative",
        lambda e: e.update(dataschema="schemas/training.json"),
        "dataschema",
        "expected an absolute URI (RFC 3986)",
    ),
    (
        "extension uppercase",
        lambda e: e.update(Tenant="acme"),
        "Tenant",
        "unknown attribute (CloudEvents extension names are 1-20 lowercase letters or digits)",
    ),
    (
        "extension too long",
        lambda e: e.update(abcdefghijklmnopqrstu="x"),
        "abcdefghijklmnopqrstu",
        "unknown attribute (CloudEvents extension names are 1-20 lowercase letters or digits)",
    ),
    (
        "data_base64",
        lambda e: e.update(data_base64="AAAA"),
        "data_base64",
        "unknown attribute (CloudEvents extension names are 1-20 lowercase letters or digits)",
    ),
    (
        "odd attribute name",
        lambda e: e.update({"x.y": 1}),
        '["x.y"]',
        "unknown attribute (CloudEvents extension names are 1-20 lowercase letters or digits)",
    ),
    (
        "extension object",
        lambda e: e.update(tenant={"name": "acme"}),
        "tenant",
        "expected a string, boolean or 32-bit integer (a CloudEvents extension)",
    ),
    (
        "extension int64",
        lambda e: e.update(sequence=2**31),
        "sequence",
        "expected a string, boolean or 32-bit integer (a CloudEvents extension)",
    ),
    ("data missing", lambda e: e.pop("data"), "data", "required"),
    ("data array", lambda e: e.update(data=[]), "data", "expected a JSON object"),
]

HEX64 = "expected 64 lowercase hex characters"
COMMIT = "expected 40 lowercase hex characters (a Git commit id)"

DATA_CASES: list[tuple[str, Mutation, str, str]] = [
    (
        "data.operation",
        lambda e: e["data"].update(operation="copy"),
        "data.operation",
        "expected one of ingest, transform, validate, delete",
    ),
    ("data.dataset", lambda e: e["data"].pop("dataset"), "data.dataset", "required"),
    (
        "data.dataset.name",
        lambda e: e["data"]["dataset"].pop("name"),
        "data.dataset.name",
        "required",
    ),
    (
        "data.dataset.uri",
        lambda e: e["data"]["dataset"].update(uri="s3://bucket/with space"),
        "data.dataset.uri",
        "expected a URI (RFC 3986)",
    ),
    (
        "data.dataset.digest uppercase",
        lambda e: e["data"]["dataset"]["digest"].update(sha256=DATASET_DIGEST.upper()),
        "data.dataset.digest.sha256",
        HEX64,
    ),
    (
        "data.dataset.digest string",
        lambda e: e["data"]["dataset"].update(digest=f"sha256:{DATASET_DIGEST}"),
        "data.dataset.digest",
        "expected a JSON object",
    ),
    (
        "data.dataset.digest without sha256",
        lambda e: e["data"]["dataset"].update(digest={"sha512": "00"}),
        "data.dataset.digest.sha256",
        "required",
    ),
]
TRAINING_CASES: list[tuple[str, Mutation, str, str]] = [
    ("training.run_id", lambda e: e["data"].pop("run_id"), "data.run_id", "required"),
    (
        "training.model.version number",
        lambda e: e["data"]["model"].update(version=7),
        "data.model.version",
        "expected a string",
    ),
    (
        "training.model.digest short",
        lambda e: e["data"]["model"]["digest"].update(sha256="abc"),
        "data.model.digest.sha256",
        HEX64,
    ),
    (
        "training.datasets empty",
        lambda e: e["data"].update(datasets=[]),
        "data.datasets",
        "expected an array of one or more {name, digest}",
    ),
    (
        "training.datasets object",
        lambda e: e["data"].update(datasets={"name": "x"}),
        "data.datasets",
        "expected an array of one or more {name, digest}",
    ),
    (
        "training.datasets[0].digest",
        lambda e: e["data"]["datasets"][0]["digest"].update(sha256=DATASET_DIGEST[:-1] + "g"),
        "data.datasets[0].digest.sha256",
        HEX64,
    ),
    (
        "training.datasets[1].name",
        lambda e: e["data"]["datasets"][1].update(name=""),
        "data.datasets[1].name",
        "must not be empty",
    ),
    (
        "training.datasets[1] string",
        lambda e: e["data"]["datasets"].__setitem__(1, "chargebacks"),
        "data.datasets[1]",
        "expected a JSON object",
    ),
    (
        "training.code.commit abbreviated",
        lambda e: e["data"]["code"].update(commit="e1842e0"),
        "data.code.commit",
        COMMIT,
    ),
    (
        "training.code.commit uppercase",
        lambda e: e["data"]["code"].update(commit="E1842E02E8EC868E70CD1B943D678C928CA0E45B"),
        "data.code.commit",
        COMMIT,
    ),
    ("training.code.repo", lambda e: e["data"]["code"].pop("repo"), "data.code.repo", "required"),
]
DEPLOYMENT_CASES: list[tuple[str, Mutation, str, str]] = [
    (
        "deployment.action",
        lambda e: e["data"].update(action="promote"),
        "data.action",
        "expected one of deploy, rollback, undeploy",
    ),
    (
        "deployment.model.digest",
        lambda e: e["data"]["model"].pop("digest"),
        "data.model.digest",
        "required",
    ),
    (
        "deployment.environment",
        lambda e: e["data"].update(environment=""),
        "data.environment",
        "must not be empty",
    ),
    (
        "deployment.git",
        lambda e: e["data"].update(git="main"),
        "data.git",
        "expected a JSON object",
    ),
    (
        "deployment.git.commit",
        lambda e: e["data"]["git"].update(commit="main@sha1:5ab2f8a4"),
        "data.git.commit",
        COMMIT,
    ),
    ("deployment.git.path", lambda e: e["data"]["git"].pop("path"), "data.git.path", "required"),
]
INFERENCE_CASES: list[tuple[str, Mutation, str, str]] = [
    (
        "inference.model.name",
        lambda e: e["data"]["model"].pop("name"),
        "data.model.name",
        "required",
    ),
    (
        "inference.input_commitment payload",
        lambda e: e["data"].update(input_commitment="card=4111111111111111"),
        "data.input_commitment",
        HEX64,
    ),
    (
        "inference.output_commitment",
        lambda e: e["data"].pop("output_commitment"),
        "data.output_commitment",
        "required",
    ),
    (
        "inference.count zero",
        lambda e: e["data"].update(count=0),
        "data.count",
        "expected a positive integer",
    ),
    (
        "inference.count bool",
        lambda e: e["data"].update(count=True),
        "data.count",
        "expected a positive integer",
    ),
    (
        "inference.count float",
        lambda e: e["data"].update(count=2.5),
        "data.count",
        "expected a positive integer",
    ),
    (
        "inference.latency negative",
        lambda e: e["data"].update(latency_ms=-1),
        "data.latency_ms",
        "expected a non-negative number",
    ),
    (
        "inference.latency string",
        lambda e: e["data"].update(latency_ms="12"),
        "data.latency_ms",
        "expected a non-negative number",
    ),
    (
        "inference.model.digest when given",
        lambda e: e["data"]["model"].update(digest={"sha256": "x"}),
        "data.model.digest.sha256",
        HEX64,
    ),
]
COST_CASES: list[tuple[str, Mutation, str, str]] = [
    (
        "cost.BilledCost number",
        lambda e: e["data"].update(BilledCost=41.28),
        "data.BilledCost",
        'expected a decimal string such as "12.34"',
    ),
    (
        "cost.EffectiveCost exponent",
        lambda e: e["data"].update(EffectiveCost="3.715e1"),
        "data.EffectiveCost",
        'expected a decimal string such as "12.34"',
    ),
    (
        "cost.EffectiveCost leading zero",
        lambda e: e["data"].update(EffectiveCost="037.15"),
        "data.EffectiveCost",
        'expected a decimal string such as "12.34"',
    ),
    (
        "cost.BillingCurrency",
        lambda e: e["data"].update(BillingCurrency="eur"),
        "data.BillingCurrency",
        "expected an ISO 4217 currency code (three uppercase letters)",
    ),
    (
        "cost.ChargePeriodStart offset",
        lambda e: e["data"].update(ChargePeriodStart="2025-03-04T00:00:00-05:00"),
        "data.ChargePeriodStart",
        'must be in UTC: end with "Z" or "+00:00"',
    ),
    (
        "cost.period empty",
        lambda e: e["data"].update(ChargePeriodEnd="2025-03-04T00:00:00+00:00"),
        "data.ChargePeriodEnd",
        "must be after ChargePeriodStart",
    ),
    (
        "cost.period reversed",
        lambda e: e["data"].update(ChargePeriodEnd="2025-03-03T23:59:59.999Z"),
        "data.ChargePeriodEnd",
        "must be after ChargePeriodStart",
    ),
    (
        "cost.period equal fractions",
        lambda e: e["data"].update(
            ChargePeriodStart="2025-03-04T00:00:00.5Z", ChargePeriodEnd="2025-03-04T00:00:00.500Z"
        ),
        "data.ChargePeriodEnd",
        "must be after ChargePeriodStart",
    ),
    ("cost.ServiceName", lambda e: e["data"].pop("ServiceName"), "data.ServiceName", "required"),
    (
        "cost.ChargeCategory",
        lambda e: e["data"].update(ChargeCategory="usage"),
        "data.ChargeCategory",
        "expected one of Usage, Purchase, Tax, Credit, Adjustment",
    ),
    (
        "cost.x_ModelName",
        lambda e: e["data"].update(x_ModelName=7),
        "data.x_ModelName",
        "expected a string",
    ),
]
IJSON_CASES: list[tuple[str, Mutation, str, str]] = [
    (
        "big integer",
        lambda e: e["data"].update(count=2**53),
        "data.count",
        "integer 9007199254740992 is outside ±(2^53-1) (I-JSON)",
    ),
    (
        "NaN",
        lambda e: e["data"].update(latency_ms=math.nan),
        "data.latency_ms",
        "NaN is not allowed (I-JSON numbers are finite)",
    ),
    (
        "Infinity",
        lambda e: e["data"]["app"].update(battery=-math.inf),
        "data.app.battery",
        "-Infinity is not allowed (I-JSON numbers are finite)",
    ),
    (
        "lone surrogate",
        lambda e: e["data"]["model"].update(name="fraud\ud800"),
        "data.model.name",
        "contains a lone surrogate U+D800 (not allowed in I-JSON)",
    ),
    (
        "lone surrogate key",
        lambda e: e["data"]["app"].update({"\udfff": 1}),
        "data.app",
        "object key contains a lone surrogate U+DFFF (not allowed in I-JSON)",
    ),
    (
        "integer key",
        lambda e: e["data"]["app"].update({1: "one"}),
        "data.app",
        "object key 1 is not a string",
    ),
    (
        "a set",
        lambda e: e["data"].update(tags={"a"}),
        "data.tags",
        "a set is not a JSON value",
    ),
    (
        "bytes",
        lambda e: e["data"]["app"].update({"id.bytes": b"x"}),
        'data.app["id.bytes"]',
        "a bytes is not a JSON value",
    ),
]


def _kind_cases() -> list[Any]:
    cases = []
    for name, mutate, path, message in ENVELOPE_CASES:
        cases.append(pytest.param(TRAINING_EVENT, mutate, path, message, id=name))
    for event, table in (
        (DATA_EVENT, DATA_CASES),
        (TRAINING_EVENT, TRAINING_CASES),
        (DEPLOYMENT_EVENT, DEPLOYMENT_CASES),
        (INFERENCE_EVENT, INFERENCE_CASES),
        (COST_EVENT, COST_CASES),
        (INFERENCE_EVENT, IJSON_CASES),
    ):
        for name, mutate, path, message in table:
            cases.append(pytest.param(event, mutate, path, message, id=name))
    return cases


@pytest.mark.parametrize(("valid", "mutate", "path", "message"), _kind_cases())
def test_invalid_field_is_refused_with_its_path(
    valid: dict[str, Any], mutate: Mutation, path: str, message: str
) -> None:
    event = copy.deepcopy(valid)
    mutate(event)
    assert refusal(event) == [(path, message)]


def test_every_error_of_an_event_is_reported_at_once() -> None:
    event = copy.deepcopy(TRAINING_EVENT)
    event["time"] = "2025-03-04T10:15:02+02:00"
    event["Priority"] = "high"
    event["data"]["model"]["digest"]["sha256"] = "nope"
    event["data"]["datasets"][0]["digest"]["sha256"] = "ABC"
    event["data"]["code"]["commit"] = "HEAD"
    event["data"]["extra"] = {"loss": math.nan}
    errors = refusal(event)
    assert errors == [
        ("data.extra.loss", "NaN is not allowed (I-JSON numbers are finite)"),
        (
            "Priority",
            "unknown attribute (CloudEvents extension names are 1-20 lowercase letters or digits)",
        ),
        ("time", 'must be in UTC: end with "Z" or "+00:00"'),
        ("data.model.digest.sha256", HEX64),
        ("data.datasets[0].digest.sha256", HEX64),
        ("data.code.commit", COMMIT),
    ]
    with pytest.raises(InvalidEventError) as caught:
        make_entry(event, "alice")
    assert "data.datasets[0].digest.sha256: expected 64 lowercase hex characters" in str(
        caught.value
    )


def test_only_one_error_per_path() -> None:
    event = copy.deepcopy(INFERENCE_EVENT)
    event["data"]["latency_ms"] = math.inf  # I-JSON error; not also "non-negative number"
    assert refusal(event) == [
        ("data.latency_ms", "Infinity is not allowed (I-JSON numbers are finite)")
    ]


def test_a_missing_parent_is_reported_once() -> None:
    event = copy.deepcopy(DEPLOYMENT_EVENT)
    del event["data"]["model"]
    assert refusal(event) == [("data.model", "required")]


def test_wrong_type_of_data_is_not_checked_against_a_kind() -> None:
    event = {**TRAINING_EVENT, "type": "provledger.trainning.v1", "data": {}}
    assert [path for path, _ in refusal(event)] == ["type"]


@pytest.mark.parametrize("event", [[], "event", None, 1])
def test_an_event_must_be_an_object(event: Any) -> None:
    assert refusal(event) == [("", "expected a JSON object (a CloudEvents event)")]


def test_nesting_beyond_the_limit_is_refused() -> None:
    deep: Any = "bottom"
    for _ in range(events._MAX_DEPTH):
        deep = [deep]
    event = {**TRAINING_EVENT, "data": {**TRAINING_EVENT["data"], "deep": deep}}
    path, message = refusal(event)[0]
    assert path == "data.deep" + "[0]" * (events._MAX_DEPTH - 2)
    assert message == f"nested more than {events._MAX_DEPTH} levels deep"


def test_submitter_and_limit_are_the_callers_to_get_right() -> None:
    with pytest.raises(ValueError, match="submitter"):
        make_entry(TRAINING_EVENT, "")
    with pytest.raises(ValueError, match="max_event_bytes"):
        make_entry(TRAINING_EVENT, "alice", max_event_bytes=MAX_EVENT_BYTES + 1)
    with pytest.raises(ValueError, match="surrogate"):
        make_entry(TRAINING_EVENT, "al\ud800ice")


# --- size limit -------------------------------------------------------------------------


def test_size_limit_is_on_the_canonical_event_bytes() -> None:
    size = len(canonical_json(TRAINING_EVENT))
    assert make_entry(TRAINING_EVENT, "alice", max_event_bytes=size).leaf
    with pytest.raises(TooLargeError) as caught:
        make_entry(TRAINING_EVENT, "alice", max_event_bytes=size - 1)
    assert caught.value.status == 413
    assert caught.value.detail == (
        f"event is {size} bytes in canonical form; the limit is {size - 1} bytes"
    )


def test_default_size_limit_is_60000_bytes() -> None:
    event = copy.deepcopy(TRAINING_EVENT)
    event["data"]["notes"] = ""
    padding = MAX_EVENT_BYTES - len(canonical_json(event))
    event["data"]["notes"] = "n" * padding
    entry = make_entry(event, "alice")
    assert len(canonical_json(event)) == MAX_EVENT_BYTES
    assert len(entry.leaf) <= 65_535
    event["data"]["notes"] += "n"
    with pytest.raises(TooLargeError, match=r"60001 bytes .* limit is 60000 bytes"):
        make_entry(event, "alice")


def test_non_ascii_counts_in_utf8_bytes() -> None:
    event = copy.deepcopy(TRAINING_EVENT)
    event["data"]["notes"] = "€"  # 3 bytes in UTF-8, 1 character
    size = len(canonical_json(event))
    assert size == len(canonical_json(TRAINING_EVENT)) + len(',"notes":"€"'.encode())
    with pytest.raises(TooLargeError):
        make_entry(event, "alice", max_event_bytes=size - 1)


# --- leaves -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "submitter", ["alice", "ci-bot@acme", 'quote"back\\slash', "ctl\x00\x1f\x7f", "élodie 😀"]
)
def test_leaf_bytes_are_jcs_of_the_entry(submitter: str) -> None:
    for event in VALID_EVENTS.values():
        assert leaf_bytes(event, submitter) == jcs_leaf(event, submitter)
        assert make_entry(event, submitter).leaf == jcs_leaf(event, submitter)
        assert parse_leaf(jcs_leaf(event, submitter)).submitter == submitter


def test_parse_leaf_refuses_bytes_that_are_not_canonical() -> None:
    entry = make_entry(INFERENCE_EVENT, "alice")
    spaced = json.dumps({"event": INFERENCE_EVENT, "submitter": "alice"}).encode()
    with pytest.raises(InvalidEventError) as caught:
        parse_leaf(spaced)
    assert [(e.path, e.message) for e in caught.value.errors] == [
        ("", "leaf bytes are not the RFC 8785 canonical form of the entry")
    ]
    assert parse_leaf(cast(Any, bytearray(entry.leaf))) == entry


def test_parse_leaf_reports_event_paths_under_event() -> None:
    event = copy.deepcopy(INFERENCE_EVENT)
    event["data"]["count"] = 0
    leaf = jcs_leaf(event, "alice")
    with pytest.raises(InvalidEventError) as caught:
        parse_leaf(leaf)
    assert [(e.path, e.message) for e in caught.value.errors] == [
        ("event.data.count", "expected a positive integer")
    ]


@pytest.mark.parametrize(
    ("leaf", "errors"),
    [
        (b"[]", [("", "expected a JSON object {event, submitter}")]),
        (b'{"event":{}}', [("submitter", "required")]),
        (b'{"submitter":"a"}', [("event", "required")]),
        (
            b'{"event":{},"extra":1,"submitter":""}',
            [("extra", "unknown member of a leaf"), ("submitter", "must not be empty")],
        ),
    ],
)
def test_parse_leaf_refuses_malformed_entries(leaf: bytes, errors: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_leaf(leaf)
    got = [(e.path, e.message) for e in caught.value.errors]
    assert got[: len(errors)] == errors


def test_parse_leaf_of_garbage_is_a_bad_request() -> None:
    with pytest.raises(InvalidRequestError):
        parse_leaf(b'{"event":')


# --- decode_json: I-JSON at parse time ----------------------------------------------------


def decode_errors(text: str | bytes) -> list[tuple[str, str]]:
    with pytest.raises(InvalidEventError) as caught:
        decode_json(text)
    return [(error.path, error.message) for error in caught.value.errors]


def test_decode_refuses_duplicate_keys_with_their_path() -> None:
    assert decode_errors('{"data": {"model": {"name": "a", "name": "b"}}}') == [
        ("data.model.name", "duplicate key")
    ]
    assert decode_errors('[{"x": 1, "y": 2, "x": 3, "x": 4}]') == [("[0].x", "duplicate key")]


def test_decode_refuses_non_finite_numbers() -> None:
    assert decode_errors('{"a": [1, NaN, Infinity, -Infinity, 1e400, -1e999]}') == [
        ("a[1]", "NaN is not allowed (I-JSON numbers are finite)"),
        ("a[2]", "Infinity is not allowed (I-JSON numbers are finite)"),
        ("a[3]", "-Infinity is not allowed (I-JSON numbers are finite)"),
        ("a[4]", "number 1e400 is out of range for a double (I-JSON)"),
        ("a[5]", "number -1e999 is out of range for a double (I-JSON)"),
    ]


def test_decode_keeps_integers_to_2_53_minus_1() -> None:
    assert decode_json(b"[9007199254740991, -9007199254740991]") == [2**53 - 1, -(2**53 - 1)]
    assert decode_errors("[9007199254740992, -9007199254740992]") == [
        ("[0]", "integer 9007199254740992 is outside ±(2^53-1) (I-JSON)"),
        ("[1]", "integer -9007199254740992 is outside ±(2^53-1) (I-JSON)"),
    ]
    huge = "1" * 5000  # beyond int()'s digit limit: still an I-JSON error, not a crash
    assert decode_errors('{"n": ' + huge + "}") == [
        ("n", "integer 11111111111111111111... is outside ±(2^53-1) (I-JSON)")
    ]


def test_decode_refuses_lone_surrogates() -> None:
    assert decode_errors(r'{"a": "x\ud800"}') == [
        ("a", "contains a lone surrogate U+D800 (not allowed in I-JSON)")
    ]
    assert decode_errors(r'{"\udc00": 1}') == [
        ("", "object key contains a lone surrogate U+DC00 (not allowed in I-JSON)")
    ]
    assert decode_errors('["raw \ud800 in a str"]') == [
        ("[0]", "contains a lone surrogate U+D800 (not allowed in I-JSON)")
    ]
    # A pair escaped by an ensure_ascii encoder is one astral character, which is fine.
    assert decode_json(r'{"\ud83d\ude00": "\ud83d\ude00"}') == {"😀": "😀"}


def test_decode_collects_every_problem() -> None:
    text = '{"a": NaN, "a": 1, "b": {"c": [1e999, "\\udfff"]}, "\\ud800": 2}'
    assert decode_errors(text) == [
        ("a", "duplicate key"),
        ("", "object key contains a lone surrogate U+D800 (not allowed in I-JSON)"),
        ("b.c[0]", "number 1e999 is out of range for a double (I-JSON)"),
        ("b.c[1]", "contains a lone surrogate U+DFFF (not allowed in I-JSON)"),
    ]


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"a":', "malformed JSON: Expecting value at line 1 column 6"),
        ('{\n  "a": tru\n}', "malformed JSON: Expecting value at line 2 column 8"),
        ("[1, 2] x", "malformed JSON: Extra data at line 1 column 8"),
        ("", "malformed JSON: Expecting value at line 1 column 1"),
        ('{"a": "tab\there"}', "malformed JSON: Invalid control character at line 1 column 11"),
        (b"\xef\xbb\xbf{}", "malformed JSON: byte order mark at line 1 column 1"),
        (b'"\xff"', "malformed JSON: invalid UTF-8 at byte offset 1"),
        (b'"\xed\xa0\x80"', "malformed JSON: invalid UTF-8 at byte offset 1"),  # CESU surrogate
        ('{"a": NaN, "b": }', "malformed JSON: Expecting value at line 1 column 17"),
    ],
)
def test_malformed_json_is_a_bad_request_with_position(raw: str | bytes, detail: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        decode_json(raw)
    assert caught.value.detail == detail
    assert caught.value.status == 400


def test_absurd_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(InvalidEventError, match="nested too deeply"):
        decode_json("[" * 100_000 + "]" * 100_000)


def test_decode_accepts_any_buffer() -> None:
    text = memoryview(rb'{"a": [1, 2.5, "\u00e9"]}')
    assert decode_json(cast(Any, text)) == {"a": [1, 2.5, "é"]}
    assert decode_json(cast(Any, bytearray(b"null"))) is None


def test_decode_allows_json_whitespace_around_the_value() -> None:
    assert decode_json(' \t\n{"a": [1]}\r\n ') == {"a": [1]}
    assert decode_errors('  {"a": NaN}') == [
        ("a", "NaN is not allowed (I-JSON numbers are finite)")
    ]
    with pytest.raises(InvalidRequestError, match="Extra data at line 2 column 1"):
        decode_json("{}\n{}")


# --- canonical_json: RFC 8785 known answers -----------------------------------------------

# RFC 8785 §3.2.2 (input) and §3.2.4 (its UTF-8 output, in hex).
RFC8785_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC8785_OUTPUT_HEX = """
7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72
75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a
5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31
65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37
5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30
30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d
"""


def test_rfc8785_section_3_2_example() -> None:
    expected = bytes.fromhex(RFC8785_OUTPUT_HEX)
    assert expected == (
        b'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(decode_json(RFC8785_INPUT)) == expected


def test_rfc8785_section_3_2_3_sorting_example() -> None:
    # The emoji (UTF-16 D83D DE00) sorts before U+FB33: code point order would swap them.
    value = decode_json(
        r"""{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"""
    )
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    ).encode()
    assert canonical_json(value) == expected


# RFC 8785 Appendix B: IEEE 754 binary64 (hex) -> ECMAScript / JCS number text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def from_bits(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


@pytest.mark.parametrize(("bits", "text"), APPENDIX_B)
def test_rfc8785_appendix_b_numbers(bits: str, text: str) -> None:
    value = from_bits(bits)
    assert canonical_json(value) == text.encode()
    assert canonical_json({"n": [value]}) == b'{"n":[' + text.encode() + b"]}"


@pytest.mark.parametrize(
    ("bits", "name"), [("7fffffffffffffff", "NaN"), ("7ff0000000000000", "Infinity")]
)
def test_rfc8785_appendix_b_refusals(bits: str, name: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        canonical_json({"n": from_bits(bits)})
    assert [(e.path, e.message) for e in caught.value.errors] == [
        ("n", f"{name} is not allowed (I-JSON numbers are finite)")
    ]


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ({"a": [0, 2**53]}, "a[1]", "integer 9007199254740992 is outside ±(2^53-1) (I-JSON)"),
        ([{"k": "\ud834"}], "[0].k", "contains a lone surrogate U+D834 (not allowed in I-JSON)"),
        ({None: 1}, "", "object key None is not a string"),
        ({"t": (1, object())}, "t[1]", "a object is not a JSON value"),
    ],
)
def test_canonical_json_names_what_is_not_i_json(value: Any, path: str, message: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        canonical_json(value)
    assert [(e.path, e.message) for e in caught.value.errors] == [(path, message)]


def test_canonical_json_refuses_cycles() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidEventError, match="levels deep"):
        canonical_json(loop)


# --- canonical_json: Hypothesis against rfc8785 ---------------------------------------------

# Characters where encoders disagree: controls, escapes, DEL, U+2028, the E000-FFFF range
# and supplementary characters (the UTF-16 vs code point sort hazard).
TRICKY = 'a\x00\x08\x1f\x7f"\\/\u2028\u00e9\ud7ff\ue000\uffff\ufb33\U00010000\U0001f600\U0010ffff'
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=6) | st.text(
    st.sampled_from(TRICKY), max_size=4
)
TRICKY_FLOATS = [
    1e-4,
    math.nextafter(1e-4, 0),
    -1e-4,
    1e-6,
    math.nextafter(1e-6, 0),
    1e16,
    math.nextafter(1e16, 0),
    1e21,
    math.nextafter(1e21, 0),
    2.0**53,
    -0.0,
    0.0,
    5e-324,
    1.7976931348623157e308,
    0.1,
    12.75,
    1.0,
    -3.0,
    333333333.33333329,
]
numbers = (
    st.integers(-(2**53 - 1), 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(TRICKY_FLOATS)
)
ijson_values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=1000, deadline=None)
@given(ijson_values)
def test_canonical_json_equals_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=600, deadline=None)
@given(ijson_values)
def test_fast_path_is_only_taken_when_it_is_jcs(value: Any) -> None:
    # The soundness of _scan's "fast" verdict itself, not just of canonical_json's result.
    wrapped = [value]
    if not events._scan(wrapped, 1):
        assert events._fast_json(wrapped).encode("utf-8") == rfc8785.dumps(wrapped)


# Values the fast path must take: plain floats only, keys without the sort hazard.
# Non-integral with |f| >= 1e-4 (so below 2^52): repr is already the JCS text.
plain_floats = (
    st.floats(min_value=1e-4, max_value=2.0**52) | st.floats(min_value=-(2.0**52), max_value=-1e-4)
).filter(lambda f: not f.is_integer())
bmp_texts = st.text(st.characters(exclude_categories=["Cs"], max_codepoint=0xFFFF), max_size=6)
fast_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | plain_floats | texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(bmp_texts, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=600, deadline=None)
@given(fast_values)
def test_fast_path_covers_plain_values_and_equals_rfc8785(value: Any) -> None:
    wrapped = [value]
    assert events._scan(wrapped, 1) is False
    assert events._fast_json(wrapped).encode("utf-8") == rfc8785.dumps(wrapped)


def big_integral(value: float) -> bool:
    """JCS writes these as integer literals beyond ±(2^53-1), which I-JSON text refuses."""
    return value.is_integer() and 2**53 - 1 < abs(value) < 1e21


text_safe_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53 - 1), 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not big_integral(f))
    | texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(text_safe_values)
def test_decoding_canonical_bytes_is_stable(value: Any) -> None:
    canonical = canonical_json(value)
    assert canonical_json(decode_json(canonical)) == canonical
    assert canonical_json(decode_json(json.dumps(value, ensure_ascii=True))) == canonical


@settings(max_examples=200, deadline=None)
@given(ijson_values, texts.filter(bool))
def test_parse_leaf_inverts_make_entry_for_any_payload(payload: Any, submitter: str) -> None:
    event = copy.deepcopy(INFERENCE_EVENT)
    event["data"]["payload"] = payload
    try:
        entry = make_entry(event, submitter)
    except InvalidEventError as refused:
        # The one refusal possible here: a float JCS would write as a big integer.
        assert all("is an integer outside" in e.message for e in refused.errors)
        return
    assert entry.leaf == jcs_leaf(event, submitter)
    parsed = parse_leaf(entry.leaf)
    assert parsed.leaf == entry.leaf
    assert canonical_json(parsed.event) == canonical_json(event)


def test_floats_that_jcs_writes_as_big_integers_are_refused_in_events() -> None:
    event = copy.deepcopy(INFERENCE_EVENT)
    event["data"]["app"]["sizes"] = [1.0, 2.0**53, 2.0**60, 1e21]
    assert refusal(event) == [
        ("data.app.sizes[1]", "9007199254740992 is an integer outside ±(2^53-1) (I-JSON)"),
        ("data.app.sizes[2]", "1152921504606847000 is an integer outside ±(2^53-1) (I-JSON)"),
    ]


def test_sort_hazard_takes_the_slow_path() -> None:
    assert events._scan({"\ufb33": 1, "\U0001f600": 2}, 1) is True
    assert events._scan({"\ufb33": 1, "\u00e9": 2}, 1) is False
    assert events._scan({"\U0001f600": 1, "z": 2}, 1) is False
    assert events._scan([12.75, 0.0001, 123456.5], 1) is False
    assert all(events._scan([f], 1) for f in (1.0, 0.0, 1e-5, 1e16, -0.0, 2.0**53))


# --- the quick accept never accepts what the full checks refuse ------------------------------

SYSTEM_EVENT = {
    "specversion": "1.0",
    "id": "anchor-42",
    "source": "urn:provledger:node:n1",
    "type": "provledger.anchor.v1",
    "time": "2025-03-04T10:15:02Z",
    "data": {"receipts": []},
}
QUICK_BASES = [*VALID_EVENTS.values(), SYSTEM_EVENT]
ADVERSARIAL_VALUES: list[Any] = [
    "",
    "x",
    "1.0",
    "12.34",
    "-0.5",
    "01.5",
    "EUR",
    "eur",
    "2025-03-04T10:15:02Z",
    "2025-03-06T00:00:00+00:00",
    "2025-03-04T00:00:00.000+00:00",  # the cost event's ChargePeriodStart, spelled otherwise
    "2025-03-04T10:15:02+01:00",
    "2025-02-30T00:00:00Z",
    "2016-12-31T12:00:60Z",
    MODEL_DIGEST,
    MODEL_DIGEST.upper(),
    MODEL_DIGEST[:40],
    MODEL_DIGEST[:40].upper(),
    "g" * 40,
    "a" * 128,
    "a" * 129,
    "urn:" + "a" * 508,
    "urn:" + "a" * 509,
    "s3://bucket/key",
    "not a uri",
    "application/json",
    "text/plain",
    "deploy",
    "ingest",
    "Usage",
    "provledger.cost.v1",
    "provledger.training.v1",
    0,
    1,
    -1,
    2**31,
    True,
    False,
    None,
    1.5,
    -0.5,
    math.nan,
    math.inf,
    [],
    {},
    {"sha256": MODEL_DIGEST},
    {"sha256": "x"},
    [{"name": "a", "digest": {"sha256": MODEL_DIGEST}}],
    [{"name": "", "digest": {"sha256": MODEL_DIGEST}}],
    {"name": "m", "version": "1"},
]
ADVERSARIAL = st.sampled_from(ADVERSARIAL_VALUES) | st.text(max_size=4) | st.integers()
ATTRIBUTE_NAME_VALUES = [
    "subject",
    "datacontenttype",
    "dataschema",
    "tenant",
    "Tenant",
    "x-y",
    "data_base64",
    "a" * 20,
    "a" * 21,
]
ATTRIBUTE_NAMES = st.sampled_from(ATTRIBUTE_NAME_VALUES)


def member_slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) inside `value`, for mutation."""
    slots: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            slots.append((value, key))
            slots.extend(member_slots(child))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            slots.append((value, index))
            slots.extend(member_slots(child))
    return slots


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(QUICK_BASES)))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add":
            event[draw(ATTRIBUTE_NAMES)] = copy.deepcopy(draw(ADVERSARIAL))
            continue
        container, key = draw(st.sampled_from(member_slots(event)))
        if action == "delete" and isinstance(container, dict):
            del container[key]
        else:
            container[key] = copy.deepcopy(draw(ADVERSARIAL))  # never mutate the pool
    return event


def assert_quick_accept_is_sound(event: dict[str, Any]) -> None:
    if events._quick_accept(event):
        errors: list[Any] = []
        events._check_event(event, "", errors)
        assert errors == [], event


def single_mutations(base: dict[str, Any]) -> list[dict[str, Any]]:
    """`base` with one member deleted, replaced or added, in every way from the pools."""
    mutants = []
    for slot in range(len(member_slots(base))):
        for replacement in [*ADVERSARIAL_VALUES, "delete"]:
            event = copy.deepcopy(base)
            container, key = member_slots(event)[slot]
            if replacement == "delete" and isinstance(container, dict):
                del container[key]
            else:
                container[key] = copy.deepcopy(replacement)
            mutants.append(event)
    for name in ATTRIBUTE_NAME_VALUES:
        for value in ADVERSARIAL_VALUES:
            mutants.append({**base, name: copy.deepcopy(value)})
    return mutants


@pytest.mark.parametrize("base", QUICK_BASES, ids=lambda e: e["type"])
def test_quick_accept_is_sound_for_every_single_mutation(base: dict[str, Any]) -> None:
    for event in single_mutations(base):
        assert_quick_accept_is_sound(event)


@settings(max_examples=1000, deadline=None)
@given(mutated_events())
def test_quick_accept_implies_the_full_checks_pass(event: dict[str, Any]) -> None:
    assert_quick_accept_is_sound(event)


@pytest.mark.parametrize("event", QUICK_BASES, ids=lambda e: e["type"])
def test_valid_events_take_the_quick_accept(event: dict[str, Any]) -> None:
    assert events._quick_accept(event)
    assert events._scan(event, 1) is False  # and the fast canonical path
