"""Admission workers: events checked in other processes, so that the node's own
interpreter (one GIL) is left to sequencing.

A worker only ever accepts. It returns what the sequencer takes of each event that
passes `entry_from_json` (leaf, identity, index keys and their digests), and None for
any other, which the node then judges itself with the same function, so every refusal
keeps its exact words and field paths. A worker that dies costs speed and nothing else:
its chunks are judged in the node and a new worker takes its place for the next ones.

Each worker has two pipes of its own, one for chunks and one for answers, and works
through its chunks in order. The request thread writes its chunk itself and one reader
thread per worker reads the answers back, so a chunk costs the node's GIL two pickles
and nothing more. (A ProcessPoolExecutor spends two threads of its own per chunk: 4 to
6 µs of the node's CPU per event against 2 to 4.)

Workers are forked from a forkserver (never from the node, whose gRPC threads must not
be forked) and started on the first chunk large enough to be worth the round trip, so a
node that only sees single appends never starts one. They leave with the node, however
it ends: the node holds the only writing end of a worker's chunk pipe, so the worker
reads the end of it when the node goes.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import NamedTuple

from ledger.sequencer import Admitted, AdmittedFields, admitted_fields
from provledger.errors import LedgerError
from provledger.events import entry_from_json

__all__ = ["AdmissionPool", "Checking", "default_workers"]

log = logging.getLogger(__name__)

MIN_POOLED = 64  # fewer events are checked in the node: the round trip costs ~1 ms
_PIPE_BYTES = 1 << 20  # room for several 250-event chunks, so a writer rarely waits


def default_workers() -> int:
    """One worker per core beyond the node's own, at most four."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


# An `Admitted` as it crosses the pipe: a plain tuple pickles in a quarter of the time a
# NamedTuple takes (which pickles through a Python-level __reduce__ per event), and
# `admitted_fields` makes it without one.
Wire = AdmittedFields


def _admit(raws: Sequence[bytes], submitter: str, max_event_bytes: int) -> list[Wire | None]:
    accepted: list[Wire | None] = []
    for raw in raws:
        try:
            entry = entry_from_json(raw, submitter, max_event_bytes=max_event_bytes)
        except LedgerError:
            accepted.append(None)
            continue
        accepted.append(admitted_fields(entry))
    return accepted


def _serve(chunks: Connection, answers: Connection, max_event_bytes: int) -> None:
    """A worker's life: answer each chunk, in order, until the node closes the pipe."""
    # Ctrl-C reaches the whole process group; the node shuts its workers down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.set_threshold(50_000, 20, 20)  # each chunk makes a few thousand short-lived dicts
    while True:
        try:
            raws, submitter = pickle.loads(chunks.recv_bytes())  # noqa: S301 (the node's pipe)
        except (EOFError, OSError):  # the node is gone or closed the pipe
            return
        answer: list[Wire | None] | str
        try:
            answer = _admit(raws, submitter, max_event_bytes)
        except Exception as exc:  # a bug: the node checks this chunk, and says why
            answer = f"{type(exc).__name__}: {exc}"
        try:
            answers.send_bytes(pickle.dumps(answer, pickle.HIGHEST_PROTOCOL))
        except OSError:
            return


def _widen(*pipes: Connection) -> None:
    for pipe in pipes:
        # Where the limit is lower, writers only wait a little more often.
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


class _WorkerGone(Exception):
    """The worker ended before answering."""


