"""The `provledger` command line (SPEC §4): the only place in the package that exits.

Exit codes: 0 ok; 1 verification failed, drift found, or the ledger refused the request;
2 usage error; 3 ledger unavailable. Errors are one line on stderr; `--verbose` adds the
traceback. Tables are for people; `--json` gives JSON (NDJSON for lists) for machines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, NoReturn

import msgspec

from clients._audit import AuditReport, audit_bundle, load_node_keys
from clients._client import LedgerClient, RetryPolicy, parse_url
from clients._model import BatchResult, Entry, Receipt
from clients._state import StateTracker, default_state_path
from clients._supervisor import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    RunOptions,
    UsageError,
    run_supervisor,
)
from clients._tls import TlsFiles
from clients._verify import as_verifier, checked_checkpoint
from provledger.errors import (
    ConsistencyError,
    InvalidEventError,
    InvalidRequestError,
    LedgerError,
    UnavailableError,
    VerificationError,
    problem,
)
from provledger.merkle import leaf_hash, verify_inclusion
from provledger.note import Checkpoint, Verifier

__all__ = ["main", "run"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

DEFAULT_URL = "http://127.0.0.1:8080"
# `append` keeps this many batch requests under way, so that the ledger checks one while it
# commits the other.
BATCHES_IN_FLIGHT = 2


class _Usage(Exception):
    """A usage error found after parsing (exit 2)."""


# -- output helpers ------------------------------------------------------------


class _Progress:
    """A one-line progress display on stderr, only when stderr is a terminal."""

    def __init__(self, err: IO[str], enabled: bool) -> None:
        self.err = err
        self.enabled = enabled and err.isatty()
        self.last = 0.0
        self.shown = False

    def update(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if force or now - self.last >= 0.25:
            self.last = now
            self.err.write("\r\x1b[2K" + text)
            self.err.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            self.err.write("\r\x1b[2K")
            self.err.flush()


_ENCODER = msgspec.json.Encoder()  # compact, keys in insertion order; a sixth of json.dumps's time


def _dump(obj: Any) -> str:
    return _ENCODER.encode(obj).decode()


def _table(rows: Sequence[Sequence[str]], out: IO[str]) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _pairs(pairs: Sequence[tuple[str, str]], out: IO[str]) -> None:
    width = max(len(k) for k, _ in pairs)
    for k, v in pairs:
        out.write(f"{k.ljust(width)}  {v}\n")


# -- argument parsing ---------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of errors")


def _client_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection")
    g.add_argument(
        "--url",
        help="a gateway http(s):// URL or a node grpc://host:port "
        f"(default: $PROVLEDGER_URL, else {DEFAULT_URL})",
    )
    g.add_argument("--token", help="bearer token (default: $PROVLEDGER_TOKEN)")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds per call (default 30)")
    g.add_argument(
        "--retries",
        type=int,
        default=4,
        help="retries with backoff while the ledger is unavailable (default 4)",
    )
    g.add_argument("--tls-ca", type=Path, help="PEM of the CA that signed the server certificate")
    g.add_argument("--tls-cert", type=Path, help="client certificate (PEM) for mutual TLS")
    g.add_argument("--tls-key", type=Path, help="client private key (PEM) for mutual TLS")
    p.add_argument("--json", action="store_true", help="JSON (NDJSON for lists) for machines")
    _common(p)
    return p


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _port(text: str) -> int:
    value = _non_negative(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provledger",
        description="A verifiable provenance ledger for machine-learning systems.",
        epilog="Exit codes: 0 ok, 1 verification failed / drift / refused, 2 usage error, "
        "3 ledger unavailable.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    client = _client_options()

    # servers
    p = sub.add_parser(
        "run",
        help="the embedded default: one node and the gateway on 127.0.0.1",
        description="Start one node and the REST gateway on 127.0.0.1 (keys generated on "
        "first start, configuration written to the data directory); print the gateway URL "
        "and the log's verifier key; stop both on Ctrl-C or SIGTERM.",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("provledger-data"),
        help="data directory (default ./provledger-data)",
    )
    p.add_argument("--http-port", type=_port, help=f"gateway port (default {DEFAULT_HTTP_PORT})")
    p.add_argument("--grpc-port", type=_port, help=f"node gRPC port (default {DEFAULT_GRPC_PORT})")
    p.add_argument(
        "--startup-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for each process to become ready (default 60)",
    )
    p.add_argument(
        "--show-logs",
        action="store_true",
        help="let the node and gateway log to this terminal instead of DATA_DIR/logs",
    )
    p.add_argument("--json", action="store_true", help="print the startup facts as one JSON line")
    _common(p)

    p = sub.add_parser(
        "node", help="run one ledger node", description="Run one ledger node (python -m ledger)."
    )
    p.add_argument("--config", type=Path, required=True, help="node TOML configuration")
    _common(p)
    p = sub.add_parser(
        "gateway",
        help="run the REST gateway",
        description="Run the REST gateway (python -m gateway).",
    )
    p.add_argument("--config", type=Path, required=True, help="gateway TOML configuration")
    _common(p)

    p = sub.add_parser(
        "cluster",
        help="a local multi-node cluster: init, up, status",
        description="A cluster on one machine: nodes that share one log, with etcd (the "
        "system's `etcd` binary) as leader lease and commit point, mutual TLS with a "
        "private CA, and a gateway in front.",
    )
    csub = p.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    c = csub.add_parser(
        "init",
        help="write keys, certificates and configs for a cluster",
        description="Write into DIR a private CA and mutual TLS certificates, the log key "
        "all nodes share and one key per node, node and gateway configurations, and three "
        "etcd member configurations, on free loopback ports. DIR must not hold a cluster.",
    )
    c.add_argument("--nodes", type=int, default=3, help="ledger nodes (1..9, default 3)")
    c.add_argument("--dir", type=Path, required=True, help="the cluster's directory")
    c.add_argument("--origin", help="the log's origin (default localhost/provledger/<random>)")
    c.add_argument("--json", action="store_true", help="print the written layout as JSON")
    _common(c)
    c = csub.add_parser(
        "up",
        help="start the cluster that DIR configures",
        description="Start the etcd members, the nodes and a gateway that DIR configures, "
        "write each PID to DIR/run/<name>.pid, print the gateway URL, and stop them all on "
        "Ctrl-C or SIGTERM.",
    )
    c.add_argument("--dir", type=Path, required=True, help="the cluster's directory")
    c.add_argument("--http-port", type=_port, help="gateway port (default: as initialised, 8080)")
    c.add_argument(
        "--startup-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for each process to become ready (default 60)",
    )
    _common(c)
    c = csub.add_parser(
        "status",
        help="role, term, height and head of every node",
        description="Ask every node of DIR for its role (leader or follower), term, block "
        "height and head hash; show its PID and whether it answered. Exit 3 when no node "
        "leads.",
    )
    c.add_argument("--dir", type=Path, required=True, help="the cluster's directory")
    c.add_argument("--json", action="store_true", help="JSON for machines")
    _common(c)

    p = sub.add_parser(
        "reconcile",
        help="GitOps drift report (not available yet)",
        description="GitOps reconciliation: not available in this version yet.",
    )
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--branch", required=True)
    _common(p)
    p = sub.add_parser(
        "anchor",
        help="publish the latest checkpoint (not available yet)",
        description="Anchoring: not available in this version yet.",
    )
    _common(p)

    # clients
    p = sub.add_parser(
        "append",
        parents=[client],
        help="append JSON or NDJSON events; print receipts",
        description="Append events read from FILE (or stdin): one JSON object, a JSON array, "
        "or NDJSON (one event per line). Prints one receipt per event as NDJSON, in input "
        "order, `null` where the ledger refused the event (the reason goes to stderr). Two "
        "batches are under way at a time. If the ledger stays unavailable, the receipts "
        "printed are for the lines before the failed batch; run the same input again to "
        "finish: an event already appended gets its original receipt.",
    )
    p.add_argument("file", nargs="?", default="-", metavar="FILE|-")
    p.add_argument(
        "--batch-size",
        type=int,
        default=500,
        help="events per batch request (1..10000, default 500)",
    )
    p.add_argument(
        "--key",
        metavar="VKEY",
        help="verify each receipt's checkpoint and inclusion proof under this key",
    )

    p = sub.add_parser(
        "get",
        parents=[client],
        help="read entries, blocks, the checkpoint or log facts",
        description="Read one entry by INDEX or by --source/--id, a page of entries by "
        "--type/--subject, a block, the checkpoint note or the log's facts.",
    )
    p.add_argument("index", nargs="?", type=_non_negative, help="entry index")
    p.add_argument("--source")
    p.add_argument("--id")
    p.add_argument("--type", dest="type_", metavar="TYPE")
    p.add_argument("--subject")
    p.add_argument("--after", type=_non_negative)
    p.add_argument("--limit", type=_non_negative, default=0)
    p.add_argument("--all", action="store_true", help="follow pages to the end")
    p.add_argument("--block", type=_non_negative, metavar="HEIGHT")
    p.add_argument("--checkpoint", action="store_true", help="the latest checkpoint note")
    p.add_argument("--log", action="store_true", help="origin, size, keys (/v1/log)")

    p = sub.add_parser(
        "proof", help="inclusion and consistency proofs", description="Fetch RFC 9162 proofs."
    )
    psub = p.add_subparsers(dest="proof_kind", metavar="KIND", required=True)
    q = psub.add_parser(
        "inclusion",
        parents=[client],
        help="PATH(index, tree size)",
        description="Inclusion proof of an entry; with --key and no --tree-size it is "
        "verified against the latest checkpoint (exit 1 if it does not hold).",
    )
    target = q.add_mutually_exclusive_group(required=True)
    target.add_argument("--index", type=_non_negative)
    target.add_argument("--leaf-hash", metavar="HEX")
    q.add_argument("--tree-size", type=_non_negative)
    q.add_argument("--key", metavar="VKEY", help="verify against the served checkpoint")
    q = psub.add_parser(
        "consistency",
        parents=[client],
        help="PROOF(first, second)",
        description="Consistency proof between two tree sizes.",
    )
    q.add_argument("--first", type=_non_negative, required=True)
    q.add_argument("--second", type=_non_negative, required=True)

    p = sub.add_parser(
        "verify",
        parents=[client],
        help="verify the latest checkpoint and advance trust",
        description="Fetch the latest checkpoint, verify its signature under VKEY and its "
        "consistency with the checkpoint the state file last trusted for that log, then "
        "trust it. With an entry named, verify its inclusion too. Exit 1 on a fork or "
        "rollback (a smaller tree still served after 2 s of asking again), naming both "
        "checkpoints.",
    )
    p.add_argument("--key", required=True, metavar="VKEY", help="the log's verifier key")
    p.add_argument("--state", type=Path, help=f"state file (default {default_state_path()})")
    entry = p.add_mutually_exclusive_group()
    entry.add_argument("--index", type=_non_negative)
    entry.add_argument("--source")
    p.add_argument("--id", help="with --source: the event id")

    p = sub.add_parser(
        "export",
        parents=[client],
        help="write an audit bundle (NDJSON as /v1/export)",
        description="Write blocks FROM to TO with their leaves and signatures, and the "
        "final checkpoint, to FILE (as GET /v1/export).",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="output file ('-': stdout)")
    p.add_argument("--from", dest="from_height", type=_non_negative, default=0, metavar="H")
    p.add_argument("--to", dest="to_height", type=_non_negative, metavar="K")

    p = sub.add_parser(
        "audit",
        help="check an audit bundle offline",
        description="Recompute every leaf hash, entries root, header chain link and tree "
        "root of a bundle, and check every leader signature and the final checkpoint under "
        "VKEY (node signatures under --node-keys). One pass, constant memory, no network. "
        "Exit 0 if all holds, 1 with the first failure named.",
    )
    p.add_argument("file", metavar="FILE", help="bundle ('-': stdin)")
    p.add_argument("--key", required=True, metavar="VKEY", help="the log's verifier key")
    p.add_argument(
        "--node-keys",
        type=Path,
        metavar="FILE",
        help="node verifier keys: one per line, a JSON list, or /v1/log JSON",
    )
    p.add_argument("--json", action="store_true")
    _common(p)
    return parser


# -- commands -------------------------------------------------------------------


def _client(args: argparse.Namespace, env: dict[str, str]) -> LedgerClient:
    url = args.url or env.get("PROVLEDGER_URL") or DEFAULT_URL
    try:
        parse_url(url)
    except ValueError as e:
        raise _Usage(f"--url: {e}") from None
    tls = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        tls = TlsFiles(args.tls_ca, args.tls_cert, args.tls_key)
    return LedgerClient(
        url,
        token=args.token or env.get("PROVLEDGER_TOKEN") or None,
        retry=RetryPolicy(attempts=max(1, args.retries + 1)),
        timeout=args.timeout,
        tls=tls,
    )


def _verifier(text: str, flag: str = "--key") -> Verifier:
    try:
        return as_verifier(text)
    except ValueError as e:
        raise _Usage(f"{flag}: {e}") from None


def _input_events(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, event JSON bytes) from one JSON value or NDJSON."""
    first = b""
    for first in stream:
        if first.strip():
            break
    else:
        return
    try:
        value = json.loads(first)
        ndjson = isinstance(value, dict)
    except ValueError:
        ndjson = False
    if ndjson:
        yield 1, first.strip()
        for n, line in enumerate(stream, 2):
            if not line.strip():
                continue
            try:
                if not isinstance(json.loads(line), dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                raise _Usage(f"line {n}: not a JSON event: {e}") from None
            yield n, line.strip()
        return
    whole = first + stream.read()
    try:
        value = json.loads(whole)
    except ValueError as e:
        raise _Usage(f"input is neither JSON nor NDJSON: {e}") from None
    if isinstance(value, dict):
        yield 1, whole.strip()
    elif isinstance(value, list):
        for i, event in enumerate(value):
            yield i + 1, json.dumps(event, ensure_ascii=False).encode()
    else:
        raise _Usage("input must be a JSON object, an array of objects, or NDJSON")


def _problem_of(error: LedgerError) -> dict[str, Any]:
    body = problem(error)
    body["status"] = error.status
    return body


def cmd_append(args: argparse.Namespace, env: dict[str, str], out: IO[str], err: IO[str]) -> int:
    if not 1 <= args.batch_size <= 10_000:
        raise _Usage("--batch-size must be 1 to 10000")
    key = _verifier(args.key) if args.key else None
    checkpoints: dict[str, Checkpoint] = {}
    failures = 0
    try:
        stream_cm: contextlib.AbstractContextManager[IO[bytes]] = (
            contextlib.nullcontext(sys.stdin.buffer) if args.file == "-" else open(args.file, "rb")  # noqa: SIM115 (entered below)
        )
    except OSError as e:
        raise _Usage(f"{args.file}: {e.strerror}") from None

    def check(receipt: Receipt) -> None:
        if key is None:
            return
        # One signature check per distinct checkpoint; every inclusion proof is checked.
        checkpoint = checkpoints.get(receipt.checkpoint)
        if checkpoint is None:
            checkpoint = checked_checkpoint(receipt.checkpoint, key)
            checkpoints[receipt.checkpoint] = checkpoint
        if checkpoint.size != receipt.tree_size:
            raise VerificationError(
                f"receipt for index {receipt.index} claims tree size {receipt.tree_size}, "
                f"its checkpoint is for size {checkpoint.size}"
            )
        verify_inclusion(
            receipt.index,
            receipt.tree_size,
            receipt.leaf_hash,
            receipt.inclusion,
            checkpoint.root_hash,
        )

    def report(batch: list[tuple[int, bytes]], result: BatchResult) -> None:
        nonlocal failures
        errors = {f.position: f.error for f in result.failures}
        for pos, receipt in enumerate(result.receipts):
            if receipt is None:
                failures += 1
                e = errors.get(pos)
                detail = _describe(e) if e else "refused"
                err.write(f"provledger append: line {batch[pos][0]}: {detail}\n")
                out.write("null\n")
            else:
                check(receipt)
                out.write(_dump(receipt.to_json()) + "\n")
        out.flush()

    with (
        _client(args, env) as client,
        stream_cm as stream,
        ThreadPoolExecutor(BATCHES_IN_FLIGHT, thread_name_prefix="append") as sender,
    ):
        # The batches under way, oldest first: their answers are printed in input order.
        under_way: deque[tuple[list[tuple[int, bytes]], Future[BatchResult]]] = deque()

        def send(batch: list[tuple[int, bytes]]) -> None:
            raws = [raw for _, raw in batch]
            under_way.append((batch, sender.submit(client.append_batch, raws)))
            if len(under_way) >= BATCHES_IN_FLIGHT:
                oldest, answer = under_way.popleft()
                report(oldest, answer.result())

        events = _input_events(stream)
        first = next(events, None)
        if first is None:
            raise _Usage("no events in the input")
        second = next(events, None)
        if second is None:
            # One event: the single append, whose answer says if it was a retry.
            try:
                receipt = client.append(first[1])
            except UnavailableError:
                raise
            except LedgerError as e:
                err.write(f"provledger append: line {first[0]}: {_describe(e)}\n")
                out.write("null\n")
                return EXIT_FAILED
            check(receipt)
            out.write(_dump(receipt.to_json()) + "\n")
            return EXIT_OK
        pending = [first, second]
        for item in events:
            pending.append(item)
            if len(pending) >= args.batch_size:
                send(pending)
                pending = []
        if pending:
            send(pending)
        while under_way:
            batch, answer = under_way.popleft()
            report(batch, answer.result())
    return EXIT_FAILED if failures else EXIT_OK


def _describe(e: LedgerError) -> str:
    if isinstance(e, InvalidEventError) and e.errors:
        return "; ".join(str(f) for f in e.errors)
    return e.detail


def _entry_row(e: Entry) -> list[str]:
    try:
        event = e.event
        submitter = e.submitter
    except (ValueError, KeyError):
        return [str(e.index), str(e.block_height), "?", "?", "?", "", "", "(undecodable leaf)"]
    return [
        str(e.index),
        str(e.block_height),
        str(event.get("type", "")).removeprefix("provledger.").removesuffix(".v1"),
        str(event.get("source", "")),
        str(event.get("id", "")),
        str(event.get("subject", "") or ""),
        str(event.get("time", "")),
        submitter,
    ]


_ENTRY_HEADER = ["INDEX", "BLOCK", "TYPE", "SOURCE", "ID", "SUBJECT", "TIME", "SUBMITTER"]


def cmd_get(args: argparse.Namespace, env: dict[str, str], out: IO[str], err: IO[str]) -> int:
    modes = sum(
        [
            args.index is not None,
            args.source is not None or args.id is not None,
            args.block is not None,
            args.checkpoint,
            args.log,
        ]
    )
    query = args.type_ is not None or args.subject is not None or args.after is not None
    if modes > 1 or (modes == 1 and query):
        raise _Usage(
            "name one thing: INDEX, --source/--id, --block, --checkpoint, --log or a query"
        )
    if (args.source is None) != (args.id is None):
        raise _Usage("--source and --id go together")
    with _client(args, env) as client:
        if args.checkpoint:
            cp = client.checkpoint()
            out.write(_dump({"checkpoint": cp.note}) + "\n" if args.json else cp.note)
            return EXIT_OK
        if args.log:
            info = client.log_info()
            if args.json:
                out.write(_dump(info.to_json()) + "\n")
            else:
                _pairs(
                    [
                        ("origin", info.origin),
                        ("tree size", str(info.tree_size)),
                        ("root hash", info.root_hash.hex()),
                        (
                            "block height",
                            "-" if info.block_height is None else str(info.block_height),
                        ),
                        ("verifier key", info.verifier_key),
                    ]
                    + [(f"node {n.node}", n.verifier_key) for n in info.nodes],
                    out,
                )
            return EXIT_OK
        if args.block is not None:
            block = client.get_block(args.block)
            if args.json:
                out.write(_dump(block.to_json()) + "\n")
            else:
                h = block.header
                _pairs(
                    [
                        ("height", str(h.height)),
                        ("hash", block.hash.hex()),
                        ("prev hash", h.prev_hash.hex()),
                        ("entries", f"{h.first_index}..{h.first_index + h.count - 1} ({h.count})"),
                        ("entries root", h.entries_root.hex()),
                        ("tree", f"size {h.tree_size} root {h.tree_root.hex()}"),
                        ("timestamp", h.timestamp),
                        ("leader", f"{h.leader} (term {h.term})"),
                    ]
                    + [(f"signed by {s.node}", s.key_id) for s in block.signatures],
                    out,
                )
            return EXIT_OK
        if args.index is not None or args.source is not None:
            entry = (
                client.get_entry(args.index)
                if args.index is not None
                else client.lookup(args.source, args.id)
            )
            if args.json:
                out.write(_dump(entry.to_json()) + "\n")
            else:
                _pairs(
                    [
                        ("index", str(entry.index)),
                        ("block", str(entry.block_height)),
                        ("leaf hash", entry.leaf_hash.hex()),
                        ("submitter", entry.submitter),
                    ],
                    out,
                )
                out.write(json.dumps(entry.event, indent=2, ensure_ascii=False) + "\n")
            return EXIT_OK
        # A query: one page, or every page with --all.
        rows: list[list[str]] = []
        after = args.after
        while True:
            page = client.query(
                type=args.type_, subject=args.subject, after=after, limit=args.limit
            )
            for e in page.entries:
                if args.json:
                    out.write(_dump(e.to_json()) + "\n")
                else:
                    rows.append(_entry_row(e))
            if not args.all or page.next_after is None:
                break
            after = page.next_after
        if not args.json:
            if rows:
                _table([_ENTRY_HEADER, *rows], out)
            else:
                err.write("no entries\n")
            if not args.all and page.next_after is not None:
                err.write(f"more: --after {page.next_after}\n")
    return EXIT_OK


def cmd_proof(args: argparse.Namespace, env: dict[str, str], out: IO[str], err: IO[str]) -> int:
    with _client(args, env) as client:
        if args.proof_kind == "consistency":
            if args.first > args.second:
                raise _Usage("--first must not exceed --second")
            cproof = client.consistency_proof(args.first, args.second)
            if args.json:
                out.write(_dump(cproof.to_json()) + "\n")
            else:
                _pairs([("first", str(cproof.first)), ("second", str(cproof.second))], out)
                for i, h in enumerate(cproof.hashes):
                    out.write(f"  [{i}] {h.hex()}\n")
            return EXIT_OK
        key = _verifier(args.key) if args.key else None
        if key is not None and args.tree_size is not None:
            raise _Usage("--key verifies against the latest checkpoint: drop --tree-size")
        leaf = None
        if args.leaf_hash is not None:
            try:
                leaf = bytes.fromhex(args.leaf_hash)
                if len(leaf) != 32:
                    raise ValueError
            except ValueError:
                raise _Usage("--leaf-hash: expected 64 hex characters") from None
        proof = client.inclusion_proof(args.index, leaf_hash=leaf, tree_size=args.tree_size)
        verified = None
        if key is not None:
            if not proof.checkpoint:
                raise VerificationError("the ledger sent no checkpoint with the proof")
            cp = checked_checkpoint(proof.checkpoint, key)
            if cp.size != proof.tree_size:
                raise VerificationError(
                    f"proof is for tree size {proof.tree_size}, its checkpoint for {cp.size}"
                )
            verify_inclusion(
                proof.index, proof.tree_size, proof.leaf_hash, proof.hashes, cp.root_hash
            )
            verified = cp
        if args.json:
            body = proof.to_json()
            if key is not None:
                body["verified"] = True
            out.write(_dump(body) + "\n")
        else:
            _pairs(
                [
                    ("index", str(proof.index)),
                    ("tree size", str(proof.tree_size)),
                    ("leaf hash", proof.leaf_hash.hex()),
                ],
                out,
            )
            for i, h in enumerate(proof.hashes):
                out.write(f"  [{i}] {h.hex()}\n")
            if verified is not None:
                out.write(
                    f"verified: leaf {proof.index} is in {verified.origin} at tree size "
                    f"{verified.size} (root {verified.root_hash.hex()})\n"
                )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, env: dict[str, str], out: IO[str], err: IO[str]) -> int:
    key = _verifier(args.key)
    if (args.source is None) != (args.id is None):
        raise _Usage("--source and --id go together")
    tracker = StateTracker(args.state)
    with _client(args, env) as client:
        # The entry first: every checkpoint fetched after it covers it (SPEC §2 freshness).
        entry = None
        if args.index is not None:
            entry = client.get_entry(args.index)
        elif args.source is not None:
            entry = client.lookup(args.source, args.id)
        try:
            advance = client.verify_checkpoint(tracker, verifier=key)
        except ConsistencyError as e:
            _evidence(e, args.json, out, err)
            return EXIT_FAILED
        current = advance.current
        included = None
        if entry is not None:
            if entry.index >= current.tree_size:
                raise VerificationError(
                    f"entry {entry.index} is not covered by the checkpoint at size "
                    f"{current.tree_size}"
                )
            proof = client.inclusion_proof(entry.index, tree_size=current.tree_size)
            verify_inclusion(
                entry.index,
                current.tree_size,
                leaf_hash(entry.leaf),
                proof.hashes,
                current.root_hash,
            )
            included = entry
    previous = advance.previous
    if args.json:
        out.write(
            _dump(
                {
                    "ok": True,
                    "origin": current.origin,
                    "tree_size": current.tree_size,
                    "root_hash": current.root_hash.hex(),
                    "previous": None
                    if previous is None
                    else {"tree_size": previous.tree_size, "root_hash": previous.root_hash.hex()},
                    "advanced": advance.advanced,
                    "entry": None
                    if included is None
                    else {"index": included.index, "leaf_hash": leaf_hash(included.leaf).hex()},
                    "state": str(tracker.path),
                }
            )
            + "\n"
        )
        return EXIT_OK
    out.write(f"checkpoint of {current.origin} at size {current.tree_size} verified\n")
    out.write(f"  root {current.root_hash.hex()}\n")
    if previous is None:
        out.write(f"  first checkpoint trusted for this log in {tracker.path}\n")
    elif advance.advanced:
        out.write(
            f"  consistent with the trusted checkpoint at size {previous.tree_size} "
            f"({len(advance.proof)} proof hashes); trust advanced\n"
        )
    else:
        out.write("  same as the trusted checkpoint\n")
    if included is not None:
        out.write(
            f"entry {included.index} is included (leaf hash {leaf_hash(included.leaf).hex()})\n"
        )
    return EXIT_OK


