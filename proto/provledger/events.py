"""Events (SPEC §1) and their leaf bytes (SPEC §2): I-JSON decoding, validation of the
CloudEvents envelope and the five kinds, and RFC 8785 (JCS) canonical bytes.

Every refusal names the field path (`data.datasets[0].digest.sha256`), and one
`InvalidEventError` lists every bad field of an event. `canonical_json` is on the node's
hot path, so it serializes with the C JSON encoder whenever that provably yields the
JCS bytes (see `_scan`) and falls back to `rfc8785.dumps` otherwise.
"""

from __future__ import annotations

import functools
import json
import json.encoder
import json.scanner
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import msgspec
import rfc8785

from provledger.errors import (
    FieldError,
    InvalidEventError,
    InvalidRequestError,
    LedgerError,
    TooLargeError,
)

__all__ = [
    "EVENT_TYPES",
    "MAX_EVENT_BYTES",
    "SYSTEM_EVENT_TYPES",
    "USER_EVENT_TYPES",
    "LedgerEntry",
    "canonical_json",
    "decode_json",
    "entry_from_json",
    "is_canonical",
    "leaf_bytes",
    "leaf_identity",
    "make_entry",
    "parse_leaf",
]

USER_EVENT_TYPES: Final = frozenset(
    {
        "provledger.data.v1",
        "provledger.training.v1",
        "provledger.deployment.v1",
        "provledger.inference.v1",
        "provledger.cost.v1",
    }
)
SYSTEM_EVENT_TYPES: Final = frozenset(
    {"provledger.anchor.v1", "provledger.reconcile.v1", "provledger.policy.v1"}
)
EVENT_TYPES: Final = USER_EVENT_TYPES | SYSTEM_EVENT_TYPES

