"""provledger clients: the Python SDK, the verifying state tracker, offline audit, the CLI.

    from clients import LedgerClient, training_event, Model, DatasetRef, GitRef

    with LedgerClient("grpc://127.0.0.1:7400", verifier_key=VKEY) as ledger:
        receipt = ledger.append_and_prove(training_event(...))

Errors are `provledger.errors.LedgerError` subclasses; see clients/README_SDK.md.
"""

from __future__ import annotations

from clients._audit import AuditFailure, AuditReport, audit_bundle, load_node_keys
from clients._builders import (
    Dataset,
    DatasetRef,
    GitRef,
    Model,
    commitment,
    cost_event,
    data_event,
    deployment_event,
    inference_event,
    rfc3339,
    sha256_digest,
    training_event,
    uuid7,
)
from clients._client import (
    AsyncLedgerClient,
    Event,
    ExportSummary,
    LedgerClient,
    RetryPolicy,
    encode_event,
    parse_url,
)
from clients._model import (
    BatchFailure,
    BatchResult,
    Block,
    ConsistencyProof,
    Entry,
    InclusionProof,
    LogInfo,
    NodeKey,
    Page,
    Receipt,
    SignedCheckpoint,
)
from clients._state import Advance, StateTracker, TrustedCheckpoint, default_state_path
from clients._tls import TlsFiles
from clients._verify import VerifiedReceipt, verify_entry, verify_receipt

__all__ = [
    "Advance",
    "AsyncLedgerClient",
    "AuditFailure",
    "AuditReport",
    "BatchFailure",
    "BatchResult",
    "Block",
    "ConsistencyProof",
    "Dataset",
    "DatasetRef",
    "Entry",
    "Event",
    "ExportSummary",
    "GitRef",
    "InclusionProof",
    "LedgerClient",
    "LogInfo",
    "Model",
    "NodeKey",
    "Page",
    "Receipt",
    "RetryPolicy",
    "SignedCheckpoint",
    "StateTracker",
    "TlsFiles",
    "TrustedCheckpoint",
    "VerifiedReceipt",
    "audit_bundle",
    "commitment",
    "cost_event",
    "data_event",
    "default_state_path",
    "deployment_event",
    "encode_event",
    "inference_event",
    "load_node_keys",
    "parse_url",
    "rfc3339",
    "sha256_digest",
    "training_event",
    "uuid7",
    "verify_entry",
    "verify_receipt",
]