def _evidence(e: ConsistencyError, as_json: bool, out: IO[str], err: IO[str]) -> None:
    err.write(f"provledger verify: {e.detail}\n")
    err.write("trusted checkpoint:\n" + _indent(e.old_checkpoint))
    err.write("served checkpoint:\n" + _indent(e.new_checkpoint))
    if e.proof:
        err.write("proof:\n" + "".join(f"  {h.hex()}\n" for h in e.proof))
    if as_json:
        out.write(
            _dump(
                {
                    "ok": False,
                    "error": e.detail,
                    "old_checkpoint": e.old_checkpoint,
                    "new_checkpoint": e.new_checkpoint,
                    "proof": [h.hex() for h in e.proof],
                }
            )
            + "\n"
        )


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


def cmd_export(args: argparse.Namespace, env: dict[str, str], out: IO[str], err: IO[str]) -> int:
    if args.to_height is not None and args.to_height < args.from_height:
        raise _Usage("--to must not be below --from")
    progress = _Progress(err, True)

    def show(lines: int, size: int) -> None:
        progress.update(f"export: {lines:,} lines, {size / 1e6:,.1f} MB")

    with _client(args, env) as client:
        if args.out == "-":
            summary = client.export(
                sys.stdout.buffer, from_height=args.from_height, to_height=args.to_height
            )
            sys.stdout.buffer.flush()
        else:
            target = Path(args.out)
            partial = target.with_name(target.name + ".part")
            try:
                with partial.open("wb") as f:
                    summary = client.export(
                        f, from_height=args.from_height, to_height=args.to_height, progress=show
                    )
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(partial, target)
            except BaseException:
                progress.done()
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
                raise
        progress.done()
    if args.out != "-":
        if args.json:
            out.write(
                _dump({"out": args.out, "lines": summary.lines, "bytes": summary.bytes}) + "\n"
            )
        else:
            err.write(f"wrote {summary.lines:,} lines ({summary.bytes:,} bytes) to {args.out}\n")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, env: dict[str, str], out: IO[str], err: IO[str]) -> int:
    key = _verifier(args.key)
    node_keys: list[Verifier] = []
    if args.node_keys is not None:
        try:
            node_keys = load_node_keys(args.node_keys)
        except (OSError, ValueError) as e:
            raise _Usage(f"--node-keys: {e}") from None
    progress = _Progress(err, True)
    try:
        stream: IO[bytes] = (
            sys.stdin.buffer if args.file == "-" else open(args.file, "rb", buffering=1 << 20)  # noqa: SIM115 (entered below)
        )
    except OSError as e:
        raise _Usage(f"{args.file}: {e.strerror}") from None
    total = 0
    with contextlib.suppress(OSError):
        total = os.fstat(stream.fileno()).st_size

    def show(consumed: int, blocks: int, leaves: int) -> None:
        pct = f"{100 * consumed / total:5.1f}% " if total else ""
        progress.update(f"audit: {pct}{blocks:,} blocks, {leaves:,} leaves")

    started = time.monotonic()
    with stream:
        report = audit_bundle(stream, key, node_keys, progress=show if progress.enabled else None)
    progress.done()
    elapsed = time.monotonic() - started
    if args.json:
        body = report.to_json()
        body["seconds"] = round(elapsed, 3)
        out.write(_dump(body) + "\n")
    else:
        _audit_text(report, key, node_keys, elapsed, out, err)
    return EXIT_OK if report.ok else EXIT_FAILED


