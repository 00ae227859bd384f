"""Signed notes, checkpoints and cosignatures against published vectors and mutations.

Vectors and where they come from:

- GO_*: golang.org/x/mod/sumdb/note, note_test.go (TestSign, TestOpen, TestNewVerifier)
  and the package doc in note.go, https://github.com/golang/mod/blob/master/sumdb/note/
  (read at commit 02c991387e35f9e4c0a9b7ce137717055f8d716d). Ed25519 is deterministic
  (RFC 8032), so our signature of the same text under the same seed must equal Go's
  byte for byte.
- SPEC_FOO_*: the worked example of c2sp.org/signed-note (verifier key
  example.com/foo+530d903a, "This is an example message."), as quoted from
  github.com/C2SP/C2SP signed-note.md at commit d4c16da5e7687a016619074e78dad84b2c7238cc.
- ARCHE_*: a real checkpoint of the transparency.dev staging CT log
  arche2025h1.staging.ct.transparency.dev with witness cosignatures, and the verifier
  keys of the log and of the remora.n621.de witness, from github.com/florolf/tlog-scales
  tests/test_signing.py (TestCheckpointVerification). The remora key (type 0x04) is also
  listed in github.com/transparency-dev/formats note/note_cosigv1_test.go
  (TestCoSigV1NewVerifier).
- COSIG_SPEC_*: the example in c2sp.org/tlog-cosignature (github.com/C2SP/C2SP
  tlog-cosignature.md). Its witness key is not published, so it pins the message and
  line layout only.
- TD_COSIG_LINE: transparency-dev/formats note/note_cosigv1_test.go (TestCoSigV1Timestamp),
  a cosignature payload whose timestamp is 1727964367.
"""

from __future__ import annotations

import base64
import hashlib
import string

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from provledger.errors import SignatureError
from provledger.note import (
    MAX_SIGNATURES,
    Checkpoint,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    cosign_checkpoint,
    cosignature_message,
    parse_checkpoint,
    parse_note,
    sign_checkpoint,
    sign_note,
    valid_key_name,
    verify_checkpoint,
    verify_cosignature,
    verify_note,
)

