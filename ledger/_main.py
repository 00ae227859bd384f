"""`python -m ledger --config node.toml`: run one ledger node until SIGTERM or Ctrl-C."""

# ledger/__main__.py chooses grpc's poller, then calls `main`.

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from ledger._config import load_config
from ledger._node import LedgerNode
from ledger.service import serve
from provledger.errors import LedgerError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledger", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--data-dir", type=Path, help="overrides data_dir")
    parser.add_argument("--listen", help="overrides listen (host:port)")
    parser.add_argument("--node-id", help="overrides node_id")
    parser.add_argument("--log-level", default=os.environ.get("PROVLEDGER_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    # The committer thread releases the GIL for every fsync; with the default 5 ms
    # switch interval it then waits behind busy request threads to get it back.
    sys.setswitchinterval(0.0005)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    overrides = {
        "data_dir": str(args.data_dir) if args.data_dir else os.environ.get("PROVLEDGER_DATA_DIR"),
        "listen": args.listen or os.environ.get("PROVLEDGER_LISTEN"),
        "node_id": args.node_id or os.environ.get("PROVLEDGER_NODE_ID"),
    }
    if args.config is None and overrides["node_id"] is None:
        overrides["node_id"] = "node-1"
    try:
        config = load_config(args.config, overrides)
        node = LedgerNode(config)
        node.start()
        server = serve(node)
    except (LedgerError, ValueError, OSError) as exc:
        print(f"provledger node: {exc}", file=sys.stderr)
        return 2
    # The write path allocates a few dozen short-lived containers per event; with the
    # default gen-0 threshold (700) the cyclic collector runs every few events and
    # rescans the survivors of every in-flight batch. Objects alive after startup are
    # frozen out of collection, and collections run per ~50,000 new containers.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"provledger node {config.node_id} serving log {node.origin} on {config.listen}",
        flush=True,
    )
    stop.wait()
    server.stop(grace=2).wait()
    node.close()
    return 0
