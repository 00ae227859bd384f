"""Admission workers: events checked in other processes, so that the node's own
interpreter (one GIL) is left to sequencing.

A worker only ever accepts. It returns what the sequencer takes of each event that
passes `entry_from_json` (leaf, identity, index keys and their digests), and None for
any other, which the node then judges itself with the same function, so every refusal
keeps its exact words and field paths. A worker that dies, or a pool that breaks, costs
speed and nothing else: the chunk is judged in the node and the pool is made anew for
the next one.

Workers are forked from a forkserver (never from the node, whose gRPC threads must not
be forked) and started on the first chunk large enough to be worth the round trip, so a
node that only sees single appends never starts one. They leave with the node, however
it ends: each watches the node's pidfd.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import NamedTuple, cast

from ledger.sequencer import Admitted, admitted
from provledger.errors import LedgerError
from provledger.events import entry_from_json

__all__ = ["AdmissionPool", "Checking", "default_workers"]

log = logging.getLogger(__name__)

MIN_POOLED = 64  # fewer events are checked in the node: the round trip costs ~1 ms


def default_workers() -> int:
    """One worker per core beyond the node's own, at most four."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _start_worker(node_pid: int) -> None:
    # Ctrl-C reaches the whole process group; the node shuts its workers down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.set_threshold(50_000, 20, 20)  # each chunk makes a few thousand short-lived dicts
    threading.Thread(target=_exit_with, args=(node_pid,), name="node-watch", daemon=True).start()


def _exit_with(node_pid: int) -> None:
    """Ends this worker when the node ends, however it ends (SIGKILL included): the
    executor's pipes have writers in every worker, so a read never sees the node go."""
    try:
        watch = os.pidfd_open(node_pid)
    except ProcessLookupError:
        os._exit(0)
    except OSError:  # no pidfd here: ask every half second
        while _alive(node_pid):
            time.sleep(0.5)
        os._exit(0)
    select.select([watch], [], [])  # readable once the node has exited
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# An `Admitted` as it crosses the pipe: a plain tuple pickles in a quarter of the time a
# NamedTuple takes (which pickles through a Python-level __reduce__ per event).
Wire = tuple[bytes, str, str, str, str | None, bytes, bytes]


def _admit(raws: Sequence[bytes], submitter: str, max_event_bytes: int) -> list[Wire | None]:
    accepted: list[Wire | None] = []
    for raw in raws:
        try:
            entry = entry_from_json(raw, submitter, max_event_bytes=max_event_bytes)
        except LedgerError:
            accepted.append(None)
            continue
        accepted.append(cast(Wire, tuple(admitted(entry))))
    return accepted


class Checking(NamedTuple):
    """A chunk under way in a worker of `executor`."""

    future: Future[list[Wire | None]]
    executor: ProcessPoolExecutor


class AdmissionPool:
    """Checks chunks of events in `workers` processes; with 0 workers, in none."""

    def __init__(self, workers: int, max_event_bytes: int) -> None:
        self._workers = workers
        self._max_event_bytes = max_event_bytes
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, raws: Sequence[bytes], submitter: str) -> Checking | None:
        """The chunk's check under way in a worker; None when the node should check it."""
        if len(raws) < MIN_POOLED or self._workers == 0:
            return None
        executor = self._pool()
        if executor is None:
            return None
        try:
            return Checking(
                executor.submit(_admit, raws, submitter, self._max_event_bytes), executor
            )
        except Exception as exc:  # a broken pool: the node checks this chunk
            self._discard(executor, exc)
            return None

    def results(self, checking: Checking | None, count: int) -> Sequence[Admitted | None]:
        """Each event's acceptance, or None where the node must judge it (all of them when
        the worker failed)."""
        if checking is None:
            return [None] * count
        try:
            accepted = checking.future.result()
        except Exception as exc:
            self._discard(checking.executor, exc)
            return [None] * count
        if len(accepted) != count:
            return [None] * count
        make = Admitted._make
        return [None if wire is None else make(wire) for wire in accepted]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _pool(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._closed:
                return None
            if self._executor is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload([__name__])
                self._executor = ProcessPoolExecutor(
                    self._workers,
                    mp_context=context,
                    initializer=_start_worker,
                    initargs=(os.getpid(),),
                )
                log.info("admission: %d worker process(es) started", self._workers)
            return self._executor

    def _discard(self, executor: ProcessPoolExecutor, exc: BaseException) -> None:
        """Replaces a failed pool (once: the chunks it cancels find a new one in place)."""
        with self._lock:
            if self._executor is not executor:
                return
            self._executor = None
        log.warning("admission workers failed (%s); checking in the node and restarting them", exc)
        executor.shutdown(wait=False, cancel_futures=True)