def _audit_text(
    report: AuditReport,
    key: Verifier,
    node_keys: list[Verifier],
    elapsed: float,
    out: IO[str],
    err: IO[str],
) -> None:
    if report.failure is not None:
        err.write(f"audit FAILED at {report.failure.where()}: {report.failure.message}\n")
        err.write(f"  verified before it: {report.blocks:,} blocks, {report.leaves:,} leaves\n")
        return
    heights = (
        "no blocks"
        if report.first_height is None
        else f"{report.blocks:,} blocks (heights {report.first_height}..{report.last_height})"
    )
    rate = f", {report.leaves / elapsed:,.0f} leaves/s" if report.leaves >= 10_000 else ""
    out.write(f"audit OK: {heights}, {report.leaves:,} leaves{rate}\n")
    out.write(f"  tree size {report.tree_size}, root {report.root_hash.hex()}\n")
    out.write(f"  every header signed by the log key {key.name}+{key.key_id.hex()}\n")
    out.write("  final checkpoint verified\n")
    if node_keys:
        out.write(f"  {report.node_signatures:,} node signatures verified\n")
    if report.unchecked_signatures:
        out.write(
            f"  {report.unchecked_signatures:,} signatures by keys not given were not checked "
            "(pass --node-keys)\n"
        )


def cmd_run(args: argparse.Namespace, env: dict[str, str], out: IO[str], err: IO[str]) -> int:
    options = RunOptions(
        data_dir=args.data_dir,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        startup_timeout=args.startup_timeout,
        json=args.json,
        show_logs=args.show_logs,
    )
    try:
        return run_supervisor(options, out, err)
    except UsageError as e:
        raise _Usage(str(e)) from None


