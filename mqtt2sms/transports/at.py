"""The AT codec of the modem way out: building commands and reading replies; pure, no I/O.

``modem.py`` is the thin pyserial shell around it.

Dialect
-------
3GPP TS 27.007 (``ATE0``, ``+CMEE``, ``+CPIN``, ``+CSQ``, ``+CREG``, ``+CME ERROR``) and
TS 27.005 in text mode (``+CMGF=1``, ``+CSCS``, ``+CSMP``, ``+CMGS``, ``+CPMS``, ``+CNMI``,
``+CSDH``, ``+CMGL``, ``+CMGR``, ``+CMGD``, ``+CMS ERROR``), as the SIMCom SIM800 / SIM7600,
Quectel and Huawei sticks speak them, with their unsolicited lines: SIM800's ``Call Ready`` /
``SMS Ready``, SIM7600's ``PB DONE`` / ``SMS DONE``, Huawei's ``^BOOT`` / ``^RSSI`` /
``^MODE``, everyone's ``RDY``, ``RING``, ``+CMTI``, ``+CREG``, ``+CUSD``, ``+CLIP``.

Voice calls follow the same families (TS 27.007 and V.250 as SIM800 and SIM7600 speak them):
``ATD<E.164>;`` (the semicolon: voice) answers ``OK`` at once and the call goes on (we never set
``AT+COLP=1``, which would hold ``OK`` back until it is answered); ``AT+CLCC`` lists it
(``+CLCC: <idx>,<dir>,<stat>,<mode>,<mpty>[,<number>,<type>]``, stat 2 dialing, 3 alerting, 0
active); it ends with an unsolicited ``NO CARRIER``, ``BUSY`` or ``NO ANSWER`` (SIM7600 also
says ``VOICE CALL: BEGIN`` / ``VOICE CALL: END: <duration>``, SIM800 ``MO RING`` / ``MO
CONNECTED`` with ``AT+MORING=1``); ``ATH`` (or ``AT+CHUP``) hangs it up. A data-only stick
answers ``ATD...;`` with ``ERROR``, a ``+CME ERROR``, ``NO CARRIER`` or ``NO DIALTONE`` at once
(Huawei: ``COMMAND NOT SUPPORT``): ``dial_verdict`` says ``refused``. ``call_progress`` and
``call_outcome`` turn the lines into ``answered``, ``busy`` and ``no-answer``.

Theory of operation
-------------------
Bytes from the modem go into a ``LineReader``, which cuts them into lines (CR, LF or both end
a line; a line is decoded as Latin-1, which never fails) and, only while a command waits for
it, into the ``> `` prompt, which has no line end. An ``Exchange`` is the reply to one command
line: it takes the reader's items one at a time and says when the reply is complete. It sorts
each line:

* empty lines and the echo of the command itself (a modem that reset turns echo back on) are
  dropped;
* a final result ends the reply: ``OK``, ``ERROR``, ``+CME ERROR: n``, ``+CMS ERROR: n`` (and
  for ``ATD`` also ``NO CARRIER``, ``BUSY``, ``NO ANSWER``, ``NO DIALTONE``, ``COMMAND NOT
  SUPPORT``); so does the
  prompt when the exchange waits for one;
* a line with the prefix the command answers with (``+CSQ:`` for ``AT+CSQ``) is part of the
  reply, except a ``+CREG:`` whose shape is the unsolicited one (``+CREG: <stat>[,"lac",...]``
  against the reply's ``+CREG: <n>,<stat>...``);
* a known unsolicited result code (``RING``, ``+CMTI:``, ``^BOOT``, ``Call Ready``, ...; see
  ``is_unsolicited``) goes to ``Exchange.unsolicited`` (``+CMT:`` takes the next line with it:
  it is the text);
* any other line is part of the reply (``ATI``'s model name).

So an unsolicited line arriving anywhere between the lines of a reply never changes it.

Encoding a text (``encode_text``): text mode with ``AT+CSCS="GSM"`` writes GSM 03.38 code
points as bytes (``@`` 0x00, ``$`` 0x02, ``_`` 0x11), and the text ends with Ctrl-Z (0x1A).
Ctrl-Z inside a text would end it early (0x1A is also ``Ξ``) and ESC (0x1B, the way into the
extension table: ``€ [ ] { } \\ ^ ~ |``) aborts it; CR makes some modems print a new prompt.
So a text goes as GSM only when every character is in the basic table and none of those three;
any other text, or one asked for as unicode, goes as UCS-2: ``AT+CSCS="UCS2"`` (the number and
the text as hex UTF-16BE) with ``AT+CSMP=17,167,0,8`` so the SMS itself is UCS-2 (without it
the phone shows ``?``). Hex digits never contain 0x1A or 0x1B, so nothing we write can end or
abort a text early. A GSM-7 text that is too long for one UCS-2 SMS (70 characters) only
because of its extension characters has them written plainly instead (``encode_one_sms``).

Reading received texts (``parse_texts``): ``AT+CMGL="ALL"`` and ``AT+CMGR=<i>`` answer with a
header (``parse_text_header``: index, status, sender as given, the service centre's
``"yy/MM/dd,hh:mm:ss±zz"``, with ``AT+CSDH=1`` the body's length, and for ``+CMGR`` its coding
scheme) and the body on the lines after it. The ``Exchange`` collects bodies apart from other
lines (``Reply.texts``): with the length, a body is exactly that long, so a text ``OK`` or
``RING`` is a body, not a result; without it, a body runs to the next header or the final
result. Multi-line bodies are joined with ``\n`` (blank lines inside are lost: CR LF and LF
cannot be told apart). A body is decoded by ``decode_received``: a UCS-2 text shows as hex
UTF-16-BE and is decoded when the coding scheme says UCS-2, or when the length says so (octets
for UCS-2, 2 hex digits each, against characters for GSM: ``"4170"`` of length 4 is GSM);
without either, only when ``_unambiguous_ucs2`` (at least 8 hex digits, printable, mostly ASCII,
something GSM-7 cannot carry); anything else is GSM 03.38 code points mapped to Unicode
(``from_gsm``). ``StoredText.digest`` tells a text from a newer one stored at the same index.

Errors (``error_for``) become our exception tree: no network, a busy or missing SIM, a modem
failure or an unanswered PIN are ``TemporaryDeliveryError`` of the way out (``scope
"transport"``, ``auth`` for a PIN or PUK); a full SIM (``+CMS ERROR: 322``) the same, saying
so; a congested service centre or a destination out of order a temporary failure of that text;
any other code, known or unknown, a ``PermanentDeliveryError`` for that text (the next way out
in ``via`` may take it). A bare ``ERROR`` (``AT+CMEE=1`` lost: the modem reset) is temporary for
the way out, which then starts again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from typing import Final, Literal

from ..errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from ..sms import GSM7_TABLE
from .base import CallOutcome

__all__ = [
    "CTRL_Z",
    "ESC",
    "PROMPT",
    "CallEvent",
    "CallLine",
    "DialVerdict",
    "Encoded",
    "Exchange",
    "LineReader",
    "Prompt",
    "Reply",
    "StoredText",
    "TextHeader",
    "atd",
    "call_outcome",
    "call_progress",
    "cmgd",
    "cmgl",
    "cmgr",
    "cmgs",
    "cpin",
    "cpms_read",
    "cscs",
    "csmp",
    "decode_number",
    "decode_received",
    "decode_text",
    "describe",
    "dial_verdict",
    "encode_one_sms",
    "encode_text",
    "error_for",
    "from_gsm",
    "is_boot_marker",
    "is_unsolicited",
    "length",
    "outgoing_call",
    "parse_clcc",
    "parse_cmgs",
    "parse_cmti",
    "parse_cpin",
    "parse_cpms",
    "parse_creg",
    "parse_csq",
    "parse_scts",
    "parse_text_header",
    "parse_texts",
]

CTRL_Z: Final = b"\x1a"  # ends a text in text mode
ESC: Final = b"\x1b"  # aborts a text in text mode (and leaves a pending prompt)

Charset = Literal["GSM", "UCS2"]

_GSM_CODE: Final[dict[str, int]] = {c: i for i, c in enumerate(GSM7_TABLE)}
#: Characters that can be typed in GSM text mode: the basic table without Ctrl-Z's 0x1A
#: (``Ξ``), ESC (0x1B) and CR (0x0D).
_GSM_TYPABLE: Final[frozenset[str]] = frozenset(GSM7_TABLE) - {
    GSM7_TABLE[0x1A],
    GSM7_TABLE[0x1B],
    GSM7_TABLE[0x0D],
}
_NUMBER = re.compile(r"\+?[0-9]{3,20}")


# -- encoding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """A text ready for ``AT+CMGS``: the charset to set, the number field, the bytes."""

    charset: Charset  # for AT+CSCS
    dcs: int  # the data coding scheme for AT+CSMP: 0 GSM-7, 8 UCS-2
    number: str  # what goes between the quotes of AT+CMGS="..."
    payload: bytes  # the text, without the Ctrl-Z that ends it


def encode_text(text: str, number: str, *, unicode: bool = False) -> Encoded:
    """Encode ``text`` to ``number`` for text mode (see the module docstring).

    In: any ``str`` (lone surrogates included: they go as UCS-2 code units); ``number`` in
    E.164 (``+15551234567``) or bare digits, 3 to 20 of them; ``unicode`` forces UCS-2.
    Out: ``Encoded``; its ``payload`` never contains 0x1A or 0x1B.
    Raises ``ValueError`` when ``number`` is not such a number.
    """
    if not _NUMBER.fullmatch(number):
        raise ValueError(f"not a phone number in E.164: {number!r}")
    if not unicode and all(c in _GSM_TYPABLE for c in text):
        return Encoded("GSM", 0, number, bytes(_GSM_CODE[c] for c in text))
    return Encoded("UCS2", 8, _ucs2_hex(number), _ucs2_hex(text).encode("ascii"))


#: What one SMS holds in text mode: GSM-7 characters (septets), UCS-2 UTF-16 code units.
ONE_SMS: Final[dict[str, int]] = {"GSM": 160, "UCS2": 70}

#: Extension characters (and CR) written with basic ones, for a text that is GSM-7 but too
#: long for one SMS as UCS-2 (text mode cannot type the extension table).
_PLAIN: Final[dict[str, str]] = {
    "€": "EUR",
    "[": "(",
    "]": ")",
    "{": "(",
    "}": ")",
    "\\": "/",
    "^": "'",
    "~": "-",
    "|": "/",
    "\f": " ",
    "\r": "\n",
}


def length(encoded: Encoded) -> int:
    """Characters (GSM) or UTF-16 code units (UCS-2) of an encoded text."""
    return len(encoded.payload) if encoded.charset == "GSM" else len(encoded.payload) // 4


def encode_one_sms(text: str, number: str, *, unicode: bool = False) -> tuple[Encoded, str]:
    """``encode_text``, for a text that must go as one SMS (the engine already made parts).

    A text of GSM-7 characters that goes as UCS-2 only for its extension characters
    (``€ [ ] { } \\ ^ ~ |``) holds 70 characters, not 160: when it is longer, those are
    written with basic characters (``€`` -> ``EUR``, ``[`` -> ``(``, ``|`` -> ``/``) and it goes
    as GSM-7, whole. Out: the ``Encoded`` and a note saying what was changed (``""``: nothing).
    Raises ``ValueError`` for a bad number or a text no encoding fits into one SMS.
    """
    encoded = encode_text(text, number, unicode=unicode)
    if length(encoded) <= ONE_SMS[encoded.charset]:
        return encoded, ""
    if not unicode:
        plain = "".join(_PLAIN.get(c, c) for c in text)
        if all(c in _GSM_TYPABLE for c in plain) and len(plain) <= ONE_SMS["GSM"]:
            return encode_text(plain, number), "extension characters written plainly to fit"
    raise ValueError(
        f"too long for one SMS: {length(encoded)} {encoded.charset} characters, "
        f"{ONE_SMS[encoded.charset]} fit (lower max_length for texts this way goes)"
    )


def _ucs2_hex(text: str) -> str:
    return text.encode("utf-16-be", "surrogatepass").hex().upper()


def decode_text(charset: str, payload: bytes) -> str:
    """The text of a payload (what a modem would put in the SMS); the inverse of
    ``encode_text``. Raises ``ValueError`` for bytes that are not such a payload."""
    if charset.upper() in ("UCS2", "UCS-2"):
        return bytes.fromhex(payload.decode("ascii")).decode("utf-16-be", "surrogatepass")
    if any(b > 0x7F or b in (0x1A, 0x1B) for b in payload):
        raise ValueError("not GSM text-mode bytes")
    return "".join(GSM7_TABLE[b] for b in payload)


def decode_number(charset: str, number: str) -> str:
    """The number in an ``AT+CMGS`` field written in ``charset``."""
    if charset.upper() in ("UCS2", "UCS-2"):
        return bytes.fromhex(number).decode("utf-16-be")
    return number


# -- commands ---------------------------------------------------------------------------------


def cmgs(encoded: Encoded) -> str:
    return f'AT+CMGS="{encoded.number}"'


def cscs(charset: Charset) -> str:
    return f'AT+CSCS="{charset}"'


def csmp(dcs: int) -> str:
    """First octet 17 (SMS-SUBMIT with a relative validity period), 167 (24 hours), PID 0."""
    return f"AT+CSMP=17,167,0,{dcs}"


def cpin(pin: str) -> str:
    return f'AT+CPIN="{pin}"'


# -- reading ----------------------------------------------------------------------------------


class Prompt:
    """The ``> `` a modem prints when it waits for the text (there is one: ``PROMPT``)."""

    def __repr__(self) -> str:
        return "PROMPT"


PROMPT: Final = Prompt()


class LineReader:
    """Cuts the bytes a modem sends into lines and prompts; see the module docstring."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pending(self) -> bytes:
        """What is buffered and not yet a line."""
        return bytes(self._buf)

    def clear(self) -> None:
        self._buf.clear()

    def pop(self, *, prompt: bool = False) -> str | Prompt | None:
        """The next complete line (without its line end; maybe empty), ``PROMPT`` when
        ``prompt`` and a ``>`` starts the unfinished line, else None (wait for more bytes)."""
        buf = self._buf
        if prompt:
            start = 0
            while start < len(buf) and buf[start] in (0x0D, 0x0A):
                start += 1
            if start < len(buf) and buf[start] == 0x3E:  # '>'
                end = start + 1
                if end < len(buf) and buf[end] == 0x20:
                    end += 1
                del buf[:end]
                return PROMPT
        for i, b in enumerate(buf):
            if b in (0x0D, 0x0A):
                line = bytes(buf[:i]).decode("latin-1")
                del buf[: i + 1]
                return line
        return None


_FINAL = ("OK", "ERROR")
_FINAL_PREFIX = ("+CME ERROR:", "+CMS ERROR:")
_DIAL_FINAL = (
    "NO CARRIER",
    "BUSY",
    "NO ANSWER",
    "NO DIALTONE",
    "NO DIAL TONE",
    "COMMAND NOT SUPPORT",  # Huawei's answer to a command it does not have
)

_URC_EXACT = frozenset(
    {
        "RING",
        "RDY",
        "Call Ready",
        "SMS Ready",
        "PB DONE",
        "SMS DONE",
        "NORMAL POWER DOWN",
        "UNDER-VOLTAGE POWER DOWN",
        "UNDER-VOLTAGE WARNNING",  # sic, SIM800
        "OVER-VOLTAGE POWER DOWN",
        "OVER-VOLTAGE WARNNING",
        "NO CARRIER",
        "BUSY",
        "NO ANSWER",
        "+PACSP0",
        "+PACSP1",
        "MO RING",  # SIM800 with AT+MORING=1: the callee's phone rings
        "MO CONNECTED",  # ... and answered
    }
)
_URC_PREFIX = (
    "+CMTI:",
    "+CMT:",
    "+CDS:",
    "+CDSI:",
    "+CBM:",
    "+CUSD:",
    "+CLIP:",
    "+CRING:",
    "+CCWA:",
    "+CLCC:",  # the call list as an unsolicited line (AT+CLCC=1)
    "VOICE CALL:",  # SIM7600: VOICE CALL: BEGIN / VOICE CALL: END: <duration>
    "+CREG:",
    "+CGREG:",
    "+CEREG:",
    "+CIEV:",
    "+CPIN:",
    "+CFUN:",
    "+CTZV:",
    "+CTZE:",
    "+CTZU:",
    "+CSQN:",
    "+CGEV:",
    "+STIN:",
    "+QIND:",
    "+QUSIM:",
    "*PSUTTZ:",
    "DST:",
    "^",  # Huawei: ^BOOT, ^RSSI, ^MODE, ^SRVST, ^SIMST, ...
)
#: Lines a modem prints when it has just started: its settings (echo, text mode, charset,
#: CMEE) are back to their defaults.
_BOOT = frozenset({"RDY", "Call Ready", "SMS Ready", "PB DONE", "SMS DONE"})
_BOOT_PREFIX = ("+CFUN:", "+CPIN:", "^SIMST:", "+QUSIM:")
_REG_URC = re.compile(r'\s*\d+\s*(?:,\s*".*)?')  # +CREG: <stat>[,"<lac>","<ci>"...]


def is_unsolicited(line: str) -> bool:
    """Whether ``line`` (stripped) is a known unsolicited result code."""
    return line in _URC_EXACT or line.startswith(_URC_PREFIX)


def is_boot_marker(line: str) -> bool:
    """Whether an unsolicited ``line`` says the modem (re)started or its SIM changed state."""
    return line in _BOOT or line.startswith(_BOOT_PREFIX)


def _answer_prefix(command: str) -> str | None:
    """``+CSQ:`` for ``AT+CSQ``, ``+CMGS:`` for ``AT+CMGS="..."``; None for ``AT``, ``ATE0``."""
    m = re.match(r"AT([+^*$][A-Z0-9]+)", command.strip(), re.IGNORECASE)
    return m.group(1).upper() + ":" if m else None


@dataclass(frozen=True)
class Reply:
    """The reply to one command: its information lines and its final result.

    ``result`` is ``OK``, ``ERROR``, ``+CME ERROR: <n>``, ``+CMS ERROR: <n>``, a dial result,
    or ``>`` for the prompt. ``echoed``: the modem echoed the command (echo is on again: it
    has reset).
    """

    command: str
    lines: tuple[str, ...]
    result: str
    echoed: bool = False
    #: ``(header, body)`` of each stored text in an ``AT+CMGL`` / ``AT+CMGR`` reply
    texts: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.result == "OK"

    @property
    def prompt(self) -> bool:
        return self.result == ">"

    def code(self, kind: Literal["CME", "CMS"]) -> int | None:
        """The number of a ``+CME ERROR`` / ``+CMS ERROR`` result (None: another result, or a
        verbose error text)."""
        prefix = f"+{kind} ERROR:"
        if not self.result.startswith(prefix):
            return None
        value = self.result[len(prefix) :].strip()
        return int(value) if value.isdigit() else None

    def values(self, prefix: str) -> list[str]:
        """What follows ``prefix`` in each information line that starts with it, stripped."""
        return [ln[len(prefix) :].strip() for ln in self.lines if ln.startswith(prefix)]


@dataclass
class Exchange:
    """The reply to one command line, taken one reader item at a time.

    ``prompt``: the command (``AT+CMGS``) ends with the ``>`` prompt when it goes well.
    ``answer``: the prefix of the reply's information lines, when not the command's own
    (the result of a text, after Ctrl-Z, is ``+CMGS:``).
    Feed items to ``take`` until it returns the ``Reply``; lines that were unsolicited are in
    ``unsolicited``, in order.
    """

    command: str
    prompt: bool = False
    answer: str | None = None
    unsolicited: list[str] = field(default_factory=list)
    _lines: list[str] = field(default_factory=list, init=False, repr=False)
    _echoed: bool = field(default=False, init=False, repr=False)
    _cmt_text: bool = field(default=False, init=False, repr=False)
    _texts: list[tuple[str, list[str]]] = field(default_factory=list, init=False, repr=False)
    _body: list[str] | None = field(default=None, init=False, repr=False)
    _want: int | None = field(default=None, init=False, repr=False)
    _got: int = field(default=-1, init=False, repr=False)

    def take(self, item: str | Prompt) -> Reply | None:
        if isinstance(item, Prompt):
            return self._done(">") if self.prompt else None
        if self._body is not None and self._in_body(item):
            return None
        line = item.strip()
        if not line:
            return None
        if self._cmt_text:  # the text of a +CMT: line
            self._cmt_text = False
            self.unsolicited.append(line)
            return None
        command = self.command.strip()
        if command and line.upper() == command.upper():
            self._echoed = True
            return None
        if line in _FINAL or line.startswith(_FINAL_PREFIX):
            return self._done(line)
        dialling = command.upper().startswith(("ATD", "ATA"))
        if dialling and line in _DIAL_FINAL:
            return self._done(line)
        expected = self.answer or _answer_prefix(command)
        if expected and line.startswith(expected) and not self._reg_urc(line, expected):
            self._lines.append(line)
            if expected in _TEXT_HEADERS:  # a stored text: its body follows
                self._texts.append((line, []))
                self._body = self._texts[-1][1]
                self._want = _header_length(line)
                self._got = -1
            return None
        if is_unsolicited(line):
            self.unsolicited.append(line)
            self._cmt_text = line.startswith("+CMT:")
            return None
        self._lines.append(line)
        return None

    @staticmethod
    def _reg_urc(line: str, prefix: str) -> bool:
        """A ``+CREG:``-like line in the unsolicited shape while its query waits."""
        if prefix not in ("+CREG:", "+CGREG:", "+CEREG:"):
            return False
        return bool(_REG_URC.fullmatch(line[len(prefix) :]))

    def _in_body(self, raw: str) -> bool:
        """Whether ``raw`` is (part of) the body of the stored text being read.

        With the header's length (``AT+CSDH=1``) the body is exactly that long: the reader
        takes one line end per line, so its raw size is the lines' characters plus one per
        line end between them. Until it is complete, every line is body, except a line that
        looks like a final result, a header or an unsolicited code and would not fit in
        what is left (the modem counted differently: the body is over). Without the length,
        the body runs to the next header or the final result; lines that look unsolicited
        are sorted as usual. Empty lines before the first body line are the header's line
        end; the body is its non-empty lines joined with ``\n``.
        """
        body = self._body
        assert body is not None
        line = raw.strip()
        special = (
            line in _FINAL
            or line.startswith(_FINAL_PREFIX)
            or line.startswith(_TEXT_HEADERS)
            or is_unsolicited(line)
        )
        if self._want is None:
            if not line:
                return True
            if line in _FINAL or line.startswith(_FINAL_PREFIX) or line.startswith(_TEXT_HEADERS):
                self._body = None
                return False
            if is_unsolicited(line):
                return False
            body.append(raw)
            return True
        if self._got < 0 and not raw:
            return True  # the header's own line end
        cost = len(raw) + (0 if self._got < 0 else 1)
        if self._got >= self._want or (special and max(self._got, 0) + cost > self._want):
            self._body = None
            return False
        self._got = max(self._got, 0) + cost
        if raw:
            body.append(raw)
        if self._got >= self._want:
            self._body = None
        return True

    def _done(self, result: str) -> Reply:
        texts = tuple((header, "\n".join(body)) for header, body in self._texts)
        return Reply(self.command, tuple(self._lines), result, self._echoed, texts)


# -- parsing replies --------------------------------------------------------------------------


def _fields(value: str) -> list[str]:
    return [f.strip().strip('"') for f in value.split(",")]


def parse_cpin(reply: Reply) -> str | None:
    """``READY``, ``SIM PIN``, ``SIM PUK``, ... from ``AT+CPIN?`` (None: not in the reply)."""
    values = reply.values("+CPIN:")
    return values[0].strip('"') if values else None


def parse_csq(reply: Reply) -> tuple[int, int] | None:
    """``(rssi, ber)`` from ``AT+CSQ``: rssi 0-31 (-113 + 2*rssi dBm), 99 not known."""
    for value in reply.values("+CSQ:"):
        parts = _fields(value)
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            return int(parts[0]), int(parts[1])
    return None


def parse_creg(reply: Reply) -> int | None:
    """``<stat>`` from ``AT+CREG?`` (``+CREG: <n>,<stat>[,...]``): 1 home, 5 roaming
    (registered); 0 not searching, 2 searching, 3 denied, 4 unknown."""
    for value in reply.values("+CREG:"):
        parts = _fields(value)
        if len(parts) >= 2 and parts[1].isdigit():
            return int(parts[1])
    return None


def parse_cpms(reply: Reply) -> tuple[int, int] | None:
    """``(used, total)`` of the first memory from ``AT+CPMS?`` or ``AT+CPMS=...``.

    ``+CPMS: "SM",3,30,"SM",3,30,...`` (query) or ``+CPMS: 3,30,3,30,...`` (set); the memory
    names may be hex in UCS2 mode, so only unquoted numbers count.
    """
    for value in reply.values("+CPMS:"):
        numbers = [int(f) for f in (p.strip() for p in value.split(",")) if f.isdigit()]
        if len(numbers) >= 2:
            return numbers[0], numbers[1]
    return None


def parse_cmgs(reply: Reply) -> int | None:
    """The message reference from ``+CMGS: <mr>``."""
    for value in reply.values("+CMGS:"):
        first = _fields(value)[0]
        if first.isdigit():
            return int(first)
    return None


def parse_cmti(line: str) -> tuple[str, int] | None:
    """``("SM", 3)`` from the unsolicited ``+CMTI: "SM",3`` (a new text stored there)."""
    if not line.startswith("+CMTI:"):
        return None
    parts = _fields(line[len("+CMTI:") :])
    if len(parts) >= 2 and parts[1].isdigit():
        return parts[0], int(parts[1])
    return None


# -- received texts -----------------------------------------------------------------------------

_TEXT_HEADERS: Final = ("+CMGL:", "+CMGR:")
_SCTS = re.compile(r"(\d{2})/(\d{2})/(\d{2}),(\d{2}):(\d{2}):(\d{2})([+-])(\d{1,2})")
_HEX = re.compile(r"[0-9A-Fa-f]+")
#: GSM 03.38 extension table: the septet after ESC (0x1B) and the character it stands for.
_GSM_EXT: Final[dict[int, str]] = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
_GSM_ALL: Final = frozenset(GSM7_TABLE) | frozenset(_GSM_EXT.values())


def cmgl() -> str:
    """Every text of the current memory, in text mode (``"ALL"``: read and unread)."""
    return 'AT+CMGL="ALL"'


def cmgr(index: int) -> str:
    return f"AT+CMGR={index}"


def cmgd(index: int) -> str:
    """Delete the text at ``index``, and only it (no delete flag: never a delete-all)."""
    return f"AT+CMGD={index}"


def cpms_read(memory: str) -> str:
    """Choose the memory texts are listed, read and deleted in (the first of ``+CPMS``)."""
    return f'AT+CPMS="{memory}"'


def _split_quoted(value: str) -> list[str]:
    """Comma-separated fields, commas inside double quotes kept; quotes and spaces removed."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for c in value:
        if c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(c)
    out.append("".join(current).strip())
    return out


@dataclass(frozen=True)
class TextHeader:
    """The header line of a stored text: ``+CMGL: <index>,<stat>,<oa>,[<alpha>],<scts>
    [,<tooa>,<length>]`` or ``+CMGR: <stat>,<oa>,[<alpha>],<scts>[,<tooa>,<fo>,<pid>,<dcs>,
    <sca>,<tosca>,<length>]`` (the bracketed tails with ``AT+CSDH=1``)."""

    index: int | None  # +CMGL only
    status: str  # "REC UNREAD", "REC READ"
    sender: str  # as the modem gives it: "+15551234567", national digits, or a name
    stamp: str  # the service centre's "yy/MM/dd,hh:mm:ss+zz"
    length: int | None  # of the body: characters (GSM) or octets (UCS-2); None: not given
    dcs: int | None  # the data coding scheme (+CMGR with AT+CSDH=1 only)


def parse_text_header(line: str) -> TextHeader | None:
    """The header of a received text (None: not a header, or a stored sent text, which has
    no service-centre timestamp)."""
    kind = next((k for k in _TEXT_HEADERS if line.startswith(k)), None)
    if kind is None:
        return None
    fields = _split_quoted(line[len(kind) :])
    index: int | None = None
    if kind == "+CMGL:":
        if not fields[0].isdigit():
            return None
        index, fields = int(fields[0]), fields[1:]
    if len(fields) < 3:
        return None
    at_ = next((i for i in range(2, len(fields)) if _SCTS.fullmatch(fields[i])), None)
    if at_ is None:
        return None
    rest = fields[at_ + 1 :]
    length = int(rest[-1]) if len(rest) >= 2 and rest[-1].isdigit() else None
    dcs = int(rest[3]) if len(rest) >= 7 and rest[3].isdigit() else None
    return TextHeader(index, fields[0], from_gsm(fields[1]), fields[at_], length, dcs)


def _header_length(line: str) -> int | None:
    header = parse_text_header(line)
    if header is not None:
        return header.length
    fields = _split_quoted(line.split(":", 1)[1])  # a stored sent text: ...,<toda>,<length>
    return int(fields[-1]) if len(fields) >= 5 and fields[-1].isdigit() else None


def parse_scts(stamp: str) -> dt.datetime | None:
    """``"24/03/09,14:05:00+04"`` (the zone in quarter hours) as an aware datetime; None
    when it is not one."""
    m = _SCTS.fullmatch(stamp.strip().strip('"'))
    if m is None:
        return None
    yy, mo, dd, hh, mi, ss, sign, zz = m.groups()
    minutes = int(zz) * 15 * (-1 if sign == "-" else 1)
    try:
        zone = dt.timezone(dt.timedelta(minutes=minutes))
        return dt.datetime(2000 + int(yy), int(mo), int(dd), int(hh), int(mi), int(ss), 0, zone)
    except ValueError:
        return None


def from_gsm(data: str) -> str:
    """Text-mode characters under ``AT+CSCS="GSM"`` (GSM 03.38 code points, read as Latin-1)
    as Unicode: ``\x00`` is ``@``, ``\x02`` ``$``, ESC and the next one an extension
    character (``\x1be`` is ``€``). What is above 0x7F (not GSM) is kept."""
    out: list[str] = []
    i = 0
    while i < len(data):
        code = ord(data[i])
        if code == 0x1B and i + 1 < len(data) and ord(data[i + 1]) in _GSM_EXT:
            out.append(_GSM_EXT[ord(data[i + 1])])
            i += 2
            continue
        out.append(GSM7_TABLE[code] if code < 0x80 and code != 0x1B else data[i])
        i += 1
    return "".join(out)


def _dcs_alphabet(dcs: int) -> Literal["GSM", "8bit", "UCS2"] | None:
    """TS 23.038: the alphabet a data coding scheme names (None: reserved groups)."""
    if dcs & 0xC0 in (0x00, 0x40):
        return ("GSM", "8bit", "UCS2", None)[(dcs >> 2) & 3]
    if dcs & 0xF0 in (0xC0, 0xD0):
        return "GSM"
    if dcs & 0xF0 == 0xE0:
        return "UCS2"
    if dcs & 0xF0 == 0xF0:
        return "8bit" if dcs & 0x04 else "GSM"
    return None


def _ucs2(data: str) -> str | None:
    """``data`` as hex UTF-16-BE (surrogate pairs whole), or None when it is not that."""
    if not data or len(data) % 4 or not _HEX.fullmatch(data):
        return None
    try:
        return bytes.fromhex(data).decode("utf-16-be")
    except ValueError:
        return None


def _unambiguous_ucs2(text: str) -> bool:
    """Without a length field, hex is taken for UCS-2 only when a phone would have sent that
    text as UCS-2 and it reads as a text: at least 2 characters (8 hex digits: never an
    acknowledgement code), all printable, at least half of them ASCII, and at least one that
    GSM-7 cannot carry (a phone uses UCS-2 only for those)."""
    return (
        len(text) >= 2
        and all(c.isprintable() or c in "\n\r\t" for c in text)
        and 2 * sum(ord(c) < 0x80 for c in text) >= len(text)
        and any(c not in _GSM_ALL for c in text)
    )


def decode_received(data: str, length: int | None, dcs: int | None = None) -> str:
    """The text of a received body as text mode with ``AT+CSCS="GSM"`` shows it.

    A UCS-2 text (an emoji, a curly quote from an iPhone) shows as hex UTF-16-BE. It is
    decoded when the coding scheme says UCS-2 (``+CMGR``); else when the header's length says
    so: ``length`` counts octets for UCS-2 (2 hex digits each; 4 per UTF-16 unit on modems
    that count characters), characters for a GSM text, so ``"4170"`` with length 4 is GSM;
    without a length, only when ``_unambiguous_ucs2``. Anything else is GSM (``from_gsm``).
    """
    alphabet = None if dcs is None else _dcs_alphabet(dcs)
    if alphabet == "UCS2":
        text = _ucs2(data)
        if text is not None:
            return text
    elif alphabet is None:
        text = _ucs2(data)
        if text is not None:
            if length is not None:
                if len(data) in (2 * length, 4 * length):
                    return text
            elif _unambiguous_ucs2(text):
                return text
    return from_gsm(data)


@dataclass(frozen=True)
class StoredText:
    """A received text on the SIM, decoded."""

    index: int
    status: str
    sender: str
    stamp: str  # the raw service-centre timestamp
    at: dt.datetime | None
    text: str

    @property
    def digest(self) -> str:
        """12 hex digits of SHA-256 over sender, timestamp and text: the same text at the
        same index, told apart from a newer one stored there since."""
        data = "\x00".join((self.sender, self.stamp, self.text))
        return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def parse_texts(reply: Reply, index: int | None = None) -> list[StoredText]:
    """The received texts of an ``AT+CMGL`` reply (or of ``AT+CMGR=<index>``'s), in order;
    stored sent texts and status reports are left out."""
    out: list[StoredText] = []
    for line, body in reply.texts:
        header = parse_text_header(line)
        if header is None or not header.status.upper().startswith("REC"):
            continue
        where = header.index if header.index is not None else index
        if where is None:
            continue
        text = decode_received(body, header.length, header.dcs)
        stamp = parse_scts(header.stamp)
        out.append(StoredText(where, header.status, header.sender, header.stamp, stamp, text))
    return out


# -- voice calls --------------------------------------------------------------------------------

#: An E.164 number and nothing else: a dial string may also carry modifiers (``,`` a pause,
#: ``>`` a phonebook entry, ``I``/``G`` caller-id and CUG switches, ``*#`` service codes).
_DIAL_NUMBER = re.compile(r"\+[1-9][0-9]{6,14}")

#: ``<stat>`` of ``+CLCC`` (TS 27.007 7.18).
_CLCC_STATES: Final[dict[int, str]] = {
    0: "active",
    1: "held",
    2: "dialing",
    3: "alerting",
    4: "incoming",
    5: "waiting",
    6: "disconnect",  # SIM800: the call is being released
}

DialVerdict = Literal["dialling", "refused", "down", "busy", "no-answer"]
CallEvent = Literal["active", "ended", "busy", "no-answer"]

#: ``+CME ERROR`` codes to ``ATD`` that say the SIM or the network is not there now (the
#: modem may well call once it is), not that the modem cannot place voice calls.
_DIAL_DOWN: Final = frozenset({10, 11, 12, 13, 14, 15, 16, 17, 18, 30, 31, 32})


def atd(number: str) -> str:
    """``ATD+15551234567;``: a voice call (the semicolon) to an E.164 number.

    Raises ``ValueError`` for anything but ``+`` and 7 to 15 digits (the first not 0)."""
    if not _DIAL_NUMBER.fullmatch(number):
        raise ValueError(f"not a phone number in E.164 (+ and digits): {number!r}")
    return f"ATD{number};"


@dataclass(frozen=True)
class CallLine:
    """One call of ``+CLCC: <idx>,<dir>,<stat>,<mode>,<mpty>[,<number>,<type>[,<alpha>]]``."""

    index: int
    outgoing: bool  # <dir> 0: mobile originated (ours)
    state: str  # "active", "dialing", "alerting", ... (``_CLCC_STATES``), or "stat <n>"
    voice: bool  # <mode> 0
    number: str = ""


def parse_clcc(line: str) -> CallLine | None:
    """The call a ``+CLCC:`` line lists (None: not such a line)."""
    if not line.startswith("+CLCC:"):
        return None
    fields = _split_quoted(line[len("+CLCC:") :])
    if len(fields) < 5 or not all(f.isdigit() for f in fields[:4]):
        return None
    index, direction, stat, mode = (int(f) for f in fields[:4])
    number = fields[5] if len(fields) > 5 else ""
    state = _CLCC_STATES.get(stat, f"stat {stat}")
    return CallLine(index, direction == 0, state, mode == 0, number)


def outgoing_call(reply: Reply) -> CallLine | None:
    """The outgoing voice call an ``AT+CLCC`` reply lists (the one we placed: we place one
    at a time), None when it lists none."""
    for value in reply.lines:
        call = parse_clcc(value)
        if call is not None and call.outgoing and call.voice:
            return call
    return None


def dial_verdict(reply: Reply) -> DialVerdict:
    """What the final result of ``ATD<number>;`` says.

    ``OK``: dialling (the call goes on; follow it with ``AT+CLCC``). ``BUSY``, ``NO ANSWER``
    (a modem that answers ``ATD`` only once the call has ended): that outcome. A ``+CME ERROR``
    of the SIM, a PIN or the network (no SIM, no service, emergency calls only): ``down``, for
    now. Anything else (``ERROR``, any other ``+CME ERROR``, ``NO CARRIER`` or ``NO DIALTONE``
    at once, Huawei's ``COMMAND NOT SUPPORT``): ``refused``, this modem does not place voice
    calls (many USB sticks are data-only). A bare ``ERROR`` while ``AT+CMEE=1`` holds is
    refused too; the shell first checks that the modem has not merely lost its settings.
    """
    if reply.ok:
        return "dialling"
    if reply.result == "BUSY":
        return "busy"
    if reply.result == "NO ANSWER":
        return "no-answer"
    cme = reply.code("CME")
    if cme is not None and cme in _DIAL_DOWN:
        return "down"
    return "refused"


def call_progress(line: str) -> CallEvent | None:
    """What an unsolicited line says of our outgoing call: ``active`` (answered: a ``+CLCC``
    with stat 0, SIM7600's ``VOICE CALL: BEGIN``, SIM800's ``MO CONNECTED``), ``ended``
    (``NO CARRIER``, ``VOICE CALL: END...``, a ``+CLCC`` with stat 6), ``busy`` (``BUSY``),
    ``no-answer`` (``NO ANSWER``), or None (nothing about it)."""
    if line == "BUSY":
        return "busy"
    if line == "NO ANSWER":
        return "no-answer"
    if line == "NO CARRIER" or line.startswith("VOICE CALL: END"):
        return "ended"
    if line == "MO CONNECTED" or line.startswith("VOICE CALL: BEGIN"):
        return "active"
    call = parse_clcc(line)
    if call is not None and call.outgoing and call.voice:
        if call.state == "active":
            return "active"
        if call.state == "disconnect":
            return "ended"
    return None


def call_outcome(event: CallEvent, answered: bool) -> CallOutcome:
    """The outcome of a call that ended by ``event``: ``BUSY`` is busy; ``NO ANSWER``, and a
    call that ended before it was ever active (the callee rejected it, the network ended it),
    no-answer; a call that ended after it was active, answered."""
    if event == "busy":
        return "busy"
    if event == "no-answer":
        return "no-answer"
    return "answered" if answered else "no-answer"


# -- errors -------------------------------------------------------------------------------------

#: What the codes we act on mean (TS 27.005 3.2.5 and TS 24.011 / 23.040 causes).
_CMS_NAMES: Final[dict[int, str]] = {
    1: "unassigned number",
    8: "operator determined barring",
    10: "call barred",
    21: "short message transfer rejected",
    22: "memory capacity exceeded in the network",
    27: "destination out of service",
    28: "unidentified subscriber",
    29: "facility rejected",
    30: "unknown subscriber",
    38: "network out of order",
    41: "temporary failure",
    42: "congestion",
    47: "resources unavailable",
    50: "requested facility not subscribed",
    96: "invalid mandatory information",
    192: "service centre busy",
    194: "service centre failure",
    300: "modem failure",
    301: "SMS service of the modem reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "no SIM card",
    311: "the SIM wants its PIN",
    312: "the SIM wants the PH-SIM PIN",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "the SIM wants its PUK",
    317: "the SIM wants PIN2",
    318: "the SIM wants PUK2",
    320: "memory failure",
    322: "SIM memory full: delete texts from the SIM",
    330: "service centre address unknown (set it with AT+CSCA)",
    331: "no network service",
    332: "network timeout",
    500: "unknown error",
    515: "the modem is busy starting or with another command",
}
_CMS_WAY_DOWN: Final = frozenset({38, 41, 42, 47, 300, 301, 302, 310, 313, 314, 315, 320, 322})
_CMS_WAY_DOWN_MORE: Final = frozenset({330, 331, 332, 512, 513, 514, 515, 516, 517})
_CMS_AUTH: Final = frozenset({311, 312, 316, 317, 318})
_CMS_TEXT_LATER: Final = frozenset({22, 27, 192, 194})

_CME_NAMES: Final[dict[int, str]] = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "no SIM card",
    11: "the SIM wants its PIN",
    12: "the SIM wants its PUK",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "wrong PIN",
    17: "the SIM wants PIN2",
    18: "the SIM wants PUK2",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed, emergency calls only",
    100: "unknown error",
}
_CME_WAY_DOWN: Final = frozenset({3, 10, 13, 14, 15, 30, 31, 32})
_CME_AUTH: Final = frozenset({11, 12, 16, 17, 18})


def describe(reply: Reply) -> str:
    """``+CMS ERROR: 331 (no network service)``: the result with its meaning, when known."""
    cms, cme = reply.code("CMS"), reply.code("CME")
    if cms is not None and cms in _CMS_NAMES:
        return f"{reply.result} ({_CMS_NAMES[cms]})"
    if cme is not None and cme in _CME_NAMES:
        return f"{reply.result} ({_CME_NAMES[cme]})"
    return reply.result


def error_for(reply: Reply, what: str) -> DeliveryError:
    """The error for a reply that is not what ``what`` (``"sending"``) wanted.

    In: a ``Reply`` whose result is not the one hoped for. Out (not raised): a
    ``TemporaryDeliveryError`` (scope ``"transport"`` for the modem, its SIM or the network,
    with ``auth`` for a PIN or PUK; scope ``"text"`` for a busy service centre or a
    destination out of service) or a ``PermanentDeliveryError`` for anything else.
    """
    message = f"modem: {what}: {describe(reply)}"
    cms, cme = reply.code("CMS"), reply.code("CME")
    if reply.result == "ERROR":
        return TemporaryDeliveryError(message + " (no error code: has the modem restarted?)")
    if reply.prompt or reply.ok:
        return TemporaryDeliveryError(message + " (not the expected answer)")
    if cms is not None:
        if cms in _CMS_AUTH:
            return TemporaryDeliveryError(message, auth=True)
        if cms in _CMS_WAY_DOWN or cms in _CMS_WAY_DOWN_MORE:
            return TemporaryDeliveryError(message)
        if cms in _CMS_TEXT_LATER:
            return TemporaryDeliveryError(message, scope="text")
        return PermanentDeliveryError(message)
    if cme is not None:
        if cme in _CME_AUTH:
            return TemporaryDeliveryError(message, auth=True)
        if cme in _CME_WAY_DOWN:
            return TemporaryDeliveryError(message)
        return PermanentDeliveryError(message)
    return PermanentDeliveryError(message)