MAX_EVENT_BYTES: Final = 60_000
# The tlog-tiles entry limit: a leaf must fit a 16-bit length prefix.
_MAX_LEAF_BYTES: Final = 65_535
_MAX_INT: Final = 2**53 - 1
# Far deeper than any real event, far shallower than the interpreter's recursion limit,
# which the C encoder and rfc8785 (recursive) would otherwise hit with a RecursionError.
_MAX_DEPTH: Final = 100


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One validated event and its leaf bytes.

    Built only by `make_entry` and `parse_leaf`, which validate everything; there is no
    `__post_init__` check because this sits on the admission hot path. `event` is the
    caller's decoded object, shared rather than copied: never mutate it, `leaf` holds
    the bytes that count.
    """

    event: dict[str, Any]
    submitter: str
    leaf: bytes
    source: str
    id: str
    type: str
    subject: str | None


# The generated __init__ of a frozen dataclass sets each field through
# object.__setattr__: about 1.5 µs for these seven, some 5% of the admission path
# (bench/bench_events.py). make_entry and parse_leaf fill the slots directly instead.
_SLOT_SETTERS: Final = tuple(
    LedgerEntry.__dict__[name].__set__
    for name in ("event", "submitter", "leaf", "source", "id", "type", "subject")
)


def _new_entry(
    event: dict[str, Any], submitter: str, leaf: bytes, subject: str | None
) -> LedgerEntry:
    entry = object.__new__(LedgerEntry)
    set_event, set_submitter, set_leaf, set_source, set_id, set_type, set_subject = _SLOT_SETTERS
    set_event(entry, event)
    set_submitter(entry, submitter)
    set_leaf(entry, leaf)
    set_source(entry, event["source"])
    set_id(entry, event["id"])
    set_type(entry, event["type"])
    set_subject(entry, subject)
    return entry


# --- I-JSON decoding -----------------------------------------------------------------


class _Reject(Exception):
    """A strict parse hook or `_scan` met something that is not I-JSON.

    The fast paths only detect; the slow path (`_ijson_errors`) finds every path.
    """


def _strict_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Reject
    return obj


def _strict_int(text: str) -> int:
    # JSON forbids leading zeros, so more than 16 digits is beyond 2**53 - 1; checking
    # the length first also keeps int() away from its 4300-digit ValueError.
    if len(text) <= 17:
        value = int(text)
        if -_MAX_INT <= value <= _MAX_INT:
            return value
    raise _Reject


def _strict_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf: 1e400 overflows a double
        raise _Reject
    return value


def _strict_constant(text: str) -> Any:
    raise _Reject


@dataclass(frozen=True, slots=True)
class _BadNumber:
    """A number the lenient parse kept only to report it with its path."""

    problem: str


class _Duplicates(dict[str, Any]):
    """An object whose text repeated keys (`repeated`, in order of first appearance)."""

    __slots__ = ("repeated",)
    repeated: list[str]


def _lenient_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for key, _ in pairs:
        if key in seen:
            repeated[key] = None
        seen.add(key)
    marked = _Duplicates(obj)
    marked.repeated = list(repeated)
    return marked


def _excerpt(text: str) -> str:
    return text if len(text) <= 24 else text[:20] + "..."


def _lenient_int(text: str) -> Any:
    if len(text) <= 17:
        value = int(text)
        if -_MAX_INT <= value <= _MAX_INT:
            return value
    return _BadNumber(f"integer {_excerpt(text)} is outside ±(2^53-1) (I-JSON)")


def _lenient_float(text: str) -> Any:
    value = float(text)
    if value - value != 0.0:
        return _BadNumber(f"number {_excerpt(text)} is out of range for a double (I-JSON)")
    return value


def _lenient_constant(text: str) -> Any:
    return _BadNumber(f"{text} is not allowed (I-JSON numbers are finite)")


_STRICT_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_strict_pairs,
    parse_int=_strict_int,
    parse_float=_strict_float,
    parse_constant=_strict_constant,
)
_LENIENT_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_lenient_pairs,
    parse_int=_lenient_int,
    parse_float=_lenient_float,
    parse_constant=_lenient_constant,
)
_strict_scan: Final = json.scanner.make_scanner(cast(Any, _STRICT_DECODER))
_JSON_WHITESPACE: Final = " \t\n\r"
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# A \u escape of a surrogate: a lone one, or half of a pair (which decodes fine).
_ESCAPED_SURROGATE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def decode_json(raw: bytes | str) -> Any:
    """Parse I-JSON (RFC 7493) text: UTF-8, no duplicate keys, no lone surrogates,
    integers within ±(2^53-1), finite numbers.

    Raises `InvalidRequestError` for text that is not JSON at all (with line and column)
    and `InvalidEventError` naming the path of every value that is JSON but not I-JSON.
    """
    if isinstance(raw, str):
        text = raw
        # A str may carry raw surrogates; bytes cannot, once strictly decoded as UTF-8.
        if not text.isascii() and _SURROGATE.search(text) is not None:
            return _decode_slowly(text)
    else:
        try:
            text = str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(
                f"malformed JSON: invalid UTF-8 at byte offset {exc.start}"
            ) from None
    if text.startswith("\ufeff"):  # RFC 8259 §8.1: senders must not add one
        raise InvalidRequestError("malformed JSON: byte order mark at line 1 column 1")
    try:
        # JSONDecoder.decode without its two regex calls per document, which cost a
        # tenth of the parse; decode() runs only for leading whitespace and for errors.
        try:
            value, end = _strict_scan(text, 0)
        except StopIteration:  # no value at offset 0: leading whitespace, or no JSON
            value, end = _STRICT_DECODER.decode(text), len(text)
        if end != len(text) and text[end:].strip(_JSON_WHITESPACE):
            _STRICT_DECODER.decode(text)  # raises "Extra data" with its position
    except json.JSONDecodeError as exc:
        raise _malformed(exc) from None
    except _Reject:
        return _decode_slowly(text)
    except RecursionError:
        raise InvalidEventError(FieldError("", "JSON nested too deeply to parse")) from None
    # Escaped surrogates decode to lone surrogates unless they pair up; rare enough
    # (emoji from ensure_ascii encoders) to settle on the slow path.
    if "\\u" in text and _ESCAPED_SURROGATE.search(text) is not None:
        return _decode_slowly(text)
    return value


def _malformed(exc: json.JSONDecodeError) -> InvalidRequestError:
    # json's "Invalid control character at" would read "at at line ...".
    message = exc.msg.removesuffix(" at")
    return InvalidRequestError(f"malformed JSON: {message} at line {exc.lineno} column {exc.colno}")


def _decode_slowly(text: str) -> Any:
    """Parse again keeping every I-JSON problem in place, then report them all by path."""
    try:
        value = _LENIENT_DECODER.decode(text)
    except json.JSONDecodeError as exc:  # the strict parse stopped before the syntax error
        raise _malformed(exc) from None
    except RecursionError:
        raise InvalidEventError(FieldError("", "JSON nested too deeply to parse")) from None
    errors = _ijson_errors(value, max_depth=None)
    if errors:
        raise InvalidEventError(errors)
    return value


# --- field paths ---------------------------------------------------------------------

_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9_\-]+")


def _at(path: str, key: str) -> str:
    """The path of a member whose name is known to be plain."""
    return f"{path}.{key}" if path else key


def _at_key(path: str, key: str) -> str:
    """The path of a member with any name: plain names dotted, others as ["json string"]
    (with lone surrogates escaped, so that error messages always encode as UTF-8)."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    quoted = _SURROGATE.sub(_escape_surrogate, json.dumps(key, ensure_ascii=False))
    return f"{path}[{quoted}]"


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _ijson_errors(value: Any, max_depth: int | None) -> list[FieldError]:
    """Every I-JSON problem in `value`, by path, in document order (the slow path)."""
    errors: list[FieldError] = []
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found is not None:
                errors.append(FieldError(path, _surrogate_message(found.group())))
        elif item is None or isinstance(item, bool):
            pass
        elif isinstance(item, int):
            if not -_MAX_INT <= item <= _MAX_INT:
                errors.append(
                    FieldError(path, f"integer {_excerpt(str(item))} is outside ±(2^53-1) (I-JSON)")
                )
        elif isinstance(item, float):
            if item - item != 0.0:
                name = "NaN" if item != item else "Infinity" if item > 0 else "-Infinity"
                errors.append(
                    FieldError(path, f"{name} is not allowed (I-JSON numbers are finite)")
                )
        elif isinstance(item, _BadNumber):
            errors.append(FieldError(path, item.problem))
        elif isinstance(item, dict | list | tuple):
            if max_depth is not None and depth >= max_depth:
                errors.append(FieldError(path, f"nested more than {max_depth} levels deep"))
                continue
            children: list[tuple[Any, str, int]] = []
            if isinstance(item, dict):
                if isinstance(item, _Duplicates):
                    errors.extend(
                        FieldError(_at_key(path, key), "duplicate key") for key in item.repeated
                    )
                for key, child in item.items():
                    if not isinstance(key, str):
                        errors.append(
                            FieldError(path, f"object key {_excerpt(repr(key))} is not a string")
                        )
                        continue
                    found = _SURROGATE.search(key)
                    if found is not None:
                        errors.append(
                            FieldError(path, "object key " + _surrogate_message(found.group()))
                        )
                        continue
                    children.append((child, _at_key(path, key), depth + 1))
            else:
                children = [(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item)]
            stack.extend(reversed(children))
        else:
            errors.append(FieldError(path, f"a {type(item).__name__} is not a JSON value"))
    return errors


def _surrogate_message(char: str) -> str:
    return f"contains a lone surrogate U+{ord(char):04X} (not allowed in I-JSON)"


# --- RFC 8785 canonical bytes --------------------------------------------------------
#
# When the fast path equals JCS. For the C encoder with sort_keys=True,
# separators=(",", ":"), ensure_ascii=False, followed by strict UTF-8 encoding:
#
# - Literals and structure: null/true/false, "[", "]", "{", "}", ",", ":" with no
#   whitespace, array order kept: identical to RFC 8785 §3.2.1-3.2.2.
# - Strings (RFC 8785 §3.2.2.2): both escape exactly '"', '\' and U+0000-U+001F, using
#   \b \t \n \f \r and otherwise \u00xx with lowercase hex, and write every other code
#   point as itself; UTF-8 encoding then fails on a lone surrogate, which JCS refuses.
# - Integers: Python prints the decimal digits; for |n| <= 2^53-1 the double is exact
#   and below 1e21, so ECMAScript prints the same digits (RFC 8785 §3.2.2.3).
# - Floats: Python's repr and ECMAScript's Number::toString both print the shortest
#   digits that round-trip (rfc8785 itself starts from str(f)). They differ only in
#   layout: Python writes "1.0" for integral values, "-0.0", and uses exponents below
#   1e-4 and from 1e16 on, where ECMAScript uses them below 1e-6 and from 1e21 on. So
#   repr equals JCS exactly for finite, non-integral f with |f| >= 1e-4 (non-integral
#   implies |f| < 2^52 < 1e16). Every other float takes the slow path.
# - Object keys (RFC 8785 §3.2.3): JCS sorts by UTF-16 code units, Python by code
#   points. Two keys compare by their first differing code point; the orders disagree
#   only when one of those is supplementary (>= U+10000, a D800-DBFF lead unit in
#   UTF-16) and the other is in U+E000-U+FFFF (lone surrogates are refused anyway). So
#   an object whose keys lack either kind of character sorts identically.
#
# tests/unit/provledger/test_events.py checks this with Hypothesis against rfc8785.

