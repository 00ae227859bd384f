"""The verifying state tracker: the last checkpoint this client verified, per log origin.

It advances only after a consistency proof from the trusted checkpoint to the new one
verifies; a smaller tree (rollback) or a proof that fails (fork) raises ConsistencyError
with both signed checkpoints and the proof, which together are evidence against the log.
The file is rewritten atomically (temporary file, fsync, rename) under an advisory lock,
so concurrent verifiers on one machine never lose an update or read half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clients._verify import checked_checkpoint
from provledger.errors import ConsistencyError, LedgerError, SignatureError, UnavailableError
from provledger.merkle import verify_consistency
from provledger.note import Checkpoint, Verifier, parse_checkpoint, parse_note

__all__ = ["Advance", "StateTracker", "TrustedCheckpoint", "default_state_path"]

_FORMAT_VERSION = 1

ProofFetcher = Callable[[int, int], Sequence[bytes]]
AsyncProofFetcher = Callable[[int, int], Awaitable[Sequence[bytes]]]


def default_state_path() -> Path:
    return Path.home() / ".local" / "state" / "provledger" / "trusted.json"


@dataclass(frozen=True, slots=True)
class TrustedCheckpoint:
    """A checkpoint note verified under the log's key, with its parsed fields."""

    origin: str
    tree_size: int
    root_hash: bytes
    note: str
    verified_at: str

    @classmethod
    def of(cls, checkpoint: Checkpoint, note: str) -> TrustedCheckpoint:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(checkpoint.origin, checkpoint.size, checkpoint.root_hash, note, now)

    def label(self) -> str:
        return f"size {self.tree_size} root {self.root_hash.hex()}"

    def to_json(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "checkpoint": self.note,
            "verified_at": self.verified_at,
        }


@dataclass(frozen=True, slots=True)
class Advance:
    """The outcome of one verification: what was trusted before, what is trusted now."""

    previous: TrustedCheckpoint | None
    current: TrustedCheckpoint
    proof: tuple[bytes, ...]

    @property
    def advanced(self) -> bool:
        return self.previous is None or self.previous.tree_size != self.current.tree_size


