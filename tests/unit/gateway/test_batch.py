"""Batch bodies in (exact event bytes, refusals by status) and batch answers out."""

from __future__ import annotations

import hashlib
import json

import pytest
import rfc8785
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway._batch import encode_batch_result, receipt_json, request_digest, split_batch
from gateway._problems import ProblemError
from provledger import merkle
from provledger.events import canonical_json, decode_json
from provledger.note import Checkpoint, Signer, sign_checkpoint
from provledger.v1 import ledger_pb2 as pb


def test_events_keep_their_exact_bytes() -> None:
    body = b'{ "note": [1, {"a": 2}],\n "events" : [ {"b": 1,  "a": "\\u00e9"} , 7,"x",\n[ ] ] }'
    assert split_batch(body) == [b'{"b": 1,  "a": "\\u00e9"}', b"7", b'"x"', b"[ ]"]


def test_non_ijson_inside_an_event_is_left_to_the_node() -> None:
    # NaN, huge integers and duplicate keys are per-event refusals, made by the node.
    body = b'{"events": [{"a": NaN}, {"n": 123456789012345678901234}, {"k": 1, "k": 2}]}'
    assert split_batch(body) == [
        b'{"a": NaN}',
        b'{"n": 123456789012345678901234}',
        b'{"k": 1, "k": 2}',
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b" ",
        b"{",
        b'{"events": [1,]}',
        b'{"events": [1] "x": 2}',
        b'{"events": [1]} x',
        b"\xff",
        b'{"events" [1]}',
        b"{'events': [1]}",
        b'{"events": [tru]}',
        b"[1,",
    ],
)
def test_malformed_json_is_400(body: bytes) -> None:
    with pytest.raises(ProblemError) as caught:
        split_batch(body)
    assert caught.value.problem.status == 400
    assert caught.value.problem.detail.startswith("malformed JSON")


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"[1]",
        b'"events"',
        b"{}",
        b'{"event": [1]}',
        b'{"events": []}',
        b'{"events": {}}',
        b'{"events": null}',
        b'{"events": [1], "events": [2]}',
    ],
)
def test_not_a_batch_is_422(body: bytes) -> None:
    with pytest.raises(ProblemError) as caught:
        split_batch(body)
    assert caught.value.problem.status == 422


def test_more_than_ten_thousand_is_413() -> None:
    assert len(split_batch(json.dumps({"events": [{}] * 10_000}).encode())) == 10_000
    with pytest.raises(ProblemError) as caught:
        split_batch(json.dumps({"events": [{}] * 10_001}).encode())
    assert caught.value.problem.status == 413


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@given(st.lists(json_values, min_size=1, max_size=8), st.sampled_from([None, 2]))
def test_split_round_trips(events: list[object], indent: int | None) -> None:
    body = json.dumps({"before": 1, "events": events, "after": [2]}, indent=indent).encode()
    assert [json.loads(raw) for raw in split_batch(body)] == events


def test_digest_is_of_the_canonical_form() -> None:
    a = request_digest(b'{"events": [{"b": 1, "a": 2}]}')
    b = request_digest(b'{ "events":[ {"a":2,"b":1} ] }')
    c = request_digest(b'{"events": [{"a": 2, "b": 3}]}')
    assert a == b != c
    # Not I-JSON: no canonical form, the raw bytes decide.
    assert request_digest(b'{"events": [{"a": NaN}]}') != request_digest(b'{"events": [{"a":NaN}]}')


@given(st.lists(json_values, min_size=1, max_size=6))
def test_a_body_of_canonical_events_digests_as_its_own_bytes(events: list[object]) -> None:
    try:
        canonical = b'{"events":[' + b",".join(rfc8785.dumps(e) for e in events) + b"]}"
    except rfc8785.CanonicalizationError:  # a lone surrogate: no RFC 8785 form
        assume(False)
    slow = hashlib.sha256(canonical_json(decode_json(canonical))).digest()
    assert request_digest(canonical) == slow
    assert request_digest(json.dumps({"events": events}, indent=1).encode()) == slow


