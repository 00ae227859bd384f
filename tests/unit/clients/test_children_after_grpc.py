"""A supervisor that has used gRPC still starts its children: with gRPC's fork support
on, the poller gRPC restarts in a forked child could abort it before it exec'd
(grpc/grpc#43055; about one child in sixty here). Real gRPC on loopback, real processes,
in a fresh interpreter that imports what the CLI imports, in the CLI's order."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import sys
    from concurrent import futures
    from pathlib import Path

    import clients.cli  # noqa: F401  (as `provledger run` starts: before gRPC)
    from clients._children import spawn

    import grpc
    from provledger.v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc

    server = grpc.server(futures.ThreadPoolExecutor(2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stub = pb_grpc.LedgerStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    try:
        stub.GetStatus(pb.GetStatusRequest(), timeout=2)
    except grpc.RpcError:
        pass  # UNIMPLEMENTED: the point is a channel and a server that have run
    failed = 0
    for n in range(200):
        child = spawn(f"child-{n}", ["/bin/true"], Path(sys.argv[1]))
        failed += child.popen.wait() != 0
    print(failed)
    """
)


def test_children_started_after_grpc_use_all_exec(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "logs")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0", done.stderr[-2000:]