EM = "\u2014"

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_PETER_SIG = (
    f"{EM} PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_SIG = (
    f"{EM} EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
GO_NOTE = GO_TEXT + "\n" + GO_PETER_SIG

SPEC_FOO_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_FOO_NOTE = (
    "This is an example message.\n\n"
    f"{EM} example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)

ARCHE_LOG_VKEY = (
    "arche2025h1.staging.ct.transparency.dev+ba2f06c0+AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f"
)
ARCHE_REMORA_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
ARCHE_TEXT = (
    "arche2025h1.staging.ct.transparency.dev\n"
    "1432088532\n"
    "U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n"
)
# The first line is the log's RFC 6962 tree head signature (type 0x05): same key name,
# another key id, so a verifier must skip it.
ARCHE_SIGNATURES = [
    (
        "arche2025h1.staging.ct.transparency.dev",
        "zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGREPMHbdQ3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0=",
    ),
    (
        "arche2025h1.staging.ct.transparency.dev",
        "ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwhUkzbC3NygNI75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=",
    ),
    (
        "transparency.dev/DEV:witness-little-garden",
        "2AQqhwAAAABqEiEgzgFIqqhbUoDwjMWE6UP8nd8/KYTzwZ2rhIgcqoXHAwVkjZr4AscylP3v7sEodkRAErumC2q44vdgJY096st5BQ==",
    ),
    (
        "witness1.smartit.nu/witness1",
        "pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+/iEcxZ75W3u5hNI7TOQtmJbqmNWVuE0tgh0XwzdZsDsUAQ==",
    ),
    (
        "remora.n621.de",
        "2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sXTynk5XeU/zZ0WBxtqB0DrAWfBw==",
    ),
    (
        "witness.stagemole.eu",
        "Z/euoAAAAABqEiEgw0i+7g2ENfDAWHmtRzCfKTHSDwYDJA2NmKeGi9Y8FtEyOUvVr+AJmIY/2TUFucgKi7lI7cUiOvKFYe/TmN9DAg==",
    ),
]
ARCHE_NOTE = ARCHE_TEXT + "\n" + "".join(f"{EM} {name} {sig}\n" for name, sig in ARCHE_SIGNATURES)
ARCHE_REMORA_TIMESTAMP = 0x6A122120  # the 8 bytes after remora's key id "2net5w" (da77ade7)

COSIG_SPEC_TEXT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
COSIG_SPEC_NOTE = (
    COSIG_SPEC_TEXT + "\n" + f"{EM} example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    + f"{EM} witness.example.com/w1 "
    "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
COSIG_SPEC_MESSAGE = (
    "cosignature/v1\n"
    "time 1679315147\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
TD_COSIG_LINE = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4v"
    "anlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=="
)


def go_signer() -> Signer:
    """The Go test's signer key: PRIVATE+KEY+<name>+<key id>+base64(0x01 || seed)."""
    private, key, name, id_hex, key64 = GO_SKEY.split("+", 4)
    assert (private, key) == ("PRIVATE", "KEY")
    raw = base64.b64decode(key64)
    assert raw[0] == 0x01
    signer = Signer.from_seed(name, raw[1:])
    assert signer.key_id.hex() == id_hex
    return signer


def flip_sig_byte(line: str, index: int) -> str:
    """A signature line with one byte of its decoded signature (after the key id) flipped."""
    prefix, b64 = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[4 + index] ^= 0x01
    return f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n"


# --- the Go reference vectors ---------------------------------------------------------


def test_go_signer_key_gives_the_go_verifier_key() -> None:
    signer = go_signer()
    assert signer.key_id == bytes.fromhex("c74f20a3")
    assert signer.verifier_key == GO_VKEY
    assert Verifier.from_string(GO_VKEY) == signer.verifier
    assert Verifier.from_string(GO_VKEY).verifier_key == GO_VKEY


def test_signing_the_go_text_reproduces_the_go_note_byte_for_byte() -> None:
    assert sign_note(GO_TEXT, [go_signer()]) == GO_NOTE


def test_the_go_note_verifies_and_yields_its_text() -> None:
    note = verify_note(GO_NOTE, Verifier.from_string(GO_VKEY))
    assert note.text == GO_TEXT
    assert note.signatures == (
        NoteSignature(
            "PeterNeumann",
            bytes.fromhex("c74f20a3"),
            base64.b64decode(GO_PETER_SIG.split()[-1])[4:],
        ),
    )
    assert note.serialize() == GO_NOTE


def test_signatures_by_unknown_keys_are_ignored() -> None:
    both = GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG
    assert verify_note(both, Verifier.from_string(GO_VKEY)).text == GO_TEXT
    assert verify_note(both, Verifier.from_string(GO_ENOCH_VKEY)).text == GO_TEXT
    with pytest.raises(SignatureError, match=r"no signature by key EnochRoot\+af0cfe78"):
        verify_note(GO_NOTE, Verifier.from_string(GO_ENOCH_VKEY))


def test_go_verifier_key_manglings_are_refused() -> None:
    # TestNewVerifier: every proper substring and every single-byte increment fails.
    b = GO_VKEY.encode()
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(ValueError):
                    Verifier.from_string(b[i:j].decode())
    for i in range(len(b)):
        mangled = bytearray(b)
        mangled[i] += 1
        with pytest.raises(ValueError):
            Verifier.from_string(mangled.decode())
    # Wrong key length and unknown algorithm, each with a matching key hash.
    with pytest.raises(ValueError, match="36 bytes"):
        Verifier.from_string(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(ValueError, match="unsupported key type"):
        Verifier.from_string("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        (GO_TEXT, "no blank line"),
        (GO_TEXT + "\n", "no signature lines"),
        (GO_TEXT + "\n" + GO_PETER_SIG[:-1], "does not end with a newline"),
        ("\x01" + GO_TEXT + "\n" + GO_PETER_SIG, "control character"),
        ("\udcff" + GO_TEXT + "\n" + GO_PETER_SIG, "UTF-8"),  # Go's "\xff"
        (
            GO_TEXT + "\n" + f"{EM} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuG"
            "UgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
            "key names cannot contain spaces",
        ),
        (
            GO_TEXT + "\n" + GO_PETER_SIG.replace("PeterNeumann", "Peter+Neumann"),
            "invalid key name",
        ),
        (GO_TEXT + "\n" + GO_PETER_SIG + "Unexpected line.\n", "em dash"),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace(EM, "--"), "em dash"),
        (GO_TEXT + "\n" + f"{EM} PeterNeumann\n", "no signature"),
        (GO_TEXT + "\n" + f"{EM} PeterNeumann AAAA\n", "shorter than a key id"),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace("x08go", "x08g-"), "base64"),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace("AM=\n", "AM\n"), "base64"),
    ],
)
def test_malformed_notes_are_refused_naming_the_problem(note: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_note(note)
    with pytest.raises(ValueError, match=reason):
        verify_note(note, Verifier.from_string(GO_VKEY))


def test_mutated_go_notes_are_refused() -> None:
    verifier = Verifier.from_string(GO_VKEY)
    # One byte of the text changed.
    with pytest.raises(SignatureError, match=r"invalid signature by key PeterNeumann\+c74f20a3"):
        verify_note(GO_NOTE.replace("cryptography", "cryptographY"), verifier)
    # One bit of the signature flipped, at the start, middle and end.
    for index in (0, 31, 63):
        with pytest.raises(SignatureError, match="invalid signature"):
            verify_note(GO_TEXT + "\n" + flip_sig_byte(GO_PETER_SIG, index), verifier)
    # Go's "invalid signature" case: four characters spliced into the base64.
    with pytest.raises(SignatureError, match="invalid signature"):
        verify_note(GO_TEXT + "\n" + GO_PETER_SIG[:60] + "ABCD" + GO_PETER_SIG[60:], verifier)
    # Wrong key name (TestOpen's CarmenSandiego) or key id: not the verifier's signature.
    with pytest.raises(SignatureError, match="no signature by key"):
        verify_note(GO_NOTE.replace("PeterNeumann", "CarmenSandiego"), verifier)
    with pytest.raises(SignatureError, match="no signature by key"):
        verify_note(GO_NOTE.replace("x08g", "xxxx"), verifier)
    # The blank line removed: no longer a signed note at all.
    with pytest.raises(ValueError, match="no blank line"):
        verify_note(GO_TEXT + GO_PETER_SIG, verifier)


def test_every_signature_claiming_the_key_must_verify() -> None:
    verifier = Verifier.from_string(GO_VKEY)
    assert verify_note(GO_NOTE + GO_PETER_SIG, verifier).text == GO_TEXT
    with pytest.raises(SignatureError):
        verify_note(GO_NOTE + flip_sig_byte(GO_PETER_SIG, 5), verifier)


def test_signature_count_is_capped() -> None:
    verifier = Verifier.from_string(GO_VKEY)
    assert verify_note(GO_TEXT + "\n" + GO_PETER_SIG * MAX_SIGNATURES, verifier).text == GO_TEXT
    with pytest.raises(ValueError, match="at most 100"):
        parse_note(GO_TEXT + "\n" + GO_PETER_SIG * (MAX_SIGNATURES + 1))


def test_text_may_contain_blank_lines() -> None:
    # signed-note: "the text is separated from the signatures by the last empty line".
    text = "para one\n\npara two\n"
    signer = go_signer()
    note = sign_note(text, [signer])
    assert verify_note(note, signer.verifier).text == text


# --- the signed-note spec example -----------------------------------------------------


def test_the_signed_note_spec_example_verifies() -> None:
    verifier = Verifier.from_string(SPEC_FOO_VKEY)
    assert verifier.name == "example.com/foo"
    assert verifier.key_id == bytes.fromhex("530d903a")
    assert verifier.verifier_key == SPEC_FOO_VKEY
    assert verify_note(SPEC_FOO_NOTE, verifier).text == "This is an example message.\n"
    with pytest.raises(SignatureError):
        verify_note(SPEC_FOO_NOTE.replace("example message", "example massage"), verifier)


# --- keys -----------------------------------------------------------------------------


def test_key_id_is_sha256_of_name_newline_type_and_key() -> None:
    signer = Signer.from_seed("example.org/log", bytes(range(32)))
    pub = signer.public_key
    assert pub == Ed25519PublicKey.from_public_bytes(pub).public_bytes_raw()
    name = b"example.org/log"
    assert signer.key_id == hashlib.sha256(name + b"\n\x01" + pub).digest()[:4]
    assert signer.cosignature_key_id == hashlib.sha256(name + b"\n\x04" + pub).digest()[:4]
    vkey = signer.verifier_key
    key64 = base64.b64encode(b"\x01" + pub).decode()
    assert vkey == f"example.org/log+{signer.key_id.hex()}+{key64}"
    assert Signer.from_seed("example.org/log", signer.seed).verifier_key == vkey


@pytest.mark.parametrize(
    "name", ["", "a b", "a+b", "a\tb", "a\nb", "a\u00a0b", "a\u3000b", "a\x00b", "a\udc80b"]
)
def test_invalid_key_names_are_refused(name: str) -> None:
    assert not valid_key_name(name)
    with pytest.raises(ValueError, match="invalid"):
        Signer.generate(name)
    with pytest.raises(ValueError, match="invalid"):
        Verifier(name, bytes(32))


def test_verifier_key_errors_name_the_problem() -> None:
    signer = Signer.from_seed("log.example", bytes(32))
    good = signer.verifier_key
    name, id_hex, key64 = good.split("+", 2)
    with pytest.raises(ValueError, match="does not match"):
        Verifier.from_string(f"{name}+00000000+{key64}")
    with pytest.raises(ValueError, match="8 lowercase hex"):
        Verifier.from_string(f"{name}+{id_hex.upper()}+{key64}")
    with pytest.raises(ValueError, match="expected <name>"):
        Verifier.from_string(name)
    with pytest.raises(ValueError, match="base64"):
        Verifier.from_string(f"{name}+{id_hex}+{key64}!")


def test_signer_repr_shows_no_key_material() -> None:
    signer = Signer.from_seed("log.example", bytes(range(32)))
    assert signer.seed.hex() not in repr(signer)
    assert base64.b64encode(signer.seed).decode() not in repr(signer)


def test_a_type_0x04_verifier_key_round_trips() -> None:
    remora = Verifier.from_string(ARCHE_REMORA_VKEY)
    assert remora.cosignature_key_id == bytes.fromhex("da77ade7")
    assert remora.cosignature_verifier_key == ARCHE_REMORA_VKEY


# --- checkpoints ----------------------------------------------------------------------


def test_a_real_ct_log_checkpoint_verifies() -> None:
    checkpoint = verify_checkpoint(ARCHE_NOTE, Verifier.from_string(ARCHE_LOG_VKEY))
    assert checkpoint == Checkpoint(
        origin="arche2025h1.staging.ct.transparency.dev",
        size=1432088532,
        root_hash=base64.b64decode("U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro="),
    )
    assert checkpoint.body() == ARCHE_TEXT


def test_a_real_witness_cosignature_verifies() -> None:
    remora = Verifier.from_string(ARCHE_REMORA_VKEY)
    assert verify_cosignature(ARCHE_NOTE, remora) == ARCHE_REMORA_TIMESTAMP == 1779573024
    # A cosignature is not a plain note signature of that key.
    with pytest.raises(SignatureError, match="no signature by key remora"):
        verify_note(ARCHE_NOTE, remora)


def test_the_real_checkpoint_with_another_size_is_refused() -> None:
    clobbered = ARCHE_NOTE.replace("\n1432088532\n", "\n42\n")
    with pytest.raises(SignatureError):
        verify_checkpoint(clobbered, Verifier.from_string(ARCHE_LOG_VKEY))
    with pytest.raises(SignatureError, match=r"invalid cosignature by key remora\.n621\.de"):
        verify_cosignature(clobbered, Verifier.from_string(ARCHE_REMORA_VKEY))


def test_the_cosignature_spec_example_layout() -> None:
    assert cosignature_message(COSIG_SPEC_TEXT, 1679315147) == COSIG_SPEC_MESSAGE.encode()
    witness = parse_note(COSIG_SPEC_NOTE).signatures[1]
    assert witness.name == "witness.example.com/w1"
    assert witness.key_id == bytes.fromhex("8d66cf3f")
    assert len(witness.signature) == 8 + 64
    assert int.from_bytes(witness.signature[:8], "big") == 1679315147
    td = base64.b64decode(TD_COSIG_LINE)
    assert int.from_bytes(td[4:12], "big") == 1727964367


def test_checkpoint_body_format() -> None:
    root = hashlib.sha256(b"root").digest()
    cp = Checkpoint("example.com/log", 20852163, root, ("ext one", "ext two"))
    b64 = base64.b64encode(root).decode()
    assert cp.body() == f"example.com/log\n20852163\n{b64}\next one\next two\n"
    assert parse_checkpoint(cp.body()) == cp
    assert Checkpoint("o", 0, bytes(32)).body().split("\n")[1] == "0"


ROOT64 = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"o\n1\n{ROOT64}", "end with a newline"),
        ("o\n1\n", "at least 3"),
        (f"\n1\n{ROOT64}\n", "origin line is empty"),
        (f"o\n01\n{ROOT64}\n", "leading zeros"),
        (f"o\n00\n{ROOT64}\n", "leading zeros"),
        (f"o\n-1\n{ROOT64}\n", "leading zeros"),
        (f"o\n+1\n{ROOT64}\n", "leading zeros"),
        (f"o\n 1\n{ROOT64}\n", "leading zeros"),
        (f"o\n\uff11\n{ROOT64}\n", "leading zeros"),  # fullwidth digit one
        (f"o\n1.0\n{ROOT64}\n", "leading zeros"),
        (f"o\n{2**64}\n{ROOT64}\n", "exceeds"),
        ("o\n1\nAAAA\n", "3 bytes"),
        (f"o\n1\n{ROOT64[:-1]}\n", "base64"),
        (f"o\n1\n{ROOT64[:-2]}B=\n", "canonical"),
        (f"o\n1\n{ROOT64}\n\nx\n", "extension line 1 is empty"),
        (f"o\x07\n1\n{ROOT64}\n", "control character"),
    ],
)
def test_malformed_checkpoints_are_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_checkpoint(text)


