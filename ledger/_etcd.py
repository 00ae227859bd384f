"""The cluster's coordinator on etcd: leader lease, fenced block commits, watch, block window.

The only module that imports the etcd client (python3-etcd3), so that the client can be
swapped (aetcd, etcd3gw) behind the same calls. Keyspace under `/provledger/<log>/`:

    leader           {node, address}, bound to the leader's lease; create_revision = term
    head             {height, hash, term, tree_size}: the commit point
    blocks/<height>  the signed block with its leaves (a serialized provledger.v1.Block):
                     a transient window, collected below min(applied) - keep
    members/<node>   {node, verifier_key, address}
    applied/<node>   the height durable in that node's LevelDB
    records/<name>   an idempotency record (SPEC §3), under a lease of twice its TTL, so
                     that the next leader answers a retried batch as the last one did

Safety never rests on the lease: every block is committed by one transaction that
compares `create_revision(leader) == term` and `head == the head this leader extends`,
then writes `blocks/<h>` and `head`. The lease only decides who may try. An outcome we
cannot learn (the transport failed) is resolved by reading `head` back: our block's hash
there means committed; the old head with our term still holding means not (and the
transaction is sent again); anything else means another leader, and we step down.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import etcd3
import etcd3.exceptions
import grpc
from etcd3 import etcdrpc
from etcd3.etcdrpc import kv_pb2

from ledger._config import TLSConfig
from ledger.coordinator import CommitRecord, FencedError
from provledger.errors import UnavailableError

__all__ = [
    "CommittedHead",
    "EtcdCoordinator",
    "EtcdSettings",
    "LeaderInfo",
    "Member",
]

log = logging.getLogger(__name__)

# Every error the client raises (its own, gRPC's, and ValueError for a failed endpoint).
_ETCD_ERRORS: tuple[type[BaseException], ...] = (
    etcd3.exceptions.Etcd3Exception,
    grpc.RpcError,
    ValueError,
)
_RECENT_HEADS = 4096  # committed (height, hash) pairs remembered from the watch
MAX_SHARED_RECORD = 1 << 20  # etcd refuses requests above 1.5 MiB by default


@dataclass(frozen=True, slots=True)
class EtcdSettings:
    endpoints: tuple[tuple[str, int], ...]
    log: str
    # (CA, certificate chain, private key) PEM for https:// endpoints; None: plaintext.
    tls: tuple[bytes, bytes, bytes] | None = None
    lease_ttl: int = 2
    timeout: float = 2.0
    gc_keep: int = 16  # blocks kept below the lowest applied height
    gc_max_window: int = 1000  # blocks kept at most, whatever a lagging node has applied
    compact_keep: int = 5000  # etcd revisions kept when compacting
    compact_every_s: float = 10.0
    housekeeping_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("coordinator.endpoints: at least one etcd endpoint is needed")
        if not self.log or any(c.isspace() or c == "/" for c in self.log):
            raise ValueError(f"coordinator.log: {self.log!r} must be non-empty, no spaces or '/'")
        if not 1 <= self.lease_ttl <= 60:
            raise ValueError("coordinator.lease_ttl_s: must be between 1 and 60")
        if self.timeout <= 0:
            raise ValueError("coordinator.timeout_s: must be positive")
        if self.gc_keep < 1 or self.gc_max_window < self.gc_keep:
            raise ValueError("coordinator.gc_keep: at least 1 and at most gc_max_window")

    @classmethod
    def from_mapping(
        cls, raw: dict[str, Any], origin: str, tls: TLSConfig | None = None
    ) -> EtcdSettings:
        """From the node's [coordinator] table. https:// endpoints are reached over TLS
        with the node's own certificate (`tls`, its [tls] table), which etcd checks
        against the cluster CA; plain host:port or http:// ones without."""
        known = {
            "kind",
            "endpoints",
            "log",
            "lease_ttl_s",
            "timeout_s",
            "gc_keep",
            "gc_max_window",
            "compact_keep",
            "compact_every_s",
            "housekeeping_s",
        }
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown coordinator keys: {sorted(unknown)}")
        endpoints = []
        schemes = set()
        for text in raw.get("endpoints", []):
            scheme, _, address = str(text).rpartition("://")
            host, sep, port = address.rpartition(":")
            if scheme not in ("", "http", "https") or not sep or not port.isdigit():
                raise ValueError(
                    f"coordinator.endpoints: {text!r} is not host:port, http://host:port "
                    "or https://host:port"
                )
            schemes.add(scheme == "https")
            endpoints.append((host, int(port)))
        if len(schemes) > 1:
            raise ValueError("coordinator.endpoints: either all https:// or none")
        credentials = None
        if True in schemes:
            if tls is None:
                raise ValueError(
                    "coordinator.endpoints: https:// endpoints need the node's [tls] "
                    "ca, cert and key"
                )
            credentials = (tls.ca.read_bytes(), tls.cert.read_bytes(), tls.key.read_bytes())
        default_log = "".join(c if c.isalnum() or c in "-_." else "_" for c in origin)
        return cls(
            endpoints=tuple(endpoints),
            log=str(raw.get("log", default_log)),
            tls=credentials,
            lease_ttl=int(raw.get("lease_ttl_s", 2)),
            timeout=float(raw.get("timeout_s", 2.0)),
            gc_keep=int(raw.get("gc_keep", 16)),
            gc_max_window=int(raw.get("gc_max_window", 1000)),
            compact_keep=int(raw.get("compact_keep", 5000)),
            compact_every_s=float(raw.get("compact_every_s", 10.0)),
            housekeeping_s=float(raw.get("housekeeping_s", 0.5)),
        )


