"""provledger.events.entry_from_json: the admission path for event text.

It must give exactly `make_entry(decode_json(raw))` (same entry, same refusal) for any
text, and take its shortcut only for text that is provably the RFC 8785 form of an I-JSON
object. The shortcut's soundness is checked with Hypothesis against rfc8785.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from provledger import events
from provledger.errors import InvalidEventError, InvalidRequestError, LedgerError, TooLargeError
from provledger.events import canonical_json, decode_json, entry_from_json, make_entry
from tests.unit.provledger.test_events import (
    VALID_EVENTS,
    Mutation,
    _kind_cases,
    ijson_values,
    texts,
)


def outcome(call: Any) -> Any:
    """What a call returns or raises, comparable across the two paths."""
    try:
        entry = call()
    except LedgerError as exc:
        errors = getattr(exc, "errors", ())
        return (type(exc).__name__, str(exc), [(e.path, e.message) for e in errors])
    return ("entry", entry.leaf, entry.event, entry.source, entry.id, entry.type, entry.subject)


def both(raw: bytes, submitter: str = "alice", limit: int = events.MAX_EVENT_BYTES) -> Any:
    fast = outcome(lambda: entry_from_json(raw, submitter, max_event_bytes=limit))
    slow = outcome(lambda: make_entry(decode_json(raw), submitter, max_event_bytes=limit))
    assert fast == slow
    return fast


@pytest.mark.parametrize("kind", sorted(VALID_EVENTS))
def test_canonical_events_take_the_shortcut_and_give_the_same_entry(kind: str) -> None:
    raw = canonical_json(VALID_EVENTS[kind])
    assert events._canonical_event(raw) == VALID_EVENTS[kind]
    result = both(raw)
    assert result[0] == "entry"
    assert result[1] == b'{"event":' + raw + b',"submitter":"alice"}'


@pytest.mark.parametrize("kind", sorted(VALID_EVENTS))
def test_other_spellings_give_the_same_entry(kind: str) -> None:
    event = VALID_EVENTS[kind]
    for raw in (
        json.dumps(event).encode(),
        json.dumps(event, indent=2, ensure_ascii=True).encode(),
        json.dumps(event, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode(),
    ):
        assert both(raw)[1] == both(canonical_json(event))[1]


@pytest.mark.parametrize(("valid", "mutate", "path", "message"), _kind_cases())
def test_invalid_events_get_the_same_refusal(
    valid: dict[str, Any], mutate: Mutation, path: str, message: str
) -> None:
    event = copy.deepcopy(valid)
    mutate(event)
    try:
        raw = rfc8785.dumps(event)
    except Exception:  # not JSON at all (NaN, a set...): spelled by json instead
        raw = json.dumps(event, default=str).encode()
    result = both(raw)
    try:
        faithful = decode_json(raw) == event
    except LedgerError:
        faithful = False
    if faithful:  # text that says what the mutated object says (not an int key...)
        assert result[0] != "entry"


# Text that looks canonical at a glance but is not I-JSON, or not the JCS form.
NEAR_MISSES = [
    b'{"data":{},"data":{}}',  # a duplicate key, in sorted order
    b'{"data":{"a":1,"a":1},"id":"x"}',
    b'{"data":{"n":-0}}',
    b'{"data":{"n":1.0}}',
    b'{"data":{"n":1e2}}',
    b'{"data":{"n":0.5}}',  # JCS form: shortcut
    b'{"data":{"n":0.50}}',
    b'{"data":{"n":0.0001}}',
    b'{"data":{"n":0.00001}}',
    b'{"data":{"n":1e-5}}',
    b'{"data":{"n":12.75,"m":-3.5}}',
    b'{"data":{"n":0.1000000000000000055511151231257827}}',
    b'{"data":{"n":4503599627370495.5}}',
    b'{"data":{"n":4503599627370497.0}}',
    b'{"data":{"n":9007199254740991}}',  # the largest I-JSON integer: valid
    b'{"data":{"n":9007199254740992}}',
    b'{"data":{"n":-9007199254740992}}',
    b'{"data":{"n":123456789012345678901234567890}}',
    b'{"data":{"s":"\\ud800"}}',
    b'{"data":{"s":"\\ud83d\\ude00"}}',
    b'{"data":{"s":"\\u0041"}}',
    b'{"data":{"s":"\\/"}}',
    b'{"data":{"s":"\\u001F"}}',
    b'{"data":{"b":1,"a":2}}',
    b'{"data": {}}',
    b'{"data":{}} ',
    b'{"data":' + b"[" * 101 + b"]" * 101 + b"}",
    b'{"data":' + b"[" * 99 + b"]" * 99 + b"}",
    b'{"data":{"s":"\xc3\xa9"}}',
    b'{"data":{"s":"\xed\xa0\x80"}}',
    b'{"data":{"s":"\xff"}}',
    b'{"data":{}',
    b'{"data":[]}',
    b'{"data":nan}',
    b'{"data":{"n":Infinity}}',
]


@pytest.mark.parametrize("raw", NEAR_MISSES)
def test_near_misses_are_judged_like_the_slow_path(raw: bytes) -> None:
    value = events._canonical_event(raw)
    if value is not None:
        assert rfc8785.dumps(value) == raw
    both(raw)


@pytest.mark.parametrize(
    "raw",
    [b"12345678901234567", b"-9007199254740992", b"[9007199254740992]", b'{"a":1e2}', b"-0"],
)
def test_is_canonical_refuses_what_the_strict_decoder_would(raw: bytes) -> None:
    assert not events.is_canonical(raw)


@pytest.mark.parametrize("raw", [b"null", b"7", b'"x"', b'{"a":[1,{"b":0.5}]}', b"[]"])
def test_is_canonical_accepts_plain_canonical_text(raw: bytes) -> None:
    assert events.is_canonical(raw)
    assert canonical_json(decode_json(raw)) == raw


def test_shortcut_respects_the_size_limit_and_the_submitter() -> None:
    raw = canonical_json(VALID_EVENTS["training"])
    with pytest.raises(TooLargeError):
        entry_from_json(raw, "alice", max_event_bytes=len(raw) - 1)
    assert both(raw, limit=len(raw))[0] == "entry"
    with pytest.raises(ValueError):
        entry_from_json(raw, "")
    with pytest.raises(ValueError):
        entry_from_json(raw, "alice", max_event_bytes=events.MAX_EVENT_BYTES + 1)


def test_malformed_text_is_a_bad_request_on_either_path() -> None:
    for raw in (b'{"data":', b'{"data":{}}x', b""):
        with pytest.raises(InvalidRequestError):
            entry_from_json(raw, "alice")
    with pytest.raises(InvalidEventError):
        entry_from_json(b'{"data":{"a":1,"a":2}}', "alice")


def spellings(value: Any) -> st.SearchStrategy[bytes]:
    """Texts of {"data": value, ...}: canonical, and the near-canonical ways encoders write it."""
    obj = {"data": value, "id": "x"}
    options = [
        lambda: rfc8785.dumps(obj),
        lambda: json.dumps(obj, separators=(",", ":"), sort_keys=True).encode(),
        lambda: json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode(),
        lambda: json.dumps(obj, sort_keys=True).encode(),
    ]
    made = []
    for make in options:
        try:
            made.append(make())
        except Exception:
            continue
    return st.sampled_from(made) if made else st.nothing()


@settings(max_examples=1500, deadline=None)
@given(ijson_values.flatmap(spellings))
def test_shortcut_only_accepts_canonical_i_json(raw: bytes) -> None:
    value = events._canonical_event(raw)
    if value is not None:
        assert decode_json(raw) == value  # I-JSON: the strict decoder accepts it
        assert rfc8785.dumps(value) == raw  # and it is the JCS form


ascii_texts = st.text(st.characters(max_codepoint=0x7F), max_size=8)
plain_floats = (
    st.floats(min_value=1e-4, max_value=2.0**52) | st.floats(min_value=-(2.0**52), max_value=-1e-4)
).filter(lambda f: not f.is_integer())
plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | plain_floats | ascii_texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ascii_texts, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(plain_values)
def test_shortcut_takes_every_canonical_ascii_value_with_plain_numbers(value: Any) -> None:
    raw = rfc8785.dumps({"data": value})
    assert events._canonical_event(raw) == {"data": value}


@pytest.mark.parametrize(
    "event_id", ["run-1732673000123456789", "1859102734561234944", "9007199254740993"]
)
def test_long_digit_runs_in_strings_keep_the_shortcut(event_id: str) -> None:
    """Nanosecond timestamps and snowflake ids are everyday ids: a 16-digit run inside a
    string costs a check of the decoded integers, not the slow path."""
    event = {**VALID_EVENTS["training"], "id": event_id}
    raw = canonical_json(event)
    assert events._canonical_event(raw) == event
    assert both(raw)[0] == "entry"


@pytest.mark.parametrize("number", [9007199254740992, -9007199254740992, 10**30])
def test_integers_beyond_i_json_are_refused_even_beside_long_strings(number: int) -> None:
    event = {**VALID_EVENTS["training"], "id": "run-1732673000123456789"}
    event["data"] = {**event["data"], "epochs": 7}
    # Written by hand: rfc8785 (rightly) will not write such a number.
    raw = rfc8785.dumps(event).replace(b'"epochs":7', b'"epochs":%d' % number)
    assert events._canonical_event(raw) is None
    kind, _, errors = both(raw)
    assert kind == "InvalidEventError" and [p for p, _ in errors] == ["data.epochs"]
    assert not events.is_canonical(b'[%d,"12345678901234567"]' % number)
    assert events.is_canonical(b'[9007199254740991,"12345678901234567"]')


any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=1000, deadline=None)
@given(any_json, st.sampled_from(["jcs", "sorted", "default"]))
def test_is_canonical_only_says_so_of_canonical_i_json(value: Any, spelling: str) -> None:
    try:
        raw = (
            rfc8785.dumps(value)
            if spelling == "jcs"
            else json.dumps(value, separators=(",", ":"), sort_keys=spelling == "sorted").encode()
        )
    except (ValueError, OverflowError, rfc8785.CanonicalizationError):
        return  # no such text (a lone surrogate, a number JCS cannot write)
    if events.is_canonical(raw):
        assert canonical_json(decode_json(raw)) == raw


# Objects written member by member, keys possibly repeated, with colons in keys and strings.
colon_texts = st.text(st.sampled_from('ab:"\\\u00e9 '), max_size=5)
member_lists = st.lists(
    st.tuples(colon_texts, st.none() | st.integers(-5, 5) | colon_texts), max_size=5
)


def written(members: list[tuple[str, Any]], ascii_only: bool, spaced: bool) -> bytes:
    sep = ": " if spaced else ":"
    body = ", ".join(
        json.dumps(k, ensure_ascii=ascii_only) + sep + json.dumps(v, ensure_ascii=ascii_only)
        for k, v in members
    )
    return ("{" + body + "}").encode()


TRAINING_TEXT = json.dumps(VALID_EVENTS["training"], separators=(",", ":")).encode()
assert TRAINING_TEXT.endswith(b"}}") and b"\\u" not in TRAINING_TEXT


def with_extra(objects: list[bytes], spaced: bool) -> bytes:
    """The training event, unsorted, with `objects` written into data.extra as given."""
    extra = b',"extra":[' + b",".join(objects) + b"]}}"
    text = TRAINING_TEXT[:-2] + extra
    return text.replace(b'":', b'": ') if spaced else text


@settings(max_examples=1500, deadline=None)
@given(st.lists(member_lists, min_size=1, max_size=3), st.booleans(), st.booleans())
def test_the_colon_count_never_lets_a_duplicate_through(
    objects: list[list[tuple[str, Any]]], ascii_only: bool, spaced: bool
) -> None:
    raw = with_extra([written(m, ascii_only, False) for m in objects], spaced)
    result = both(raw)  # the same entry or refusal as the strict decoder gives
    has_duplicate = any(len({k for k, _ in m}) < len(m) for m in objects)
    assert (result[0] == "entry") == (not has_duplicate) or b"\\u" in raw


@pytest.mark.parametrize(
    "objects",
    [
        [b'{"a": "x:y", "a": "z"}'],
        [b'{"k:1": 1, "k:1": 2}'],
        [b'{"a": 1, "b": "::", "a": 1}'],
        [b'{"a": "x"}', b'{"b": {"c": ":", "c": ":"}}'],
    ],
)
def test_duplicates_hidden_among_colons_are_refused_by_name(objects: list[bytes]) -> None:
    raw = with_extra(objects, spaced=False)
    assert events._entry_without_duplicates(raw, "alice", events.MAX_EVENT_BYTES) is None
    with pytest.raises(InvalidEventError) as caught:
        entry_from_json(raw, "alice")
    assert "duplicate key" in str(caught.value)


def test_other_json_without_duplicates_takes_the_msgspec_path() -> None:
    raw = with_extra([b'{"a": "x:y", "b": [1, {"c": ":"}]}'], spaced=True)
    entry = events._entry_without_duplicates(raw, "alice", events.MAX_EVENT_BYTES)
    assert entry is not None and entry.leaf == make_entry(decode_json(raw), "alice").leaf


@pytest.mark.parametrize(
    "fragment",
    [
        b"01",
        b'"x\x01y"',
        b"1.",
        b".5",
        b"+1",
        b"[1,]",
        b'{"a":1,}',
        b"NaN",
        b"Infinity",
        b"1e400",
        b"-0",
        b"9007199254740993",
        b"1E+2",
        b"tru",
        b"'x'",
        b'"\xed\xa0\x80"',
        b'"\xc0\xaf"',
    ],
)
def test_text_json_refuses_is_refused_the_same_way_inside_an_event(fragment: bytes) -> None:
    raw = TRAINING_TEXT[:-2] + b',"extra":' + fragment + b"}}"
    both(raw)  # msgspec accepts nothing here that the strict decoder would not