def test_checkpoint_values_are_validated() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Checkpoint("o", 1, bytes(31))
    with pytest.raises(ValueError, match="2\\^64"):
        Checkpoint("o", -1, bytes(32))
    with pytest.raises(ValueError, match="integer"):
        Checkpoint("o", True, bytes(32))
    with pytest.raises(ValueError, match="one line"):
        Checkpoint("o\nx", 1, bytes(32))
    with pytest.raises(ValueError, match="extension line 1"):
        Checkpoint("o", 1, bytes(32), ("",))


def test_sign_and_verify_checkpoint() -> None:
    log = Signer.from_seed("example.com/log", bytes(range(32)))
    cp = Checkpoint("example.com/log", 3, hashlib.sha256(b"x").digest())
    note = sign_checkpoint(cp, log)
    assert note.startswith(cp.body() + "\n" + f"{EM} example.com/log ")
    assert verify_checkpoint(note, log.verifier) == cp
    # The same note under Go's verifier: the log key decides, not the text.
    with pytest.raises(SignatureError, match="no signature"):
        verify_checkpoint(note, Verifier.from_string(GO_VKEY))


def test_checkpoint_origin_must_be_the_key_name() -> None:
    log = Signer.from_seed("example.com/log", bytes(32))
    other = Checkpoint("example.com/other", 1, bytes(32))
    with pytest.raises(ValueError, match="differs from the signing key"):
        sign_checkpoint(other, log)
    note = sign_note(other.body(), [log])
    with pytest.raises(SignatureError, match="origin"):
        verify_checkpoint(note, log.verifier)


