"""The GSM modem way out: one text, one ``AT+CMGS`` in text mode on a serial port.

The AT codec is ``at.py`` (pure); this is the pyserial shell around it, the one place where
serial and OS errors become ``DeliveryError``:

- the device missing, not ours to open (permissions, another program holding it), or gone
  mid-command (unplugged, re-enumerated): ``TemporaryDeliveryError`` scope ``"transport"``;
- the SIM wanting a PIN we do not have, refusing ours, or wanting its PUK: the same with
  ``auth=True``. A PIN the SIM refused is never sent again by this object: three wrong PINs
  lock the SIM;
- a command unanswered within its timeout (ordinary commands ``timeout``, the ``>`` prompt
  ``prompt_timeout``, the result after Ctrl-Z ``send_timeout``): the same. A pending prompt
  is left with ESC, so nothing half-typed is ever sent. The result of a text that was typed
  and never answered is unknown: a retry may send it twice (at most once more per hang);
- ``+CMS ERROR`` / ``+CME ERROR``: as ``at.error_for`` says (no network, a busy SIM, a full
  SIM are the way out's; unknown codes are permanent for that text);
- a bad number, or a text no encoding fits into one SMS (``at.encode_one_sms``):
  ``PermanentDeliveryError`` before the modem is touched;
- anything else that goes wrong in here: ``TemporaryDeliveryError`` saying "unexpected".

A bare ``ERROR`` to ``AT+CMGS`` (we set ``AT+CMEE=1``, so the modem lost its settings in a
silent restart) is not a failure: the modem is initialised again and the text tried once more
at once; nothing had been typed, so nothing can go twice.

Every failure of the way out closes the port; the next ``send`` or ``probe`` opens the
device again by its configured path (so a ``/dev/serial/by-id/...`` link that udev moved to a
new ``ttyUSB`` is followed) and initialises the modem again: ``AT``, ``ATE0``, ``AT+CMEE=1``,
``AT+CPIN?`` (and ``AT+CPIN="<pin>"`` when it asks), ``AT+CMGF=1``, ``AT+CSCS="GSM"``,
``AT+CSMP=17,167,0,0``, ``AT+CPMS="SM","SM","SM"``, ``AT+CNMI=2,1,0,0,0``, ``AT+CSDH=1`` (the
last three may be refused: a warning, for ``probe`` to show). The same happens
when the link now points elsewhere, and when the modem says it has restarted (``RDY``,
``Call Ready``, an unsolicited ``+CPIN:``; or it echoes our commands again).

Received texts (``receive(mark)``, called by the engine every ``receive_every`` = min(2 s,
``poll``) on the worker; the modem takes turns with ``send``): a call first reads what the port
has buffered (no command) for ``+CMTI: "<mem>",<i>`` notices. It lists the SIM
(``AT+CMGL="ALL"`` in text mode, ``AT+CSCS="GSM"``) only when the port was just opened or
initialised (texts that came while it was closed), a notice came, an index was found reused, or
``poll`` seconds passed since the last listing; else it sends nothing. A notice for another
memory than the default (``ME``) adds it to the memories listed: each is chosen in turn with
``AT+CPMS="<mem>"`` (reading and deleting only; the default is chosen again afterwards). Decoding
is ``at.parse_texts``. Every text on the SIM is returned (the first call, ``mark`` None, too: a
SIM is an inbox we empty), and the new mark names each (memory, index, digest of sender, time
and text). Nothing is deleted before the engine has published it: the next call deletes each
text of its ``mark`` by index (``AT+CMGD=<i>``, never a delete-all flag) once ``AT+CMGR=<i>``
shows the index still holds that text; an index holding another text (reused after a crash) is
left alone and listed. A text whose delete failed stays in the mark, is tried again at the next
listing (not at every call) and is never returned twice. A failure raises like ``send`` and
returns nothing: the engine keeps the old mark, and deleting again is harmless. Long texts that
came in parts are returned part by part (text mode hides the header that joins them).

Voice calls (``call(number, ring_for, say, cancelled)``, the ``Calling`` protocol; the AT
dialect of the SIM800 / SIM7600 families, TS 27.007, see ``at.py``): the number must be E.164
(``at.atd``), else ``PermanentDeliveryError`` before the modem is touched. ``ATD<number>;``:

- ``OK``: the call goes on; it is followed with ``AT+CLCC`` every ``call_poll`` (1 s) and the
  unsolicited lines read between polls. Stat 0 (active) is ``answered``, hung up
  ``answered_hold`` (3 s) later (no audio: the ring is the message; ``say`` is not used);
  ``BUSY`` is ``busy``; ``NO ANSWER``, ``ring_for`` passing while it dials or rings, or ``NO
  CARRIER`` (or the call gone from ``AT+CLCC``) before it was active is ``no-answer`` (the
  callee rejected it or the network ended it; the line is the detail); ``cancelled()`` turning
  true is ``canceled``, hung up at once (``answered`` if it was answered already). A modem
  without ``AT+CLCC`` is followed by the final lines alone, with ``AT`` as the poll;
- ``ERROR``, a ``+CME ERROR`` other than the SIM's or the network's, ``NO CARRIER`` or ``NO
  DIALTONE`` at once: this modem cannot place voice calls (many USB sticks are data-only).
  ``PermanentDeliveryError("modem: cannot place voice calls: ATD: ...")``, ``can_call``
  becomes False and one error line is logged; later calls raise the same at once without
  touching the modem, until the daemon restarts. A bare ``ERROR`` is first checked with
  ``AT+CMEE?``: when ``AT+CMEE=1`` was lost the modem restarted silently, so it is initialised
  again and dialled once more;
- a ``+CME ERROR`` of the SIM, PIN or network (no service, emergency calls only): a
  ``TemporaryDeliveryError`` of the way out; ``can_call`` stays as it was;
- the modem stops answering or goes mid-call: ``TemporaryDeliveryError`` scope
  ``"transport"``, after trying to hang up.

Every way out of a call hangs up: ``ATH``, and ``AT+CHUP`` when ``ATH`` is refused (a call
that ended by itself is hung up too: harmless, and no call is ever left up). A modem that
holds ``ATD``'s result back until the call ends is stopped by the hang-up when ``ring_for``
passes or the call is cancelled, and its late result read off. ``can_call`` is True once a
dial was taken; ``probe`` says "voice calls: placed", "refused (ATD: ...)" or "not tried yet"
(with whether ``AT+CLCC`` answered: the command set is there, not proof); it never dials.

The lock is held for the whole call, like a send: the engine runs a call as one job on the
modem's worker, between texts, so nothing else waits on it there; a ``close()`` from another
thread (at stop) waits for the call to end, so the engine's ``cancelled`` should turn true
when it stops.

The transport runs no thread: the engine calls it from the way out's worker. The port is
opened exclusively (``flock``): a second program (another mqtt2sms, ModemManager) gets a
clear "busy" error instead of stealing replies.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..config.model import ModemConfig
from ..errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from . import at
from .base import CallResult, OutgoingText, Receipt, ReceivedText

log = logging.getLogger("mqtt2sms.modem")
_T = TypeVar("_T")

_READ_SLICE = 0.05  # seconds one read waits at most: the granularity of every timeout
_SIM_BUSY_WAIT = 0.3  # between tries while the SIM is busy starting (CME 14, CMS 314/515)
_PIN = re.compile(r"[0-9]{4,8}")
_MAX_NOTICES = 100
_CALL_POLL = 1.0  # seconds between AT+CLCC while a call rings
_ANSWERED_HOLD = 3.0  # seconds an answered call stays up before we hang up (no audio)
_LATE_LINES = 0.3  # seconds to read after a dial we stopped (its own late result)


class _NoAnswer(Exception):
    """A command's reply did not come in time."""


