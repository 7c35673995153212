"""The engine's writes to the outbox when the disk misbehaves.

Theory of operation. ``outbox.py`` turns every SQLite or OS error into ``StorageError``;
this is where the engine meets it. A full SD card must not lose an alert or stop one from
leaving: a row's move that cannot be written waits here, in order, and is written when there
is room (``flush``, tried every turn of the engine's loop); until then the row is not picked
up again (``waiting``), so a text that left without its ``sending`` mark is not sent twice. An
error is always in ``stats.last_error`` and STATUS=; in the log when it is new, and then
once a minute, so a full disk does not fill the journal too. ``changed_outside`` tells the
engine when a ``queue`` command changed the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from mqtt2sms.errors import StorageError, TransitionError
from mqtt2sms.events import EventSink
from mqtt2sms.outbox import Outbox

log = logging.getLogger("mqtt2sms")

_T = TypeVar("_T")
LOG_EVERY = 60.0  # seconds between log lines for the same storage error, at least
LOOK_EVERY = 0.5  # seconds between looks for a change another program made, at least


class Disk:
    def __init__(self, outbox: Outbox, sink: EventSink, mono: Callable[[], float]) -> None:
        self.outbox = outbox
        self.sink = sink
        self.mono = mono
        self.pending: list[tuple[str, str, dict[str, object]]] = []  # (id, state, fields)
        self._logged: tuple[str, float] = ("", -1e18)
        self._version = outbox.data_version()  # the outbox as this program left it
        self._looked_at = -1e18

    def changed_outside(self) -> bool:
        """Did another program (``mqtt2sms queue retry`` or ``drop``) change the outbox? Looked
        at every ``LOOK_EVERY`` seconds at most (SQLite's ``data_version``)."""
        m = self.mono()
        if m - self._looked_at < LOOK_EVERY:
            return False
        self._looked_at = m
        version = self.attempt(self.outbox.data_version)
        if version is None or version == self._version:
            return False
        self._version = version
        return True

    def error(self, what: str, exc: StorageError) -> None:
        """Report a storage error (see the module's comment)."""
        message = f"outbox: {exc}"
        self.sink.set_error(message, "outbox")
        m = self.mono()
        if message != self._logged[0] or m - self._logged[1] >= LOG_EVERY:
            self._logged = (message, m)
            log.error("outbox: %s: %s", what, exc)

    def attempt(self, fn: Callable[[], _T]) -> _T | None:
        """``fn()``, or None when the outbox cannot be read or written (reported)."""
        try:
            return fn()
        except StorageError as exc:
            self.error("cannot read or write", exc)
            return None

    def waiting(self) -> set[str]:
        """Ids of rows whose last move is not on disk yet."""
        return {u[0] for u in self.pending}

    def update(self, text_id: str, state: str, fields: dict[str, object]) -> bool:
        """Move a row; False when the table forbids it (a `queue` command moved it first).
        On a full disk the move waits, after the ones before it, and True is returned: the
        text goes on (a kill before the disk takes the moves can repeat it once)."""
        if any(u[0] == text_id for u in self.pending):
            self.pending.append((text_id, state, fields))
            return True
        try:
            self.outbox.update(text_id, state, **fields)
        except TransitionError as exc:
            log.warning("text %s: %s (a queue command changed it meanwhile)", text_id, exc)
            return False
        except StorageError as exc:
            self.error(f"cannot record text {text_id} as {state}; will retry", exc)
            self.pending.append((text_id, state, fields))
        return True

    def flush(self) -> bool:
        """Write the moves that waited; True when the last of them was written now."""
        if not self.pending:
            return False
        for upd in list(self.pending):
            try:
                self.outbox.update(upd[0], upd[1], **upd[2])
            except TransitionError:
                pass
            except StorageError:
                return False
            self.pending.remove(upd)
        self.sink.clear_error("outbox")
        return True
