"""A transport for tests, shipped with the package (like httpx's ``MockTransport``).

::

    fake = FakeTransport("smtp", [TemporaryDeliveryError("down"), None])
    fake.send(text)   # raises the error
    fake.send(text)   # Receipt("smtp", text.id, "ok")
    fake.sent         # both texts, in order; fake.delivered: the second only

Delivery reports and received texts are scripted too::

    fake.report("SM1", "delivered")          # what reports(["SM1"]) answers from now on
    fake.inbox.append(ReceivedText("+15551234567", "ACK 417"))   # what receive() returns
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

from .base import DeliveryReport, OutgoingText, Receipt, ReceivedText

Outcome = Receipt | BaseException | None
Script = Callable[[OutgoingText], Receipt] | Iterable[Outcome]


class FakeTransport:
    """Answers each ``send`` from a script.

    ``script`` is either a callable (given the text; returns a ``Receipt`` or raises) or a
    sequence of outcomes used one per send: a ``Receipt`` is returned, an exception raised,
    ``None`` means the default receipt. Once the sequence runs out every send succeeds.
    ``probe_error``, when set, is raised by ``probe``. ``poll_every``, ``receives`` and
    ``can_receive`` are what a way out tells the engine's poller (see ``polling.py``).
    """

    def __init__(
        self,
        name: str = "fake",
        script: Script | None = None,
        *,
        probe_error: BaseException | None = None,
        poll_every: float = 15.0,
        receives: bool = False,
        can_receive: bool = False,
        commit_first: bool = False,
    ) -> None:
        self.name = name
        self.poll_every = poll_every  # how often the engine asks for reports and texts
        self.receives = receives  # whether it reads received texts always
        self.can_receive = can_receive  # at the start and while an incident waits
        self.commit_first = commit_first  # texts for it are committed before it is tried
        self.sent: list[OutgoingText] = []
        self.delivered: list[OutgoingText] = []
        self.closed = 0
        self.probes = 0
        self._probe_error = probe_error
        self._call: Callable[[OutgoingText], Receipt] | None = None
        self._outcomes: list[Outcome] = []
        if callable(script):
            self._call = script
        elif script is not None:
            self._outcomes = list(script)
        self._lock = threading.Lock()
        self._reports: dict[str, DeliveryReport] = {}
        self.report_calls: list[list[str]] = []
        self.inbox: list[ReceivedText] = []

    def send(self, text: OutgoingText) -> Receipt:
        """Record ``text`` and play the next outcome."""
        with self._lock:
            self.sent.append(text)
            outcome: Outcome = self._outcomes.pop(0) if self._outcomes else None
        if self._call is not None:
            outcome = self._call(text)
        if isinstance(outcome, BaseException):
            raise outcome
        receipt = outcome or Receipt(self.name, text.id, "ok")
        with self._lock:
            self.delivered.append(text)
        return receipt

    def close(self) -> None:
        """Count the call."""
        self.closed += 1

    def probe(self) -> str:
        """Count the call; raise ``probe_error`` when one was given."""
        self.probes += 1
        if self._probe_error is not None:
            raise self._probe_error
        return f"fake {self.name}"

    def report(self, remote_id: str, state: str, detail: str = "") -> None:
        """Script the answer ``reports`` gives for ``remote_id``."""
        self._reports[remote_id] = DeliveryReport(remote_id, state, detail)  # type: ignore[arg-type]

    def reports(self, remote_ids: Sequence[str]) -> list[DeliveryReport]:
        """The scripted state of each id (``pending`` when none was scripted)."""
        with self._lock:
            self.report_calls.append(list(remote_ids))
            return [self._reports.get(r, DeliveryReport(r, "pending")) for r in remote_ids]

    def receive(self, mark: str | None) -> tuple[list[ReceivedText], str | None]:
        """The texts of ``inbox`` after ``mark`` (an index); the first look takes the mark."""
        with self._lock:
            n = len(self.inbox)
            if mark is None:
                return [], str(n)
            return list(self.inbox[int(mark) :]), str(n)
