"""The gateway configuration: TOML mapping in, one validated object out."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway import GatewayConfig
from gateway.__main__ import build_config


def test_defaults_and_tls_paths_relative_to_the_file(tmp_path: Path) -> None:
    config = GatewayConfig.from_mapping(
        {"nodes": ["127.0.0.1:7400"], "tls": {"ca": "ca.pem", "cert": "c.pem", "key": "k.pem"}},
        tmp_path,
    )
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.tls is not None and config.tls.ca == tmp_path / "ca.pem"


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"nodes": []},
        {"nodes": "127.0.0.1:7400"},
        {"nodes": ["127.0.0.1"]},
        {"nodes": ["127.0.0.1:7400"], "listen": "8080"},
        {"nodes": ["127.0.0.1:7400"], "listen": "127.0.0.1:99999"},
        {"nodes": ["127.0.0.1:7400"], "colour": "blue"},
        {"nodes": ["127.0.0.1:7400"], "tls": {"ca": "ca.pem"}},
        {"nodes": ["127.0.0.1:7400"], "rpc_timeout_s": 0},
        {"nodes": ["127.0.0.1:7400"], "listen": 8080},
        {"nodes": ["127.0.0.1:7400"], "cache_entries": "many"},
        {"nodes": ["127.0.0.1:7400"], "cache_entries": True},
        {"nodes": ["127.0.0.1:7400"], "tls": "mtls"},
        {"nodes": [7400]},
        {"nodes": ["127.0.0.1:7400"], "local_proofs": "yes"},
        {"nodes": ["127.0.0.1:7400"], "local_proofs": 1},
        {"nodes": ["127.0.0.1:7400"], "checkpoint_poll_s": 0},
        {"nodes": ["127.0.0.1:7400"], "checkpoint_poll_s": True},
        {"nodes": ["127.0.0.1:7400"], "tile_cache_tiles": -1},
    ],
)
def test_bad_settings_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        GatewayConfig.from_mapping(raw)


def test_proofs_from_tiles_settings() -> None:
    default = GatewayConfig.from_mapping({"nodes": ["127.0.0.1:7400"]})
    assert default.local_proofs and default.checkpoint_poll_s == 0.05
    off = GatewayConfig.from_mapping(
        {"nodes": ["127.0.0.1:7400"], "local_proofs": False, "tile_cache_tiles": 0}
    )
    assert not off.local_proofs and off.tile_cache_tiles == 0


def test_flags_override_environment_override_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('listen = "127.0.0.1:8000"\nnodes = ["127.0.0.1:7400"]\n')
    args = argparse.Namespace(config=path, listen=None, nodes=None)
    assert build_config(args, {}).port == 8000
    env = {"PROVLEDGER_GATEWAY_LISTEN": "127.0.0.1:8001", "PROVLEDGER_GATEWAY_NODES": "a:1, b:2"}
    from_env = build_config(args, env)
    assert (from_env.port, from_env.nodes) == (8001, ("a:1", "b:2"))
    args.listen = "127.0.0.1:8002"
    args.nodes = ["c:3"]
    from_flags = build_config(args, env)
    assert (from_flags.port, from_flags.nodes) == (8002, ("c:3",))