def test_a_signed_note_that_is_not_a_checkpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        verify_checkpoint(GO_NOTE, Verifier.from_string(GO_VKEY))


# --- cosignatures ---------------------------------------------------------------------


def _log_and_note() -> tuple[Signer, str]:
    log = Signer.from_seed("example.com/log", bytes(range(32)))
    cp = Checkpoint("example.com/log", 5, hashlib.sha256(b"five").digest())
    return log, sign_checkpoint(cp, log)


def test_cosignature_line_layout_matches_the_spec() -> None:
    _, note = _log_and_note()
    node = Signer.from_seed("node-1", bytes(range(1, 33)))
    cosigned = cosign_checkpoint(note, node, 1700000000)
    assert cosigned.startswith(note)
    line = cosigned[len(note) :]
    prefix, b64 = line.rstrip("\n").split(" ")[:2], line.rstrip("\n").split(" ")[2]
    assert prefix == [EM, "node-1"]
    raw = base64.b64decode(b64)
    expected_id = hashlib.sha256(b"node-1\n\x04" + node.public_key).digest()[:4]
    assert raw[:4] == expected_id
    assert raw[4:12] == (1700000000).to_bytes(8, "big")
    # Independent of cosign_checkpoint: build the message by hand and check the signature.
    text = parse_note(note).text
    message = b"cosignature/v1\ntime 1700000000\n" + text.encode()
    Ed25519PublicKey.from_public_bytes(node.public_key).verify(raw[12:], message)
    assert len(raw) == 4 + 8 + 64