class _Stale(Exception):
    """AT+CMGS got a bare ERROR: the modem lost its settings."""


class _Gone(Exception):
    """The device failed under us (unplugged, EIO)."""


class _Stopped(Exception):
    """A wait was cut short: the call was cancelled or rang its time."""


@dataclass(frozen=True)
class ModemHealth:
    """What ``health()`` saw: signal 0-31 (None: not known), registered or not (None: not
    known), the SIM's texts stored and room (None: not known)."""

    signal: int | None
    registered: bool | None
    sim_used: int | None
    sim_total: int | None

    @property
    def dbm(self) -> int | None:
        return None if self.signal is None else -113 + 2 * self.signal


_REG = {
    0: "not registered, not searching",
    1: "registered (home network)",
    2: "not registered, searching",
    3: "registration denied",
    4: "registration unknown",
    5: "registered (roaming)",
}


class ModemTransport:
    """A GSM modem on a serial port; see the module docstring.

    ``timeout``, ``prompt_timeout`` and ``send_timeout`` are seconds (5, 10, 60 on a real
    modem; tests pass short ones). ``clock`` is monotonic. ``send``, ``probe``, ``health``
    and ``close`` take turns.
    """

    name = "modem"

    def __init__(
        self,
        config: ModemConfig,
        *,
        timeout: float = 5.0,
        prompt_timeout: float = 10.0,
        send_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        answered_hold: float = _ANSWERED_HOLD,
        call_poll: float = _CALL_POLL,
    ) -> None:
        self._config = config
        self.poll_every = config.poll  # for the engine's poller (polling.py)
        self.receives = True  # a modem always reads the texts its SIM receives
        # how often the poller calls receive(): cheap (no AT command) unless a +CMTI came,
        # texts wait to be deleted, or ``poll`` seconds passed since the last listing
        self.receive_every = min(2.0, config.poll)
        # one owner holds the port while the daemon runs: not closed when idle (a closed
        # port misses the modem's new-message notices, and each open initialises it again)
        self.keep_open = True
        self._timeout = timeout
        self._prompt_timeout = prompt_timeout
        self._send_timeout = send_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._port: Any = None  # serial.Serial once open
        self._opened: str | None = None  # the real path the open port came from
        self._reader = at.LineReader()
        self._ready = False  # initialised since the port was opened
        self._in_init = False
        self._coding: tuple[str, int] = ("GSM", 0)
        self._pin_refused = False
        self.warnings: list[str] = []  # init commands the modem refused but we can do without
        #: ``(memory, index)`` of every ``+CMTI`` notice heard (new texts on the SIM) and not
        #: yet acted on by ``receive``; the oldest go beyond ``_MAX_NOTICES``.
        self.new_texts: list[tuple[str, int]] = []
        self._memory: str | None = None  # the memory AT+CMGL/CMGR/CMGD use now (None: unknown)
        self._memories: list[str] = []  # listed each time: the default one, and any a notice named
        self._must_list = True  # a listing is due: the port was (re)initialised, or an index reused
        self._last_list = 0.0  # clock() of the last complete listing
        self._undeleted: set[_Handled] = set()  # in the mark, but their delete failed
        #: whether this modem places voice calls: None not known yet, False it refused ATD
        #: (kept until the daemon restarts: calls then raise at once, the modem untouched)
        self.can_call: bool | None = None
        self._refusal = ""  # "ATD: ERROR": what the modem said when it refused
        self._answered_hold = answered_hold
        self._call_poll = call_poll
        self._calling = False  # a call is up: _heard keeps its progress lines
        self._progress: list[str] = []  # NO CARRIER, BUSY, ... heard during the call

    # -- the transport -----------------------------------------------------------------

    def send(self, text: OutgoingText) -> Receipt:
        """Send ``text.body`` to ``text.address`` (E.164) as one SMS."""
        unicode = getattr(text, "charset", None) == "unicode"
        try:
            encoded, note = at.encode_one_sms(text.body, text.address, unicode=unicode)
        except ValueError as exc:
            raise PermanentDeliveryError(f"modem: {exc}") from exc
        if note:
            log.warning("modem: text %s: %s", text.id, note)
        with self._lock:
            return self._guarded("sending", lambda: self._send_once_more(encoded))

    def probe(self) -> str:
        """``AT``, ``AT+CPIN?``, ``AT+CSQ``, ``AT+CREG?``: one line, or a ``DeliveryError``."""
        with self._lock:
            return self._guarded("probing", self._probe)

    def health(self) -> ModemHealth:
        """``AT``, ``AT+CSQ``, ``AT+CREG?``, ``AT+CPMS?``: for stats; a ``DeliveryError``
        when the modem does not answer."""
        with self._lock:
            return self._guarded("checking", self._health)

    def stats(self) -> dict[str, object]:
        """``health()`` for ``<base>/stats``: a dead modem or a full SIM is seen before an
        alarm needs it."""
        h = self.health()
        return {
            "modem_signal": h.signal,
            "modem_registered": h.registered,
            "modem_sim_used": h.sim_used,
            "modem_sim_total": h.sim_total,
        }

    def receive(self, mark: str | None) -> tuple[list[ReceivedText], str | None]:
        """The texts on the SIM not handed out before, and the mark naming them.

        ``mark`` names the texts the last call returned (the engine has published them
        since): each is deleted now, by its index, after ``AT+CMGR`` shows the index still
        holds that text. See the module docstring."""
        handled = _read_mark(mark)
        with self._lock:
            return self._guarded("reading received texts", lambda: self._receive(mark, handled))

    def call(
        self, number: str, ring_for: float, say: str, cancelled: Callable[[], bool]
    ) -> CallResult:
        """Ring ``number`` once (``ATD<number>;``), at most ``ring_for`` seconds; hang up a
        few seconds after it is answered (``say`` is not spoken: a modem plays no audio).
        See "Voice calls" in the module docstring."""
        try:
            command = at.atd(number)
        except ValueError as exc:
            raise PermanentDeliveryError(f"modem: {exc}") from exc
        if self.can_call is False:
            raise PermanentDeliveryError(f"modem: cannot place voice calls: {self._refusal}")
        if cancelled():
            return CallResult("canceled", "cancelled before dialling")
        with self._lock:
            return self._guarded("calling", lambda: self._call(command, ring_for, cancelled))

    def close(self) -> None:
        """Close the port (the next use opens and initialises it again)."""
        with self._lock:
            self._close()

    # -- the steps ----------------------------------------------------------------------

    def _send_once_more(self, encoded: at.Encoded) -> Receipt:
        """A modem that restarted silently since the last command (its settings lost, so
        ``AT+CMGS`` gets a bare ``ERROR``) is initialised again and the text tried once more
        at once: nothing was typed yet, so nothing can go twice."""
        was_ready = self._port is not None and self._ready
        try:
            return self._send(encoded)
        except _Stale:
            if not was_ready:
                raise TemporaryDeliveryError("modem: AT+CMGS refused: ERROR") from None
            log.warning("modem: AT+CMGS refused with a bare ERROR: initialising it again")
            self._close()
            try:
                return self._send(encoded)
            except _Stale:
                raise TemporaryDeliveryError(
                    "modem: AT+CMGS refused: ERROR (even after initialising it again)"
                ) from None

    def _send(self, encoded: at.Encoded) -> Receipt:
        self._ensure()
        self._set_coding(encoded)
        command = at.cmgs(encoded)
        try:
            reply = self._command(command, self._prompt_timeout, prompt=True)
        except _NoAnswer:
            self._escape()
            raise TemporaryDeliveryError(
                f"modem: no prompt within {self._prompt_timeout:g} s after AT+CMGS; "
                "the port is closed and opened again before the next try"
            ) from None
        if reply.result == "ERROR":  # no code, though AT+CMEE=1 was set: it restarted
            raise _Stale
        if not reply.prompt:
            raise self._failed(reply, "sending")
        self._write(encoded.payload + at.CTRL_Z)
        try:
            reply = self._await(at.Exchange("", answer="+CMGS:"), self._send_timeout)
        except _NoAnswer:
            self._close()
            raise TemporaryDeliveryError(
                f"modem: no result within {self._send_timeout:g} s after the text "
                "(it may have gone: a retry may repeat it)"
            ) from None
        if not reply.ok:
            raise self._failed(reply, "sending")
        ref = at.parse_cmgs(reply)
        return Receipt(
            self.name,
            remote_id=None if ref is None else str(ref),
            detail=f"+CMGS: {ref} ({encoded.charset})",
        )

    def _probe(self) -> str:
        self._ensure()
        self._must("AT")
        state = at.parse_cpin(self._must("AT+CPIN?"))
        csq = at.parse_csq(self._must("AT+CSQ"))
        stat = at.parse_creg(self._must("AT+CREG?"))
        if csq is None or csq[0] == 99:
            signal = "signal unknown"
        else:
            signal = f"signal {csq[0]}/31 ({-113 + 2 * csq[0]} dBm)"
        reg = "registration unknown" if stat is None else _REG.get(stat, f"+CREG stat {stat}")
        voice = self._voice_hint()
        extra = f"; {'; '.join(self.warnings)}" if self.warnings else ""
        return (
            f"modem {self._config.device}: SIM {state or 'unknown'}, {signal}, {reg}; "
            f"{voice}{extra}"
        )

    def _voice_hint(self) -> str:
        """Whether it places voice calls, as far as known without dialling: a refused or
        placed call says; else ``AT+CLCC`` answered means the command set is there (a hint,
        not proof)."""
        if self.can_call is False:
            return f"voice calls: refused ({self._refusal})"
        if self.can_call:
            return "voice calls: placed"
        reply = self._command("AT+CLCC", self._timeout)
        if reply.ok:
            return "voice calls: not tried yet (AT+CLCC answered)"
        return f"voice calls: not tried yet (AT+CLCC: {at.describe(reply)}: probably none)"

    def _call(self, command: str, ring_for: float, cancelled: Callable[[], bool]) -> CallResult:
        """Dial, follow, and hang up on every way out (a hang-up that fails while another
        error is on its way is only logged)."""
        self._ensure()
        self._progress = []
        self._calling = True
        try:
            result = self._ring(command, ring_for, cancelled)
        except BaseException:
            self._calling = False
            self._hang_up_quietly()
            raise
        self._calling = False
        self._hang_up()
        return result

    def _ring(self, command: str, ring_for: float, cancelled: Callable[[], bool]) -> CallResult:
        started = self._clock()
        deadline = started + ring_for
        reply = self._dial(command, deadline, cancelled)
        if reply is None:  # a modem that holds ATD's result back until the call ends
            self._late_lines()
            if cancelled():
                return CallResult("canceled", "cancelled while dialling")
            return CallResult("no-answer", f"not answered within {ring_for:g} s")
        verdict = at.dial_verdict(reply)
        if verdict == "refused" and reply.result == "ERROR" and not self._settings_kept():
            log.warning("modem: ATD refused with a bare ERROR: initialising it again")
            self._close()
            self._ensure()
            reply = self._dial(command, deadline, cancelled)
            if reply is None:
                self._late_lines()
                return CallResult("canceled" if cancelled() else "no-answer", "stopped dialling")
            verdict = at.dial_verdict(reply)
        if verdict == "refused":
            raise self._refused(reply)
        if verdict == "down":  # the port is closed by _guarded, after the hang-up
            raise at.error_for(reply, "dialling")
        if verdict != "dialling":
            return CallResult(verdict, f"ATD: {reply.result}")
        self.can_call = True
        return self._follow(deadline, ring_for, cancelled)

    def _dial(
        self, command: str, deadline: float, cancelled: Callable[[], bool]
    ) -> at.Reply | None:
        """``ATD<number>;``'s reply, or None when the call was cancelled or rang its time
        before the modem answered the command (the hang-up then ends it)."""

        def stop() -> bool:
            return cancelled() or self._clock() >= deadline

        self._drain()
        self._write(command.encode("latin-1") + b"\r")
        try:
            return self._await(
                at.Exchange(command), max(deadline - self._clock(), 0.0) + self._timeout, stop
            )
        except _Stopped:
            return None

    def _settings_kept(self) -> bool:
        """Whether ``AT+CMEE=1`` still holds (so a bare ``ERROR`` is the modem's answer, not
        a sign it restarted and lost its settings)."""
        reply = self._command("AT+CMEE?", self._timeout)
        return reply.ok and any(v.strip() == "1" for v in reply.values("+CMEE:"))

    def _refused(self, reply: at.Reply) -> PermanentDeliveryError:
        self.can_call = False
        self._refusal = f"ATD: {at.describe(reply)}"
        log.error(
            "modem: it cannot place voice calls (%s): calls by the modem are not tried again "
            "until mqtt2sms restarts; texts go as before",
            self._refusal,
        )
        return PermanentDeliveryError(f"modem: cannot place voice calls: {self._refusal}")

    def _follow(
        self, deadline: float, ring_for: float, cancelled: Callable[[], bool]
    ) -> CallResult:
        """Follow a dialled call until it ends, is answered (and held ``answered_hold``),
        rings ``ring_for`` or is cancelled; ``AT+CLCC`` about every ``call_poll`` seconds
        between reads of the unsolicited lines. The caller hangs up."""
        answered_at: float | None = None
        state = "dialing"
        listed = False  # AT+CLCC has listed our call
        missing = 0  # AT+CLCC listed no call this many times in a row
        clcc = True  # the modem answers AT+CLCC
        next_poll = self._clock()
        while True:
            while self._progress:
                line = self._progress.pop(0)
                event = at.call_progress(line)
                if event == "active":
                    answered_at = answered_at if answered_at is not None else self._clock()
                elif event is not None:
                    return CallResult(at.call_outcome(event, answered_at is not None), line)
            if missing and (listed or missing >= 2):
                outcome = at.call_outcome("ended", answered_at is not None)
                return CallResult(outcome, "the call ended (AT+CLCC lists none)")
            now = self._clock()
            if cancelled():
                if answered_at is not None:
                    return CallResult("answered", "answered; acknowledged meanwhile")
                return CallResult("canceled", f"cancelled while {state}")
            if answered_at is not None:
                if now >= answered_at + self._answered_hold:
                    return CallResult("answered", "answered (AT+CLCC stat 0)")
            elif now >= deadline:
                return CallResult("no-answer", f"rang {ring_for:g} s unanswered ({state})")
            if now >= next_poll:
                next_poll = now + self._call_poll
                # without a call list, AT at least says the modem is still there
                reply = self._command("AT+CLCC" if clcc else "AT", self._timeout)
                if not reply.ok:
                    if clcc:  # no call list here: the final result lines must do
                        log.info(
                            "modem: AT+CLCC: %s: following the call without it", at.describe(reply)
                        )
                        clcc = False
                        continue
                    raise TemporaryDeliveryError(
                        f"modem: AT: {at.describe(reply)} while following the call"
                    )
                if not clcc:
                    continue
                call = at.outgoing_call(reply)
                if call is None:
                    missing += 1
                    continue
                listed, missing, state = True, 0, call.state
                if call.state == "active" and answered_at is None:
                    answered_at = self._clock()
                elif call.state == "disconnect":
                    missing = 1
                continue
            self._listen()

    def _listen(self) -> None:
        """Read one slice of what the modem says; every line is unsolicited."""
        self._reader.feed(self._read())
        self._hear_read()

    def _late_lines(self) -> None:
        """After a dial we stopped (the hang-up aborts it), the modem's late result for the
        ``ATD`` must not be taken for the next command's: read it off as unsolicited."""
        self._hang_up()
        end = self._clock() + _LATE_LINES
        while self._clock() < end:
            self._listen()

    def _hang_up(self) -> None:
        """``ATH``, or ``AT+CHUP`` when ATH is refused; raises when neither is taken."""
        reply = self._command("ATH", self._timeout)
        if reply.ok:
            return
        first = at.describe(reply)
        reply = self._command("AT+CHUP", self._timeout)
        if reply.ok:
            return
        raise TemporaryDeliveryError(
            f"modem: could not hang up (ATH: {first}; AT+CHUP: {at.describe(reply)})"
        )

    def _hang_up_quietly(self) -> None:
        """Hang up on the way out of a failure: what fails is logged, the failure goes on."""
        if self._port is None:
            return  # closed already (gone): nothing to say it to
        try:
            self._hang_up()
        except (DeliveryError, _NoAnswer, _Gone) as exc:
            log.warning("modem: hanging up after a failed call: %s", exc)

    def _health(self) -> ModemHealth:
        self._ensure()
        self._must("AT")
        csq = at.parse_csq(self._must("AT+CSQ"))
        stat = at.parse_creg(self._must("AT+CREG?"))
        cpms = self._command("AT+CPMS?", self._timeout)
        fill = at.parse_cpms(cpms) if cpms.ok else None
        return ModemHealth(
            signal=None if csq is None or csq[0] == 99 else csq[0],
            registered=None if stat is None else stat in (1, 5),
            sim_used=None if fill is None else fill[0],
            sim_total=None if fill is None else fill[1],
        )

    def _receive(
        self, mark: str | None, handled: list[_Handled]
    ) -> tuple[list[ReceivedText], str | None]:
        self._ensure()  # reads what came while idle: +CMTI notices
        fresh = [entry for entry in handled if entry not in self._undeleted]
        if not fresh and not self._listing_due():
            return [], mark  # nothing to do: no AT command at all
        self._gsm_charset()
        # texts whose delete failed are tried again with each listing, not at every call
        todo = handled if self._listing_due() else fresh
        kept = [entry for entry in todo if not self._delete(entry)]
        kept += [entry for entry in handled if entry not in todo]
        self._undeleted = set(kept)
        if not self._listing_due():
            return [], _write_mark(kept)
        heard = list(self.new_texts)
        for memory, _ in heard:
            if memory and memory not in self._memories:
                self._memories.append(memory)
        skip = {(e.memory, e.index, e.digest) for e in kept}
        out: list[ReceivedText] = []
        marks = list(kept)
        for memory in list(self._memories):
            for stored in self._list(memory):
                entry = _Handled(memory, stored.index, stored.digest)
                if (memory, stored.index, stored.digest) in skip:
                    continue  # returned before; its delete failed: not published twice
                marks.append(entry)
                out.append(
                    ReceivedText(
                        sender=stored.sender,
                        text=stored.text,
                        at=stored.at,
                        remote_id=f"{memory}:{stored.index}",
                    )
                )
        if self._memories and self._memory != self._memories[0]:
            self._use_memory(self._memories[0])
        self.new_texts = self.new_texts[len(heard) :]
        self._must_list = False
        self._last_list = self._clock()
        return out, _write_mark(marks)

    def _listing_due(self) -> bool:
        return (
            self._must_list
            or bool(self.new_texts)
            or self._clock() - self._last_list >= self._config.poll
        )

    def _gsm_charset(self) -> None:
        """Texts are read with ``AT+CSCS="GSM"`` (after a UCS-2 text went it is UCS2)."""
        if self._coding[0] == "GSM":
            return
        dcs, self._coding = self._coding[1], ("?", -1)
        self._must(at.cscs("GSM"))
        self._coding = ("GSM", dcs)

    def _use_memory(self, memory: str) -> bool:
        """Make ``memory`` the one texts are listed, read and deleted in; False when the modem
        refuses it (logged)."""
        if memory == self._memory:
            return True
        self._memory = None
        reply = self._command(at.cpms_read(memory), self._timeout)
        if not reply.ok:
            if reply.result == "ERROR":  # no code though AT+CMEE=1: it restarted
                raise self._failed(reply, f"choosing memory {memory}")
            log.warning("modem: memory %s refused: %s", memory, at.describe(reply))
            return False
        self._memory = memory
        return True

    def _list(self, memory: str) -> list[at.StoredText]:
        """Every received text in ``memory`` (``AT+CMGL="ALL"``)."""
        if not self._use_memory(memory):
            if memory != (self._memories[0] if self._memories else None):
                self._memories.remove(memory)  # named by a notice, but not one we can read
            return []
        reply = self._command(at.cmgl(), self._timeout)
        if not reply.ok:
            raise self._failed(reply, "listing received texts")
        return at.parse_texts(reply)

    def _delete(self, entry: _Handled) -> bool:
        """Delete a text returned before (so published since) by its index, if the index
        still holds it; True when it is off the SIM (or the index holds another text now,
        which is never deleted unread), False to try again next time."""
        if not self._use_memory(entry.memory):
            return False
        reply = self._command(at.cmgr(entry.index), self._timeout)
        if not reply.ok:
            if reply.code("CMS") == 321:  # invalid memory index: nothing there any more
                return True
            error = self._failed(reply, f"reading text {entry.memory}:{entry.index}")
            if isinstance(error, TemporaryDeliveryError) and error.scope == "transport":
                raise error
            log.warning("modem: text %s:%s: %s", entry.memory, entry.index, error)
            return False
        stored = at.parse_texts(reply, index=entry.index)
        if not stored:
            return True  # the index is empty: it is gone already
        if stored[0].digest != entry.digest:
            log.info("modem: %s:%s holds a newer text now: not deleted", entry.memory, entry.index)
            self._must_list = True
            return True
        reply = self._command(at.cmgd(entry.index), self._timeout)
        if reply.ok:
            return True
        error = self._failed(reply, f"deleting text {entry.memory}:{entry.index}")
        if isinstance(error, TemporaryDeliveryError) and error.scope == "transport":
            raise error
        log.warning("modem: text %s:%s not deleted: %s", entry.memory, entry.index, error)
        return False

    def _ensure(self) -> None:
        """An open, initialised port on the device the configured path names now."""
        if self._port is not None and os.path.realpath(self._config.device) != self._opened:
            log.warning("modem: %s now points elsewhere: opening it again", self._config.device)
            self._close()
        if self._port is None:
            self._open()
        else:
            self._drain()  # a restart notice that came while idle
        if not self._ready:
            self._init()

    def _init(self) -> None:
        self._in_init = True
        try:
            with contextlib.suppress(_NoAnswer):  # a modem that autobauds may eat the first
                self._command("AT", min(1.0, self._timeout))
            self._must("AT")
            self._must("ATE0")
            self._must("AT+CMEE=1")
            self._unlock()
            self._must("AT+CMGF=1", retry_busy=True)
            self._must(at.cscs("GSM"))
            self._must(at.csmp(0))
            self._coding = ("GSM", 0)
            self.warnings = []
            refused = set()
            for command in ('AT+CPMS="SM","SM","SM"', "AT+CNMI=2,1,0,0,0", "AT+CSDH=1"):
                reply = self._command(command, self._timeout)
                if not reply.ok:
                    refused.add(command)
                    self.warnings.append(f"{command} refused: {at.describe(reply)}")
                    log.warning("modem: %s", self.warnings[-1])
            self._memory = "SM" if 'AT+CPMS="SM","SM","SM"' not in refused else self._cpms()
            if self._memory is not None:
                self._memories = [
                    self._memory,
                    *(m for m in self._memories if m != self._memory),
                ]
            self._must_list = True  # texts that came while it was closed or restarting
            self._ready = True
        finally:
            self._in_init = False

    def _cpms(self) -> str | None:
        """The memory texts are read from now (``AT+CPMS?``'s first), None: not known."""
        reply = self._command("AT+CPMS?", self._timeout)
        values = reply.values("+CPMS:") if reply.ok else []
        name = values[0].split(",")[0].strip().strip('"') if values else ""
        return name or None

    def _unlock(self) -> None:
        reply = self._must("AT+CPIN?", retry_busy=True)
        state = at.parse_cpin(reply)
        if state == "READY":
            return
        if state == "SIM PIN":
            pin = self._config.pin
            if not pin:
                raise TemporaryDeliveryError(
                    "modem: the SIM wants a PIN: set modem.pin (or remove the PIN in a phone)",
                    auth=True,
                )
            if not _PIN.fullmatch(pin):
                raise TemporaryDeliveryError("modem: modem.pin must be 4 to 8 digits", auth=True)
            if self._pin_refused:
                raise TemporaryDeliveryError(
                    "modem: the SIM refused modem.pin; it is not tried again (three wrong PINs "
                    "lock the SIM): correct modem.pin",
                    auth=True,
                )
            reply = self._command(at.cpin(pin), self._timeout)
            if not reply.ok:
                self._pin_refused = True
                raise TemporaryDeliveryError(
                    f"modem: the SIM refused modem.pin: {at.describe(reply)}", auth=True
                )
            self._wait_ready()
            return
        if state == "SIM PUK":
            raise TemporaryDeliveryError(
                "modem: the SIM is locked after wrong PINs: unlock it with its PUK in a phone",
                auth=True,
            )
        raise TemporaryDeliveryError(f"modem: the SIM is not ready: +CPIN: {state}", auth=True)

    def _wait_ready(self) -> None:
        deadline = self._clock() + self._timeout
        while True:
            reply = self._command("AT+CPIN?", self._timeout)
            if reply.ok and at.parse_cpin(reply) == "READY":
                return
            if self._clock() >= deadline:
                raise TemporaryDeliveryError("modem: the SIM took the PIN but is not ready")
            time.sleep(_SIM_BUSY_WAIT)

    def _set_coding(self, encoded: at.Encoded) -> None:
        if self._coding == (encoded.charset, encoded.dcs):
            return
        self._coding = ("?", -1)  # unknown until both are done
        self._must(at.cscs(encoded.charset))
        self._must(at.csmp(encoded.dcs))
        self._coding = (encoded.charset, encoded.dcs)

    # -- commands ----------------------------------------------------------------------

    def _must(self, command: str, *, retry_busy: bool = False) -> at.Reply:
        """Run ``command``; anything but OK raises (after waiting out a busy SIM when
        ``retry_busy``)."""
        deadline = self._clock() + self._timeout
        while True:
            reply = self._command(command, self._timeout)
            if reply.ok:
                return reply
            busy = reply.code("CME") == 14 or reply.code("CMS") in (314, 515)
            if not (retry_busy and busy) or self._clock() >= deadline:
                raise self._failed(reply, command)
            time.sleep(_SIM_BUSY_WAIT)

    def _command(self, command: str, timeout: float, *, prompt: bool = False) -> at.Reply:
        self._drain()
        self._write(command.encode("latin-1") + b"\r")
        reply = self._await(at.Exchange(command, prompt=prompt), timeout)
        if reply.echoed and self._ready:
            log.warning("modem: it echoes commands again: it has restarted; initialising it")
            self._ready = False
        return reply

    def _await(
        self, exchange: at.Exchange, timeout: float, stop: Callable[[], bool] | None = None
    ) -> at.Reply:
        deadline = self._clock() + timeout
        try:
            while True:
                if stop is not None and stop():
                    raise _Stopped
                item = self._reader.pop(prompt=exchange.prompt)
                while item is not None:
                    reply = exchange.take(item)
                    if reply is not None:
                        return reply
                    item = self._reader.pop(prompt=exchange.prompt)
                if self._clock() >= deadline:
                    raise _NoAnswer(exchange.command)
                self._reader.feed(self._read())
        finally:
            self._heard(exchange.unsolicited)

    def _drain(self) -> None:
        """Whatever came while no command waited is unsolicited."""
        port = self._port
        try:
            waiting = port.in_waiting
            if waiting:
                self._reader.feed(port.read(waiting))
        except Exception as exc:
            raise _Gone(exc) from exc
        self._hear_read()

    def _hear_read(self) -> None:
        """Every line read so far, while no command waited for it, is unsolicited."""
        lines = []
        item = self._reader.pop()
        while item is not None:
            if isinstance(item, str) and item.strip():
                lines.append(item.strip())
            item = self._reader.pop()
        self._heard(lines)

    def _heard(self, lines: list[str]) -> None:
        for line in lines:
            if self._calling and at.call_progress(line) is not None:
                self._progress.append(line)
            notice = at.parse_cmti(line)
            if notice is not None:
                self.new_texts = [*self.new_texts[-(_MAX_NOTICES - 1) :], notice]
            if at.is_boot_marker(line) and self._ready and not self._in_init:
                log.warning("modem: %r: it has restarted; initialising it again", line)
                self._ready = False
            log.debug("modem: unsolicited %r", line)
        lines.clear()

    def _read(self) -> bytes:
        port = self._port
        try:
            data: bytes = port.read(max(1, port.in_waiting))
        except Exception as exc:
            raise _Gone(exc) from exc
        return data

    def _write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except Exception as exc:
            raise _Gone(exc) from exc

    def _escape(self) -> None:
        """Leave a pending prompt with ESC (nothing typed is sent), then close the port."""
        with contextlib.suppress(Exception):
            self._port.write(at.ESC)
            self._port.flush()
        self._close()

    # -- opening, closing, errors ---------------------------------------------------------

    def _open(self) -> None:
        path = self._config.device
        try:
            import serial  # the 'modem' extra; imported once, at the first open
        except ImportError as exc:
            raise TemporaryDeliveryError(
                "modem: pyserial is not installed: pip install 'mqtt2sms[modem]'"
            ) from exc
        try:
            port = serial.Serial(
                path,
                self._config.baudrate,
                timeout=_READ_SLICE,
                write_timeout=self._timeout,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise self._open_error(exc) from exc
        self._port = port
        self._opened = os.path.realpath(path)
        self._reader.clear()
        self._ready = False
        with contextlib.suppress(Exception):
            port.reset_input_buffer()
            port.write(at.ESC)  # a prompt left open by a previous owner: abandon it
            port.flush()

    def _open_error(self, exc: BaseException) -> TemporaryDeliveryError:
        path = self._config.device
        code = getattr(exc, "errno", None)
        if code == errno.ENOENT or not os.path.exists(path):
            hint = (
                ""
                if path.startswith("/dev/serial/by-id/")
                else (
                    "; a /dev/serial/by-id/... path stays the same when the modem resets "
                    "(ls -l /dev/serial/by-id)"
                )
            )
            return TemporaryDeliveryError(f"modem: {path} not found: is it plugged in?{hint}")
        if code in (errno.EACCES, errno.EPERM):
            return TemporaryDeliveryError(
                f"modem: no permission to open {path}: add the user to the 'dialout' group "
                "(under systemd: the modem drop-in with DeviceAllow= and SupplementaryGroups=)"
            )
        if code in (errno.EAGAIN, errno.EBUSY) or "exclusively lock" in str(exc):
            return TemporaryDeliveryError(
                f"modem: {path} is held by another program (another mqtt2sms, ModemManager?)"
            )
        return TemporaryDeliveryError(f"modem: cannot open {path}: {exc}")

    def _close(self) -> None:
        port, self._port = self._port, None
        self._opened = None
        self._ready = False
        self._memory = None
        self._must_list = True
        self._reader.clear()
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()

    def _failed(self, reply: at.Reply, what: str) -> DeliveryError:
        error = at.error_for(reply, what)
        if isinstance(error, TemporaryDeliveryError) and error.scope == "transport":
            self._close()  # its state is unknown: start again before the next try
        return error

    def _guarded(self, what: str, step: Callable[[], _T]) -> _T:
        try:
            return step()
        except DeliveryError as exc:
            if isinstance(exc, TemporaryDeliveryError) and exc.scope == "transport":
                self._close()
            raise
        except _NoAnswer as exc:
            self._escape()
            raise TemporaryDeliveryError(
                f"modem: no answer to {_safe(str(exc))} within {self._timeout:g} s while "
                f"{what}; the port is closed and opened again before the next try"
            ) from None
        except _Gone as exc:
            self._close()
            cause = exc.__cause__ or exc
            raise TemporaryDeliveryError(
                f"modem: {self._config.device} failed while {what} ({cause}): unplugged? "
                "it is opened again before the next try"
            ) from exc
        except Exception as exc:
            self._close()
            raise TemporaryDeliveryError(
                f"modem: unexpected {type(exc).__name__} while {what}: {exc}"
            ) from exc


@dataclass(frozen=True)
class _Handled:
    """A text a ``receive`` returned: where it is and what it was."""

    memory: str
    index: int
    digest: str


def _read_mark(mark: str | None) -> list[_Handled]:
    """The texts a mark names: ``[["SM",3,"<digest>"],...]`` (None, or unreadable: none)."""
    if not mark:
        return []
    try:
        items = json.loads(mark)
        return [_Handled(str(m), int(i), str(d)) for m, i, d in items]
    except (ValueError, TypeError) as exc:
        log.warning("modem: received-texts mark %r not understood (%s): ignored", mark, exc)
        return []


def _write_mark(handled: list[_Handled]) -> str:
    return json.dumps([[h.memory, h.index, h.digest] for h in handled], separators=(",", ":"))


def _safe(command: str) -> str:
    """A command for a message: never the PIN."""
    return 'AT+CPIN="****"' if command.upper().startswith("AT+CPIN=") else command
