"""One worker per way out, so a slow or hung one holds back no other.

A worker owns its transport: it alone calls ``send`` and ``close`` (after ``idle_close``
seconds without work, and at a stop). The engine hands it ``Job``s; each comes back to the
engine, through the ``done`` callback, as a ``Done`` with the result mapped into the
delivery policy's terms. A worker touches no state of the engine's.

``InlineWorker`` does the same in the caller's thread, for tests that want one thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from mqtt2sms import delivery
from mqtt2sms.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from mqtt2sms.transports.base import (
    Calling,
    CallResult,
    Cancelling,
    Checking,
    DeliveryReport,
    OutgoingText,
    ReceivedText,
    Receiving,
    Reporting,
    Transport,
)

log = logging.getLogger("mqtt2sms")


@dataclass(frozen=True)
class Job:
    key: str  # the engine's handle for the try (a text id), or for the poll
    text: OutgoingText | None = None
    kind: Literal["send", "reports", "receive", "stats", "cancel", "call"] = "send"
    ids: tuple[str, ...] = ()  # remote ids, for "reports" and "cancel"
    mark: str | None = None  # the high-water mark, for "receive"
    ring_for: float = 0.0  # for "call" (``text``: the number and what to say)
    hang_up: threading.Event | None = field(default=None, compare=False)  # set: end the call


@dataclass(frozen=True)
class Done:
    job: Job
    transport: str
    result: delivery.Result | None  # None: not tried (the worker stopped first)
    send_ms: float = 0.0
    reports: tuple[DeliveryReport, ...] = ()
    received: tuple[ReceivedText, ...] = ()
    mark: str | None = None
    stats: dict[str, object] = field(default_factory=dict)  # a way out's word on itself
    error: Exception | None = None  # a poll that failed: our DeliveryError, or a bug
    call: CallResult | None = None  # how a call ended
    # set by the engine once it has recorded the result: a worker starts its next send only
    # then, so a kill finds at most one text per way out sent and not recorded
    processed: threading.Event | None = field(default=None, compare=False)


def run(name: str, transport: Transport, job: Job, mono: Callable[[], float]) -> Done:
    """Do one job: a send, or a poll for reports or received texts."""
    if job.kind == "send":
        assert job.text is not None
        started = mono()
        result = attempt(transport, job.text)
        return Done(job, name, result, round((mono() - started) * 1000, 1))
    try:
        if job.kind == "reports" and isinstance(transport, Reporting):
            return Done(job, name, None, reports=tuple(transport.reports(job.ids)))
        if job.kind == "receive" and isinstance(transport, Receiving):
            got, mark = transport.receive(job.mark)
            return Done(job, name, None, received=tuple(got), mark=mark)
        if job.kind == "stats" and isinstance(transport, Checking):
            return Done(job, name, None, stats=transport.stats())
        if job.kind == "call" and isinstance(transport, Calling) and job.text is not None:
            hang_up = job.hang_up or threading.Event()
            rang = transport.call(job.text.address, job.ring_for, job.text.body, hang_up.is_set)
            return Done(job, name, None, call=rang)
        if job.kind == "cancel" and isinstance(transport, Cancelling):
            for remote_id in job.ids:
                transport.cancel(remote_id)
            return Done(job, name, None)
    except Exception as exc:  # a poll that fails is asked again at the next one
        return Done(job, name, None, error=exc)
    return Done(job, name, None, error=DeliveryError(f"{name} cannot {job.kind}"))


def attempt(transport: Transport, text: OutgoingText) -> delivery.Result:
    """One ``send``, its outcome as the policy's ``Result``. Every exception ends here:
    a transport that raises something outside our tree is a temporary failure of the way
    out, never a lost text."""
    try:
        receipt = transport.send(text)
    except TemporaryDeliveryError as exc:
        retry_after = getattr(exc, "retry_after", None)  # an HTTP 429 or 503 says when
        wait = float(retry_after) if isinstance(retry_after, int | float) else None
        return delivery.Temporary(str(exc), exc.scope, exc.auth, wait)
    except PermanentDeliveryError as exc:
        return delivery.Permanent(str(exc))
    except Exception as exc:  # a bug or an unmapped library error: keep the text
        log.exception("%s raised an unexpected error", transport.name)
        return delivery.Temporary(f"unexpected error: {type(exc).__name__}: {exc}")
    return delivery.Ok(receipt.remote_id, dry_run=receipt.dry_run)


class Worker:
    """A thread that sends the jobs given to it, in order."""

    def __init__(
        self,
        name: str,
        transport: Transport,
        done: Callable[[Done], None],
        idle_close: float = 15.0,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.transport = transport
        self.done = done
        self.idle_close = idle_close
        self.mono = mono
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.busy_since: float | None = None  # monotonic, while a send runs
        self._stopping = threading.Event()
        self._opened = False
        self.thread = threading.Thread(target=self._run, name=f"worker-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def put(self, job: Job) -> None:
        self.jobs.put(job)

    def recall(self) -> None:
        """Hand back the jobs not started yet, as not tried (the way out went down)."""
        self._drain()

    def stop(self) -> None:
        """Finish the send in flight; hand back the rest as not tried."""
        self._stopping.set()
        self.jobs.put(None)

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _run(self) -> None:
        while True:
            try:
                idle = self._opened and not getattr(self.transport, "keep_open", False)
                job = self.jobs.get(timeout=self.idle_close if idle else None)
            except queue.Empty:
                self._close()
                continue
            if job is None or self._stopping.is_set():
                if job is not None:
                    self.done(Done(job, self.name, None))
                self._drain()
                break
            self.busy_since = self.mono()
            done = replace(
                run(self.name, self.transport, job, self.mono), processed=threading.Event()
            )
            self._opened = True
            self.busy_since = None
            self.done(done)
            assert done.processed is not None
            while not done.processed.wait(0.05) and not self._stopping.is_set():
                pass
        self._close()

    def _drain(self) -> None:
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self.done(Done(job, self.name, None))

    def _close(self) -> None:
        try:
            self.transport.close()
        except Exception as exc:  # closing must not stop a worker
            log.debug("closing %s: %s", self.name, exc)
        self._opened = False


class InlineWorker:
    """The same contract in the caller's thread: ``put`` sends at once (tests)."""

    def __init__(self, name: str, transport: Transport, done: Callable[[Done], None]) -> None:
        self.name = name
        self.transport = transport
        self.done = done
        self.busy_since: float | None = None

    def start(self) -> None:
        pass

    def put(self, job: Job) -> None:
        self.done(run(self.name, self.transport, job, lambda: 0.0))

    def recall(self) -> None:
        pass

    def stop(self) -> None:
        self.transport.close()

    def join(self, timeout: float) -> bool:
        return True


