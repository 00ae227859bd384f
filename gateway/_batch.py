"""`POST /v1/events:batch` bodies in, SPEC §3 batch answers out, at ingest speed.

The body is scanned once with the C JSON scanner to find each event's exact text, and
those bytes go to the node unchanged: the node validates each event itself (so one bad
event fails alone, with its own field paths) and the gateway never re-serializes what a
producer sent. The answer is assembled as text, since a batch answer of 10,000 receipts
is megabytes of JSON and building it as dicts first would cost more than the append.
"""

from __future__ import annotations

import hashlib
import json
import json.scanner
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from gateway._problems import Problem, ProblemError, from_problem_message
from provledger.errors import LedgerError
from provledger.events import canonical_json, decode_json, is_canonical
from provledger.receipts import BlockProofs, block_for, block_proofs
from provledger.v1 import ledger_pb2 as pb

__all__ = ["MAX_BATCH_EVENTS", "BatchOutcome", "encode_batch_result", "receipt_json", "split_batch"]

MAX_BATCH_EVENTS = 10_000

_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's insignificant whitespace (RFC 8259)
# Plain json semantics (NaN and big integers accepted): the structure is all the gateway
# checks; what is not I-JSON inside an event is the node's to refuse, per event.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]  # typeshed names the context by its class
)


def _invalid(detail: str) -> ProblemError:
    return ProblemError(Problem(422, "Invalid batch", detail))


def _malformed(text: str, position: int, what: str) -> ProblemError:
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return ProblemError(
        Problem(400, "Bad request", f"malformed JSON: {what} at line {line} column {column}")
    )


def _skip(text: str, position: int) -> int:
    match = _WHITESPACE.match(text, position)
    assert match is not None  # `*` matches the empty string
    return match.end()


def _value_end(text: str, position: int) -> int:
    try:
        end = _SCAN(text, position)[1]
    except StopIteration:
        raise _malformed(text, position, "expecting a value") from None
    except json.JSONDecodeError as exc:
        raise _malformed(text, exc.pos, exc.msg) from None
    except RecursionError:
        raise _invalid("JSON nested too deeply to parse") from None
    return end


class _BatchBody(msgspec.Struct):
    events: list[msgspec.Raw] | None = None  # each item's exact bytes, not decoded


_BATCH_BODY: Final = msgspec.json.Decoder(_BatchBody)


def split_batch(body: bytes) -> list[bytes]:
    """The exact bytes of each item of the body's `events` array.

    400 for text that is not JSON, 422 for JSON that is not `{"events": [...]}` with at
    least one item, 413 beyond 10,000 items.
    """
    events = _split_quickly(body)
    return events if events is not None else _split_exactly(body)


def _split_quickly(body: bytes) -> list[bytes] | None:
    """The items of a well-formed batch, found by msgspec without decoding them (about a
    tenth of the exact scan); None for anything else, which `_split_exactly` then judges
    and words the refusal of. "events" written twice (or escaped) goes that way too."""
    if body.count(b'"events"') != 1:
        return None
    try:
        if not body.isascii():
            body.decode("utf-8")  # the exact scan's 400 for invalid UTF-8 anywhere
        items = _BATCH_BODY.decode(body).events
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if not items or len(items) > MAX_BATCH_EVENTS:
        return None
    return [bytes(item) for item in items]


def _split_exactly(body: bytes) -> list[bytes]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemError(
            Problem(400, "Bad request", f"malformed JSON: invalid UTF-8 at byte {exc.start}")
        ) from None
    i = _skip(text, 0)
    if i >= len(text):
        raise _malformed(text, i, "expecting a value")
    if text[i] != "{":
        _value_end(text, i)  # malformed text is a 400 even when it is not an object
        raise _invalid('the body must be a JSON object {"events": [...]}')
    events: list[bytes] | None = None
    i = _skip(text, i + 1)
    if text.startswith("}", i):
        i += 1
    else:
        while True:
            if not text.startswith('"', i):
                raise _malformed(text, i, "expecting a property name in double quotes")
            key_end = _value_end(text, i)
            key = json.loads(text[i:key_end])
            i = _skip(text, key_end)
            if not text.startswith(":", i):
                raise _malformed(text, i, "expecting ':' delimiter")
            i = _skip(text, i + 1)
            if key == "events":
                if events is not None:
                    raise _invalid("the body names events twice")
                events, i = _scan_events(text, i)
            else:
                i = _value_end(text, i)
            i = _skip(text, i)
            if text.startswith(",", i):
                i = _skip(text, i + 1)
                continue
            if text.startswith("}", i):
                i += 1
                break
            raise _malformed(text, i, "expecting ',' delimiter")
    if _skip(text, i) != len(text):
        raise _malformed(text, _skip(text, i), "extra data")
    if events is None:
        raise _invalid('the body must be a JSON object {"events": [...]}')
    if not events:
        raise _invalid("events: a batch needs 1 to 10000 events, got 0")
    if len(events) > MAX_BATCH_EVENTS:
        raise ProblemError(
            Problem(
                413,
                "Payload too large",
                f"events: a batch holds at most {MAX_BATCH_EVENTS} events, got {len(events)}",
            )
        )
    return events


def _scan_events(text: str, i: int) -> tuple[list[bytes] | None, int]:
    if not text.startswith("[", i):
        _value_end(text, i)
        raise _invalid("events: expected an array of events")
    items: list[bytes] = []
    i = _skip(text, i + 1)
    if text.startswith("]", i):
        return items, i + 1
    while True:
        end = _value_end(text, i)
        items.append(text[i:end].encode())
        i = _skip(text, end)
        if text.startswith(",", i):
            i = _skip(text, i + 1)
            continue
        if text.startswith("]", i):
            return items, i + 1
        raise _malformed(text, i, "expecting ',' delimiter")