_ASTRAL: Final = re.compile("[\U00010000-\U0010ffff]")
_UPPER_BMP: Final = re.compile("[\ue000-\uffff]")


def _scan(value: Any, depth: int) -> bool:
    """Check the container `value` (at nesting level `depth`) is I-JSON, raising `_Reject`
    if not; return True if the C encoder would not write its JCS bytes (see above)."""
    if depth > _MAX_DEPTH:
        raise _Reject
    slow = False
    members: Any
    if isinstance(value, dict):
        try:
            keys = "".join(value)
        except TypeError:  # a key that is not a string
            raise _Reject from None
        if (
            not keys.isascii()
            and _ASTRAL.search(keys) is not None
            and _UPPER_BMP.search(keys) is not None
        ):
            slow = True
        members = value.values()
    else:
        members = value
    # Exact types in order of frequency; subclasses (and tuples) go the long way.
    for item in members:
        kind = type(item)
        if kind is str:
            continue
        if kind is dict or kind is list:
            if _scan(item, depth + 1):
                slow = True
        elif kind is int:
            if not -_MAX_INT <= item <= _MAX_INT:
                raise _Reject
        elif kind is float:
            if item - item != 0.0:  # NaN or infinite
                raise _Reject
            if -1e-4 < item < 1e-4 or item.is_integer():
                slow = True
        elif item is None or kind is bool:
            pass
        elif _scan_subclass(item, depth):
            slow = True
    return slow


def _scan_subclass(item: Any, depth: int) -> bool:
    """`_scan` for a member of a subclass type (IntEnum, StrEnum, OrderedDict, tuple...),
    which both encoders treat as its base type."""
    if isinstance(item, str):
        return False
    if isinstance(item, int):
        if not -_MAX_INT <= item <= _MAX_INT:
            raise _Reject
        return False
    if isinstance(item, float):
        if item - item != 0.0:
            raise _Reject
        return -1e-4 < item < 1e-4 or item.is_integer()
    if isinstance(item, dict | list | tuple):
        return _scan(item, depth + 1)
    raise _Reject