class _Worker:
    """One worker process and the chunks it has yet to answer."""

    def __init__(self, context: multiprocessing.context.ForkServerContext, max_event_bytes: int):
        chunks_out, self._chunks = context.Pipe(duplex=False)
        self._answers, answers_in = context.Pipe(duplex=False)
        _widen(self._chunks, self._answers)
        self.process: BaseProcess = context.Process(
            target=_serve,
            args=(chunks_out, answers_in, max_event_bytes),
            name="admission",
            daemon=True,
        )
        self.process.start()
        chunks_out.close()
        answers_in.close()
        self._sending = threading.Lock()  # one chunk at a time into the pipe
        self._lock = threading.Lock()  # the answers awaited; never held while writing
        self._waiting: deque[Future[list[Wire | None] | str]] = deque()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="admission-answers", daemon=True)
        self._reader.start()

    @property
    def backlog(self) -> int:
        return len(self._waiting)

    def submit(self, raws: Sequence[bytes], submitter: str) -> Future[list[Wire | None] | str]:
        future: Future[list[Wire | None] | str] = Future()
        data = pickle.dumps((list(raws), submitter), pickle.HIGHEST_PROTOCOL)
        with self._sending:
            with self._lock:
                if self._closed:
                    raise _WorkerGone("the worker has ended")
                self._waiting.append(future)  # in the order the worker will answer
            try:
                self._chunks.send_bytes(data)
            except OSError as exc:
                self._end(_WorkerGone(f"cannot reach the worker: {exc}"))
                raise _WorkerGone(f"cannot reach the worker: {exc}") from exc
        return future

    def _read(self) -> None:
        while True:
            try:
                answer = pickle.loads(self._answers.recv_bytes())  # noqa: S301 (our worker)
            except (EOFError, OSError, pickle.UnpicklingError) as exc:
                self._end(_WorkerGone(f"the worker ended ({str(exc) or 'end of its pipe'})"))
                return
            with self._lock:
                future = self._waiting.popleft() if self._waiting else None
            if future is not None:
                future.set_result(answer)

    def _end(self, error: Exception) -> None:
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
        for future in waiting:
            future.set_exception(error)

    def close(self, timeout: float = 5.0) -> None:
        with self._sending:
            with self._lock:
                self._closed = True
            self._chunks.close()  # the worker reads the end of its pipe and leaves
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(1)
        self._reader.join(timeout)
        self._answers.close()


class Checking(NamedTuple):
    """A chunk under way in `worker`."""

    future: Future[list[Wire | None] | str]
    worker: _Worker


class AdmissionPool:
    """Checks chunks of events in `workers` processes; with 0 workers, in none."""

    def __init__(self, workers: int, max_event_bytes: int) -> None:
        self._workers = workers
        self._max_event_bytes = max_event_bytes
        self._running: list[_Worker] = []
        self._context: multiprocessing.context.ForkServerContext | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, raws: Sequence[bytes], submitter: str) -> Checking | None:
        """The chunk's check under way in a worker; None when the node should check it."""
        if len(raws) < MIN_POOLED or self._workers == 0:
            return None
        worker = self._least_busy()
        if worker is None:
            return None
        try:
            return Checking(worker.submit(raws, submitter), worker)
        except Exception as exc:  # a dead worker: the node checks this chunk
            self._discard(worker, exc)
            return None

    def results(self, checking: Checking | None, count: int) -> Sequence[Admitted | None]:
        """Each event's acceptance, or None where the node must judge it (all of them when
        the worker failed)."""
        if checking is None:
            return [None] * count
        try:
            accepted = checking.future.result()
        except Exception as exc:
            self._discard(checking.worker, exc)
            return [None] * count
        if isinstance(accepted, str):
            log.error("an admission worker could not check a chunk (%s); the node does", accepted)
            return [None] * count
        if len(accepted) != count:
            return [None] * count
        make = Admitted._make
        return [None if wire is None else make(wire) for wire in accepted]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            running, self._running = self._running, []
        for worker in running:
            worker.close()

    def _least_busy(self) -> _Worker | None:
        with self._lock:
            if self._closed:
                return None
            if len(self._running) < self._workers:
                try:
                    self._running.append(_Worker(self._forkserver(), self._max_event_bytes))
                except Exception as exc:  # no worker this time: the node checks the chunk
                    log.warning("cannot start an admission worker: %s", exc)
                    return None
                if len(self._running) == self._workers:
                    log.info("admission: %d worker process(es) started", self._workers)
            return min(self._running, key=lambda w: w.backlog)

    def _forkserver(self) -> multiprocessing.context.ForkServerContext:
        if self._context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            self._context = context
        return self._context

    def _discard(self, worker: _Worker, exc: BaseException) -> None:
        """Retires a failed worker (once: its other chunks find it gone); the next chunk
        starts another."""
        with self._lock:
            if worker not in self._running:
                return
            self._running.remove(worker)
        log.warning("admission workers failed (%s); checking in the node and restarting them", exc)
        threading.Thread(target=worker.close, name="admission-retire", daemon=True).start()
