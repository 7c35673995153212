"""A transport for tests, shipped with the package (like httpx's ``MockTransport``).

::

    fake = FakeTransport("smtp", [TemporaryDeliveryError("down"), None])
    fake.send(text)   # raises the error
    fake.send(text)   # Receipt("smtp", text.id, "ok")
    fake.sent         # both texts, in order; fake.delivered: the second only
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from .base import OutgoingText, Receipt

Outcome = Receipt | BaseException | None
Script = Callable[[OutgoingText], Receipt] | Iterable[Outcome]


class FakeTransport:
    """Answers each ``send`` from a script.

    ``script`` is either a callable (given the text; returns a ``Receipt`` or raises) or a
    sequence of outcomes used one per send: a ``Receipt`` is returned, an exception raised,
    ``None`` means the default receipt. Once the sequence runs out every send succeeds.
    ``probe_error``, when set, is raised by ``probe``.
    """

    def __init__(
        self,
        name: str = "fake",
        script: Script | None = None,
        *,
        probe_error: BaseException | None = None,
    ) -> None:
        self.name = name
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
