"""`python -m ledger --config node.toml`: run one ledger node until SIGTERM or Ctrl-C."""

import os
import sys

# grpcio 1.85 runs its I/O on the EventEngine by default. On the poller it replaced, this
# node spends ~75 µs less CPU per unary call and answers a proof ~95 µs sooner, with
# append throughput unchanged (bench/bench_grpc_poller.py). Only the node's own process:
# a client process that forks (as the test harness does) loses connections on that
# poller. grpc reads the variable when first imported, so it is set before anything
# imports grpc; an operator's own setting wins (an empty one keeps grpc's defaults).
os.environ.setdefault(
    "GRPC_EXPERIMENTS",
    "-event_engine_client,-event_engine_listener,"
    "-event_engine_for_all_other_endpoints,-event_engine_callback_cq",
)

from ledger._main import main

if __name__ == "__main__":
    sys.exit(main())
