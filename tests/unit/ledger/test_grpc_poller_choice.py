"""The node process picks grpc's pre-EventEngine poller before grpc is imported, unless
the operator chose otherwise (bench/bench_grpc_poller.py measures why)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = (
    "import ledger.__main__, os, sys; "
    "print(repr(os.environ.get('GRPC_EXPERIMENTS'))); "
    "print('grpc' in sys.modules)"
)


def _node_entry_sees(environment: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_the_node_entry_point_turns_the_event_engine_off() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    experiments, grpc_loaded = _node_entry_sees(env)
    assert set(experiments.strip("'").split(",")) == {
        "-event_engine_client",
        "-event_engine_listener",
        "-event_engine_for_all_other_endpoints",
        "-event_engine_callback_cq",
    }
    assert grpc_loaded == "True"  # imported by the node's modules, after the variable


@pytest.mark.parametrize("chosen", ["-event_engine_listener", ""])  # "": grpc's defaults
def test_an_operators_setting_wins(chosen: str) -> None:
    env = dict(os.environ, GRPC_EXPERIMENTS=chosen)
    assert _node_entry_sees(env)[0] == repr(chosen)
