"""Runs every python block of README.md, in order and in one namespace,
against a real node (its address replaces the documented grpc://127.0.0.1:7400)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness.node import start_node

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
DOCUMENTED = "grpc://127.0.0.1:7400"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_examples() -> None:
    found = blocks()
    assert len(found) >= 6
    assert all(DOCUMENTED in b for b in found if "LedgerClient(" in b)


def test_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = start_node(tmp_path)
    monkeypatch.chdir(tmp_path)  # the examples write trusted.json and bundle.ndjson here
    namespace: dict[str, object] = {"__name__": "readme"}
    try:
        for number, block in enumerate(blocks(), 1):
            code = compile(
                block.replace(DOCUMENTED, f"grpc://{node.address}"),
                f"{README.name} block {number}",
                "exec",
            )
            exec(code, namespace)
    finally:
        node.stop()
    assert (tmp_path / "trusted.json").is_file()
    assert (tmp_path / "bundle.ndjson").stat().st_size > 0
