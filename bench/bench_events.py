"""Micro-benchmark of the admission hot path in provledger.events.

Times decode_json + make_entry (parse, validate, canonicalize, leaf bytes) for a ~550-byte
training event (and a ~400-byte inference event), next to the limits it is judged against: rfc8785.dumps of the same event
alone, and the SHA-256 leaf hash of the resulting leaf. Run:

    .venv/bin/python bench/bench_events.py [--number N] [--rounds R]

Each figure is the best of R rounds of N calls, the rounds of all figures interleaved so
that a neighbour's load hits them alike (the machine is shared: compare the ratios
printed by one run, not absolute figures across runs). The target is 25,000+ events/s
per core for the whole node, so this part must stay well under 40 µs per event.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import rfc8785

from provledger.events import canonical_json, decode_json, entry_from_json, make_entry

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "01933b8e-6f2a-7c3e-9a41-5b7f0d2e8c11",
    "source": "mlflow://tracking.prod",
    "type": "provledger.training.v1",
    "time": "2025-03-04T10:15:02Z",
    "data": {
        "run_id": "5b7f0d2e8c11",
        "model": {
            "name": "fraud-detector",
            "version": "7",
            "digest": {
                "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            },
        },
        "datasets": [
            {
                "name": "tx-2025-02",
                "digest": {
                    "sha256": "43ad78c94b2655429d84f21488f29d7cca9cd45b7f54d2b27e16bbec8eff9228"
                },
            }
        ],
        "code": {
            "repo": "https://git.acme.dev/ml/fraud",
            "commit": "e1842e02e8ec868e70cd1b943d678c928ca0e45b",
        },
    },
}
# The high-volume kind (mobile inference logging), with a float that JCS and repr agree on.
INFERENCE_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "0193b0f0-1111-7abc-8def-0123456789ab",
    "source": "urn:app:mobile-backend:eu-1",
    "type": "provledger.inference.v1",
    "time": "2025-03-04T10:20:31.004Z",
    "data": {
        "model": {"name": "fraud-detector", "version": "7"},
        "input_commitment": "5a1d0e0c3f0b4c6a9e2b7d8f1a3c5e7f9b0d2f4a6c8e0a2c4e6a8c0e2a4c6e8a",
        "output_commitment": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "count": 250,
        "latency_ms": 12.75,
    },
}


def best_micros(
    funcs: dict[str, Callable[[], object]], number: int, rounds: int
) -> dict[str, float]:
    best = dict.fromkeys(funcs, float("inf"))
    for _ in range(rounds):
        for name, func in funcs.items():
            start = time.perf_counter()
            for _ in range(number):
                func()
            best[name] = min(best[name], (time.perf_counter() - start) / number * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--number", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    raw = json.dumps(EVENT).encode()  # as a client sends it: spaces, keys unsorted
    raw_inference = json.dumps(INFERENCE_EVENT).encode()
    event = decode_json(raw)
    entry = make_entry(event, "alice")
    assert entry.leaf == rfc8785.dumps({"event": EVENT, "submitter": "alice"})
    leaf = entry.leaf

    canonical = canonical_json(event)  # as the SDK sends it
    canonical_inference = canonical_json(INFERENCE_EVENT)
    fast = "entry_from_json, RFC 8785 text (SDK)"
    hot = "decode_json + make_entry (hot path)"
    rfc = "rfc8785.dumps of the event (limit)"
    sha = "SHA-256 leaf hash (limit)"
    funcs: dict[str, Callable[[], object]] = {
        fast: lambda: entry_from_json(canonical, "alice"),
        "inference event, RFC 8785 text": lambda: entry_from_json(canonical_inference, "alice"),
        "entry_from_json, unsorted text": lambda: entry_from_json(raw, "alice"),
        hot: lambda: make_entry(decode_json(raw), "alice"),
        "  decode_json": lambda: decode_json(raw),
        "  make_entry": lambda: make_entry(event, "alice"),
        "  canonical_json": lambda: canonical_json(event),
        "json.loads (stdlib, no checks)": lambda: json.loads(raw),
        "inference event, hot path": lambda: make_entry(decode_json(raw_inference), "alice"),
        rfc: lambda: rfc8785.dumps(event),
        sha: lambda: hashlib.sha256(b"\x00" + leaf).digest(),
    }
    micros = best_micros(funcs, args.number, args.rounds)
    canonical_size = len(canonical_json(event))
    print(
        f"training event: {len(raw)} bytes as sent, {canonical_size} canonical, leaf {len(leaf)}"
        f"; inference event: {len(canonical_json(INFERENCE_EVENT))} canonical"
    )
    for name, value in micros.items():
        print(f"{name:38s} {value:8.2f} µs/event  {1e6 / value:>11,.0f} /s")
    print(f"hot path / rfc8785.dumps alone: {micros[hot] / micros[rfc]:.2f}")
    print(f"RFC 8785 text / rfc8785.dumps:  {micros[fast] / micros[rfc]:.2f}")
    print(f"hot path / SHA-256 leaf hash:   {micros[hot] / micros[sha]:.1f}")


if __name__ == "__main__":
    main()