@dataclass(frozen=True, slots=True)
class CommittedHead:
    """The commit point as etcd holds it; `raw` is the exact value a commit compares."""

    height: int
    block_hash: bytes
    term: int
    tree_size: int
    raw: bytes

    @classmethod
    def parse(cls, raw: bytes) -> CommittedHead:
        obj = json.loads(raw)
        return cls(
            int(obj["height"]),
            bytes.fromhex(obj["hash"]),
            int(obj["term"]),
            int(obj["tree_size"]),
            bytes(raw),
        )

    @staticmethod
    def encode(height: int, block_hash: bytes, term: int, tree_size: int) -> bytes:
        return json.dumps(
            {"height": height, "hash": block_hash.hex(), "term": term, "tree_size": tree_size},
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    node: str
    address: str
    term: int


@dataclass(frozen=True, slots=True)
class Member:
    node: str
    verifier_key: str
    address: str


class EtcdCoordinator:
    """One node's view of the cluster: campaign, keep-alive, fenced commit, watch, GC."""

    needs_payload = True

    def __init__(self, settings: EtcdSettings, node_id: str, address: str) -> None:
        self.settings = settings
        self.node_id = node_id
        self.address = address
        prefix = f"/provledger/{settings.log}/"
        self._prefix = prefix
        self._leader_key = (prefix + "leader").encode()
        self._head_key = (prefix + "head").encode()
        self._blocks = prefix + "blocks/"
        self._members = prefix + "members/"
        self._applied = prefix + "applied/"
        self._records = prefix + "records/"
        # Separate clients (each with a channel per endpoint) for commits and reads, for
        # the lease, and for the watch: a slow call on one never delays the others, and
        # the client's failover bookkeeping is not shared between threads.
        self._kv = self._client(settings.timeout)
        self._lease_client = self._client(min(settings.timeout, settings.lease_ttl / 2))
        self._watch_client = self._client(settings.timeout)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._leading = False
        self._term = 0
        self._lease_id: int | None = None
        self._lease_valid_until = 0.0
        self._leader: LeaderInfo | None = None
        self._leader_revision = 0  # the etcd revision of the leader view held
        self._head: CommittedHead | None = None
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self._expected: CommittedHead | None = None  # the head the next commit extends
        self._lost_callbacks: list[Callable[[str], None]] = []
        self._applied_height: int | None = None
        self._applied_reported: int | None = None
        self._member_map: dict[str, Member] = {}
        self._members_watched = False  # the watch keeps _member_map current
        # The watch covers head, leader and members/ (one key range), not the busy
        # blocks/ and applied/ families.
        self._watch_end = (prefix + "members0").encode()  # "0" follows "/"
        self._watch_call: Any = None
        self._threads: list[threading.Thread] = []

    def _client(self, timeout: float) -> Any:
        tls = self.settings.tls
        credentials = (
            None
            if tls is None
            else grpc.ssl_channel_credentials(
                root_certificates=tls[0], certificate_chain=tls[1], private_key=tls[2]
            )
        )
        endpoints = [
            # time_retry: the client's default blacks a failed endpoint out for 300 s.
            etcd3.Endpoint(host, port, secure=tls is not None, creds=credentials, time_retry=1.0)
            for host, port in self.settings.endpoints
        ]
        return etcd3.MultiEndpointEtcd3Client(endpoints=endpoints, timeout=timeout, failover=True)

    # lifecycle

    def start(self, verifier_key: str) -> None:
        """Registers this node under members/ and starts the watch and housekeeping."""
        member = json.dumps(
            {"node": self.node_id, "verifier_key": verifier_key, "address": self.address}
        )
        self._retry(lambda: self._kv.put(self._members + self.node_id, member), "register")
        for target, name in ((self._watch_loop, "etcd-watch"), (self._housekeeping, "etcd-gc")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._changed.notify_all()
        self.resign("the node is stopping")
        call = self._watch_call
        if call is not None:
            call.cancel()
        for thread in self._threads:
            thread.join(timeout=5)
        for client in (self._kv, self._lease_client, self._watch_client):
            client.close()

    def _retry(self, op: Callable[[], Any], what: str, deadline: float | None = None) -> Any:
        """Runs `op` until it succeeds (failing over between endpoints) or the deadline."""
        end = time.monotonic() + (deadline if deadline is not None else 3 * self.settings.timeout)
        while True:
            try:
                return op()
            except _ETCD_ERRORS as exc:
                if time.monotonic() >= end or self._stop.is_set():
                    raise UnavailableError(f"etcd: {what} failed: {_describe(exc)}") from exc
                time.sleep(0.05)

    # leadership

    def campaign(self, stop: threading.Event) -> int | None:
        """Blocks until this node holds the leader key; returns its term (None if stopped)."""
        while not stop.is_set() and not self._stop.is_set():
            try:
                term = self._try_campaign()
            except _ETCD_ERRORS as exc:
                log.debug("campaign: etcd unavailable: %s", _describe(exc))
                stop.wait(0.2)
                continue
            if term is not None:
                return term
            with self._lock:
                # The watch wakes us when the leader key goes; the timeout is the fallback
                # should the watch be down.
                self._changed.wait_for(
                    lambda: self._leader is None or self._stop.is_set() or stop.is_set(), 1.0
                )
            stop.wait(0.02)
        return None

    def _try_campaign(self) -> int | None:
        value, meta = self._kv.get(self._leader_key)
        if value is not None:
            self._set_leader(value, meta.create_revision, meta.response_header.revision)
            return None
        asked = time.monotonic()  # etcd's countdown starts after this
        lease = self._kv.lease(self.settings.lease_ttl)
        me = json.dumps({"node": self.node_id, "address": self.address}).encode()
        try:
            ok, responses = self._kv.transaction(
                compare=[self._kv.transactions.create(self._leader_key) == 0],
                success=[
                    self._kv.transactions.put(self._leader_key, me, lease=lease.id),
                    self._kv.transactions.get(self._leader_key),
                ],
                failure=[self._kv.transactions.get(self._leader_key)],
            )
        except _ETCD_ERRORS:
            # If it did win, the key goes with the lease instead of after the TTL.
            _revoke_quietly(self._kv, lease.id)
            raise
        found = responses[-1]
        if not ok:
            _revoke_quietly(self._kv, lease.id)
            if found:
                value, meta = found[0]
                self._set_leader(value, meta.create_revision, meta.response_header.revision)
            return None
        term = int(found[0][1].create_revision)
        with self._lock:
            self._leader_revision = max(self._leader_revision, term)
            self._leading = True
            self._term = term
            self._lease_id = lease.id
            self._lease_valid_until = asked + lease.ttl
            self._leader = LeaderInfo(self.node_id, self.address, term)
            self._expected = None
        thread = threading.Thread(
            target=self._keep_alive, args=(term, lease.id), name="etcd-lease", daemon=True
        )
        thread.start()
        log.info("won the leader lease: term %d (lease TTL %d s)", term, lease.ttl)
        return term

    def _keep_alive(self, term: int, lease_id: int) -> None:
        ttl = self.settings.lease_ttl
        while not self._stop.wait(ttl / 4):
            with self._lock:
                if not self._leading or self._term != term:
                    return
                valid_until = self._lease_valid_until
            sent = time.monotonic()
            try:
                answers = list(self._lease_client.refresh_lease(lease_id))
                remaining = answers[-1].TTL if answers else 0
            except _ETCD_ERRORS as exc:
                remaining = -1
                log.debug("lease keep-alive failed: %s", _describe(exc))
            if remaining > 0:
                # etcd counts from when it received the refresh, which is after `sent`.
                with self._lock:
                    self._lease_valid_until = sent + remaining
                continue
            if remaining == 0:
                self._lose(term, "the lease expired")
                return
            # Keep-alives that fail for the rest of the TTL (etcd electing a new Raft
            # leader takes about a second) mean the lease may have expired: step down.
            # Stepping down late is safe: commits are fenced in etcd, not by this clock.
            if time.monotonic() >= valid_until:
                self._lose(term, "the lease could not be kept alive")
                return

    def _lose(self, term: int, reason: str) -> None:
        with self._lock:
            if not self._leading or self._term != term:
                return
            self._leading = False
            lease_id, self._lease_id = self._lease_id, None
            if self._leader is not None and self._leader.term == term:
                self._leader = None  # until the watch shows who leads next
            callbacks = list(self._lost_callbacks)
            self._changed.notify_all()
        log.warning("lost leadership of term %d: %s", term, reason)
        if lease_id is not None:
            # Let another node win at once instead of after the TTL.
            threading.Thread(target=_revoke_quietly, args=(self._kv, lease_id), daemon=True).start()
        for callback in callbacks:
            callback(reason)

    def resign(self, reason: str) -> None:
        """Gives up leadership (if held) and releases the lease."""
        with self._lock:
            term = self._term if self._leading else None
        if term is not None:
            self._lose(term, reason)

    def is_leader(self) -> bool:
        with self._lock:
            return self._leading and time.monotonic() < self._lease_valid_until

    @property
    def term(self) -> int:
        return self._term

    def leader(self) -> tuple[str, str] | None:
        info = self.leader_info()
        return (info.node, info.address) if info else None

    def leader_info(self) -> LeaderInfo | None:
        with self._lock:
            return self._leader

    def on_lost_leadership(self, callback: Callable[[str], None]) -> None:
        self._lost_callbacks.append(callback)

    def _set_leader(self, raw: bytes, create_revision: int, revision: int) -> None:
        """Adopts the leader key as seen at etcd revision `revision`.

        Views arrive from several threads (watch, snapshot, campaign reads); one older
        than the view already held, or than this node's own win, is ignored, so that a
        late event about the previous leader cannot end a term that began after it.
        """
        try:
            obj = json.loads(raw)
            info = LeaderInfo(str(obj["node"]), str(obj["address"]), int(create_revision))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed leader key: %r", raw[:200])
            return
        lost = None
        with self._lock:
            if revision < self._leader_revision or (self._leading and revision < self._term):
                return
            self._leader_revision = revision
            self._leader = info
            if self._leading and info.term != self._term:
                lost = self._term
            self._changed.notify_all()
        if lost is not None:
            self._lose(lost, f"node {info.node} holds the leader key at term {info.term}")

    def _clear_leader(self, revision: int) -> None:
        lost = None
        with self._lock:
            if revision < self._leader_revision or (self._leading and revision < self._term):
                return
            self._leader_revision = revision
            self._leader = None
            if self._leading:
                lost = self._term
            self._changed.notify_all()
        if lost is not None:
            self._lose(lost, "the leader key was deleted (lease expired)")

    # the commit point

    def begin_term(self, head: CommittedHead | None) -> None:
        """The head the first commit of this term extends (read after catching up)."""
        with self._lock:
            self._expected = head

    def commit(self, record: CommitRecord) -> None:
        with self._lock:
            leading, term, expected = self._leading, self._term, self._expected
        if not leading or record.term != term:
            raise FencedError(f"block {record.height}: term {record.term} no longer leads")
        if expected is None:
            if record.height != 0:
                raise FencedError(f"block {record.height} does not extend the committed head")
        elif record.height != expected.height + 1 or record.prev_hash != expected.block_hash:
            raise FencedError(f"block {record.height} does not extend the committed head")
        new_raw = CommittedHead.encode(
            record.height, record.header_hash, record.term, record.tree_size
        )
        tx = self._kv.transactions
        compare = [tx.create(self._leader_key) == term]
        if expected is None:
            compare.append(tx.version(self._head_key) == 0)
        else:
            compare.append(tx.value(self._head_key) == expected.raw)
        success = [
            tx.put(self._block_key(record.height), record.payload),
            tx.put(self._head_key, new_raw),
        ]
        expired = record.height - self.settings.gc_max_window
        if expired >= 0:
            # The window never holds more than gc_max_window blocks, however many commit
            # between two housekeeping rounds (which collect below min(applied) - keep).
            success.append(tx.delete(self._block_key(expired)))
        failure = [tx.get(self._head_key), tx.get(self._leader_key)]
        deadline = time.monotonic() + max(2 * self.settings.lease_ttl, 3 * self.settings.timeout)
        while True:
            try:
                ok, responses = self._kv.transaction(
                    compare=compare, success=success, failure=failure
                )
            except _ETCD_ERRORS as exc:
                log.info("block %d: commit outcome unknown (%s)", record.height, _describe(exc))
                outcome = self._resolve(record, expected, new_raw, term, deadline)
                if outcome == "retry":
                    continue
                if outcome == "committed":
                    break
                self._lose(term, f"block {record.height}: {outcome}")
                raise FencedError(f"block {record.height} not committed: {outcome}") from None
            if ok:
                break
            head_now = responses[0][0][0] if responses[0] else None
            if head_now == new_raw:
                break  # an earlier attempt whose answer was lost did commit
            leader_now = responses[1][0][1].create_revision if responses[1] else 0
            reason = (
                f"fenced: the leader key is at term {leader_now}, not {term}"
                if leader_now != term
                else "fenced: the committed head moved"
            )
            self._lose(term, f"block {record.height} {reason}")
            raise FencedError(f"block {record.height} not committed, {reason}")
        committed = CommittedHead.parse(new_raw)
        with self._lock:
            self._expected = committed
        self._note_head(committed)

    def _resolve(
        self,
        record: CommitRecord,
        expected: CommittedHead | None,
        new_raw: bytes,
        term: int,
        deadline: float,
    ) -> str:
        """After an unknown outcome: 'committed', 'retry', or the reason it is not."""
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                head_raw, _ = self._kv.get(self._head_key)
                _, leader_meta = self._kv.get(self._leader_key)
            except _ETCD_ERRORS:
                time.sleep(0.1)
                continue
            if head_raw == new_raw:
                return "committed"
            leader_term = leader_meta.create_revision if leader_meta is not None else 0
            still_ours = leader_term == term
            unchanged = (head_raw is None) if expected is None else (head_raw == expected.raw)
            if still_ours and unchanged:
                return "retry"
            return "fenced: another leader or head after an unknown outcome"
        return "outcome unknown: etcd did not answer in time"

    # records shared between leaders

    def share_record(self, name: str, value: bytes, ttl_s: int) -> None:
        """Keeps `value` in etcd for `ttl_s` seconds (a lease each: etcd drops it then)."""
        if len(value) > MAX_SHARED_RECORD:
            raise UnavailableError(
                f"etcd: record {name} is {len(value)} bytes, above {MAX_SHARED_RECORD}"
            )

        def put() -> None:
            lease = self._kv.lease(ttl_s)
            self._kv.put(self._records + name, value, lease=lease.id)

        self._retry(put, f"share record {name}")

    def shared_record(self, name: str) -> bytes | None:
        value, _ = self._retry(lambda: self._kv.get(self._records + name), f"read record {name}")
        return None if value is None else bytes(value)

    def _block_key(self, height: int) -> str:
        return f"{self._blocks}{height:020d}"

    def read_head(self) -> CommittedHead | None:
        """The committed head, read (linearizably) from etcd now."""
        raw, _ = self._retry(lambda: self._kv.get(self._head_key), "read head")
        if raw is None:
            return None
        head = CommittedHead.parse(raw)
        self._note_head(head)
        return head

    def latest_head(self) -> CommittedHead | None:
        """The newest head seen (watch or reads), without asking etcd."""
        with self._lock:
            return self._head

    def seen_hash(self, height: int) -> bytes | None:
        with self._lock:
            return self._recent.get(height)

    def wait_for_head(self, height: int, timeout: float) -> None:
        """Waits until the watch has seen a head at `height` or above (or the timeout)."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._head is None or self._head.height < height:
                remaining = end - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return
                self._changed.wait(remaining)

    def wait_for_change(self, timeout: float) -> None:
        with self._lock:
            self._changed.wait(timeout)

    def committed_block(self, height: int) -> bytes | None:
        """The payload of block `height` from the window (None once collected)."""
        raw, _ = self._retry(lambda: self._kv.get(self._block_key(height)), f"read block {height}")
        return None if raw is None else bytes(raw)

    def window_start(self) -> int | None:
        """The lowest height still in the block window."""

        def first() -> int | None:
            for _, meta in self._kv.get_prefix(
                self._blocks, limit=1, keys_only=True, sort_order="ascend", sort_target="key"
            ):
                return int(meta.key.decode().rsplit("/", 1)[1])
            return None

        result: int | None = self._retry(first, "read the block window")
        return result

    def window_size(self) -> int:
        return int(
            self._retry(
                lambda: self._kv.get_prefix_response(self._blocks, count_only=True).count,
                "count the block window",
            )
        )

    def _note_head(self, head: CommittedHead) -> None:
        with self._lock:
            self._recent[head.height] = head.block_hash
            while len(self._recent) > _RECENT_HEADS:
                self._recent.popitem(last=False)
            if self._head is None or head.height >= self._head.height:
                self._head = head
            self._changed.notify_all()

    # members and applied heights

    def members(self, fresh: bool = False) -> list[Member]:
        """Every registered member, sorted by node id (kept current by the watch)."""
        with self._lock:
            if self._members_watched and not fresh:
                return sorted(self._member_map.values(), key=lambda m: m.node)
        try:
            found = {}
            for value, _ in self._kv.get_prefix(self._members):
                member = _parse_member(value)
                if member is not None:
                    found[member.node] = member
        except _ETCD_ERRORS as exc:
            log.debug("cannot read members: %s", _describe(exc))
            with self._lock:
                return sorted(self._member_map.values(), key=lambda m: m.node)
        with self._lock:
            self._member_map.update(found)
            return sorted(self._member_map.values(), key=lambda m: m.node)

    def report_applied(self, height: int) -> None:
        """Records the height durable in this node's store (published by housekeeping)."""
        self._applied_height = height

    # background work

    def _watch_loop(self) -> None:
        """Follows `head` and `leader` (one range watch), restarting after any error."""
        while not self._stop.is_set():
            try:
                revision = self._snapshot()
                self._watch_from(revision + 1)
            except _ETCD_ERRORS as exc:
                if self._stop.is_set():
                    return
                log.debug("etcd watch interrupted: %s", _describe(exc))
                _fail_endpoint(self._watch_client)
                self._stop.wait(0.1)
            except Exception:  # a bug must not end the watch for good
                log.exception("etcd watch failed; restarting it")
                self._stop.wait(0.5)

    def _snapshot(self) -> int:
        response = self._watch_client.get_range_response(self._head_key, self._watch_end)
        revision = int(response.header.revision)
        saw_leader = False
        members: dict[str, Member] = {}
        for kv in response.kvs:
            if kv.key == self._head_key:
                self._note_head(CommittedHead.parse(kv.value))
            elif kv.key == self._leader_key:
                saw_leader = True
                self._set_leader(kv.value, kv.create_revision, revision)
            elif kv.key.startswith(self._members.encode()):
                member = _parse_member(kv.value)
                if member is not None:
                    members[member.node] = member
        if not saw_leader:
            self._clear_leader(revision)
        with self._lock:
            self._member_map = members
            self._members_watched = True
        return revision

    def _watch_from(self, revision: int) -> None:
        create = etcdrpc.WatchCreateRequest(
            key=self._head_key, range_end=self._watch_end, start_revision=revision
        )
        stop = self._stop

        def requests() -> Iterator[Any]:
            yield etcdrpc.WatchRequest(create_request=create)
            stop.wait()

        stub = etcdrpc.WatchStub(self._watch_client.channel)
        call = stub.Watch(requests())
        self._watch_call = call
        try:
            for response in call:
                if response.compact_revision:
                    return  # fell behind a compaction: take a fresh snapshot
                if response.canceled:
                    return
                for event in response.events:
                    kv = event.kv
                    deleted = event.type == kv_pb2.Event.DELETE
                    if kv.key == self._head_key and not deleted:
                        self._note_head(CommittedHead.parse(kv.value))
                    elif kv.key == self._leader_key:
                        if deleted:
                            self._clear_leader(kv.mod_revision)
                        else:
                            self._set_leader(kv.value, kv.create_revision, kv.mod_revision)
                    elif kv.key.startswith(self._members.encode()):
                        node = kv.key.decode().rsplit("/", 1)[1]
                        member = None if deleted else _parse_member(kv.value)
                        with self._lock:
                            if member is not None:
                                self._member_map[member.node] = member
                            else:
                                self._member_map.pop(node, None)
        finally:
            call.cancel()
            self._watch_call = None

    def _housekeeping(self) -> None:
        last_compact = time.monotonic()
        while not self._stop.wait(self.settings.housekeeping_s):
            try:
                applied = self._applied_height
                if applied is not None and applied != self._applied_reported:
                    self._kv.put(self._applied + self.node_id, str(applied))
                    self._applied_reported = applied
                if self.is_leader():
                    self._collect()
                    if time.monotonic() - last_compact > self.settings.compact_every_s:
                        self._compact()
                        last_compact = time.monotonic()
            except _ETCD_ERRORS as exc:
                log.debug("etcd housekeeping failed: %s", _describe(exc))

    def _collect(self) -> None:
        """Deletes blocks below min(applied) - keep, never keeping more than the window."""
        with self._lock:
            head, term = self._expected, self._term
        if head is None:
            return
        members = {m.node for m in self.members()}
        heights = []
        for value, meta in self._kv.get_prefix(self._applied):
            node = meta.key.decode().rsplit("/", 1)[1]
            if node in members:
                heights.append(int(value))
        lowest = min(heights) if heights else 0
        floor = max(lowest - self.settings.gc_keep, head.height + 1 - self.settings.gc_max_window)
        floor = min(floor, head.height)  # the head block always stays
        if floor <= 0:
            return
        tx = self._kv.transactions
        self._kv.transaction(
            compare=[tx.create(self._leader_key) == term],
            success=[tx.delete(self._block_key(0), range_end=self._block_key(floor))],
            failure=[],
        )

    def _compact(self) -> None:
        status = self._kv.get_response(self._head_key, count_only=True)
        revision = int(status.header.revision) - self.settings.compact_keep
        if revision > 0:
            try:
                self._kv.compact(revision)
            except _ETCD_ERRORS as exc:
                # "required revision has been compacted": another node got there first.
                log.debug("etcd compaction skipped: %s", _describe(exc))


def _parse_member(raw: bytes) -> Member | None:
    try:
        obj = json.loads(raw)
        return Member(str(obj["node"]), str(obj["verifier_key"]), str(obj["address"]))
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a malformed member record: %r", raw[:200])
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else ""
        return f"{code.name if code else 'error'}: {details}"
    return str(exc) or type(exc).__name__


def _revoke_quietly(client: Any, lease_id: int) -> None:
    try:
        client.revoke_lease(lease_id)
    except _ETCD_ERRORS as exc:
        log.debug("revoking lease %x failed (it expires by itself): %s", lease_id, _describe(exc))


def _fail_endpoint(client: Any) -> None:
    # The raw watch stream bypasses the client's error handling; mark the endpoint failed
    # so the next attempt goes to another member.
    try:
        client.endpoint_in_use.fail()
        client._clear_old_stubs()
    except Exception as exc:  # the client's internals; best effort
        log.debug("cannot fail over the watch endpoint: %s", exc)