def test_cosign_and_verify_round_trip() -> None:
    log, note = _log_and_note()
    node = Signer.from_seed("node-1", bytes(range(1, 33)))
    cosigned = cosign_checkpoint(note, node, 1700000000)
    assert verify_cosignature(cosigned, node.verifier) == 1700000000
    assert verify_checkpoint(cosigned, log.verifier) == verify_checkpoint(note, log.verifier)
    # Re-cosigning replaces the node's line rather than adding a second one.
    again = cosign_checkpoint(cosigned, node, 1700000001)
    assert len(parse_note(again).signatures) == 2
    assert verify_cosignature(again, node.verifier) == 1700000001


def test_cosignatures_are_refused_when_wrong() -> None:
    _, note = _log_and_note()
    node = Signer.from_seed("node-1", bytes(range(1, 33)))
    cosigned = cosign_checkpoint(note, node, 1700000000)
    with pytest.raises(SignatureError, match="no cosignature by key node-2"):
        verify_cosignature(cosigned, Signer.from_seed("node-2", bytes(32)).verifier)
    with pytest.raises(SignatureError, match="no cosignature"):
        verify_cosignature(note, node.verifier)
    # Same name, another key: its key id differs, so the line is not this key's.
    with pytest.raises(SignatureError, match="no cosignature"):
        verify_cosignature(cosigned, Signer.from_seed("node-1", bytes(32)).verifier)
    last = parse_note(cosigned).signatures[-1].line()
    head = cosigned[: -len(last)]
    for index in (0, 7, 8, 40, 71):  # timestamp bytes and signature bytes
        with pytest.raises(SignatureError, match="invalid cosignature"):
            verify_cosignature(head + flip_sig_byte(last, index), node.verifier)
    short = NoteSignature("node-1", node.cosignature_key_id, bytes(70)).line()
    with pytest.raises(SignatureError, match="70 bytes"):
        verify_cosignature(head + short, node.verifier)
    with pytest.raises(SignatureError, match="invalid cosignature"):
        verify_cosignature(cosigned.replace("\n5\n", "\n6\n"), node.verifier)