class StateTracker:
    """Trusted checkpoints in one JSON file (default ~/.local/state/provledger/trusted.json)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_state_path()

    # -- reading and writing the file --------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {"version": _FORMAT_VERSION, "logs": {}}
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise LedgerError(f"state file {self.path} is not JSON: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("logs"), dict):
            raise LedgerError(f"state file {self.path} has no 'logs' object")
        if data.get("version") != _FORMAT_VERSION:
            raise LedgerError(
                f"state file {self.path} has format version {data.get('version')!r}, "
                f"this client reads {_FORMAT_VERSION}"
            )
        return data

    def _write(self, data: dict[str, Any]) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".trusted-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        # The rename is durable only once the directory entry is.
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def trusted(self, origin: str, verifier: Verifier | None = None) -> TrustedCheckpoint | None:
        """The checkpoint trusted for `origin`, re-verified under `verifier` when given."""
        record = self._read()["logs"].get(origin)
        if record is None:
            return None
        note = str(record.get("checkpoint", ""))
        if verifier is not None:
            try:
                checkpoint = checked_checkpoint(note, verifier)
            except SignatureError as e:
                raise SignatureError(
                    f"the checkpoint trusted for {origin} in {self.path} does not verify "
                    f"under key {verifier.verifier_key}: {e.detail}"
                ) from None
        else:
            checkpoint = parse_checkpoint(parse_note(note).text)
        return TrustedCheckpoint(
            checkpoint.origin,
            checkpoint.size,
            checkpoint.root_hash,
            note,
            str(record.get("verified_at", "")),
        )

    def is_behind(self, note: str, verifier: Verifier) -> bool:
        """True if `note` verifies and is smaller than the checkpoint trusted for its log:
        a replica that has not caught up yet, or a rollback if it stays so."""
        checkpoint = checked_checkpoint(note, verifier)
        old = self.trusted(checkpoint.origin)
        return old is not None and checkpoint.size < old.tree_size

    def _store(self, current: TrustedCheckpoint) -> None:
        data = self._read()
        data["logs"][current.origin] = current.to_json()
        self._write(data)

    # -- verification --------------------------------------------------------

    def advance(self, note: str, verifier: Verifier, fetch_proof: ProofFetcher) -> Advance:
        """Verify `note` and its consistency with the trusted checkpoint, then trust it.

        `fetch_proof(first, second)` returns the RFC 9162 consistency proof hashes the
        ledger serves; nothing it returns is trusted.
        """
        with self._locked():
            new, old, sizes = self._begin(note, verifier)
            proof: Sequence[bytes] = ()
            if sizes is not None:
                proof = self._fetch(fetch_proof, *sizes, old, new)
            return self._finish(new, old, tuple(proof), fetch_proof)

    async def advance_async(
        self, note: str, verifier: Verifier, fetch_proof: AsyncProofFetcher
    ) -> Advance:
        """`advance` for asyncio callers."""
        with self._locked():
            new, old, sizes = self._begin(note, verifier)
            proof: Sequence[bytes] = ()
            rollback_proof: Sequence[bytes] | None = None
            if sizes is not None:
                try:
                    proof = await fetch_proof(*sizes)
                except (ConsistencyError, UnavailableError):
                    raise
                except LedgerError as e:
                    raise self._unprovable(old, new, e) from None
            elif old is not None and new.tree_size < old.tree_size:
                with contextlib.suppress(LedgerError):
                    rollback_proof = await fetch_proof(new.tree_size, old.tree_size)
            return self._finish(new, old, tuple(proof), lambda a, b: _given(rollback_proof))

    def _begin(
        self, note: str, verifier: Verifier
    ) -> tuple[TrustedCheckpoint, TrustedCheckpoint | None, tuple[int, int] | None]:
        """Verify the new note; the proof sizes needed from the trusted one (None: none)."""
        checkpoint = checked_checkpoint(note, verifier)
        new = TrustedCheckpoint.of(checkpoint, note)
        old = self.trusted(checkpoint.origin, verifier)
        if old is None or old.tree_size == 0 or new.tree_size <= old.tree_size:
            return new, old, None
        return new, old, (old.tree_size, new.tree_size)

    @staticmethod
    def _unprovable(
        old: TrustedCheckpoint | None, new: TrustedCheckpoint, error: LedgerError
    ) -> ConsistencyError:
        assert old is not None
        return ConsistencyError(
            f"{new.origin}: the ledger cannot prove that its checkpoint at {new.label()} "
            f"extends the trusted checkpoint at {old.label()}: {error.detail}",
            old_checkpoint=old.note,
            new_checkpoint=new.note,
        )

    def _fetch(
        self,
        fetch_proof: ProofFetcher,
        first: int,
        second: int,
        old: TrustedCheckpoint | None,
        new: TrustedCheckpoint,
    ) -> Sequence[bytes]:
        try:
            return fetch_proof(first, second)
        except ConsistencyError:
            raise
        except LedgerError as e:
            # An unreachable ledger is not evidence of anything: let the caller retry.
            if isinstance(e, UnavailableError):
                raise
            raise self._unprovable(old, new, e) from None

    def _finish(
        self,
        new: TrustedCheckpoint,
        old: TrustedCheckpoint | None,
        proof: tuple[bytes, ...],
        fetch_proof: ProofFetcher,
    ) -> Advance:
        if old is None:
            self._store(new)  # trust on first use: there is nothing to be consistent with
            return Advance(None, new, ())
        if new.tree_size < old.tree_size:
            raise self._rollback(old, new, fetch_proof)
        if new.tree_size == old.tree_size:
            if new.root_hash != old.root_hash:
                raise ConsistencyError(
                    f"{new.origin}: fork: two checkpoints of size {new.tree_size} with "
                    f"different roots (trusted {old.root_hash.hex()}, "
                    f"served {new.root_hash.hex()})",
                    old_checkpoint=old.note,
                    new_checkpoint=new.note,
                )
            return Advance(old, old, ())
        try:
            verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)
        except ConsistencyError as e:
            raise ConsistencyError(
                f"{new.origin}: fork: the checkpoint served at {new.label()} is not "
                f"consistent with the trusted checkpoint at {old.label()}: {e.detail}",
                old_checkpoint=old.note,
                new_checkpoint=new.note,
                proof=proof,
            ) from None
        self._store(new)
        return Advance(old, new, proof)

    @staticmethod
    def _rollback(
        old: TrustedCheckpoint, new: TrustedCheckpoint, fetch_proof: ProofFetcher
    ) -> ConsistencyError:
        # Ask for the proof that the smaller tree is a prefix of the trusted one, only to
        # say which kind of lie this is; either way the log went backwards.
        proof: tuple[bytes, ...] = ()
        kind = "the ledger cannot prove the smaller tree is a prefix of the trusted one"
        try:
            proof = tuple(fetch_proof(new.tree_size, old.tree_size))
            verify_consistency(new.tree_size, old.tree_size, new.root_hash, old.root_hash, proof)
            kind = "an older state of the same log"
        except ConsistencyError:
            kind = "and it is not a prefix of the trusted tree either: a fork"
        except LedgerError:
            pass
        return ConsistencyError(
            f"{new.origin}: rollback: the ledger served a checkpoint at {new.label()} "
            f"after this client trusted {old.label()} ({kind})",
            old_checkpoint=old.note,
            new_checkpoint=new.note,
            proof=proof,
        )


def _given(proof: Sequence[bytes] | None) -> Sequence[bytes]:
    if proof is None:
        raise LedgerError("no proof")
    return proof
