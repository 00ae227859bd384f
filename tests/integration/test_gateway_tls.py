"""The gateway reaches a node over mutual TLS with a private CA (SPEC §3), and a gateway
without a client certificate the CA signed gets nothing but 503s."""

from __future__ import annotations

import datetime
import ipaddress
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness.gateway import sample_event, start_gateway
from tests.harness.node import write_node_config
from tests.harness.procs import free_port, python_module, spawn, wait_until

pytestmark = pytest.mark.integration


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_ca(root: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (root / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def issue(
    root: Path,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    name: str,
    usage: x509.ObjectIdentifier,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca[1].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca[0], hashes.SHA256())
    )
    (root / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(root / f"{name}-key.pem", key)


def test_gateway_to_node_over_mutual_tls(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = make_ca(pki, "ca")
    issue(pki, ca, "node", ExtendedKeyUsageOID.SERVER_AUTH)
    issue(pki, ca, "gateway", ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger_ca = make_ca(pki, "stranger-ca")
    issue(pki, stranger_ca, "stranger", ExtendedKeyUsageOID.CLIENT_AUTH)

    port = free_port()
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    config = write_node_config(
        node_dir / "node.toml",
        {
            "node_id": "node-1",
            "data_dir": str(node_dir / "data"),
            "listen": f"127.0.0.1:{port}",
            "origin": "tls.provledger.local/log",
            "max_block_delay_ms": 5,
            "tls": {
                "ca": str(pki / "ca.pem"),
                "cert": str(pki / "node.pem"),
                "key": str(pki / "node-key.pem"),
            },
        },
    )
    node = spawn(
        "tls-node", python_module("ledger", "--config", str(config)), node_dir / "node.log"
    )
    address = f"127.0.0.1:{port}"
    trusted = {
        "ca": str(pki / "ca.pem"),
        "cert": str(pki / "gateway.pem"),
        "key": str(pki / "gateway-key.pem"),
    }
    untrusted = {
        "ca": str(pki / "ca.pem"),
        "cert": str(pki / "stranger.pem"),
        "key": str(pki / "stranger-key.pem"),
    }
    gateway = stranger = None
    try:
        gateway = start_gateway(tmp_path, [address], tls=trusted)
        wait_until(
            lambda: httpx.get(f"{gateway.url}/readyz").status_code == 200,
            30,
            "the node, through the gateway, over mTLS",
            node,
        )
        with gateway.client() as client:
            receipt = client.post("/v1/events", json=sample_event("data", str(uuid.uuid4())))
            assert receipt.status_code == 201, receipt.text
            entry = client.get(f"/v1/entries/{receipt.json()['index']}")
            assert entry.status_code == 200
            assert client.get("/v1/checkpoint").text.startswith("tls.provledger.local/log\n")

        # A client certificate from another CA: the node's TLS refuses the connection.
        stranger = start_gateway(tmp_path, [address], tls=untrusted)
        with stranger.client() as client:
            refused = client.get("/v1/checkpoint")
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/problem+json"
    finally:
        for handle in (stranger, gateway):
            if handle is not None:
                handle.stop()
        node.stop()