def test_cosign_refuses_bad_input() -> None:
    _, note = _log_and_note()
    node = Signer.from_seed("node-1", bytes(range(1, 33)))
    with pytest.raises(ValueError, match="2\\^63"):
        cosign_checkpoint(note, node, 2**63)
    with pytest.raises(ValueError, match="2\\^63"):
        cosign_checkpoint(note, node, -1)
    with pytest.raises(ValueError, match="at least 3"):
        cosign_checkpoint(GO_NOTE, node, 1)


# --- the general note layer -----------------------------------------------------------


def test_sign_note_with_several_signers_in_order() -> None:
    a = Signer.from_seed("a.example", bytes(32))
    b = Signer.from_seed("b.example", bytes(range(32)))
    note = sign_note("hello\n", [a, b])
    assert [s.name for s in parse_note(note).signatures] == ["a.example", "b.example"]
    assert verify_note(note, a.verifier).text == verify_note(note, b.verifier).text == "hello\n"
    with pytest.raises(ValueError, match="listed twice"):
        sign_note("hello\n", [a, a])
    with pytest.raises(ValueError, match="at least one signer"):
        sign_note("hello\n", [])


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "non-empty"), ("abc", "end with a newline"), ("a\rb\n", "control character")],
)
def test_sign_note_refuses_bad_text(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        sign_note(text, [go_signer()])


def test_note_without_signatures_cannot_be_serialized() -> None:
    with pytest.raises(ValueError, match="at least one signature"):
        Note("x\n", ()).serialize()


# --- properties -----------------------------------------------------------------------

_NAME_ALPHABET = string.ascii_letters + string.digits + "./-_:~é\u2014"
origins = st.text(_NAME_ALPHABET, min_size=1, max_size=40)
extension_lines = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, blacklist_categories=["Cs"]),
    min_size=1,
    max_size=30,
)
checkpoints = st.builds(
    Checkpoint,
    origin=origins,
    size=st.integers(0, 2**64 - 1),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(extension_lines, max_size=3).map(tuple),
)