def _unsupported(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _make_fast_encoder() -> Callable[[Any], str]:
    # The C encoder built once: json.dumps builds a JSONEncoder and then a C encoder on
    # every call, which costs about a quarter of the whole encoding of a small event.
    # markers=None skips the cycle check; _scan's depth limit has already refused cycles.
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # an interpreter without the _json accelerator
        encoder = json.JSONEncoder(
            sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return encoder.encode
    c_encoder = c_make_encoder(
        None, _unsupported, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )

    def encode(value: Any) -> str:
        return "".join(c_encoder(value, 0))

    return encode


_fast_json: Final = _make_fast_encoder()


def _canonical(value: Any) -> bytes:
    """RFC 8785 bytes of `value`, or `InvalidEventError` naming each non-I-JSON path."""
    return _jcs(value)[0]


def _jcs(value: Any) -> tuple[bytes, bool]:
    """`_canonical`, and whether it took the slow path (rfc8785) to get there."""
    try:
        # A scalar is scanned as the one member of a wrapper that is not itself a level.
        slow = _scan(value, 1) if isinstance(value, dict | list | tuple) else _scan((value,), 0)
        if not slow:
            return _fast_json(value).encode("utf-8"), False
        result: bytes = rfc8785.dumps(value)
        return result, True
    except (_Reject, UnicodeEncodeError, rfc8785.CanonicalizationError):
        pass
    errors = _ijson_errors(value, max_depth=_MAX_DEPTH)
    raise InvalidEventError(errors or [FieldError("", "not an I-JSON value")])


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 (JCS) UTF-8 bytes of an I-JSON value; equal to `rfc8785.dumps`.

    Raises `InvalidEventError` naming the path of every value that is not I-JSON (lone
    surrogates, integers beyond ±(2^53-1), NaN or infinities, non-string keys, non-JSON
    types, nesting deeper than 100 levels).
    """
    return _canonical(value)


_LEAF_START: Final = b'{"event":'
_LEAF_MIDDLE: Final = b',"submitter":'


@functools.lru_cache(maxsize=1024)  # a node has a handful of principals
def _quoted(submitter: str) -> bytes:
    try:
        return _fast_json(submitter).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("submitter contains a lone surrogate") from None


def _leaf(event_bytes: bytes, submitter: str) -> bytes:
    # JCS of {"event": e, "submitter": s}: the two keys are ASCII with "event" <
    # "submitter", and JCS serializes each member's value on its own, so the leaf is the
    # event's canonical bytes spliced between fixed bytes, with no second pass over it.
    return b"".join((_LEAF_START, event_bytes, _LEAF_MIDDLE, _quoted(submitter), b"}"))


def leaf_bytes(event: dict[str, Any], submitter: str) -> bytes:
    """`canonical_json({"event": event, "submitter": submitter})`, the bytes of a leaf."""
    if not isinstance(submitter, str):
        raise TypeError("submitter must be a string")
    return _leaf(_canonical(event), submitter)


# --- validation (SPEC §1) ------------------------------------------------------------

_MISSING: Final = object()

_DATA_OPERATIONS: Final = ("ingest", "transform", "validate", "delete")
_DEPLOYMENT_ACTIONS: Final = ("deploy", "rollback", "undeploy")
_CHARGE_CATEGORIES: Final = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
_HEX40: Final = re.compile(r"[0-9a-f]{40}")
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_DECIMAL: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_EXTENSION_NAME: Final = re.compile(r"[a-z0-9]{1,20}")
_JSON_MEDIA_TYPE: Final = re.compile(
    r"[A-Za-z0-9!#$&^_.+\-]+/(?:[A-Za-z0-9!#$&^_.+\-]+\+)?json(?:[ \t]*;.*)?",
    re.IGNORECASE | re.DOTALL,
)
# Field ranges in the pattern; day-of-month and leap seconds checked in _utc_instant.
_RFC3339: Final = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9]|60)(?:\.([0-9]+))?"
    r"(Z|[+\-][0-9]{2}:[0-9]{2})"
)
_DAYS_IN_MONTH: Final = {"04": "30", "06": "30", "09": "30", "11": "30", "02": "29"}

# RFC 3986 §4.1 URI-reference (IP-literals checked for their character set only). Runs
# of characters are written as "unrolled loops", c*(?:%XX c*)*, which Python's re
# matches several times faster than the grammar's (?:c|%XX)*.
_UNRESERVED_SUB = r"A-Za-z0-9\-._~!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"


def _run(chars: str) -> str:
    """Any number of `chars` or percent-encodings."""
    return rf"[{chars}]*(?:{_PCT}[{chars}]*)*"


_PCHARS = _UNRESERVED_SUB + ":@"
_SEGMENT = _run(_PCHARS)
_SEGMENT_NZ = rf"(?:[{_PCHARS}]|{_PCT}){_SEGMENT}"
_SEGMENT_NZ_NC = rf"(?:[{_UNRESERVED_SUB}@]|{_PCT}){_run(_UNRESERVED_SUB + '@')}"
_QUERY_OR_FRAGMENT = _run(_PCHARS + "/?")
_AUTHORITY = (
    rf"(?:{_run(_UNRESERVED_SUB + ':')}@)?"
    rf"(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[{_UNRESERVED_SUB}:]+\]|{_run(_UNRESERVED_SUB)})"
    r"(?::[0-9]*)?"
)
_PATH_ABEMPTY = rf"(?:/{_SEGMENT})*"
_PATH_ABSOLUTE = rf"/(?:{_SEGMENT_NZ}(?:/{_SEGMENT})*)?"
_TAIL = rf"(?:\?{_QUERY_OR_FRAGMENT})?(?:#{_QUERY_OR_FRAGMENT})?"
_URI_TEXT = (
    rf"[A-Za-z][A-Za-z0-9+\-.]*:"
    rf"(?://{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_SEGMENT_NZ}(?:/{_SEGMENT})*|){_TAIL}"
)
_RELATIVE_REF_TEXT = (
    rf"(?://{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_SEGMENT_NZ_NC}(?:/{_SEGMENT})*|)"
    rf"{_TAIL}"
)
_URI: Final = re.compile(_URI_TEXT)
_URI_REFERENCE: Final = re.compile(rf"{_URI_TEXT}|{_RELATIVE_REF_TEXT}")

_ENVELOPE: Final = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "data",
        "datacontenttype",
        "dataschema",
    }
)
_TYPE_LIST: Final = ", ".join(sorted(USER_EVENT_TYPES) + sorted(SYSTEM_EVENT_TYPES))
_INT32: Final = 2**31

_HEX64_MESSAGE: Final = "expected 64 lowercase hex characters"
_COMMIT_MESSAGE: Final = "expected 40 lowercase hex characters (a Git commit id)"


def _required(errors: list[FieldError], path: str, key: str) -> None:
    errors.append(FieldError(_at(path, key), "required"))


def _object(obj: dict[str, Any], key: str, path: str, errors: list[FieldError]) -> Any:
    """The member `key` if it is an object, else None (with the error recorded)."""
    value = obj.get(key, _MISSING)
    if isinstance(value, dict):
        return value
    if value is _MISSING:
        _required(errors, path, key)
    else:
        errors.append(FieldError(_at(path, key), "expected a JSON object"))
    return None


def _string(
    obj: dict[str, Any],
    key: str,
    path: str,
    errors: list[FieldError],
    *,
    required: bool = True,
    max_length: int = 0,
) -> None:
    value = obj.get(key, _MISSING)
    if isinstance(value, str) and value and (not max_length or len(value) <= max_length):
        return
    if value is _MISSING:
        if required:
            _required(errors, path, key)
    elif not isinstance(value, str):
        errors.append(FieldError(_at(path, key), "expected a string"))
    elif not value:
        errors.append(FieldError(_at(path, key), "must not be empty"))
    else:
        errors.append(
            FieldError(_at(path, key), f"at most {max_length} characters, got {len(value)}")
        )


def _matching(
    obj: dict[str, Any],
    key: str,
    path: str,
    errors: list[FieldError],
    pattern: re.Pattern[str],
    message: str,
    *,
    required: bool = True,
) -> None:
    value = obj.get(key, _MISSING)
    if isinstance(value, str) and pattern.fullmatch(value) is not None:
        return
    if value is _MISSING:
        if required:
            _required(errors, path, key)
    else:
        errors.append(FieldError(_at(path, key), message))


def _enum(
    obj: dict[str, Any], key: str, path: str, errors: list[FieldError], allowed: tuple[str, ...]
) -> None:
    value = obj.get(key, _MISSING)
    if isinstance(value, str) and value in allowed:
        return
    if value is _MISSING:
        _required(errors, path, key)
    else:
        errors.append(FieldError(_at(path, key), "expected one of " + ", ".join(allowed)))


def _digest(
    obj: dict[str, Any], key: str, path: str, errors: list[FieldError], *, required: bool = True
) -> None:
    """An in-toto DigestSet with (at least) a sha256 member."""
    value = obj.get(key, _MISSING)
    if value is _MISSING and not required:
        return
    digest = _object(obj, key, path, errors)
    if digest is not None:
        _matching(digest, "sha256", _at(path, key), errors, _HEX64, _HEX64_MESSAGE)


def _uri(
    obj: dict[str, Any],
    key: str,
    path: str,
    errors: list[FieldError],
    pattern: re.Pattern[str],
    message: str,
    *,
    required: bool = True,
    max_length: int = 0,
) -> None:
    value = obj.get(key, _MISSING)
    if (
        isinstance(value, str)
        and value
        and (not max_length or len(value) <= max_length)
        and pattern.fullmatch(value) is not None
    ):
        return
    if value is _MISSING or not isinstance(value, str) or not value:
        _string(obj, key, path, errors, required=required)
    elif max_length and len(value) > max_length:
        _string(obj, key, path, errors, max_length=max_length)
    else:
        errors.append(FieldError(_at(path, key), message))


_TIME_FORMAT: Final = 'expected an RFC 3339 UTC timestamp such as "2025-03-04T10:15:02Z"'


def _utc_instant(value: str) -> tuple[str, ...] | str:
    """A key that orders RFC 3339 UTC timestamps as instants, or what is wrong."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        return _TIME_FORMAT
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if day > "28" and (
        day > _DAYS_IN_MONTH.get(month, "31") or (month == "02" and not _leap_year(int(year)))
    ):
        return "not a valid date"
    # RFC 3339 allows a leap second, which in UTC can only be 23:59:60.
    if second == "60" and (hour != "23" or minute != "59"):
        return "a leap second can only be 23:59:60 UTC"
    if offset != "Z" and offset != "+00:00":
        return 'must be in UTC: end with "Z" or "+00:00"'
    # Fixed-width digit strings order like the numbers they write, and so do fraction
    # digits once trailing zeros are stripped.
    return (year, month, day, hour, minute, second, (fraction or "").rstrip("0"))


def _timestamp(
    obj: dict[str, Any], key: str, path: str, errors: list[FieldError]
) -> tuple[str, ...] | None:
    """Check an RFC 3339 UTC timestamp; return a key that orders instants, or None."""
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        _required(errors, path, key)
        return None
    if not isinstance(value, str):
        errors.append(FieldError(_at(path, key), "expected an RFC 3339 timestamp string"))
        return None
    instant = _utc_instant(value)
    if isinstance(instant, str):
        errors.append(FieldError(_at(path, key), instant))
        return None
    return instant


def _leap_year(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _model(
    data: dict[str, Any], path: str, errors: list[FieldError], *, digest_required: bool
) -> None:
    model = _object(data, "model", path, errors)
    if model is not None:
        model_path = _at(path, "model")
        _string(model, "name", model_path, errors)
        _string(model, "version", model_path, errors)
        _digest(model, "digest", model_path, errors, required=digest_required)


def _check_data_event(data: dict[str, Any], path: str, errors: list[FieldError]) -> None:
    _enum(data, "operation", path, errors, _DATA_OPERATIONS)
    dataset = _object(data, "dataset", path, errors)
    if dataset is not None:
        dataset_path = _at(path, "dataset")
        _string(dataset, "name", dataset_path, errors)
        _uri(dataset, "uri", dataset_path, errors, _URI_REFERENCE, "expected a URI (RFC 3986)")
        _digest(dataset, "digest", dataset_path, errors)


def _check_training_event(data: dict[str, Any], path: str, errors: list[FieldError]) -> None:
    _string(data, "run_id", path, errors)
    _model(data, path, errors, digest_required=True)
    datasets = data.get("datasets", _MISSING)
    if datasets is _MISSING:
        _required(errors, path, "datasets")
    elif not isinstance(datasets, list) or not datasets:
        errors.append(
            FieldError(_at(path, "datasets"), "expected an array of one or more {name, digest}")
        )
    else:
        for index, dataset in enumerate(datasets):
            if isinstance(dataset, dict):
                dataset_path = f"{path}.datasets[{index}]"
                _string(dataset, "name", dataset_path, errors)
                _digest(dataset, "digest", dataset_path, errors)
            else:
                errors.append(FieldError(f"{path}.datasets[{index}]", "expected a JSON object"))
    code = _object(data, "code", path, errors)
    if code is not None:
        code_path = _at(path, "code")
        _string(code, "repo", code_path, errors)
        _matching(code, "commit", code_path, errors, _HEX40, _COMMIT_MESSAGE)


def _check_deployment_event(data: dict[str, Any], path: str, errors: list[FieldError]) -> None:
    _enum(data, "action", path, errors, _DEPLOYMENT_ACTIONS)
    _model(data, path, errors, digest_required=True)
    _string(data, "environment", path, errors)
    git = _object(data, "git", path, errors)
    if git is not None:
        git_path = _at(path, "git")
        _string(git, "repo", git_path, errors)
        _matching(git, "commit", git_path, errors, _HEX40, _COMMIT_MESSAGE)
        _string(git, "path", git_path, errors)


def _check_inference_event(data: dict[str, Any], path: str, errors: list[FieldError]) -> None:
    _model(data, path, errors, digest_required=False)
    _matching(data, "input_commitment", path, errors, _HEX64, _HEX64_MESSAGE)
    _matching(data, "output_commitment", path, errors, _HEX64, _HEX64_MESSAGE)
    count = data.get("count", _MISSING)
    if count is not _MISSING and (
        isinstance(count, bool) or not isinstance(count, int) or count < 1
    ):
        errors.append(FieldError(_at(path, "count"), "expected a positive integer"))
    latency = data.get("latency_ms", _MISSING)
    if latency is not _MISSING and (
        isinstance(latency, bool) or not isinstance(latency, int | float) or not latency >= 0
    ):
        errors.append(FieldError(_at(path, "latency_ms"), "expected a non-negative number"))


def _check_cost_event(data: dict[str, Any], path: str, errors: list[FieldError]) -> None:
    for key in ("BilledCost", "EffectiveCost"):
        _matching(data, key, path, errors, _DECIMAL, 'expected a decimal string such as "12.34"')
    _matching(
        data,
        "BillingCurrency",
        path,
        errors,
        _CURRENCY,
        "expected an ISO 4217 currency code (three uppercase letters)",
    )
    start = _timestamp(data, "ChargePeriodStart", path, errors)
    end = _timestamp(data, "ChargePeriodEnd", path, errors)
    if start is not None and end is not None and not start < end:
        errors.append(FieldError(_at(path, "ChargePeriodEnd"), "must be after ChargePeriodStart"))
    _string(data, "ServiceName", path, errors)
    _enum(data, "ChargeCategory", path, errors, _CHARGE_CATEGORIES)
    for key in ("x_ModelName", "x_ModelVersion", "x_Environment"):
        _string(data, key, path, errors, required=False)


def _check_system_event(data: dict[str, Any], path: str, errors: list[FieldError]) -> None:
    """The ledger writes these itself; the node checks the admin role."""


_DATA_CHECKS: Final[dict[str, Callable[[dict[str, Any], str, list[FieldError]], None]]] = {
    "provledger.data.v1": _check_data_event,
    "provledger.training.v1": _check_training_event,
    "provledger.deployment.v1": _check_deployment_event,
    "provledger.inference.v1": _check_inference_event,
    "provledger.cost.v1": _check_cost_event,
    "provledger.anchor.v1": _check_system_event,
    "provledger.reconcile.v1": _check_system_event,
    "provledger.policy.v1": _check_system_event,
}


def _check_event(event: dict[str, Any], base: str, errors: list[FieldError]) -> None:
    """Record every SPEC §1 violation of `event` (paths under `base`) in `errors`."""
    for key, value in event.items():
        if key in _ENVELOPE or not isinstance(key, str):
            continue  # non-string keys are the I-JSON check's to report
        if _EXTENSION_NAME.fullmatch(key) is None:
            errors.append(
                FieldError(
                    _at_key(base, key),
                    "unknown attribute (CloudEvents extension names are 1-20 lowercase "
                    "letters or digits)",
                )
            )
        elif not (
            isinstance(value, str | bool) or (isinstance(value, int) and -_INT32 <= value < _INT32)
        ):
            errors.append(
                FieldError(
                    _at_key(base, key),
                    "expected a string, boolean or 32-bit integer (a CloudEvents extension)",
                )
            )
    specversion = event.get("specversion", _MISSING)
    if specversion is _MISSING:
        _required(errors, base, "specversion")
    elif specversion != "1.0":
        errors.append(FieldError(_at(base, "specversion"), 'expected "1.0"'))
    _string(event, "id", base, errors, max_length=128)
    _uri(
        event,
        "source",
        base,
        errors,
        _URI_REFERENCE,
        "expected a URI-reference (RFC 3986)",
        max_length=512,
    )
    event_type = event.get("type", _MISSING)
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        if event_type is _MISSING:
            _required(errors, base, "type")
        else:
            errors.append(FieldError(_at(base, "type"), "expected one of " + _TYPE_LIST))
        event_type = None
    _timestamp(event, "time", base, errors)
    _string(event, "subject", base, errors, required=False)
    _matching(
        event,
        "datacontenttype",
        base,
        errors,
        _JSON_MEDIA_TYPE,
        'expected a JSON media type such as "application/json"',
        required=False,
    )
    _uri(
        event,
        "dataschema",
        base,
        errors,
        _URI,
        "expected an absolute URI (RFC 3986)",
        required=False,
    )
    data = _object(event, "data", base, errors)
    if data is not None and event_type is not None:
        _DATA_CHECKS[event_type](data, _at(base, "data"), errors)


# --- the quick accept ---------------------------------------------------------------
#
# The checks above build a path and a message for every refusal, which costs a function
# call per field. Nearly every event admitted is valid, so make_entry first asks these
# predicates, which only say yes or no in a few inline tests per field. They accept
# nothing the checks above refuse; when they say no (or are unsure, e.g. for subclasses
# of str), the checks above decide. Tested by running every refusal case through
# make_entry, and with Hypothesis: quick acceptance implies `_check_event` finds nothing.

_CORE_ATTRIBUTES: Final = frozenset({"specversion", "id", "source", "type", "time", "data"})


def _quick_digest(digest: Any) -> bool:
    if type(digest) is not dict:
        return False
    sha256 = digest.get("sha256")
    return type(sha256) is str and _HEX64.fullmatch(sha256) is not None


def _quick_model(model: Any, digest_required: bool) -> bool:
    if type(model) is not dict:
        return False
    name = model.get("name")
    version = model.get("version")
    if not (type(name) is str and name != "" and type(version) is str and version != ""):
        return False
    return _quick_digest(model.get("digest")) if digest_required or "digest" in model else True


def _quick_data_event(data: dict[str, Any]) -> bool:
    dataset = data.get("dataset")
    if data.get("operation") not in _DATA_OPERATIONS or type(dataset) is not dict:
        return False
    name = dataset.get("name")
    uri = dataset.get("uri")
    return (
        type(name) is str
        and name != ""
        and type(uri) is str
        and uri != ""
        and _URI_REFERENCE.fullmatch(uri) is not None
        and _quick_digest(dataset.get("digest"))
    )


def _quick_training_event(data: dict[str, Any]) -> bool:
    run_id = data.get("run_id")
    code = data.get("code")
    datasets = data.get("datasets")
    if not (
        type(run_id) is str
        and run_id != ""
        and type(code) is dict
        and type(datasets) is list
        and datasets
        and _quick_model(data.get("model"), True)
    ):
        return False
    repo = code.get("repo")
    commit = code.get("commit")
    if not (
        type(repo) is str
        and repo != ""
        and type(commit) is str
        and _HEX40.fullmatch(commit) is not None
    ):
        return False
    for dataset in datasets:
        if type(dataset) is not dict:
            return False
        name = dataset.get("name")
        if not (type(name) is str and name != "" and _quick_digest(dataset.get("digest"))):
            return False
    return True


def _quick_deployment_event(data: dict[str, Any]) -> bool:
    git = data.get("git")
    environment = data.get("environment")
    if not (
        data.get("action") in _DEPLOYMENT_ACTIONS
        and type(git) is dict
        and type(environment) is str
        and environment != ""
        and _quick_model(data.get("model"), True)
    ):
        return False
    repo = git.get("repo")
    commit = git.get("commit")
    path = git.get("path")
    return (
        type(repo) is str
        and repo != ""
        and type(commit) is str
        and _HEX40.fullmatch(commit) is not None
        and type(path) is str
        and path != ""
    )


def _quick_inference_event(data: dict[str, Any]) -> bool:
    inputs = data.get("input_commitment")
    outputs = data.get("output_commitment")
    count = data.get("count", 1)
    latency = data.get("latency_ms", 0)
    return (
        type(inputs) is str
        and _HEX64.fullmatch(inputs) is not None
        and type(outputs) is str
        and _HEX64.fullmatch(outputs) is not None
        and type(count) is int
        and count >= 1
        and (type(latency) is int or type(latency) is float)
        and latency >= 0
        and _quick_model(data.get("model"), False)
    )


def _quick_cost_event(data: dict[str, Any]) -> bool:
    billed = data.get("BilledCost")
    effective = data.get("EffectiveCost")
    currency = data.get("BillingCurrency")
    service = data.get("ServiceName")
    start = data.get("ChargePeriodStart")
    end = data.get("ChargePeriodEnd")
    if not (
        type(billed) is str
        and _DECIMAL.fullmatch(billed) is not None
        and type(effective) is str
        and _DECIMAL.fullmatch(effective) is not None
        and type(currency) is str
        and _CURRENCY.fullmatch(currency) is not None
        and type(service) is str
        and service != ""
        and data.get("ChargeCategory") in _CHARGE_CATEGORIES
        and type(start) is str
        and type(end) is str
    ):
        return False
    start_instant = _utc_instant(start)
    end_instant = _utc_instant(end)
    if not (
        isinstance(start_instant, tuple)
        and isinstance(end_instant, tuple)
        and start_instant < end_instant
    ):
        return False
    for key in ("x_ModelName", "x_ModelVersion", "x_Environment"):
        value = data.get(key, "absent")
        if not (type(value) is str and value != ""):
            return False
    return True


def _quick_system_event(data: dict[str, Any]) -> bool:
    return True


_QUICK_CHECKS: Final[dict[str, Callable[[dict[str, Any]], bool]]] = {
    "provledger.data.v1": _quick_data_event,
    "provledger.training.v1": _quick_training_event,
    "provledger.deployment.v1": _quick_deployment_event,
    "provledger.inference.v1": _quick_inference_event,
    "provledger.cost.v1": _quick_cost_event,
    "provledger.anchor.v1": _quick_system_event,
    "provledger.reconcile.v1": _quick_system_event,
    "provledger.policy.v1": _quick_system_event,
}


def _quick_accept(event: dict[str, Any]) -> bool:
    """True only if `_check_event` would find nothing wrong with `event`."""
    event_id = event.get("id")
    source = event.get("source")
    time = event.get("time")
    data = event.get("data")
    event_type = event.get("type")
    if not (
        event.get("specversion") == "1.0"
        and type(event_id) is str
        and 0 < len(event_id) <= 128
        and type(source) is str
        and 0 < len(source) <= 512
        and _URI_REFERENCE.fullmatch(source) is not None
        and type(time) is str
        and isinstance(_utc_instant(time), tuple)
        and type(data) is dict
        and type(event_type) is str
    ):
        return False
    check = _QUICK_CHECKS.get(event_type)
    if check is None:
        return False
    # The gets above found all six core attributes, so any more are optional ones.
    if len(event) > len(_CORE_ATTRIBUTES):
        for key in event.keys() - _CORE_ATTRIBUTES:
            value = event[key]
            if key == "subject":
                ok = type(value) is str and value != ""
            elif key == "datacontenttype":
                ok = type(value) is str and _JSON_MEDIA_TYPE.fullmatch(value) is not None
            elif key == "dataschema":
                ok = type(value) is str and _URI.fullmatch(value) is not None
            else:
                ok = (
                    type(key) is str
                    and _EXTENSION_NAME.fullmatch(key) is not None
                    and (
                        type(value) is str
                        or type(value) is bool
                        or (type(value) is int and -_INT32 <= value < _INT32)
                    )
                )
            if not ok:
                return False
    return check(data)


# --- entries and leaves --------------------------------------------------------------


def make_entry(
    event: Any, submitter: str, *, max_event_bytes: int = MAX_EVENT_BYTES
) -> LedgerEntry:
    """Validate `event` (SPEC §1) and compute its leaf bytes (SPEC §2) once.

    Raises `InvalidEventError` listing every bad field path, and `TooLargeError` when
    the event's canonical bytes exceed `max_event_bytes` (at most `MAX_EVENT_BYTES`).
    `submitter` is the authenticated principal, so a bad one is the caller's bug
    (`ValueError`), not the client's.
    """
    if not isinstance(submitter, str) or not submitter:
        raise ValueError("submitter must be a non-empty string")
    if not 0 < max_event_bytes <= MAX_EVENT_BYTES:
        raise ValueError(f"max_event_bytes must be in 1..{MAX_EVENT_BYTES}")
    if not isinstance(event, dict):
        raise InvalidEventError(FieldError("", "expected a JSON object (a CloudEvents event)"))
    errors: list[FieldError] = []
    if not _quick_accept(event):
        _check_event(event, "", errors)
    try:
        event_bytes, slow = _jcs(event)
        if slow:  # only a value with such floats takes the slow path
            errors = _integral_float_errors(event) + errors
    except InvalidEventError as exc:
        # One complaint per path: NaN in latency_ms is an I-JSON error, not also a type one.
        reported = {error.path for error in exc.errors}
        errors = exc.errors + [error for error in errors if error.path not in reported]
    if errors:
        raise InvalidEventError(errors)
    if len(event_bytes) > max_event_bytes:
        raise TooLargeError(
            f"event is {len(event_bytes)} bytes in canonical form; "
            f"the limit is {max_event_bytes} bytes"
        )
    leaf = _leaf(event_bytes, submitter)
    if len(leaf) > _MAX_LEAF_BYTES:
        raise TooLargeError(
            f"leaf is {len(leaf)} bytes; the limit is {_MAX_LEAF_BYTES} bytes "
            "(is the submitter name unreasonably long?)"
        )
    return _new_entry(event, submitter, leaf, event.get("subject"))


def entry_from_json(
    raw: bytes, submitter: str, *, max_event_bytes: int = MAX_EVENT_BYTES
) -> LedgerEntry:
    """`make_entry(decode_json(raw), submitter)`: same entry, same refusals, faster.

    Text already in the event's RFC 8785 form (as the SDK sends it) is recognised and
    kept as it is, in about half the time; other text without \\u escapes is decoded by
    msgspec with a duplicate-key count instead of the strict decoder's pair hook."""
    event = _canonical_event(raw)
    if (
        event is not None
        and len(raw) <= max_event_bytes
        and max_event_bytes <= MAX_EVENT_BYTES
        and type(submitter) is str
        and submitter
        and _quick_accept(event)
    ):
        leaf = _leaf(raw, submitter)
        if len(leaf) <= _MAX_LEAF_BYTES:
            return _new_entry(event, submitter, leaf, event.get("subject"))
    elif event is None and b"\\u" not in raw:
        entry = _entry_without_duplicates(raw, submitter, max_event_bytes)
        if entry is not None:
            return entry
    return make_entry(decode_json(raw), submitter, max_event_bytes=max_event_bytes)


_ANY_JSON: Final = msgspec.json.Decoder(float_hook=float)  # floats parsed as json parses them


def _entry_without_duplicates(
    raw: bytes, submitter: str, max_event_bytes: int
) -> LedgerEntry | None:
    """The entry of `raw` (text without \\u escapes) decoded by msgspec, if it provably
    has no duplicate key; None for the strict path to judge and word.

    Without \\u escapes every ':' of the text separates a member or stands for itself
    in a string, and so it does in the RFC 8785 form of the decoded value, which writes
    ':' as it is. A duplicate key drops a member, and with it a colon, from that form:
    equal colon counts mean none was dropped.
    """
    try:
        value = _ANY_JSON.decode(raw)
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    if type(value) is not dict:
        return None
    try:
        entry = make_entry(value, submitter, max_event_bytes=max_event_bytes)
    except LedgerError:
        return None  # refusals are worded by the strict path, as ever
    leaf = entry.leaf
    end = len(leaf) - len(_LEAF_MIDDLE) - len(_quoted(submitter)) - 1  # the event's bytes
    if leaf.count(b":", len(_LEAF_START), end) != raw.count(b":"):
        return None
    return entry


_PLAIN_DECIMAL: Final = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")


def _jcs_float(text: str) -> float:
    """A float written exactly as JCS writes it, or ValueError (msgspec's DecodeError for
    the caller: the slow path takes it). As in `_scan`: for a non-integral |f| >= 1e-4
    (hence below 2^52) JCS writes the shortest round-trip digits positionally, which is
    Python's repr."""
    value = float(text)
    if (
        _PLAIN_DECIMAL.fullmatch(text) is not None
        and abs(value) >= 1e-4
        and not value.is_integer()
        and repr(value) == text
    ):
        return value
    raise ValueError("a float to check the long way")


_DECODER: Final = msgspec.json.Decoder(float_hook=_jcs_float)
# Every integer beyond ±(2^53-1) has a run of 16 digits (JSON has no leading zeros).
# Screened as `0` * 16 in the text with every digit mapped to `0`, `{` and `[` to `{`
# (counted for the nesting limit in the same pass) and all else to a space: three C
# passes, where a regex costs ten times more. Only text with such a run (most often
# inside a string: a nanosecond timestamp or a snowflake id) has its decoded integers
# checked one by one.
_SCREEN: Final = bytes(
    0x30 if 0x30 <= b <= 0x39 else 0x7B if b in b"{[" else 0x20 for b in range(256)
)
_SIXTEEN_DIGITS: Final = b"0" * 16
_encode_sorted: Final = msgspec.json.Encoder(order="sorted").encode


def _canonical_event(raw: bytes) -> Any:
    """The JSON object `raw` encodes if `raw` is provably its RFC 8785 form, else None.

    Sound because, for ASCII text whose floats are written as JCS writes them
    (`_jcs_float`), msgspec's sorted encoding is JCS: JCS sorts keys by UTF-16 code
    units, which for ASCII is msgspec's code-point order, and both escape exactly the
    control characters, quote and backslash, with the same short forms
    (tests/unit/provledger/test_entry_from_json.py checks this against rfc8785). So when
    re-encoding the decoded value gives back `raw` byte for byte, `raw` is canonical and
    I-JSON: a duplicate key would have been dropped, and so would `-0`, escaped
    surrogates fail to decode, and long integers and deep nesting are screened first.
    """
    # "data" sorts before every other CloudEvents attribute, so canonical events start
    # so; other text (most hand-written JSON) skips the decode attempt.
    if not raw.startswith(b'{"data":'):
        return None
    value = _decoded_if_canonical(raw)
    return value if type(value) is dict else None


def _decoded_if_canonical(raw: bytes, max_depth: int = _MAX_DEPTH) -> Any:
    """The JSON value `raw` encodes if `raw` is provably its RFC 8785 form, else None
    (also for the text `null`, which the callers do not need). See `_canonical_event`."""
    if not raw.isascii():
        return None
    screened = raw.translate(_SCREEN)
    if screened.count(b"{") > max_depth:  # every `{` and `[` of the text, as `{`
        return None
    long_digit_run = _SIXTEEN_DIGITS in screened
    try:
        value = _DECODER.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    if _encode_sorted(value) != raw:
        return None
    if long_digit_run and not _integers_within_i_json(value):
        return None
    return value


def _integers_within_i_json(value: Any) -> bool:
    """True if every integer in the decoded `value` is within ±(2^53-1)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is int and not -_MAX_INT <= item <= _MAX_INT:
            return False
    return True


def is_canonical(raw: bytes, *, max_depth: int = _MAX_DEPTH) -> bool:
    """True only if `raw` is the RFC 8785 form of an I-JSON value nested at most
    `max_depth` levels (so `canonical_json(decode_json(raw)) == raw`). A quick sufficient
    test: False also for some canonical text (non-ASCII, exponents, 16-digit runs)."""
    return raw == b"null" or _decoded_if_canonical(raw, max_depth) is not None


class _EventIdentity(msgspec.Struct):
    source: str
    id: str
    type: str
    subject: str | None = None


class _LeafIdentity(msgspec.Struct):
    event: _EventIdentity


_LEAF_IDENTITY: Final = msgspec.json.Decoder(_LeafIdentity)


def leaf_identity(leaf: bytes) -> tuple[str, str, str, str | None]:
    """`(source, id, type, subject)` of a leaf, decoding nothing else and validating
    nothing more: for a replica indexing leaves whose bytes a verified signed root
    already binds. ValueError if the leaf does not even have them."""
    try:
        event = _LEAF_IDENTITY.decode(leaf).event
    except msgspec.DecodeError as exc:  # ValidationError included
        raise ValueError(str(exc)) from None
    return event.source, event.id, event.type, event.subject


def _integral_float_errors(value: Any) -> list[FieldError]:
    """Floats that JCS writes as integers beyond ±(2^53-1) (2.0**53 becomes
    "9007199254740992"): valid JCS, but text that I-JSON, and so `decode_json` and
    `parse_leaf`, refuse, so `make_entry` refuses them first."""
    errors: list[FieldError] = []
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float):
            if item.is_integer() and _MAX_INT < abs(item) < 1e21:
                errors.append(
                    FieldError(
                        path, f"{_jcs_number(item)} is an integer outside ±(2^53-1) (I-JSON)"
                    )
                )
        elif isinstance(item, dict):
            stack.extend((child, _at_key(path, key)) for key, child in reversed(item.items()))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))
    return errors


def _jcs_number(value: float) -> str:
    text: bytes = rfc8785.dumps(value)
    return text.decode()


def parse_leaf(leaf: bytes) -> LedgerEntry:
    """The entry stored as `leaf`: the inverse of `make_entry`, with no size limit.

    The leaf must be the canonical form of a valid entry; anything else raises
    `InvalidRequestError` (not JSON) or `InvalidEventError` (paths under `event.`).
    """
    leaf = bytes(leaf)
    obj = decode_json(leaf)
    if not isinstance(obj, dict):
        raise InvalidEventError(FieldError("", "expected a JSON object {event, submitter}"))
    errors: list[FieldError] = []
    for key in obj:
        if key not in ("event", "submitter"):
            errors.append(FieldError(_at_key("", key), "unknown member of a leaf"))
    _string(obj, "submitter", "", errors)
    event = _object(obj, "event", "", errors)
    if event is not None and not _quick_accept(event):
        _check_event(event, "event", errors)
    if errors:
        raise InvalidEventError(errors)
    submitter: str = obj["submitter"]
    if leaf_bytes(event, submitter) != leaf:
        raise InvalidEventError(
            FieldError("", "leaf bytes are not the RFC 8785 canonical form of the entry")
        )
    return _new_entry(event, submitter, leaf, event.get("subject"))
