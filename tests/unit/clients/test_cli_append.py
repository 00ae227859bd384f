"""`provledger append` against a real gRPC server whose answers the test controls: two
batch requests under way at once, receipts printed in input order."""

from __future__ import annotations

import io
import json
import threading

from clients.cli import BATCHES_IN_FLIGHT, run
from provledger.note import Signer
from tests.unit.clients.lying_server import LyingLedger, serve


def events(n: int) -> str:
    return "".join(
        json.dumps({"source": "urn:test", "id": f"e-{i}", "n": i}) + "\n" for i in range(n)
    )


def test_append_keeps_two_batches_under_way_and_prints_in_input_order(tmp_path) -> None:
    signer = Signer.generate("example.org/cli")
    # Every batch request waits until a second one is under way beside it: a CLI that
    # sent one batch at a time would see the first refused ("batch came alone").
    ledger = LyingLedger(signer, batches_together=threading.Barrier(BATCHES_IN_FLIGHT))  # type: ignore[abstract]
    path = tmp_path / "ten.ndjson"
    path.write_text(events(10))
    out, err = io.StringIO(), io.StringIO()
    with serve(ledger) as address:
        code = run(
            ["append", str(path), "--batch-size", "5", "--key", signer.verifier_key],
            env={"PROVLEDGER_URL": f"grpc://{address}"},
            out=out,
            err=err,
        )
    assert code == 0, err.getvalue()
    assert ledger.calls["AppendBatch"] == 2
    assert ledger.most_batches_together == 2
    # Each line's receipt is for that line's event, whichever batch the server took first.
    for n, line in enumerate(out.getvalue().splitlines()):
        index = json.loads(line)["index"]
        assert json.loads(ledger.served[index])["event"]["n"] == n
