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
``AT+CSMP=17,167,0,0``, ``AT+CPMS="SM","SM","SM"``, ``AT+CNMI=2,1,0,0,0``. The same happens
when the link now points elsewhere, and when the modem says it has restarted (``RDY``,
``Call Ready``, an unsolicited ``+CPIN:``; or it echoes our commands again).

The transport runs no thread: the engine calls it from the way out's worker. The port is
opened exclusively (``flock``): a second program (another mqtt2sms, ModemManager) gets a
clear "busy" error instead of stealing replies.
"""

from __future__ import annotations

import contextlib
import errno
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
from .base import OutgoingText, Receipt

log = logging.getLogger("mqtt2sms.modem")
_T = TypeVar("_T")

_READ_SLICE = 0.05  # seconds one read waits at most: the granularity of every timeout
_SIM_BUSY_WAIT = 0.3  # between tries while the SIM is busy starting (CME 14, CMS 314/515)
_PIN = re.compile(r"[0-9]{4,8}")
_MAX_NOTICES = 100


class _NoAnswer(Exception):
    """A command's reply did not come in time."""


class _Stale(Exception):
    """AT+CMGS got a bare ERROR: the modem lost its settings."""


class _Gone(Exception):
    """The device failed under us (unplugged, EIO)."""


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
    ) -> None:
        self._config = config
        self.poll_every = config.poll  # for the engine's poller (polling.py)
        self.receives = False  # no receive() yet: the reader of received texts comes later
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
        #: ``(memory, index)`` of every ``+CMTI`` notice heard (new texts on the SIM), for the
        #: reader of received texts; the oldest go beyond ``_MAX_NOTICES``.
        self.new_texts: list[tuple[str, int]] = []

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
        extra = f"; {'; '.join(self.warnings)}" if self.warnings else ""
        return f"modem {self._config.device}: SIM {state or 'unknown'}, {signal}, {reg}{extra}"

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
            for command in ('AT+CPMS="SM","SM","SM"', "AT+CNMI=2,1,0,0,0"):
                reply = self._command(command, self._timeout)
                if not reply.ok:
                    self.warnings.append(f"{command} refused: {at.describe(reply)}")
                    log.warning("modem: %s", self.warnings[-1])
            self._ready = True
        finally:
            self._in_init = False

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

    def _await(self, exchange: at.Exchange, timeout: float) -> at.Reply:
        deadline = self._clock() + timeout
        try:
            while True:
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
        lines = []
        item = self._reader.pop()
        while item is not None:
            if isinstance(item, str) and item.strip():
                lines.append(item.strip())
            item = self._reader.pop()
        self._heard(lines)

    def _heard(self, lines: list[str]) -> None:
        for line in lines:
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


def _safe(command: str) -> str:
    """A command for a message: never the PIN."""
    return 'AT+CPIN="****"' if command.upper().startswith("AT+CPIN=") else command