class Pool(dict[str, "Worker | InlineWorker"]):
    """The workers, one per way out, by name: threads, or inline for tests."""

    def __init__(
        self,
        done: Callable[[Done], None],
        threaded: bool,
        idle_close: float,
        mono: Callable[[], float],
    ) -> None:
        super().__init__()
        self.done = done
        self.threaded = threaded
        self.idle_close = idle_close
        self.mono = mono

    def start(self, name: str, transport: Transport) -> None:
        """A worker for ``transport`` (one it replaces is stopped)."""
        self.drop(name)
        w: Worker | InlineWorker
        if self.threaded:
            w = Worker(name, transport, self.done, self.idle_close, self.mono)
        else:
            w = InlineWorker(name, transport, self.done)
        w.start()
        self[name] = w

    def cancel(self, name: str, remote_id: str) -> None:
        """Ask way out ``name`` to drop a text it still holds, when it can (a phone
        gateway's queue: an incident was acknowledged); its own worker asks."""
        w = self.get(name)
        if w is not None and isinstance(w.transport, Cancelling):
            w.put(Job(f"cancel:{remote_id}", kind="cancel", ids=(remote_id,)))

    def call(self, name: str, job: Job) -> bool:
        """Hand a call to way out ``name``'s worker (between its texts); False when it
        has none or cannot call."""
        w = self.get(name)
        if w is None or not isinstance(w.transport, Calling):
            return False
        w.put(job)
        return True

    def drop(self, name: str) -> None:
        """Stop ``name``'s worker: its send in flight ends, the rest come back untried."""
        w = self.pop(name, None)
        if w is not None:
            w.stop()

    def stop_all(self, grace: float) -> None:
        """Stop every worker and wait for the sends in flight, ``grace`` seconds at most."""
        for w in self.values():
            w.stop()
        deadline = self.mono() + grace
        for w in self.values():
            w.join(max(0.0, deadline - self.mono()))
