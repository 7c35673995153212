"""A fake GSM modem on a pseudo-terminal, for tests.

A thread answers AT commands on the pty's master side; the transport opens the slave side
through ``link`` (a symlink, as ``/dev/serial/by-id/...`` is). It speaks the text-mode subset
of TS 27.005 / 27.007 that ``mqtt2sms.transports.modem`` uses, starts as a modem does after
power-on (echo on, ``AT+CMEE=0``, PDU mode, ``GSM`` charset), and records each SMS it
"sent", decoded by the charset and coding scheme in force (GSM 03.38 bytes, where 0x1A ends a
text and 0x1B aborts it, or hex UTF-16BE).

Modes: ``pin`` (the SIM asks for it), ``cms_errors`` (the next texts get ``+CMS ERROR: n``),
``prompt_delay`` (the ``>`` prompt comes late, the modem waiting for the text all along),
``urcs_mid_send`` (unsolicited lines written before the prompt, after it, and between
``+CMGS`` and ``OK``), ``hang(seconds)`` (read and ignore everything for a while),
``unplug()`` / ``plug()`` (the link disappears and comes back pointing to a new pty, the
modem reset), ``reboot()`` (``RDY``: settings back to their defaults), ``forget()`` (the same
without a word), ``hang_after_text`` (the text goes, its result never comes).

Received texts: ``receive_text(sender, text)`` stores a text on the SIM (as GSM 03.38 code
points, or as hex UCS-2 when it needs it or is asked to) at the lowest free index and writes
``+CMTI: "SM",<index>``. It answers ``AT+CPMS="<mem>",...`` (choosing the memory read),
``AT+CMGL="ALL"`` and ``AT+CMGR=<i>`` (with ``AT+CSDH=1``, headers carry the length: characters
for GSM, octets for UCS-2) and ``AT+CMGD=<i>[,<flag>]`` (every delete command is kept in
``deletes``; a flag deletes as TS 27.005 says; ``refuse_deletes``: each gets an error).
``store`` holds the texts by memory and index. ``AT+CPMS``'s counts stay ``sim``.

Voice calls: ``ATD<number>;`` is answered by ``call_modes[number]``, else ``call_mode``:
``answer`` (dialing, alerting after ``alert_after`` s, active ``answer_after`` s after the
dial), ``never`` (alerting until hung up), ``busy`` (``BUSY`` once alerting), ``reject``
(``NO CARRIER`` once alerting), ``no-answer`` (``NO ANSWER`` ``no_answer_after`` s after the
dial), ``refuse`` (``refuse_with``, default ``ERROR``, to ``ATD``: a stick without voice).
``AT+CLCC`` lists the call (stat 2, 3, 0 as it goes); ``ATH`` and ``AT+CHUP`` end it
(``refuse_ath``: ``ATH`` gets ``ERROR``). Every dial and hang-up is kept with its
``time.monotonic()`` in ``calls`` (``FakeCall``) and ``hangups``. ``AT+CMEE?`` answers.
``hold_dial_result``: ``ATD`` gets no ``OK``; a hang-up first ends it with ``NO CARRIER``.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from mqtt2sms.sms import GSM7_TABLE


@dataclass
class StoredSms:
    sender: str
    text: str
    stamp: str = "24/03/09,14:05:00+04"  # the service centre's, quarter hours
    ucs2: bool = False  # the SMS came as UCS-2: text mode shows it as hex
    status: str = "REC UNREAD"

    def body(self) -> tuple[str, int]:
        """What text mode shows under ``AT+CSCS="GSM"``, and the header's length."""
        if self.ucs2:
            data = self.text.encode("utf-16-be").hex().upper()
            return data, len(data) // 2
        out = "".join(
            chr(GSM7_TABLE.index(c)) if c in GSM7_TABLE else "\x1b" + chr(_EXT[c])
            for c in self.text
        )
        return out, len(out)


_EXT = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D}
_EXT |= {"]": 0x3E, "|": 0x40, "€": 0x65}
_GSM = frozenset(GSM7_TABLE) - {"\x1b"} | frozenset(_EXT)


