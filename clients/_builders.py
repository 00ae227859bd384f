"""Typed builders for the five user event kinds of SPEC §1.

Each returns the event as a plain JSON-ready dict, with `id` a fresh UUIDv7 and `time`
now in UTC unless given, and checks it with `provledger.events` (the ledger's own
rules), so a mistake surfaces here with its field path instead of as a 422 later.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time as _time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from provledger.events import make_entry

__all__ = [
    "Dataset",
    "DatasetRef",
    "GitRef",
    "Model",
    "commitment",
    "cost_event",
    "data_event",
    "deployment_event",
    "inference_event",
    "rfc3339",
    "sha256_digest",
    "training_event",
    "uuid7",
]


def uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then 74 random bits."""
    ms = _time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & (2**62 - 1)  # rand_b
    return str(uuid.UUID(int=value))


def rfc3339(when: datetime | None = None) -> str:
    """RFC 3339 in UTC with milliseconds and "Z" (naive datetimes are refused)."""
    if when is None:
        when = datetime.now(UTC)
    elif when.tzinfo is None:
        raise ValueError("a naive datetime has no time zone: pass an aware (UTC) one")
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def sha256_digest(data: bytes) -> str:
    """The lowercase hex SHA-256 of `data`, the form digests take in events."""
    return hashlib.sha256(data).hexdigest()


def commitment(key: bytes, payload: bytes) -> str:
    """HMAC-SHA256(key, payload) in hex: an inference input or output commitment.

    The payload never reaches the ledger; deleting `key` (per subject) makes the
    commitment unlinkable while every proof still verifies.
    """
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def _digest(hex_sha256: str) -> dict[str, str]:
    return {"sha256": hex_sha256}


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    version: str
    digest: str
    """hex SHA-256 of the model artifact"""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "digest": _digest(self.digest)}


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    uri: str
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "uri": self.uri, "digest": _digest(self.digest)}


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A dataset a training run used."""

    name: str
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "digest": _digest(self.digest)}


@dataclass(frozen=True, slots=True)
class GitRef:
    repo: str
    commit: str
    """40 hex characters"""
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"repo": self.repo, "commit": self.commit}
        if self.path is not None:
            out["path"] = self.path
        return out


def _event(
    kind: str,
    source: str,
    data: dict[str, Any],
    *,
    subject: str | None,
    id: str | None,
    time: datetime | str | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if extra:
        clash = sorted(set(extra) & set(data))
        if clash:
            raise ValueError(f"extra data field {clash[0]!r} would replace a required field")
        data = {**data, **extra}
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": id or uuid7(),
        "source": source,
        "type": f"provledger.{kind}.v1",
        "time": time if isinstance(time, str) else rfc3339(time),
    }
    if subject is not None:
        event["subject"] = subject
    event["data"] = data
    make_entry(event, "local")  # the ledger's own validation: raises InvalidEventError
    return event


def data_event(
    *,
    source: str,
    operation: str,
    dataset: Dataset,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A `provledger.data.v1` event: ingest, transform, validate or delete of a dataset."""
    data = {"operation": operation, "dataset": dataset.to_json()}
    return _event("data", source, data, subject=subject, id=id, time=time, extra=extra)


def training_event(
    *,
    source: str,
    run_id: str,
    model: Model,
    datasets: Sequence[DatasetRef],
    code: GitRef,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A `provledger.training.v1` event: a run that produced a model from datasets and code."""
    data = {
        "run_id": run_id,
        "model": model.to_json(),
        "datasets": [d.to_json() for d in datasets],
        "code": {"repo": code.repo, "commit": code.commit},
    }
    return _event("training", source, data, subject=subject, id=id, time=time, extra=extra)


def deployment_event(
    *,
    source: str,
    action: str,
    model: Model,
    environment: str,
    git: GitRef,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A `provledger.deployment.v1` event: deploy, rollback or undeploy, tied to a Git commit."""
    if git.path is None:
        raise ValueError("a deployment's GitRef needs the manifest path")
    data = {
        "action": action,
        "model": model.to_json(),
        "environment": environment,
        "git": git.to_json(),
    }
    return _event("deployment", source, data, subject=subject, id=id, time=time, extra=extra)


def inference_event(
    *,
    source: str,
    model_name: str,
    model_version: str,
    input_commitment: str,
    output_commitment: str,
    count: int | None = None,
    latency_ms: float | None = None,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A `provledger.inference.v1` event: commitments to inputs and outputs, never payloads."""
    data: dict[str, Any] = {
        "model": {"name": model_name, "version": model_version},
        "input_commitment": input_commitment,
        "output_commitment": output_commitment,
    }
    if count is not None:
        data["count"] = count
    if latency_ms is not None:
        data["latency_ms"] = latency_ms
    return _event("inference", source, data, subject=subject, id=id, time=time, extra=extra)


def _money(value: Decimal | str | int) -> str:
    if isinstance(value, float):
        raise TypeError("money is a decimal string or Decimal, never a float")
    return str(value)


def cost_event(
    *,
    source: str,
    billed_cost: Decimal | str,
    effective_cost: Decimal | str,
    currency: str,
    period_start: datetime | str,
    period_end: datetime | str,
    service_name: str,
    charge_category: str,
    model_name: str | None = None,
    model_version: str | None = None,
    environment: str | None = None,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A `provledger.cost.v1` event: one FOCUS 1.2 cost row, attributed to a model."""

    def ts(v: datetime | str) -> str:
        return v if isinstance(v, str) else rfc3339(v)

    data: dict[str, Any] = {
        "BilledCost": _money(billed_cost),
        "EffectiveCost": _money(effective_cost),
        "BillingCurrency": currency,
        "ChargePeriodStart": ts(period_start),
        "ChargePeriodEnd": ts(period_end),
        "ServiceName": service_name,
        "ChargeCategory": charge_category,
    }
    for key, value in (
        ("x_ModelName", model_name),
        ("x_ModelVersion", model_version),
        ("x_Environment", environment),
    ):
        if value is not None:
            data[key] = value
    return _event("cost", source, data, subject=subject, id=id, time=time, extra=extra)
