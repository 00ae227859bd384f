"""C2SP signed notes, tlog checkpoints and cosignatures: build, parse, verify.

Implements https://c2sp.org/signed-note (Ed25519, signature type 0x01),
https://c2sp.org/tlog-checkpoint and the Ed25519 flavour of
https://c2sp.org/tlog-cosignature (cosignature/v1, signature type 0x04), byte for byte
compatible with golang.org/x/mod/sumdb/note and transparency-dev/formats. Malformed
input raises `ValueError` naming what is wrong; a note that parses but is not signed
as required raises `provledger.errors.SignatureError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from provledger.errors import SignatureError

__all__ = [
    "COSIGNATURE_V1_HEADER",
    "KEY_TYPE_COSIGNATURE_V1",
    "KEY_TYPE_ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "Note",
    "NoteSignature",
    "Signer",
    "Verifier",
    "cosign_checkpoint",
    "cosignature_message",
    "key_id",
    "parse_checkpoint",
    "parse_note",
    "sign_checkpoint",
    "sign_note",
    "valid_key_name",
    "verify_checkpoint",
    "verify_cosignature",
    "verify_note",
]

KEY_TYPE_ED25519 = 0x01
KEY_TYPE_COSIGNATURE_V1 = 0x04
COSIGNATURE_V1_HEADER = "cosignature/v1\n"

# golang.org/x/mod/sumdb/note refuses more than 100; the spec asks for at least 16.
MAX_SIGNATURES = 100

_SIG_PREFIX = "\u2014 "  # em dash, space
_ED25519_SIG_SIZE = 64
_TIMESTAMP_SIZE = 8
_MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature: "MUST NOT exceed 2^63 - 1"
_MAX_TREE_SIZE = 2**64 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")  # ASCII only: \d would admit other scripts' digits
_HEX8 = re.compile(r"[0-9a-f]{8}")


# --- shared syntax ----------------------------------------------------------------


def valid_key_name(name: object) -> bool:
    """Key names are non-empty UTF-8 with no Unicode spaces, no '+' and no control characters."""
    if not isinstance(name, str) or not name or "+" in name:
        return False
    if any(ch.isspace() or ch < "\x20" for ch in name):
        return False
    return _is_utf8(name)


def _check_key_name(name: object, what: str = "key name") -> str:
    if not valid_key_name(name):
        raise ValueError(
            f"{what} {name!r} is invalid: it must be non-empty and contain no spaces, '+' or "
            "control characters"
        )
    assert isinstance(name, str)
    return name


def _is_utf8(text: str) -> bool:
    # A Python str can hold lone surrogates, which have no UTF-8 encoding.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_note_chars(text: str, what: str) -> None:
    """signed-note: valid UTF-8, no ASCII control characters other than newline."""
    if not _is_utf8(text):
        raise ValueError(f"{what} is not valid UTF-8 (it contains a lone surrogate)")
    for i, ch in enumerate(text):
        if ch < "\x20" and ch != "\n":
            raise ValueError(f"{what} contains control character {ch!r} at offset {i}")


def _b64decode(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4) with padding; anything outside the alphabet is refused."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as e:
        raise ValueError(f"{what} is not valid standard base64: {e}") from None


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def key_id(name: str, key_type: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || type || public key)[:4], the signed-note key ID."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([key_type]) + public_key).digest()[
        :4
    ]


# --- keys -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verifier:
    """A named Ed25519 public key: checks note signatures (key type 0x01) and, under the
    cosignature/v1 key ID (type 0x04) of the same name and key, cosignatures."""

    name: str
    public_key: bytes
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise ValueError("public key must be 32 raw Ed25519 bytes")
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.public_key))

    @classmethod
    def from_string(cls, vkey: str) -> Verifier:
        """Parse `<name>+<8 hex key id>+<base64(type || 32-byte key)>`.

        Type 0x01 (Ed25519 note signatures) is the form provledger publishes; type 0x04
        (cosignature/v1) is accepted too, so witnesses' published keys can be configured
        as they are. Either way the key ID must match the name, type and key.
        """
        if not isinstance(vkey, str):
            raise ValueError("verifier key must be a string")
        name, sep1, rest = vkey.partition("+")
        id_hex, sep2, key64 = rest.partition("+")
        if not sep1 or not sep2:
            raise ValueError(f"verifier key {vkey!r}: expected <name>+<8 hex key id>+<base64 key>")
        _check_key_name(name, "verifier key name")
        if not _HEX8.fullmatch(id_hex):
            raise ValueError(
                f"verifier key {vkey!r}: key id {id_hex!r} is not 8 lowercase hex characters"
            )
        raw = _b64decode(key64, f"verifier key {vkey!r}: key material")
        if not raw:
            raise ValueError(f"verifier key {vkey!r}: key material is empty")
        key_type, public_key = raw[0], raw[1:]
        if key_type not in (KEY_TYPE_ED25519, KEY_TYPE_COSIGNATURE_V1):
            raise ValueError(
                f"verifier key {vkey!r}: unsupported key type 0x{key_type:02x} "
                "(expected 0x01 Ed25519 or 0x04 cosignature/v1)"
            )
        if len(public_key) != 32:
            raise ValueError(
                f"verifier key {vkey!r}: Ed25519 public key is {len(public_key)} bytes, expected 32"
            )
        if key_id(name, key_type, public_key).hex() != id_hex:
            raise ValueError(
                f"verifier key {vkey!r}: key id {id_hex} does not match the name and key "
                f"(expected {key_id(name, key_type, public_key).hex()})"
            )
        return cls(name, public_key)

    @property
    def key_id(self) -> bytes:
        """The 4-byte signed-note key ID of type 0x01."""
        return key_id(self.name, KEY_TYPE_ED25519, self.public_key)

    @property
    def cosignature_key_id(self) -> bytes:
        """The 4-byte key ID of this key's cosignature/v1 lines (type 0x04)."""
        return key_id(self.name, KEY_TYPE_COSIGNATURE_V1, self.public_key)

    @property
    def verifier_key(self) -> str:
        """The type 0x01 verifier key string."""
        raw = bytes([KEY_TYPE_ED25519]) + self.public_key
        return f"{self.name}+{self.key_id.hex()}+{_b64encode(raw)}"

    @property
    def cosignature_verifier_key(self) -> str:
        """The type 0x04 verifier key string, the form witnesses publish."""
        raw = bytes([KEY_TYPE_COSIGNATURE_V1]) + self.public_key
        return f"{self.name}+{self.cosignature_key_id.hex()}+{_b64encode(raw)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether `signature` is this key's Ed25519 signature of `message`."""
        if len(signature) != _ED25519_SIG_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Signer:
    """A named Ed25519 private key. Its repr never shows key material."""

    __slots__ = ("_key", "_key_id", "_name", "_public_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._name = _check_key_name(name)
        if not isinstance(private_key, Ed25519PrivateKey):
            raise ValueError("private key must be an Ed25519PrivateKey")
        self._key = private_key
        self._public_key = private_key.public_key().public_bytes_raw()
        self._key_id = key_id(self._name, KEY_TYPE_ED25519, self._public_key)  # used per block

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValueError("Ed25519 seed must be 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    def __repr__(self) -> str:
        return f"Signer({self._name!r}, key_id={self.key_id.hex()})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def seed(self) -> bytes:
        """The 32-byte RFC 8032 private key seed (secret)."""
        return self._key.private_bytes_raw()

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def cosignature_key_id(self) -> bytes:
        return key_id(self._name, KEY_TYPE_COSIGNATURE_V1, self._public_key)

    @property
    def verifier(self) -> Verifier:
        return Verifier(self._name, self._public_key)

    @property
    def verifier_key(self) -> str:
        return self.verifier.verifier_key

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message` (deterministic, RFC 8032)."""
        return self._key.sign(message)


# --- signed notes -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID and the signature bytes after it."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name, "signature key name")
        if not isinstance(self.key_id, bytes) or len(self.key_id) != 4:
            raise ValueError("signature key id must be 4 bytes")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise ValueError("signature must be non-empty bytes")

    def line(self) -> str:
        return f"{_SIG_PREFIX}{self.name} {_b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A note's text (ending in a newline) and its signatures, verified or not."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        _check_text(self.text)
        object.__setattr__(self, "signatures", tuple(self.signatures))

    def serialize(self) -> str:
        if not self.signatures:
            raise ValueError("a signed note needs at least one signature")
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def _check_text(text: object) -> None:
    if not isinstance(text, str) or not text:
        raise ValueError("note text must be a non-empty string")
    if not text.endswith("\n"):
        raise ValueError("note text must end with a newline")
    _check_note_chars(text, "note text")


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """The signed note of `text` with one Ed25519 signature line per signer, in order."""
    _check_text(text)
    if not signers:
        raise ValueError("sign_note needs at least one signer")
    message = text.encode("utf-8")
    seen: set[tuple[str, bytes]] = set()
    sigs = []
    for signer in signers:
        ident = (signer.name, signer.key_id)
        if ident in seen:
            raise ValueError(f"signer {signer.name}+{signer.key_id.hex()} is listed twice")
        seen.add(ident)
        sigs.append(NoteSignature(signer.name, signer.key_id, signer.sign(message)))
    return Note(text, tuple(sigs)).serialize()


def parse_note(note: str) -> Note:
    """Split a signed note into text and signatures, checking syntax only (no signature)."""
    if not isinstance(note, str):
        raise ValueError("note must be a string")
    _check_note_chars(note, "note")
    # The text ends at the LAST blank line: the text may contain blank lines itself.
    split = note.rfind("\n\n")
    if split < 0:
        raise ValueError("malformed note: no blank line before the signature lines")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise ValueError("malformed note: no signature lines after the blank line")
    if not block.endswith("\n"):
        raise ValueError("malformed note: the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise ValueError(f"malformed note: {len(lines)} signatures, at most {MAX_SIGNATURES}")
    sigs = []
    for n, line in enumerate(lines, 1):
        if not line.startswith(_SIG_PREFIX):
            raise ValueError(
                f"malformed note: signature line {n} does not start with an em dash and a space"
            )
        name, sep, sig64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not sig64:
            raise ValueError(f"malformed note: signature line {n} has no signature")
        if " " in sig64:
            raise ValueError(
                f"malformed note: signature line {n} has more than a key name and a signature "
                "(key names cannot contain spaces)"
            )
        if not valid_key_name(name):
            raise ValueError(f"malformed note: signature line {n} has invalid key name {name!r}")
        raw = _b64decode(sig64, f"malformed note: signature line {n}")
        if len(raw) < 5:
            raise ValueError(
                f"malformed note: signature line {n} is {len(raw)} bytes, "
                "shorter than a key id and a signature"
            )
        sigs.append(NoteSignature(name, raw[:4], raw[4:]))
    return Note(text, tuple(sigs))


def verify_note(note: str, verifier: Verifier) -> Note:
    """Parse `note` and require a valid signature by `verifier`.

    Signatures by other keys (another name, or the same name with another key ID) are
    ignored, as signed-note requires. Every signature that claims the verifier's key
    must verify; one that does not rejects the whole note.
    """
    parsed = parse_note(note)
    message = parsed.text.encode("utf-8")
    label = f"{verifier.name}+{verifier.key_id.hex()}"
    matched = [
        s for s in parsed.signatures if s.name == verifier.name and s.key_id == verifier.key_id
    ]
    if not matched:
        raise SignatureError(f"note has no signature by key {label}")
    for sig in matched:
        if not verifier.verify(message, sig.signature):
            raise SignatureError(f"invalid signature by key {label}")
    return parsed


# --- checkpoints ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tlog-checkpoint: origin, tree size, RFC 9162 root hash and opaque extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise ValueError("checkpoint origin must be a non-empty string")
        if "\n" in self.origin:
            raise ValueError("checkpoint origin must be one line")
        _check_note_chars(self.origin, "checkpoint origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise ValueError("checkpoint size must be an integer")
        if not 0 <= self.size <= _MAX_TREE_SIZE:
            raise ValueError(f"checkpoint size {self.size} is outside 0..2^64-1")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != 32:
            raise ValueError("checkpoint root hash must be 32 bytes")
        if isinstance(self.extensions, str):
            raise ValueError("checkpoint extensions must be a sequence of lines, not a string")
        extensions = tuple(self.extensions)
        for i, ext in enumerate(extensions, 1):
            if not isinstance(ext, str) or not ext or "\n" in ext:
                raise ValueError(f"checkpoint extension line {i} must be a non-empty single line")
            _check_note_chars(ext, f"checkpoint extension line {i}")
        object.__setattr__(self, "extensions", extensions)

    def body(self) -> str:
        """The note text: origin, size, base64 root hash, extension lines, each ending "\\n"."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body (a note's text, without the signature lines)."""
    if not isinstance(text, str):
        raise ValueError("checkpoint must be a string")
    if not text.endswith("\n"):
        raise ValueError("checkpoint text must end with a newline")
    _check_note_chars(text, "checkpoint")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise ValueError(
            f"checkpoint has {len(lines)} line(s), expected at least 3 (origin, size, root hash)"
        )
    origin, size_line, root_line, *extensions = lines
    if not origin:
        raise ValueError("checkpoint origin line is empty")
    if not _DECIMAL.fullmatch(size_line):
        raise ValueError(
            f"checkpoint size line {size_line!r} is not a decimal number without leading zeros"
        )
    size = int(size_line)
    if size > _MAX_TREE_SIZE:
        raise ValueError(f"checkpoint size {size_line} exceeds 2^64-1")
    root_hash = _b64decode(root_line, "checkpoint root hash line")
    if len(root_hash) != 32:
        raise ValueError(f"checkpoint root hash is {len(root_hash)} bytes, expected 32")
    if _b64encode(root_hash) != root_line:
        raise ValueError("checkpoint root hash line is not canonical base64")
    for i, ext in enumerate(extensions, 1):
        if not ext:
            raise ValueError(f"checkpoint extension line {i} is empty")
    return Checkpoint(origin, size, root_hash, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """The checkpoint as a signed note; the log key's name must equal the origin."""
    if signer.name != checkpoint.origin:
        raise ValueError(
            f"checkpoint origin {checkpoint.origin!r} differs from the signing key's name "
            f"{signer.name!r}"
        )
    return sign_note(checkpoint.body(), [signer])


def verify_checkpoint(note: str, verifier: Verifier) -> Checkpoint:
    """The checkpoint of a signed note that carries a valid signature by the log's key."""
    parsed = verify_note(note, verifier)
    checkpoint = parse_checkpoint(parsed.text)
    if checkpoint.origin != verifier.name:
        raise SignatureError(
            f"checkpoint origin {checkpoint.origin!r} is not the log of key "
            f"{verifier.name}+{verifier.key_id.hex()}"
        )
    return checkpoint


# --- cosignatures -----------------------------------------------------------------


def cosignature_message(text: str, timestamp: int) -> bytes:
    """The bytes an Ed25519 cosignature/v1 signs: header, time line, checkpoint body."""
    _check_timestamp(timestamp)
    return f"{COSIGNATURE_V1_HEADER}time {timestamp}\n{text}".encode()


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ValueError("cosignature timestamp must be an integer")
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise ValueError(f"cosignature timestamp {timestamp} is outside 0..2^63-1")


def cosign_checkpoint(note: str, signer: Signer, timestamp: int) -> str:
    """`note` with a cosignature/v1 line by `signer` at `timestamp` (POSIX seconds).

    A cosignature already present under the same key is replaced. This does not check
    the log's signature: verify the checkpoint first.
    """
    _check_timestamp(timestamp)
    parsed = parse_note(note)
    parse_checkpoint(parsed.text)  # only checkpoints are cosigned
    cosig_id = signer.cosignature_key_id
    payload = timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + signer.sign(
        cosignature_message(parsed.text, timestamp)
    )
    kept = tuple(
        s for s in parsed.signatures if not (s.name == signer.name and s.key_id == cosig_id)
    )
    if len(kept) + 1 > MAX_SIGNATURES:
        raise ValueError(f"note already has {len(kept)} signatures, at most {MAX_SIGNATURES}")
    return Note(parsed.text, (*kept, NoteSignature(signer.name, cosig_id, payload))).serialize()


def verify_cosignature(note: str, verifier: Verifier) -> int:
    """The timestamp of the valid cosignature/v1 by `verifier` on a checkpoint note.

    Lines under other keys are ignored; every line under the verifier's cosignature key
    ID must verify.
    """
    parsed = parse_note(note)
    parse_checkpoint(parsed.text)
    cosig_id = verifier.cosignature_key_id
    label = f"{verifier.name}+{cosig_id.hex()}"
    matched = [s for s in parsed.signatures if s.name == verifier.name and s.key_id == cosig_id]
    if not matched:
        raise SignatureError(f"note has no cosignature by key {label}")
    timestamps = []
    for sig in matched:
        if len(sig.signature) != _TIMESTAMP_SIZE + _ED25519_SIG_SIZE:
            raise SignatureError(
                f"cosignature by key {label} is {len(sig.signature)} bytes, expected "
                f"{_TIMESTAMP_SIZE + _ED25519_SIG_SIZE} (timestamp and Ed25519 signature)"
            )
        timestamp = int.from_bytes(sig.signature[:_TIMESTAMP_SIZE], "big")
        if timestamp > _MAX_TIMESTAMP:
            raise SignatureError(f"cosignature by key {label} has timestamp beyond 2^63-1")
        message = cosignature_message(parsed.text, timestamp)
        if not verifier.verify(message, sig.signature[_TIMESTAMP_SIZE:]):
            raise SignatureError(f"invalid cosignature by key {label}")
        timestamps.append(timestamp)
    return timestamps[0]
