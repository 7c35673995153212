"""The AT codec of the modem way out: building commands and reading replies; pure, no I/O.

``modem.py`` is the thin pyserial shell around it.

Dialect
-------
3GPP TS 27.007 (``ATE0``, ``+CMEE``, ``+CPIN``, ``+CSQ``, ``+CREG``, ``+CME ERROR``) and
TS 27.005 in text mode (``+CMGF=1``, ``+CSCS``, ``+CSMP``, ``+CMGS``, ``+CPMS``, ``+CNMI``,
``+CMS ERROR``), as the SIMCom SIM800 / SIM7600, Quectel and Huawei sticks speak them, with
their unsolicited lines: SIM800's ``Call Ready`` / ``SMS Ready``, SIM7600's ``PB DONE`` /
``SMS DONE``, Huawei's ``^BOOT`` / ``^RSSI`` / ``^MODE``, everyone's ``RDY``, ``RING``,
``+CMTI``, ``+CREG``, ``+CUSD``, ``+CLIP``.

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
  for ``ATD`` also ``NO CARRIER``, ``BUSY``, ``NO ANSWER``, ``NO DIALTONE``); so does the
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

Errors (``error_for``) become our exception tree: no network, a busy or missing SIM, a modem
failure or an unanswered PIN are ``TemporaryDeliveryError`` of the way out (``scope
"transport"``, ``auth`` for a PIN or PUK); a full SIM (``+CMS ERROR: 322``) the same, saying
so; a congested service centre or a destination out of order a temporary failure of that text;
any other code, known or unknown, a ``PermanentDeliveryError`` for that text (the next way out
in ``via`` may take it). A bare ``ERROR`` (``AT+CMEE=1`` lost: the modem reset) is temporary for
the way out, which then starts again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal

from ..errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from ..sms import GSM7_TABLE

__all__ = [
    "CTRL_Z",
    "ESC",
    "PROMPT",
    "Encoded",
    "Exchange",
    "LineReader",
    "Prompt",
    "Reply",
    "cmgs",
    "cpin",
    "cscs",
    "csmp",
    "decode_number",
    "decode_text",
    "describe",
    "encode_one_sms",
    "encode_text",
    "error_for",
    "is_boot_marker",
    "is_unsolicited",
    "length",
    "parse_cmgs",
    "parse_cmti",
    "parse_cpin",
    "parse_cpms",
    "parse_creg",
    "parse_csq",
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
_DIAL_FINAL = ("NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE")

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

    def take(self, item: str | Prompt) -> Reply | None:
        if isinstance(item, Prompt):
            return self._done(">") if self.prompt else None
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

    def _done(self, result: str) -> Reply:
        return Reply(self.command, tuple(self._lines), result, self._echoed)


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
