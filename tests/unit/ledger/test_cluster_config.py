"""A cluster member's configuration: the etcd coordinator settings, the commit point's
value format, and key files kept outside the data directory."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ledger._config import TLSConfig, load_config
from ledger._etcd import CommittedHead, EtcdSettings
from ledger._keys import load_signer
from provledger.note import Signer


def test_settings_from_a_coordinator_table() -> None:
    s = EtcdSettings.from_mapping(
        {"kind": "etcd", "endpoints": ["127.0.0.1:2379", "http://127.0.0.1:2381"], "gc_keep": 3},
        "example.org/log",
    )
    assert s.endpoints == (("127.0.0.1", 2379), ("127.0.0.1", 2381))
    assert s.log == "example.org_log"  # derived from the origin, no '/'
    assert (s.lease_ttl, s.gc_keep, s.gc_max_window) == (2, 3, 1000)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"endpoints": []}, "at least one etcd endpoint"),
        ({"endpoints": ["localhost"]}, "is not host:port"),
        ({"endpoints": ["127.0.0.1:1"], "log": "a/b"}, "coordinator.log"),
        ({"endpoints": ["127.0.0.1:1"], "lease_ttl_s": 0}, "lease_ttl_s"),
        ({"endpoints": ["127.0.0.1:1"], "gc_keep": 0}, "gc_keep"),
        ({"endpoints": ["127.0.0.1:1"], "gc_keep": 5, "gc_max_window": 4}, "gc_keep"),
        ({"endpoints": ["127.0.0.1:1"], "lease": 2}, "unknown coordinator keys"),
        ({"endpoints": ["grpc://127.0.0.1:1"]}, "is not host:port"),
        ({"endpoints": ["https://127.0.0.1:1", "127.0.0.1:2"]}, "either all https:// or none"),
        ({"endpoints": ["https://127.0.0.1:1"]}, r"need the node's \[tls\]"),
    ],
)
def test_bad_settings_are_named(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EtcdSettings.from_mapping(raw, "o")


def test_https_endpoints_use_the_nodes_certificate(tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for name, path in files.items():
        path.write_bytes(f"PEM of {name}".encode())
    s = EtcdSettings.from_mapping(
        {"endpoints": ["https://127.0.0.1:2379", "https://127.0.0.1:2381"]},
        "o",
        TLSConfig(files["ca"], files["cert"], files["key"]),
    )
    assert s.endpoints == (("127.0.0.1", 2379), ("127.0.0.1", 2381))
    assert s.tls == (b"PEM of ca", b"PEM of cert", b"PEM of key")
    plain = EtcdSettings.from_mapping({"endpoints": ["127.0.0.1:2379"]}, "o", None)
    assert plain.tls is None


def test_committed_head_round_trip() -> None:
    raw = CommittedHead.encode(7, b"\x01" * 32, 42, 800)
    head = CommittedHead.parse(raw)
    assert (head.height, head.block_hash, head.term, head.tree_size) == (7, b"\x01" * 32, 42, 800)
    assert head.raw == raw  # commits compare these exact bytes


def test_cluster_node_config_with_key_files(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    seed = bytes(range(32))
    (keys / "log.key").write_text(base64.b64encode(seed).decode() + "\n")
    node_dir = tmp_path / "nodes" / "n1"
    node_dir.mkdir(parents=True)
    (node_dir / "node.toml").write_text(
        'node_id = "n1"\norigin = "o.example/log"\ndata_dir = "data"\n'
        'log_key_file = "../../keys/log.key"\n'
        '[coordinator]\nkind = "etcd"\nendpoints = ["127.0.0.1:2379"]\n'
    )
    config = load_config(node_dir / "node.toml", {})
    assert config.clustered
    assert config.log_key_file == node_dir / "../../keys/log.key"
    assert config.data_dir == node_dir / "data"
    signer = load_signer(config.log_key_file, config.origin)
    assert signer.public_key == Signer.from_seed("o.example/log", seed).public_key


def test_a_cluster_member_needs_the_origin(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('node_id = "n1"\n[coordinator]\nkind = "etcd"\nendpoints = ["h:1"]\n')
    with pytest.raises(ValueError, match="origin"):
        load_config(path, {})
    path.write_text('node_id = "n1"\n[coordinator]\nkind = "zookeeper"\n')
    with pytest.raises(ValueError, match=r"coordinator\.kind"):
        load_config(path, {})


def test_missing_or_bad_key_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read key file"):
        load_signer(tmp_path / "absent.key", "n")
    bad = tmp_path / "short.key"
    bad.write_text(base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="expected 32"):
        load_signer(bad, "n")


@pytest.mark.parametrize("value", ["-1", "65", '"two"', "1.5"])
def test_admission_workers_out_of_range_are_named(tmp_path: Path, value: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(f'node_id = "n1"\nadmission_workers = {value}\n')
    with pytest.raises(ValueError, match="admission_workers: must be between 0 and 64"):
        load_config(path, {})
    path.write_text('node_id = "n1"\nadmission_workers = 0\n')
    assert load_config(path, {}).admission_workers == 0


@pytest.mark.parametrize("value", ['"yes"', "1", "0"])
def test_compress_storage_must_be_a_boolean(tmp_path: Path, value: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(f'node_id = "n1"\ncompress_storage = {value}\n')
    with pytest.raises(ValueError, match="compress_storage: must be true or false"):
        load_config(path, {})
    path.write_text('node_id = "n1"\ncompress_storage = true\n')
    assert load_config(path, {}).compress_storage is True
    path.write_text('node_id = "n1"\n')
    assert load_config(path, {}).compress_storage is False