def test_a_deep_body_is_judged_by_the_strict_decoder() -> None:
    deep = b'{"events":[' + b"[" * 98 + b"]" * 98 + b"]}"  # 100 levels with the body's two
    deeper = b'{"events":[' + b"[" * 99 + b"]" * 99 + b"]}"
    assert request_digest(deep) == hashlib.sha256(deep).digest()
    assert request_digest(deeper) == hashlib.sha256(b"not I-JSON\x00" + deeper).digest()


def receipt(index: int, duplicate: bool = False) -> pb.Receipt:
    return pb.Receipt(
        index=index,
        leaf_hash=bytes([index]) * 32,
        block_height=3,
        tree_size=10,
        inclusion=[bytes([7]) * 32, bytes([8]) * 32] if index else [],
        checkpoint="log\n10\nAAAA\n\n\u2014 log sig\n",
        duplicate=duplicate,
    )


def test_receipt_json_is_spec_json() -> None:
    for r in (receipt(0), receipt(5)):
        assert json.loads(receipt_json(r)) == {
            "index": r.index,
            "leaf_hash": r.leaf_hash.hex(),
            "block_height": 3,
            "tree_size": 10,
            "inclusion": {"hashes": [h.hex() for h in r.inclusion]},
            "checkpoint": r.checkpoint,
        }


def test_batch_result_statuses_and_positions() -> None:
    bad = pb.Problem(status=409, title="Conflict", detail="taken")
    results = [
        pb.AppendResult(receipt=receipt(1)),
        pb.AppendResult(error=bad),
        pb.AppendResult(receipt=receipt(2, duplicate=True)),
    ]
    outcome = encode_batch_result(pb.AppendBatchResponse(results=results))
    body = json.loads(outcome.body)
    assert body["status"] == "partial_success"
    assert [r and r["index"] for r in body["receipts"]] == [1, None, 2]
    assert body["failed"] == [
        {
            "position": 1,
            "error": {
                "type": "urn:provledger:problem:conflict",
                "title": "Conflict",
                "status": 409,
                "detail": "taken",
            },
        }
    ]
    assert (outcome.accepted, outcome.duplicates, outcome.refused) == (1, 1, 1)
    for part, status in ((results[:1], "success"), (results[1:2], "failure")):
        answer = pb.AppendBatchResponse(results=part)
        assert json.loads(encode_batch_result(answer).body)["status"] == status


def test_committed_events_get_whole_receipts_from_their_block() -> None:
    signer = Signer.from_seed("example.org/log", bytes(32))
    hashes = [merkle.leaf_hash(b"%d" % i) for i in range(300)]
    reader = merkle.list_reader(hashes)
    note = sign_checkpoint(Checkpoint(signer.name, 300, merkle.root(hashes)), signer)
    block = pb.BlockReceipt(
        block_height=9,
        first_index=250,
        tree_size=300,
        checkpoint=note,
        frontier=[reader(*at) for at in merkle.frontier_positions(250)],
        leaf_hashes=b"".join(hashes[250:]),
    )
    answer = pb.AppendBatchResponse(
        results=[pb.AppendResult(committed=i) for i in (299, 250, 271)], blocks=[block]
    )
    outcome = encode_batch_result(answer)
    body = json.loads(outcome.body)
    assert body["status"] == "success"
    for receipt_, index in zip(body["receipts"], (299, 250, 271), strict=True):
        proof = merkle.inclusion_proof(index, 300, reader)
        assert receipt_ == {
            "index": index,
            "leaf_hash": hashes[index].hex(),
            "block_height": 9,
            "tree_size": 300,
            "inclusion": {"hashes": [h.hex() for h in proof]},
            "checkpoint": note,
        }
    assert (outcome.accepted, outcome.largest_tree, outcome.largest_checkpoint) == (3, 300, note)
