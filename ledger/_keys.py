"""The log key and the node key: loaded from the data directory, generated on first start."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from provledger.note import Signer

__all__ = ["load_or_create_signer", "load_signer"]


def load_or_create_signer(path: Path, name: str) -> Signer:
    """An Ed25519 signer whose 32-byte seed lives (base64) in `path`, mode 0600."""
    if path.exists():
        seed = base64.b64decode(path.read_text().strip())
        return Signer.from_seed(name, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(seed).decode() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return Signer.from_seed(name, seed)


def load_signer(path: Path, name: str) -> Signer:
    """An Ed25519 signer from an existing seed file (a cluster's distributed keys)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError(f"key file {path}: not a base64 seed") from None
    if len(seed) != 32:
        raise ValueError(f"key file {path}: the seed is {len(seed)} bytes, expected 32")
    return Signer.from_seed(name, seed)