def request_digest(body: bytes, items: list[bytes] | None = None) -> bytes:
    """SHA-256 of the body's RFC 8785 bytes, so that equal bodies in any spelling match.

    A body that is not I-JSON has no RFC 8785 form; its own bytes stand in (prefixed, so
    they can never equal a canonical digest). A body that is `{"events":[...]}` of
    canonical events (as the SDK sends) is its own RFC 8785 form: no re-encoding.
    `items`: the body's events as `split_batch` found them, when the caller has them."""
    if items is None:
        items = _split_quickly(body)
    if (
        items is not None
        and body == b'{"events":[' + b",".join(items) + b"]}"
        # Nesting: brackets bound each event's depth, plus the body's own two levels;
        # then the body is checked whole, in one decode and one encode.
        and all(item.count(b"{") + item.count(b"[") <= 98 for item in items)
        and is_canonical(body, max_depth=len(body))
    ):
        return hashlib.sha256(body).digest()
    try:
        return hashlib.sha256(canonical_json(decode_json(body))).digest()
    except LedgerError:
        return hashlib.sha256(b"not I-JSON\x00" + body).digest()


_RECEIPT = (
    '{"index":%d,"leaf_hash":"%s","block_height":%d,"tree_size":%d,'
    '"inclusion":{"hashes":[%s]},"checkpoint":%s}'
)


def receipt_json(r: pb.Receipt, checkpoints: dict[str, str] | None = None) -> str:
    """One receipt as SPEC §3 JSON text; `checkpoints` memoizes the encoded notes, which
    every receipt of one block shares."""
    note = None if checkpoints is None else checkpoints.get(r.checkpoint)
    if note is None:
        note = json.dumps(r.checkpoint)
        if checkpoints is not None:
            checkpoints[r.checkpoint] = note
    hashes = ",".join(['"' + h.hex() + '"' for h in r.inclusion])
    return _RECEIPT % (r.index, r.leaf_hash.hex(), r.block_height, r.tree_size, hashes, note)


def _committed_json(
    block: BlockProofs, index: int, checkpoints: dict[str, str], paths: dict[Path, str]
) -> str:
    b = block.block
    note = checkpoints.get(b.checkpoint)
    if note is None:
        note = checkpoints[b.checkpoint] = json.dumps(b.checkpoint)
    hashes = _path_json(tuple(block.proofs[index - b.first_index]), paths)
    leaf_hash = block.leaf_hashes[index - b.first_index].hex()
    return _RECEIPT % (index, leaf_hash, b.block_height, b.tree_size, hashes, note)


Path = tuple[bytes, ...]


def _path_json(path: Path, memo: dict[Path, str]) -> str:
    """`"<hex>","<hex>",...` for an inclusion path. The paths of one block's leaves share
    their upper parts (two leaves share all but their lowest hash), so each distinct
    suffix is spelled once and every path costs about one concatenation."""
    text = memo.get(path)
    if text is None:
        head = '"' + path[0].hex() + '"' if path else ""
        rest = _path_json(path[1:], memo) if len(path) > 1 else ""
        text = memo[path] = head + "," + rest if rest else head
    return text


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    body: bytes
    accepted: int
    duplicates: int
    refused: int
    largest_tree: int
    largest_checkpoint: str  # the checkpoint note at largest_tree ("" without receipts)


def encode_batch_result(response: pb.AppendBatchResponse) -> BatchOutcome:
    """`{status, receipts, failed}` for the node's per-event results, in input order.

    Events committed in one block share its block receipt: each block's proofs are
    derived once (provledger.receipts) and spelled as JSON once per distinct suffix."""
    blocks = [block_proofs(b) for b in response.blocks]
    receipts: list[str] = []
    failed: list[str] = []
    checkpoints: dict[str, str] = {}
    paths: dict[Path, str] = {}
    accepted = duplicates = largest = 0
    largest_note = ""
    block = blocks[0] if blocks else None
    for position, result in enumerate(response.results):
        kind = result.WhichOneof("outcome")
        if kind == "committed":
            index = result.committed
            if block is None or not block.block.first_index <= index < block.block.tree_size:
                block = block_for(blocks, index)
            receipts.append(_committed_json(block, index, checkpoints, paths))
            accepted += 1
            if block.block.tree_size > largest:
                largest, largest_note = block.block.tree_size, block.block.checkpoint
        elif kind == "receipt":
            r = result.receipt
            receipts.append(receipt_json(r, checkpoints))
            if r.duplicate:
                duplicates += 1
            else:
                accepted += 1
            if r.tree_size > largest:
                largest, largest_note = r.tree_size, r.checkpoint
        else:
            receipts.append("null")
            problem = from_problem_message(result.error) or Problem(
                500, "Internal error", "the node refused this event without saying why"
            )
            error: dict[str, Any] = {"position": position, "error": problem.to_json()}
            failed.append(json.dumps(error, separators=(",", ":")))
    if not failed:
        status = "success"
    elif len(failed) == len(receipts):
        status = "failure"
    else:
        status = "partial_success"
    text = (
        f'{{"status":"{status}","receipts":[{",".join(receipts)}],"failed":[{",".join(failed)}]}}'
    )
    return BatchOutcome(text.encode(), accepted, duplicates, len(failed), largest, largest_note)