@dataclass
class FakeCall:
    number: str
    mode: str
    dialled_at: float  # time.monotonic()
    stat: int = 2  # +CLCC: 2 dialing, 3 alerting, 0 active
    answered_at: float | None = None
    ended_at: float | None = None
    ended_by: str = ""  # "ATH", "AT+CHUP", or the line the fake wrote ("BUSY", ...)


@dataclass(frozen=True)
class FakeSms:
    number: str
    text: str
    charset: str  # the AT+CSCS in force
    dcs: int  # the last AT+CSMP's coding scheme
    raw: bytes  # what came between the prompt and Ctrl-Z


class FakeModem:
    def __init__(self, directory: Path, *, pin: str | None = None) -> None:
        self.link = directory / "usb-Fake_GSM_Modem_0001-if00-port0"
        self.pin = pin
        self.sent: list[FakeSms] = []
        self.aborted: list[bytes] = []  # texts left with ESC
        self.commands: list[str] = []
        self.cms_errors: deque[int] = deque()
        self.urcs_mid_send: list[str] = []
        self.prompt_delay = 0.0  # seconds between AT+CMGS and its prompt
        self.hang_after_text = 0.0  # seconds it hangs after taking (and sending) a text
        self.csq = (20, 0)
        self.creg = 1
        self.sim = (3, 30)
        self.ptys: list[str] = []  # every slave path made, in order
        self.store: dict[str, dict[int, StoredSms]] = {"SM": {}, "ME": {}}
        self.deletes: list[str] = []  # every AT+CMGD command, as given
        self.capacity = 30  # indexes 0 .. capacity-1 per memory
        self.refuse_deletes = False  # AT+CMGD gets +CMS ERROR: 500
        self.call_mode = "answer"
        self.call_modes: dict[str, str] = {}  # per number, before call_mode
        self.alert_after = 0.2  # seconds from the dial to alerting
        self.answer_after = 0.5  # seconds from the dial to active ("answer")
        self.no_answer_after = 1.0  # seconds from the dial to NO ANSWER ("no-answer")
        self.refuse_with = "ERROR"  # the answer to ATD in "refuse"
        self.refuse_ath = False  # ATH gets ERROR (AT+CHUP must do)
        self.hold_dial_result = False  # ATD answers only when the call ends (AT+COLP=1 style)
        self.calls: list[FakeCall] = []  # every ATD, in order
        self.hangups: list[tuple[float, str]] = []  # (time.monotonic(), "ATH" / "AT+CHUP")
        self._ref = 0
        self._hang_until = 0.0
        self._lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self._stop = threading.Event()
        self._reset()
        self.plug()
        self._thread = threading.Thread(target=self._run, name="fake-modem", daemon=True)
        self._thread.start()

    # -- control -----------------------------------------------------------------------

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.unplug()

    def __enter__(self) -> FakeModem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hang(self, seconds: float) -> None:
        """Read and ignore everything for ``seconds``, then answer again."""
        self._hang_until = time.monotonic() + seconds

    @property
    def hanging(self) -> bool:
        return time.monotonic() < self._hang_until

    def unplug(self) -> None:
        """The device goes: the link disappears and the pty closes."""
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = None

    def plug(self) -> None:
        """The device comes (back): a new pty, the link moved to it, the modem just started."""
        master, slave = os.openpty()
        tty.setraw(slave)
        path = os.ttyname(slave)
        tmp = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(path)
        with self._lock:
            self._reset()
            self._master, self._slave = master, slave
            os.replace(tmp, self.link)
            self.ptys.append(path)

    def reboot(self) -> None:
        """The modem restarts on the same device: settings back to defaults, ``RDY``."""
        with self._lock:
            self._reset()
        self.inject("RDY")

    def forget(self) -> None:
        """The modem restarts silently: settings back to defaults, no ``RDY``."""
        with self._lock:
            self._reset()

    def receive_text(
        self,
        sender: str,
        text: str,
        *,
        stamp: str = "24/03/09,14:05:00+04",
        ucs2: bool | None = None,
        memory: str = "SM",
        notify: bool = True,
        index: int | None = None,
    ) -> int:
        """A text arrives: stored at ``index`` (default: the lowest free one), then
        ``+CMTI`` unless ``notify`` is False. UCS-2 when ``ucs2`` or when GSM cannot carry it."""
        wide = ucs2 if ucs2 is not None else any(c not in _GSM for c in text)
        with self._lock:
            slots = self.store.setdefault(memory, {})
            if index is None:
                index = next(i for i in range(self.capacity) if i not in slots)
            slots[index] = StoredSms(sender, text, stamp, wide)
        if notify:
            self.inject(f'+CMTI: "{memory}",{index}')
        return index

    def inject(self, line: str) -> None:
        """Write an unsolicited line now."""
        self._write(f"\r\n{line}\r\n")

    # -- the modem -----------------------------------------------------------------------

    def _reset(self) -> None:
        self.echo = True
        self.cmee = 0
        self.cmgf = 0
        self.cscs = "GSM"
        self.dcs = 0
        self.csdh = 0
        self.memory = "SM"
        self.locked = self.pin is not None
        self.pin_tries = 3
        self._buf = bytearray()
        self._typing: str | None = None  # the number of the text being typed
        call = self._live_call()
        if call is not None:
            self._end(call, "reset")  # a modem that restarts drops its call

    def _write(self, text: str | bytes) -> None:
        data = text.encode("latin-1") if isinstance(text, str) else text
        fd = self._master
        if fd is not None:
            with contextlib.suppress(OSError):
                os.write(fd, data)

    def _run(self) -> None:
        while not self._stop.is_set():
            fd = self._master
            if fd is None:
                time.sleep(0.02)
                continue
            try:
                ready, _, _ = select.select([fd], [], [], 0.05)
                data = os.read(fd, 4096) if ready else b""
            except OSError:
                time.sleep(0.02)
                continue
            if self.hanging:
                continue
            with self._lock:
                if fd is self._master:
                    self._tick()
                    if data:
                        self._feed(data)

    def _feed(self, data: bytes) -> None:
        for b in data:
            if self._typing is not None:
                if b == 0x1A:
                    self._finish_text(bytes(self._buf))
                    self._buf.clear()
                elif b == 0x1B:
                    self.aborted.append(bytes(self._buf))
                    self._buf.clear()
                    self._typing = None
                    self._write("\r\nOK\r\n")
                else:
                    self._buf.append(b)
                continue
            if b == 0x0D:
                line = bytes(self._buf).decode("latin-1").strip()
                self._buf.clear()
                if self.echo:
                    self._write(line + "\r")
                if line:
                    self._command(line)
            elif b not in (0x0A, 0x1B):
                self._buf.append(b)

    def _ok(self, *lines: str) -> None:
        self._write("".join(f"\r\n{ln}\r\n" for ln in lines) + "\r\nOK\r\n")

    def _error(self, kind: str = "CME", code: int = 3) -> None:
        self._write(f"\r\n+{kind} ERROR: {code}\r\n" if self.cmee else "\r\nERROR\r\n")

    def _command(self, line: str) -> None:
        self.commands.append(line)
        cmd = line.upper()
        if cmd == "AT":
            self._ok()
        elif cmd in ("ATE0", "ATE1"):
            self.echo = cmd == "ATE1"
            self._ok()
        elif cmd == "AT+CMEE?":
            self._ok(f"+CMEE: {self.cmee}")
        elif cmd.startswith("AT+CMEE="):
            self.cmee = int(cmd.split("=")[1])
            self._ok()
        elif cmd == "AT+CPIN?":
            state = "READY"
            if self.locked:
                state = "SIM PIN" if self.pin_tries else "SIM PUK"
            self._ok(f"+CPIN: {state}")
        elif cmd.startswith("AT+CPIN="):
            given = line.split("=", 1)[1].strip('"')
            if not self.locked or not self.pin_tries:
                self._error("CME", 3)
            elif given == self.pin:
                self.locked = False
                self._ok()
                for urc in ("+CPIN: READY", "Call Ready", "SMS Ready"):
                    self.inject(urc)
            else:
                self.pin_tries -= 1
                self._error("CME", 16)
        elif self.locked:
            self._error("CME", 11)
        elif cmd.startswith("AT+CMGF="):
            self.cmgf = int(cmd.split("=")[1])
            self._ok()
        elif cmd.startswith("AT+CSCS="):
            self.cscs = line.split("=", 1)[1].strip('"')
            self._ok()
        elif cmd.startswith("AT+CSMP="):
            self.dcs = int(cmd.split(",")[-1])
            self._ok()
        elif cmd.startswith("AT+CPMS="):
            memory = line.split("=", 1)[1].split(",")[0].strip().strip('"').upper()
            if memory not in self.store:
                self._error("CMS", 302)
                return
            self.memory = memory
            used, total = self.sim
            self._ok(f"+CPMS: {used},{total},{used},{total},{used},{total}")
        elif cmd == "AT+CPMS?":
            used, total = self.sim
            m = self.memory
            self._ok(f'+CPMS: "{m}",{used},{total},"SM",{used},{total},"SM",{used},{total}')
        elif cmd.startswith("AT+CSDH="):
            self.csdh = int(cmd.split("=")[1])
            self._ok()
        elif cmd.startswith("AT+CMGL=") and self.cmgf == 1:
            self._list(line.split("=", 1)[1].strip().strip('"').upper())
        elif cmd.startswith("AT+CMGR=") and self.cmgf == 1:
            self._read(int(cmd.split("=")[1]))
        elif cmd.startswith("AT+CMGD="):
            self.deletes.append(line)
            if self.refuse_deletes:
                self._write("\r\n+CMS ERROR: 500\r\n")
                return
            self._delete(cmd.split("=", 1)[1])
        elif cmd.startswith("AT+CNMI="):
            self._ok()
        elif cmd == "AT+CSQ":
            self._ok(f"+CSQ: {self.csq[0]},{self.csq[1]}")
        elif cmd == "AT+CREG?":
            self._ok(f"+CREG: 0,{self.creg}")
        elif cmd.startswith("ATD") and cmd.endswith(";"):
            self._dial(line[3:-1].strip())
        elif cmd == "AT+CLCC":
            call = self._live_call()
            if call is None:
                self._ok()
            else:
                self._ok(f'+CLCC: 1,0,{call.stat},0,0,"{call.number}",145')
        elif cmd in ("ATH", "ATH0", "AT+CHUP"):
            name = "AT+CHUP" if cmd == "AT+CHUP" else "ATH"
            self.hangups.append((time.monotonic(), name))
            if self.hold_dial_result and self._live_call() is not None:
                self._write("\r\nNO CARRIER\r\n")  # the held ATD, aborted
            if name == "ATH" and self.refuse_ath:
                self._write("\r\nERROR\r\n")
                return
            call = self._live_call()
            if call is not None:
                self._end(call, name)
            self._ok()
        elif cmd.startswith("AT+CMGS=") and self.cmgf == 1:
            field = line.split("=", 1)[1].strip('"')
            number = bytes.fromhex(field).decode("utf-16-be") if self.cscs == "UCS2" else field
            self._typing = number
            for urc in self.urcs_mid_send:
                self.inject(urc)
            if self.prompt_delay:
                threading.Timer(self.prompt_delay, self._write, ("\r\n> ",)).start()
                return
            self._write("\r\n> ")
            for urc in self.urcs_mid_send:
                self.inject(urc)
        else:
            self._error("CMS", 302)

    def _live_call(self) -> FakeCall | None:
        if self.calls and self.calls[-1].ended_at is None:
            return self.calls[-1]
        return None

    def _dial(self, number: str) -> None:
        mode = self.call_modes.get(number, self.call_mode)
        if mode == "refuse":
            self.calls.append(FakeCall(number, mode, time.monotonic(), ended_at=time.monotonic()))
            self.calls[-1].ended_by = self.refuse_with
            self._write(f"\r\n{self.refuse_with}\r\n")
            return
        if self._live_call() is not None:
            self._error("CME", 3)  # one call at a time
            return
        self.calls.append(FakeCall(number, mode, time.monotonic()))
        if not self.hold_dial_result:
            self._ok()

    def _end(self, call: FakeCall, by: str) -> None:
        call.ended_at, call.ended_by = time.monotonic(), by

    def _tick(self) -> None:
        """Move the call on (called with the lock held, about every 50 ms)."""
        call = self._live_call()
        if call is None:
            return
        elapsed = time.monotonic() - call.dialled_at
        if call.stat == 2 and elapsed >= self.alert_after:
            call.stat = 3
        if call.stat != 3:
            return
        if call.mode == "answer" and elapsed >= self.answer_after:
            call.stat, call.answered_at = 0, time.monotonic()
        elif call.mode in ("busy", "reject"):
            line = "BUSY" if call.mode == "busy" else "NO CARRIER"
            self._end(call, line)
            self.inject(line)
        elif call.mode == "no-answer" and elapsed >= self.no_answer_after:
            self._end(call, "NO ANSWER")
            self.inject("NO ANSWER")

    def _header(self, sms: StoredSms, length: int, index: int | None) -> str:
        toa = 145 if sms.sender.startswith("+") else 129
        head = f'"{sms.status}","{sms.sender}","","{sms.stamp}"'
        if index is not None:  # +CMGL
            tail = f",{toa},{length}" if self.csdh else ""
            return f"+CMGL: {index},{head}{tail}"
        dcs = 8 if sms.ucs2 else 0
        tail = f',{toa},4,0,{dcs},"+15550000000",145,{length}' if self.csdh else ""
        return f"+CMGR: {head}{tail}"

    def _list(self, which: str) -> None:
        wanted = {"ALL", "REC UNREAD", "REC READ"}
        if which not in wanted:
            self._error("CMS", 302)
            return
        out = ""
        for index, sms in sorted(self.store[self.memory].items()):
            if which != "ALL" and sms.status != which:
                continue
            body, length = sms.body()
            out += f"\r\n{self._header(sms, length, index)}\r\n{body}\r\n"
            sms.status = "REC READ"
        self._write(out.encode("latin-1") + b"\r\nOK\r\n")

    def _read(self, index: int) -> None:
        sms = self.store[self.memory].get(index)
        if sms is None:
            self._ok()  # an empty index: SIM800 answers a bare OK
            return
        body, length = sms.body()
        self._write(f"\r\n{self._header(sms, length, None)}\r\n{body}\r\n\r\nOK\r\n")
        sms.status = "REC READ"

    def _delete(self, args: str) -> None:
        parts = [p.strip() for p in args.split(",")]
        flag = int(parts[1]) if len(parts) > 1 and parts[1] else 0
        slots = self.store[self.memory]
        if flag == 0:
            slots.pop(int(parts[0]), None)
        else:  # 1 read, 2 read and sent, 3 all but unsent, 4 all
            for i in [i for i, s in slots.items() if flag == 4 or s.status == "REC READ"]:
                del slots[i]
        self._ok()

    def _finish_text(self, raw: bytes) -> None:
        number, self._typing = self._typing or "", None
        if self.cscs == "UCS2":
            text = bytes.fromhex(raw.decode("ascii")).decode("utf-16-be", "surrogatepass")
        else:
            text = "".join(GSM7_TABLE[b] if b < 128 else "\ufffd" for b in raw)
        self.sent.append(FakeSms(number, text, self.cscs, self.dcs, raw))
        if self.hang_after_text:
            self.hang(self.hang_after_text)
            return
        if self.cms_errors:
            self.sent.pop()
            self._write(f"\r\n+CMS ERROR: {self.cms_errors.popleft()}\r\n")
            return
        self._ref = (self._ref + 1) % 256
        out = f"\r\n+CMGS: {self._ref}\r\n"
        out += "".join(f"\r\n{urc}\r\n" for urc in self.urcs_mid_send)
        self._write(out + "\r\nOK\r\n")
