"""A real node's checkpoints, proofs and tiles verify with code that shares nothing with ours.

The Go reference implementations of the formats (golang.org/x/mod/sumdb/note for C2SP
signed notes, sumdb/tlog for RFC 6962/9162 hashing, proofs and tiles; Debian package
golang-golang-x-mod-dev) check them in tests/independent/verify.go, and pymerkle checks
the roots and inclusion paths. Each negative changes one byte of what the node served and
must be refused by name, so the positive cannot pass vacuously.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymerkle import (
    InclusionProof,
    InmemoryTree,
    InvalidProof,
    verify_consistency,
    verify_inclusion,
)

from provledger.note import Signer, cosign_checkpoint
from provledger.receipts import expand
from provledger.v1 import ledger_pb2 as pb
from tests.harness.node import start_node

pytestmark = pytest.mark.integration

VERIFY_GO = Path(__file__).parents[1] / "independent" / "verify.go"
GOCODE = Path("/usr/share/gocode")  # where Debian's golang-*-dev packages put Go source
GO_PACKAGES = "golang-go golang-golang-x-mod-dev"

# Batch sizes: trees of 1, 2, 8, 64 and 256 leaves (power-of-two edges, one full tile),
# 257 (a one-hash partial tile), then odd sizes up to 400. Blocks of at most 50 entries
# split the big batches, so receipts bring checkpoints at more sizes (58, 114, ...).
BATCHES = (1, 1, 6, 56, 192, 1, 60, 83)
TILE_WIDTH = 256
TILE_HEIGHT = 8


def event(n: int) -> bytes:
    """Event n: inference and training events, some with non-ASCII text in the leaf."""
    if n % 3 == 0:
        body: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"run-{n}",
            "source": "mlflow://tracking.test",
            "type": "provledger.training.v1",
            "time": "2026-11-26T12:00:00Z",
            "subject": f"model:fraud@{n}",
            "data": {
                "run_id": f"r-{n}",
                "model": {"name": "fraud", "version": str(n), "digest": {"sha256": "c" * 64}},
                "datasets": [{"name": "tx-2026 (Zürich)", "digest": {"sha256": "d" * 64}}],
                "code": {"repo": "https://git.example/ml.git", "commit": "e" * 40},
            },
        }
    else:
        body = {
            "specversion": "1.0",
            "id": f"inf-{n}",
            "source": "urn:app:independent",
            "type": "provledger.inference.v1",
            "time": "2026-11-26T12:00:00Z",
            "subject": "model:fraud@1",
            "data": {
                "model": {"name": "fraud", "version": "1"},
                "input_commitment": f"{n:064x}",
                "output_commitment": "b" * 64,
                "count": n,
            },
        }
    return json.dumps(body, ensure_ascii=False).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def note_root(note: str) -> tuple[int, bytes]:
    """Tree size and root of a checkpoint note, read straight from its C2SP body lines."""
    lines = note.split("\n")
    return int(lines[1]), base64.b64decode(lines[2], validate=True)


@dataclass
class Served:
    """Everything the node served, and the JSON document for verify.go built from it."""

    origin: str
    document: dict[str, Any]
    leaves: list[bytes]
    roots: dict[int, bytes]  # tree size -> root, from the signed checkpoints
    batch_sizes: list[int]  # tree size after each batch, from 0


def hash_tiles_for(size: int) -> set[tuple[int, int, int]]:
    """(level, index, width) of the C2SP tiles of a tree: full tiles, then the partial one."""
    out: set[tuple[int, int, int]] = set()
    level = 0
    while (hashes := size >> (TILE_HEIGHT * level)) > 0:
        out.update((level, i, TILE_WIDTH) for i in range(hashes // TILE_WIDTH))
        if hashes % TILE_WIDTH:
            out.add((level, hashes // TILE_WIDTH, hashes % TILE_WIDTH))
        level += 1
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    node = start_node(tmp_path_factory.mktemp("independent"), max_block_entries=50)
    try:
        yield collect(node.stub())
    finally:
        node.stop()


def collect(stub: Any) -> Served:
    info = stub.GetLogInfo(pb.GetLogInfoRequest(), timeout=10)
    notes = [stub.GetCheckpoint(pb.GetCheckpointRequest(), timeout=10).note]  # size 0
    inclusion: list[dict[str, Any]] = []
    receipts: list[pb.Receipt] = []
    batch_sizes = [0]
    n = 0
    for count in BATCHES:
        events = [event(n + i) for i in range(count)]
        n += count
        response = stub.AppendBatch(pb.AppendBatchRequest(events=events), timeout=60)
        for result in expand(response):
            assert isinstance(result, pb.Receipt), result
            receipts.append(result)
        checkpoint = stub.GetCheckpoint(pb.GetCheckpointRequest(), timeout=10)
        assert checkpoint.tree_size == n
        notes.append(checkpoint.note)
        batch_sizes.append(n)

    entries = [stub.GetEntry(pb.GetEntryRequest(index=i), timeout=10) for i in range(n)]
    leaves = [e.leaf for e in entries]
    assert [e.index for e in entries] == list(range(n))

    def add_inclusion(index: int, size: int, hashes: Any) -> None:
        inclusion.append(
            {
                "index": index,
                "tree_size": size,
                "leaf": b64(leaves[index]),
                "leaf_hash": entries[index].leaf_hash.hex(),
                "hashes": [h.hex() for h in hashes],
            }
        )

    # Every receipt's proof, against the checkpoint it came with.
    for r in receipts:
        assert note_root(r.checkpoint)[0] == r.tree_size, r
        notes.append(r.checkpoint)
        add_inclusion(r.index, r.tree_size, r.inclusion)
    # Proofs at each batch's tree size, by index, at the edges and inside.
    for size in batch_sizes[1:]:
        for index in sorted({0, 1, size // 2, size - 2, size - 1, 255, 256} & set(range(size))):
            proof = stub.GetInclusionProof(
                pb.InclusionProofRequest(index=index, tree_size=size), timeout=10
            )
            assert (proof.index, proof.tree_size) == (index, size)
            add_inclusion(index, size, proof.hashes)
    # At sizes no checkpoint was signed for (verify.go computes those roots from the leaves).
    for index, size in ((99, 100), (250, 300), (3, 399), (255, 256), (0, 3)):
        proof = stub.GetInclusionProof(
            pb.InclusionProofRequest(index=index, tree_size=size), timeout=10
        )
        add_inclusion(index, size, proof.hashes)
    # At the latest size (given with its checkpoint), by index and by leaf hash.
    for index in (0, 137, n - 1):
        proof = stub.GetInclusionProof(pb.InclusionProofRequest(index=index), timeout=10)
        notes.append(proof.checkpoint)
        add_inclusion(index, proof.tree_size, proof.hashes)
    proof = stub.GetInclusionProof(
        pb.InclusionProofRequest(leaf_hash=entries[300].leaf_hash), timeout=10
    )
    assert proof.index == 300
    add_inclusion(300, proof.tree_size, proof.hashes)

    roots: dict[int, bytes] = {}
    for note in notes:
        size, root = note_root(note)
        assert roots.setdefault(size, root) == root, f"two roots for tree size {size}"

    # Between every two batch sizes (0 -> N and N -> N are the spec's empty proofs), and
    # from every receipt's tree size to the latest.
    pairs = {(a, b) for a in batch_sizes for b in batch_sizes if a <= b}
    pairs |= {(s, n) for s in roots}
    consistency = []
    for first, second in sorted(pairs):
        hashes = stub.GetConsistencyProof(
            pb.ConsistencyProofRequest(first=first, second=second), timeout=10
        ).hashes
        if first == 0 or first == second:
            assert list(hashes) == [], (first, second)
        consistency.append(
            {
                "first": first,
                "second": second,
                "first_root": roots[first].hex(),
                "second_root": roots[second].hex(),
                "hashes": [h.hex() for h in hashes],
            }
        )
    # And between sizes no checkpoint was signed for (roots from the leaves, in verify.go).
    for first, second in ((3, 399), (100, 300), (255, 257), (5, 5), (0, 7)):
        hashes = stub.GetConsistencyProof(
            pb.ConsistencyProofRequest(first=first, second=second), timeout=10
        ).hashes
        consistency.append({"first": first, "second": second, "hashes": [h.hex() for h in hashes]})

    wanted: set[tuple[int, int, int]] = set()
    for size in roots:
        wanted |= hash_tiles_for(size)
    tiles = []
    for level, index, width in sorted(wanted):
        request = pb.GetTileRequest(level=level, index=index, width=width % TILE_WIDTH)
        data = stub.GetTile(request, timeout=10).data
        tiles.append({"level": level, "index": index, "width": width, "data": b64(data)})
    for index in range(-(-n // TILE_WIDTH)):
        width = min(TILE_WIDTH, n - index * TILE_WIDTH)
        request = pb.GetTileRequest(index=index, width=width % TILE_WIDTH, entries=True)
        data = stub.GetTile(request, timeout=10).data
        tiles.append(
            {"level": 0, "index": index, "width": width, "entries": True, "data": b64(data)}
        )

    # A witness's cosignature (made by our provledger.note) on the latest checkpoint;
    # verify.go checks it from the C2SP tlog-cosignature text, not from our code.
    witness = Signer.generate("witness.test/w1")
    latest = cosign_checkpoint(notes[len(BATCHES)], witness, 1_790_000_000)
    document = {
        "verifier_key": info.verifier_key,
        "checkpoint": latest,
        "checkpoints": notes,
        "cosigner_keys": [witness.verifier_key, witness.verifier.cosignature_verifier_key],
        "inclusion": inclusion,
        "consistency": consistency,
        "leaves": [b64(leaf) for leaf in leaves],
        "tiles": tiles,
    }
    return Served(info.origin, document, leaves, roots, batch_sizes)


@pytest.fixture(scope="module")
def verifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """verify.go built once per session, from Debian's packaged source, without network."""
    go = shutil.which("go")
    if go is None:
        pytest.fail(f"no `go` on PATH: install the Debian packages {GO_PACKAGES}")
    for package in ("note", "tlog"):
        if not (GOCODE / "src/golang.org/x/mod/sumdb" / package).is_dir():
            pytest.fail(
                f"no golang.org/x/mod/sumdb/{package} under {GOCODE}: install {GO_PACKAGES}"
            )
    out = tmp_path_factory.mktemp("go")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{out / 'gopath'}:{GOCODE}",
        "GOCACHE": str(out / "cache"),
        "GOENV": "off",
        "GOFLAGS": "",
        "GOPROXY": "off",
        "CGO_ENABLED": "0",
    }
    binary = out / "verify"
    build = subprocess.run(
        [go, "build", "-o", str(binary), str(VERIFY_GO)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if build.returncode != 0:
        pytest.fail(f"go build {VERIFY_GO.name} failed:\n{build.stderr}")
    return binary


def run_verifier(binary: Path, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [str(binary)], input=json.dumps(document), capture_output=True, text=True, timeout=60
    )
    assert done.returncode in (0, 1), f"verify.go: exit {done.returncode}\n{done.stderr}"
    return done.returncode, json.loads(done.stdout)


def test_go_reference_implementations_accept_everything_served(
    verifier: Path, served: Served
) -> None:
    document = served.document
    code, result = run_verifier(verifier, document)
    assert (code, result["failures"]) == (0, [])
    signed_sizes = set(served.roots)
    assert result == {
        "ok": True,
        "checkpoints": 1 + len(document["checkpoints"]),
        "cosignatures": 2,
        "inclusion": len(document["inclusion"]),
        "consistency": len(document["consistency"]),
        "leaves": sum(BATCHES),
        "tiles": len(document["tiles"]),
        "trees_read_from_tiles": len(signed_sizes - {0}),
        "failures": [],
    }
    # The document covers what it claims to: the empty tree, every batch, both edges.
    assert set(served.batch_sizes) <= signed_sizes
    assert {(c["first"], c["second"]) for c in document["consistency"]} >= {(0, 400), (64, 64)}
    assert {(i["index"], i["tree_size"]) for i in document["inclusion"]} >= {(0, 1), (256, 257)}


def _flip(data: bytes, at: int = -1) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def _flip_b64(text: str, at: int = -1) -> str:
    return b64(_flip(base64.b64decode(text), at))


def _flip_hex(text: str) -> str:
    return _flip(bytes.fromhex(text)).hex()


def _flip_signature(note: str, name: str) -> str:
    """The note with the last byte of `name`'s signature line flipped."""
    lines = note.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(f"\u2014 {name} "):
            prefix, sig = line.rsplit(" ", 1)
            lines[i] = f"{prefix} {_flip_b64(sig)}"
            return "\n".join(lines)
    raise AssertionError(f"no signature by {name} in {note!r}")


def _find(items: list[Any], match: Callable[[Any], bool]) -> int:
    return next(i for i, item in enumerate(items) if match(item))


Mutation = Callable[[dict[str, Any], Served], str]  # mutates the document, returns the prefix


def _checkpoint_signature(d: dict[str, Any], s: Served) -> str:
    d["checkpoint"] = _flip_signature(d["checkpoint"], s.origin)
    return "checkpoint: note.Open: invalid signature"


def _checkpoint_root(d: dict[str, Any], s: Served) -> str:
    lines = d["checkpoint"].split("\n")
    lines[2] = _flip_b64(lines[2], 0)
    d["checkpoint"] = "\n".join(lines)
    return "checkpoint: note.Open: invalid signature"


def _earlier_checkpoint_signature(d: dict[str, Any], s: Served) -> str:
    k = _find(d["checkpoints"], lambda note: note_root(note)[0] == 64)
    d["checkpoints"][k] = _flip_signature(d["checkpoints"][k], s.origin)
    return f"checkpoints[{k}]: note.Open: invalid signature"


def _another_log_key(d: dict[str, Any], s: Served) -> str:
    d["verifier_key"] = Signer.generate(s.origin).verifier_key
    return "checkpoint: note.Open: note has no verifiable signatures"


def _cosignature(d: dict[str, Any], s: Served) -> str:
    d["checkpoint"] = _flip_signature(d["checkpoint"], "witness.test/w1")
    return "checkpoint: cosigner witness.test/w1: invalid cosignature"


def _inclusion_hash(d: dict[str, Any], s: Served) -> str:
    k = _find(d["inclusion"], lambda i: i["tree_size"] == 400 and i["index"] == 137)
    d["inclusion"][k]["hashes"][3] = _flip_hex(d["inclusion"][k]["hashes"][3])
    return f"inclusion[{k}] (index 137, tree size 400): tlog.CheckRecord"


def _inclusion_leaf(d: dict[str, Any], s: Served) -> str:
    k = _find(d["inclusion"], lambda i: i["tree_size"] == 257 and i["index"] == 256)
    item = d["inclusion"][k]
    item["leaf"] = _flip_b64(item["leaf"], 40)
    del item["leaf_hash"]
    return f"inclusion[{k}] (index 256, tree size 257): leaf differs"


def _consistency_hash(d: dict[str, Any], s: Served) -> str:
    k = _find(d["consistency"], lambda c: (c["first"], c["second"]) == (64, 257))
    d["consistency"][k]["hashes"][0] = _flip_hex(d["consistency"][k]["hashes"][0])
    return f"consistency[{k}] (64 -> 257): tlog.CheckTree"


def _consistency_from_empty(d: dict[str, Any], s: Served) -> str:
    k = _find(d["consistency"], lambda c: (c["first"], c["second"]) == (0, 8))
    d["consistency"][k]["hashes"] = [d["inclusion"][0]["leaf_hash"]]
    return f"consistency[{k}] (0 -> 8): from the empty tree the proof must be empty"


def _leaf_in_log(d: dict[str, Any], s: Served) -> str:
    d["leaves"][100] = _flip_b64(d["leaves"][100], 10)
    return f"leaves: the first {min(size for size in s.roots if size > 100)} leaves hash to"


def _hash_tile(d: dict[str, Any], s: Served) -> str:
    k = _find(d["tiles"], lambda t: (t["level"], t["index"], t["width"]) == (0, 0, 256))
    d["tiles"][k]["data"] = _flip_b64(d["tiles"][k]["data"], 32 * 200)
    return f"tiles[{k}] (tile 0/0 width 256): differs from tlog.ReadTileData"


def _entry_bundle(d: dict[str, Any], s: Served) -> str:
    k = _find(d["tiles"], lambda t: t.get("entries", False) and t["index"] == 1)
    d["tiles"][k]["data"] = _flip_b64(d["tiles"][k]["data"], -3)
    return f"tiles[{k}] (entry bundle 0/1 width 144): entry 143 is not leaves[399]"


MUTATIONS: dict[str, Mutation] = {
    "checkpoint signature": _checkpoint_signature,
    "checkpoint root": _checkpoint_root,
    "earlier checkpoint signature": _earlier_checkpoint_signature,
    "another log key of the same name": _another_log_key,
    "cosignature": _cosignature,
    "inclusion proof hash": _inclusion_hash,
    "inclusion leaf": _inclusion_leaf,
    "consistency proof hash": _consistency_hash,
    "hash in an empty consistency proof": _consistency_from_empty,
    "a leaf of the log": _leaf_in_log,
    "hash tile": _hash_tile,
    "entry bundle": _entry_bundle,
}


@pytest.mark.parametrize("mutation", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_go_reference_implementations_refuse_one_changed_byte(
    verifier: Path, served: Served, mutation: Mutation
) -> None:
    document = copy.deepcopy(served.document)
    expected = mutation(document, served)
    code, result = run_verifier(verifier, document)
    assert code == 1 and not result["ok"]
    assert result["failures"][0].startswith(expected), result["failures"]


def test_pymerkle_computes_the_same_roots_and_inclusion_paths(served: Served) -> None:
    tree = InmemoryTree(algorithm="sha256")
    tree.append_entries(served.leaves)
    for size, root in served.roots.items():
        assert tree.get_root(size) == root, f"tree size {size}"
    # Signed roots, and pymerkle's own where no checkpoint was signed for a size.
    roots = {size: tree.get_root(size) for size in range(1, len(served.leaves) + 1)}
    roots.update(served.roots)
    for item in served.document["inclusion"]:
        index, size = item["index"], item["tree_size"]
        leaf_hash = bytes.fromhex(item["leaf_hash"])
        assert tree.get_leaf(index + 1) == leaf_hash
        # pymerkle's inclusion path is the leaf hash followed by the RFC 9162 PATH.
        path = [leaf_hash, *(bytes.fromhex(h) for h in item["hashes"])]
        theirs = tree.prove_inclusion(index + 1, size)
        assert theirs.path == path, (index, size)
        ours = InclusionProof("sha256", True, size, index + 1, theirs.rule, path)
        verify_inclusion(leaf_hash, roots[size], ours, index=index + 1, size=size)
    for item in served.document["consistency"]:
        first, second = item["first"], item["second"]
        if first > 0:
            proof = tree.prove_consistency(first, second)
            verify_consistency(roots[first], roots[second], proof)
    # And pymerkle refuses a path with one byte changed.
    item = served.document["inclusion"][-1]
    leaf_hash = bytes.fromhex(item["leaf_hash"])
    theirs = tree.prove_inclusion(item["index"] + 1, item["tree_size"])
    path = [leaf_hash, *(bytes.fromhex(h) for h in item["hashes"])]
    path[2] = _flip(path[2])
    bad = InclusionProof("sha256", True, item["tree_size"], item["index"] + 1, theirs.rule, path)
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf_hash, roots[item["tree_size"]], bad)
