"""The tamper suite: `provledger audit` accepts an untouched bundle and, for each kind of
damage, exits 1 naming the place (block height, leaf index, line)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients import audit_bundle
from clients.cli import run
from provledger.note import Signer
from tests.unit.clients.clients_bundle import Bundle, build


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    # Uneven sizes: a block of one, blocks that straddle powers of two.
    return build([3, 5, 1, 8, 6])


def audit(tmp_path: Path, text: str, key: str, *extra: str) -> tuple[int, str, str]:
    path = tmp_path / "bundle.ndjson"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    code = run(["audit", str(path), "--key", key, *extra], env={}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def lines_text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def edit_block(bundle: Bundle, line: int, change: object) -> str:
    lines = list(bundle.lines)
    obj = json.loads(lines[line])
    change(obj)  # type: ignore[operator]
    lines[line] = json.dumps(obj)
    return lines_text(lines)


def test_untouched_bundle_passes(tmp_path: Path, bundle: Bundle) -> None:
    code, out, err = audit(tmp_path, bundle.text(), bundle.log.verifier_key)
    assert code == 0, err
    assert "audit OK: 5 blocks (heights 0..4), 23 leaves" in out
    assert "1 signatures by keys not given" not in out  # node-2 signed every block
    assert "5 signatures by keys not given were not checked" in out


def test_untouched_bundle_json_report(tmp_path: Path, bundle: Bundle) -> None:
    code, out, _ = audit(tmp_path, bundle.text(), bundle.log.verifier_key, "--json")
    report = json.loads(out)
    assert code == 0
    assert report["ok"] is True
    assert report["tree_size"] == 23 and report["blocks"] == 5 and report["leaves"] == 23
    assert report["failure"] is None


def test_node_keys_are_checked(tmp_path: Path, bundle: Bundle) -> None:
    keys = tmp_path / "nodes.txt"
    keys.write_text("# node keys\n" + "".join(s.verifier_key + "\n" for s in bundle.nodes))
    code, out, err = audit(
        tmp_path, bundle.text(), bundle.log.verifier_key, "--node-keys", str(keys)
    )
    assert code == 0, err
    # 5 block signatures + 1 checkpoint cosignature by node-2.
    assert "6 node signatures verified" in out

    def flip_node_sig(obj: dict[str, Any]) -> None:
        sig = bytearray(base64.b64decode(obj["signatures"][1]["sig"]))
        sig[10] ^= 0x01
        obj["signatures"][1]["sig"] = base64.b64encode(bytes(sig)).decode()

    code, _, err = audit(
        tmp_path,
        edit_block(bundle, 2, flip_node_sig),
        bundle.log.verifier_key,
        "--node-keys",
        str(keys),
    )
    assert code == 1
    assert "block 2" in err and "node-2" in err and "does not verify" in err


def test_node_keys_as_log_json(tmp_path: Path, bundle: Bundle) -> None:
    keys = tmp_path / "log.json"
    keys.write_text(
        json.dumps(
            {"nodes": [{"node": s.name, "verifier_key": s.verifier_key} for s in bundle.nodes]}
        )
    )
    code, out, err = audit(
        tmp_path, bundle.text(), bundle.log.verifier_key, "--node-keys", str(keys)
    )
    assert code == 0, err
    assert "node signatures verified" in out


def test_wrong_log_key_fails_at_the_first_block(tmp_path: Path, bundle: Bundle) -> None:
    other = Signer.generate(bundle.log.name)
    code, _, err = audit(tmp_path, bundle.text(), other.verifier_key)
    assert code == 1
    assert "block 0" in err and "no leader signature under the log key" in err


def flip_leaf(obj: dict[str, Any]) -> None:
    leaves = obj["leaves"]
    raw = bytearray(base64.b64decode(leaves[-1]))
    raw[40] ^= 0x20  # one bit of one byte of the last leaf
    leaves[-1] = base64.b64encode(bytes(raw)).decode()


def flip_header_field(obj: dict[str, Any]) -> None:
    obj["header"]["term"] += 1


def flip_entries_root(obj: dict[str, Any]) -> None:
    root = obj["header"]["entries_root"]
    obj["header"]["entries_root"] = ("0" if root[0] != "0" else "1") + root[1:]


def flip_leader_sig(obj: dict[str, Any]) -> None:
    sig = bytearray(base64.b64decode(obj["signatures"][0]["sig"]))
    sig[0] ^= 0x80
    obj["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


def flip_hash_field(obj: dict[str, Any]) -> None:
    h = obj["hash"]
    obj["hash"] = ("0" if h[0] != "0" else "1") + h[1:]


def drop_a_leaf(obj: dict[str, Any]) -> None:
    obj["leaves"].pop()


def leaf_not_base64(obj: dict[str, Any]) -> None:
    obj["leaves"][2] = "not base64!"


@pytest.mark.parametrize(
    ("line", "change", "expected"),
    [
        (2, flip_leaf, ["block 2", "entries root", "indexes 8..8"]),
        (3, flip_leaf, ["block 3", "entries root", "indexes 9..16"]),
        (1, flip_header_field, ["block 1", "leader signature", "does not verify"]),
        (4, flip_entries_root, ["block 4", "leader signature", "does not verify"]),
        (3, flip_leader_sig, ["block 3", "leader signature", "does not verify"]),
        (0, flip_hash_field, ["block 0", "hash field"]),
        (3, drop_a_leaf, ["block 3", "count is 8", "7 leaves"]),
        (3, leaf_not_base64, ["block 3", "leaf 11", "base64"]),
    ],
    ids=[
        "leaf-byte-in-one-leaf-block",
        "leaf-byte",
        "header-field",
        "header-entries-root",
        "leader-signature",
        "hash-field",
        "missing-leaf",
        "leaf-not-base64",
    ],
)
def test_tampered_block_is_named(
    tmp_path: Path, bundle: Bundle, line: int, change: object, expected: list[str]
) -> None:
    code, _, err = audit(tmp_path, edit_block(bundle, line, change), bundle.log.verifier_key)
    assert code == 1
    assert "audit FAILED" in err
    for part in expected:
        assert part in err, err


def test_flipped_checkpoint_is_named(tmp_path: Path, bundle: Bundle) -> None:
    lines = list(bundle.lines)
    note = json.loads(lines[-1])["checkpoint"]
    origin, size, root, rest = note.split("\n", 3)
    raw = bytearray(base64.b64decode(root))
    raw[5] ^= 0x01
    lines[-1] = json.dumps(
        {"checkpoint": "\n".join([origin, size, base64.b64encode(bytes(raw)).decode(), rest])}
    )
    code, _, err = audit(tmp_path, lines_text(lines), bundle.log.verifier_key)
    assert code == 1
    assert "final checkpoint" in err and "line 6" in err


def test_checkpoint_of_another_size_is_named(tmp_path: Path, bundle: Bundle) -> None:
    # A correctly signed checkpoint that does not match the blocks.
    shorter = build([3, 5], log=bundle.log, nodes=bundle.nodes)
    lines = [*bundle.lines[:-1], shorter.lines[-1]]
    code, _, err = audit(tmp_path, lines_text(lines), bundle.log.verifier_key)
    assert code == 1
    assert "final checkpoint is for size 8" in err and "size 23" in err


def test_dropped_block_is_named(tmp_path: Path, bundle: Bundle) -> None:
    lines = [bundle.lines[i] for i in (0, 1, 3, 4, 5)]
    code, _, err = audit(tmp_path, lines_text(lines), bundle.log.verifier_key)
    assert code == 1
    assert "block 2, line 3" in err and "height 3 where 2 was expected" in err


def test_duplicated_block_is_named(tmp_path: Path, bundle: Bundle) -> None:
    lines = [bundle.lines[i] for i in (0, 1, 1, 2, 3, 4, 5)]
    code, _, err = audit(tmp_path, lines_text(lines), bundle.log.verifier_key)
    assert code == 1
    assert "block 2, line 3" in err and "height 1 where 2 was expected" in err


def test_reordered_blocks_are_named(tmp_path: Path, bundle: Bundle) -> None:
    lines = [bundle.lines[i] for i in (0, 2, 1, 3, 4, 5)]
    code, _, err = audit(tmp_path, lines_text(lines), bundle.log.verifier_key)
    assert code == 1
    assert "block 1, line 2" in err and "height 2 where 1 was expected" in err


def test_dropped_first_block_is_named(tmp_path: Path, bundle: Bundle) -> None:
    code, _, err = audit(tmp_path, lines_text(bundle.lines[1:]), bundle.log.verifier_key)
    assert code == 1
    assert "block 1, line 1" in err and "no frontier line" in err


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_truncated_mid_line_is_named(tmp_path: Path, bundle: Bundle, cut: float) -> None:
    text = bundle.text()
    code, _, err = audit(tmp_path, text[: int(len(text) * cut)], bundle.log.verifier_key)
    assert code == 1
    assert "audit FAILED" in err and "line" in err
    assert "truncated" in err


def test_truncated_at_line_end_is_named(tmp_path: Path, bundle: Bundle) -> None:
    code, _, err = audit(tmp_path, lines_text(bundle.lines[:-1]), bundle.log.verifier_key)
    assert code == 1
    assert "line 6" in err and "without its final checkpoint" in err


def test_empty_file_fails(tmp_path: Path, bundle: Bundle) -> None:
    code, _, err = audit(tmp_path, "", bundle.log.verifier_key)
    assert code == 1
    assert "without its final checkpoint" in err


def test_data_after_checkpoint_fails(tmp_path: Path, bundle: Bundle) -> None:
    code, _, err = audit(tmp_path, bundle.text() + bundle.lines[0] + "\n", bundle.log.verifier_key)
    assert code == 1
    assert "line 7" in err and "after the final checkpoint" in err


def test_partial_bundle_with_frontier(tmp_path: Path) -> None:
    partial = build([3, 5, 1, 8, 6], from_height=2)
    assert "frontier" in partial.lines[0]
    code, out, err = audit(tmp_path, partial.text(), partial.log.verifier_key)
    assert code == 0, err
    assert "3 blocks (heights 2..4), 15 leaves" in out

    # A wrong frontier cannot pass: the first block's signed tree root catches it.
    lines = list(partial.lines)
    obj = json.loads(lines[0])
    obj["frontier"]["hashes"][0] = "00" * 32
    lines[0] = json.dumps(obj)
    code, _, err = audit(tmp_path, lines_text(lines), partial.log.verifier_key)
    assert code == 1
    assert "block 2" in err and "frontier line is wrong" in err


def test_empty_log_bundle(tmp_path: Path) -> None:
    empty = build([])
    code, out, err = audit(tmp_path, empty.text(), empty.log.verifier_key)
    assert code == 0, err
    assert "no blocks" in out


def test_audit_bundle_api_reports_leaf_index() -> None:
    bundle = build([2, 3])
    lines = list(bundle.lines)
    obj = json.loads(lines[1])
    obj["leaves"][1] = base64.b64encode(b"x" * 70_000).decode()
    lines[1] = json.dumps(obj)
    report = audit_bundle((line.encode() + b"\n" for line in lines), bundle.log.verifier)
    assert not report.ok and report.failure is not None
    assert (report.failure.height, report.failure.index, report.failure.line) == (1, 3, 2)
    assert report.blocks == 1 and report.leaves == 2


def test_bad_key_is_a_usage_error(tmp_path: Path, bundle: Bundle) -> None:
    code, _, err = audit(tmp_path, bundle.text(), "not-a-key")
    assert code == 2
    assert "--key" in err


def test_missing_file_is_a_usage_error(tmp_path: Path, bundle: Bundle) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run(
        ["audit", str(tmp_path / "nope"), "--key", bundle.log.verifier_key],
        env={},
        out=out,
        err=err,
    )
    assert code == 2
    assert "No such file" in err.getvalue()
    assert "Traceback" not in err.getvalue()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), max_size=8))
def test_tree_extension_matches_rfc9162_roots(block_sizes: list[int]) -> None:
    from clients._audit import _extend
    from provledger import merkle

    tree = merkle.CompactRange()
    seen: list[bytes] = []
    for n, size in enumerate(block_sizes):
        block = [merkle.leaf_hash(f"{n}:{i}".encode()) for i in range(size)]
        seen += block
        tree = _extend(tree, block)
        assert tree.size == len(seen)
        assert tree.root() == merkle.root(seen)