@given(checkpoints)
def test_checkpoint_body_round_trips(cp: Checkpoint) -> None:
    assert parse_checkpoint(cp.body()) == cp


@settings(max_examples=50)
@given(checkpoints, st.binary(min_size=32, max_size=32))
def test_signed_checkpoints_round_trip(cp: Checkpoint, seed: bytes) -> None:
    log = Signer.from_seed(cp.origin, seed)
    note = sign_checkpoint(cp, log)
    assert verify_checkpoint(note, Verifier.from_string(log.verifier_key)) == cp
    assert parse_note(note).serialize() == note


@settings(max_examples=200)
@given(checkpoints, st.data())
def test_any_change_to_a_signed_checkpoint_text_is_refused(
    cp: Checkpoint, data: st.DataObject
) -> None:
    log = Signer.from_seed(cp.origin, bytes(32))
    note = sign_checkpoint(cp, log)
    body = cp.body()
    i = data.draw(st.integers(0, len(body) - 1), label="position")
    replacement = data.draw(st.characters(codec="utf-8"), label="replacement")
    if replacement == body[i]:
        return
    mutated = body[:i] + replacement + body[i + 1 :] + note[len(body) :]
    with pytest.raises((ValueError, SignatureError)):
        verify_checkpoint(mutated, log.verifier)
