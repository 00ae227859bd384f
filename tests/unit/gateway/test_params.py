"""Edge parsing of query and path parameters: 400 for anything but the declared form."""

from __future__ import annotations

import pytest

from gateway._params import MAX_INDEX, HexParam, IntParam, StrParam
from gateway._problems import ProblemError

INDEX = IntParam("index", "leaf index")
LIMIT = IntParam("limit", "page size", default=100, minimum=1, maximum=1000)
REQUIRED = IntParam("first", "older size", required=True)


@pytest.mark.parametrize(
    ("raw", "value"), [("0", 0), ("7", 7), ("007", 7), (str(MAX_INDEX), MAX_INDEX)]
)
def test_integers(raw: str, value: int) -> None:
    assert INDEX.parse({"index": raw}) == value


@pytest.mark.parametrize(
    "raw",
    [
        "-1",
        "-0",
        "1.0",
        "1e3",
        "+1",
        " 1",
        "1 ",
        "1_000",
        "0x10",
        "abc",
        "٣",
        str(MAX_INDEX + 1),
        "9" * 40,
    ],
)
def test_bad_integers_are_400(raw: str) -> None:
    with pytest.raises(ProblemError) as caught:
        INDEX.parse({"index": raw})
    assert caught.value.problem.status == 400
    assert "index" in caught.value.problem.detail


def test_defaults_and_required() -> None:
    assert INDEX.parse({}) is None
    assert LIMIT.parse({}) == 100
    with pytest.raises(ProblemError):
        REQUIRED.parse({})
    for bad in ("0", "1001", ""):
        with pytest.raises(ProblemError):
            LIMIT.parse({"limit": bad})


def test_strings_and_choices() -> None:
    kind = StrParam("type", "t", choices=("a.v1", "b.v1"))
    assert kind.parse({"type": "a.v1"}) == "a.v1"
    assert kind.parse({}) is None
    with pytest.raises(ProblemError):
        kind.parse({"type": ""})
    with pytest.raises(ProblemError):
        kind.parse({"type": "c.v1"})
    short = StrParam("id", "i", max_length=3)
    with pytest.raises(ProblemError):
        short.parse({"id": "abcd"})


def test_hex() -> None:
    h = HexParam("leaf_hash", "h")
    assert h.parse({"leaf_hash": "AB" * 32}) == bytes([0xAB]) * 32
    for bad in ("ab" * 31, "zz" * 32, "ab" * 33):
        with pytest.raises(ProblemError):
            h.parse({"leaf_hash": bad})


def test_openapi_matches_parsing() -> None:
    spec = LIMIT.openapi()
    assert spec["schema"]["minimum"] == 1 and spec["schema"]["maximum"] == 1000
    assert spec["schema"]["default"] == 100 and spec["in"] == "query" and not spec["required"]
    assert IntParam("height", "h", where="path").openapi()["required"] is True