def _exec_module(module: str, config: Path) -> NoReturn:
    if not config.is_file():
        raise _Usage(f"--config {config}: no such file")
    argv = [sys.executable, "-m", module, "--config", str(config)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 (argv is ours, no shell)


def cmd_node(args: argparse.Namespace, env: dict[str, str], out: IO[str], err: IO[str]) -> int:
    _exec_module("ledger", args.config)


def cmd_gateway(args: argparse.Namespace, env: dict[str, str], out: IO[str], err: IO[str]) -> int:
    _exec_module("gateway", args.config)


def cmd_cluster(args: argparse.Namespace, env: dict[str, str], out: IO[str], err: IO[str]) -> int:
    from clients._cluster import (
        ClusterError,
        InitOptions,
        StartupError,
        cluster_status,
        init_cluster,
        run_cluster,
    )

    try:
        if args.cluster_command == "init":
            manifest = init_cluster(
                args.dir, InitOptions(nodes=args.nodes, origin=args.origin or "")
            )
            if args.json:
                out.write(_dump(manifest) + "\n")
            else:
                out.write(f"cluster of {len(manifest['nodes'])} nodes written to {args.dir}\n")
                _pairs(
                    [
                        ("origin", manifest["origin"]),
                        ("verifier key", manifest["verifier_key"]),
                        *((n["node"], f"grpc://{n['address']}") for n in manifest["nodes"]),
                        ("etcd", ", ".join(m["client"] for m in manifest["etcd"])),
                        ("gateway", f"http://{manifest['gateway']['listen']}"),
                        ("start it", f"provledger cluster up --dir {args.dir}"),
                    ],
                    out,
                )
            return EXIT_OK
        if args.cluster_command == "up":
            return run_cluster(args.dir, args.http_port, out, err, args.startup_timeout)
        status = cluster_status(args.dir)
    except ClusterError as e:
        raise _Usage(str(e)) from None
    except StartupError as e:
        err.write(f"provledger cluster {args.cluster_command}: {e}\n")
        return EXIT_FAILED
    if args.json:
        out.write(_dump(status) + "\n")
    else:
        rows = [["NODE", "ROLE", "TERM", "HEIGHT", "HEAD", "PID", "REACHABLE"]]
        for n in status["nodes"]:
            rows.append(
                [
                    n["node"],
                    n["role"] or "-",
                    "-" if n["term"] is None else str(n["term"]),
                    "-" if n["height"] is None else str(n["height"]),
                    (n["head_hash"] or "-")[:16],
                    "-" if n["pid"] is None else str(n["pid"]),
                    "yes" if n["reachable"] else "no",
                ]
            )
        _table(rows, out)
        leader = status["leader"]
        out.write(f"leader: {leader} (term {status['term']})\n" if leader else "leader: none\n")
    return EXIT_OK if status["leader"] else EXIT_UNAVAILABLE


def cmd_not_yet(args: argparse.Namespace, env: dict[str, str], out: IO[str], err: IO[str]) -> int:
    name = args.command + (f" {args.cluster_command}" if args.command == "cluster" else "")
    err.write(f"provledger {name}: not available in this version yet\n")
    return EXIT_USAGE


_COMMANDS: dict[str, Callable[[argparse.Namespace, dict[str, str], IO[str], IO[str]], int]] = {
    "run": cmd_run,
    "node": cmd_node,
    "gateway": cmd_gateway,
    "cluster": cmd_cluster,
    "reconcile": cmd_not_yet,
    "anchor": cmd_not_yet,
    "append": cmd_append,
    "get": cmd_get,
    "proof": cmd_proof,
    "verify": cmd_verify,
    "export": cmd_export,
    "audit": cmd_audit,
}


def run(
    argv: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Runs one command; returns its exit status (argparse itself exits 2 on bad usage)."""
    env = dict(os.environ) if env is None else env
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    prefix = f"provledger {args.command}"

    def fail(code: int, message: str) -> int:
        err.write(f"{prefix}: {message}\n")
        if verbose:
            traceback.print_exc(file=err)
        return code

    try:
        return _COMMANDS[args.command](args, env, out, err)
    except _Usage as e:
        return fail(EXIT_USAGE, str(e))
    except UnavailableError as e:
        return fail(EXIT_UNAVAILABLE, f"ledger unavailable: {e.detail}")
    except VerificationError as e:
        return fail(EXIT_FAILED, f"verification failed: {e.detail}")
    except InvalidRequestError as e:
        return fail(EXIT_USAGE, f"refused: {e.detail}")
    except LedgerError as e:
        return fail(EXIT_FAILED, f"{e.title.lower()}: {_describe(e)}")
    except KeyboardInterrupt:
        return fail(130, "interrupted")
    except BrokenPipeError:
        # `provledger get ... | head`: the reader left; nothing more to say.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK
    except OSError as e:
        return fail(EXIT_USAGE, str(e))
    except Exception as e:
        return fail(EXIT_FAILED, f"internal error: {type(e).__name__}: {e}")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    sys.exit(run(argv))
