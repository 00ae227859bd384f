"""etcd, the commit point of a cluster's log, admits only certificates of the cluster CA:
the nodes reach it over mutual TLS, and a client without such a certificate, with one of
another CA, or without TLS at all is refused."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import etcd3
import etcd3.exceptions
import grpc
import httpx
import pytest

from clients._cluster import _CA
from tests.harness.cluster import start_cluster

pytestmark = pytest.mark.integration


def etcd_client(address: str, creds: grpc.ChannelCredentials | None) -> Any:
    host, port = address.rsplit(":", 1)
    endpoint = etcd3.Endpoint(
        host, int(port), secure=creds is not None, creds=creds, time_retry=1.0
    )
    return etcd3.MultiEndpointEtcd3Client(endpoints=[endpoint], timeout=3, failover=False)


def refused(client: Any, key: str) -> bool:
    try:
        client.get(key)
    except (etcd3.exceptions.Etcd3Exception, grpc.RpcError):
        return True
    return False


def test_etcd_admits_only_certificates_of_the_cluster_ca(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path, nodes=1)
    try:
        leader = cluster.leader()
        key = f"/provledger/{cluster.manifest['log']}/leader"
        # The node campaigned through etcd over mutual TLS: the leader key is its own.
        value, _ = cluster.etcd_client().get(key)
        assert value is not None and leader.name.encode() in value

        member = cluster.manifest["etcd"][0]
        assert member["url"].startswith("https://")
        ca = (cluster.root / "ca" / "ca.pem").read_bytes()
        stranger = _CA(tmp_path / "other-ca")
        stranger.issue(tmp_path / "x.pem", tmp_path / "x-key.pem", "intruder", server=False)
        attempts = {
            "no TLS": None,
            "TLS without a client certificate": grpc.ssl_channel_credentials(ca),
            "a certificate of another CA": grpc.ssl_channel_credentials(
                ca,
                private_key=(tmp_path / "x-key.pem").read_bytes(),
                certificate_chain=(tmp_path / "x.pem").read_bytes(),
            ),
        }
        for what, creds in attempts.items():
            assert refused(etcd_client(member["client"], creds), key), what

        # The HTTP gateway of etcd holds the same line.
        no_cert = ssl.create_default_context(cafile=cluster.root / "ca" / "ca.pem")
        with pytest.raises(httpx.HTTPError):
            httpx.post(
                f"{member['url']}/v3/kv/range", json={"key": "Lw=="}, verify=no_cert, timeout=3
            )
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{member['client']}/health", timeout=3)
    finally:
        cluster.stop()
