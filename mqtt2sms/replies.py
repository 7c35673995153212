"""Acknowledgement by SMS reply: what a received text says, and which incidents it acknowledges.

Theory of operation
-------------------
Pure: no I/O and no clock; every instant comes in as an argument. Two questions, answered
apart so that each can be tested alone:

1. :func:`parse` -- what does the text say? A :class:`Reply` or None.
2. :func:`matches` -- given who sent it and when, which open incidents does it acknowledge?

A false acknowledgement silences a smoke alarm; a missed one costs another text (which tells
the person their reply did not count). So every rule below errs towards None.

:func:`parse`, in order:

- **Normalise.** NFKC (full-width ``ＡＣＫ ４１７`` becomes ``ACK 417``; a non-breaking space
  becomes a space), then every Unicode decimal digit becomes its ASCII digit (Arabic-Indic
  ``٤١٧`` is ``417``: it is the same number typed on another keyboard), then invisible format
  characters (zero-width spaces, byte-order and direction marks) are dropped.
- **Remove quoted text.** Our own alert comes back inside replies that are not answers:
  an iPhone reaction (``Liked “Smoke in hall. Reply ACK 417”``, also Loved, Laughed at,
  Emphasized, Questioned, Disliked, ``Reacted 👍 to “…”``), Google Messages'
  ``👍 to "…"``, a forward, an email reply quoting the alert. So:

  * from a line that is a reply or forward header (``On … wrote:``, ``-----Original
    Message-----``, ``---------- Forwarded message ---------``, ``Begin forwarded message:``,
    ``From: …``, ``Sent from my …``) to the end of the text is dropped;
  * every line starting with ``>`` is dropped;
  * from the first double quote mark of any kind (``" “ ” „ ‟ « » 〝 〞 〟 ❝ ❞`` and the
    CJK corners ``「 」 『 』``) to the last one is dropped, or to the end of the text when
    their number is odd (a quote cut short). First-to-last rather than pair by pair, because
    the alert itself may contain quote marks (``Liked “Door "front" open. Reply ACK 417”``),
    and pairing those would bring ``Reply ACK 417`` back out. What remains of a reaction
    (``Liked``) is not an acknowledgement. Single quotes are left alone: ``’`` is the
    apostrophe an iPhone types in ``I’m on it``.
- **Carrier words.** A text whose first word is ``STOP``, ``STOPALL``, ``UNSUBSCRIBE``,
  ``CANCEL``, ``END``, ``QUIT``, ``REVOKE``, ``OPTOUT``, ``OPT-OUT``, ``HELP``, ``INFO``,
  ``START``, ``UNSTOP`` or ``YES`` (any case) belongs to the carrier or Twilio and is never an
  acknowledgement, whatever follows.
- **Grammar**, case-insensitive, surrounding white space and trailing punctuation ignored,
  runs of white space read as one space. A *code* is 3 or 4 digits without a leading zero
  (``100``-``9999``), followed by neither a letter or digit nor ``.,:/`` and a digit (so
  ``OK 1030am`` and ``OK 103.5`` are not codes):

  =========================================  =====================
  the text                                   the reply
  =========================================  =====================
  starts with ``ACK`` or ``OK``, an optional
  ``:`` ``#`` or ``-``, then a code          ``code`` (whatever follows: ``ok 417 on my way``)
  is exactly a code (``417``, ``417.``)      ``code``
  starts with ``ACK ALL``                    ``all`` (``ACK ALL, on it``)
  is exactly ``OK ALL``                      ``all`` (``OK all good`` is conversation)
  is exactly ``ACK``                         ``bare``
  anything else                              None
  =========================================  =====================

  So ``Home by 1030`` never acknowledges 1030, ``OK`` alone is None (too common a word),
  ``ack 12`` and ``ack 12345`` are None. ``Acknowledged`` is None too: a contact writes it
  to answer our ``ACK 417 by alex`` and ``Resolved:`` notices, which ask for nothing, and if
  it counted as a bare ``ACK`` it would acknowledge whichever one incident happened to be open
  by then. Every text says ``Reply ACK 417``; the grammar stays that small.

:func:`matches` then applies who and when (see its docstring): a stranger acknowledges
nothing, a contact only an incident that has texted them, and only with a reply stamped no
earlier than 2 minutes before the incident opened (phone clocks drift), or, without a usable
stamp, first seen after the opening. ``bare`` counts only while exactly one incident is open.

:func:`e164` and :func:`contact_of` say who sent a text (contacts are compared in E.164 only);
:func:`mask` is how a stranger's number appears in the log. A reply's text is never logged.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .carriers import normalize_number
from .config.model import Contact

SLACK = dt.timedelta(minutes=2)  # a reply may be stamped this much before the opening

OPT_OUT = frozenset(
    {
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
        "OPT-OUT",
        "HELP",
        "INFO",
        "START",
        "UNSTOP",
        "YES",
    }
)

QUOTES = frozenset('"“”„‟«»〝〞〟❝❞「」『』')

_CODE = r"[1-9][0-9]{2,3}"
_CODE_RE = re.compile(_CODE)
_END = r"(?![^\W_]|[.,:/][0-9])"  # no letter or digit, no decimal or time, right after a code
_ACK_CODE = re.compile(rf"(?:ACK|OK) ?[:#-]? ?({_CODE}){_END}")
_EXACT_CODE = re.compile(_CODE)
_ACK_ALL = re.compile(r"ACK ?[:#-]? ?ALL(?![^\W_])")
_OK_ALL = re.compile(r"OK ?[:#-]? ?ALL")
_FIRST_WORD = re.compile(r"[A-Z]+(?:-[A-Z]+)*")
_HEADER = re.compile(
    r"""(?ix)
    -{2,}\s*(?:original\s+message|forwarded\s+message)
    | begin\s+forwarded\s+message
    | on\s.*\bwrote:?\s*$
    | (?:from|sent|date|subject|to|cc):\s
    | sent\s+from\s+my\b
    """
)


@dataclass(frozen=True)
class Reply:
    """What a received text says: ``code`` (with its code), ``all`` or ``bare``."""

    kind: Literal["code", "all", "bare"]
    code: str | None = None  # for "code"

    def __post_init__(self) -> None:
        if self.kind == "code":
            if self.code is None or not _CODE_RE.fullmatch(self.code):
                raise ValueError(f"a code reply needs a code of 3 or 4 digits, not {self.code!r}")
        elif self.kind in ("all", "bare"):
            if self.code is not None:
                raise ValueError(f"a {self.kind!r} reply has no code")
        else:
            raise ValueError(f"unknown reply kind {self.kind!r}")


@dataclass(frozen=True)
class Candidate:
    """One open, unacknowledged incident, as :func:`matches` sees it."""

    code: str
    texted: frozenset[str]  # names of the contacts this incident has texted so far
    opened_at: dt.datetime  # aware, UTC wall clock of its opening

    def __post_init__(self) -> None:
        if self.opened_at.tzinfo is None:
            raise ValueError("Candidate.opened_at must be timezone-aware")


# --- parse ---------------------------------------------------------------------------------


def _normalise(text: str) -> str:
    """NFKC, every Unicode decimal digit as ASCII, format characters dropped."""
    out = []
    for ch in unicodedata.normalize("NFKC", text):
        cat = unicodedata.category(ch)
        if cat == "Nd":
            out.append(str(unicodedata.decimal(ch, 0)))
        elif cat != "Cf":
            out.append(ch)
    return "".join(out)


def unquote(text: str) -> str:
    """``text`` without quoted parts: headers and what follows them, ``>`` lines, and
    everything from the first double quote mark to the last (to the end when their number is
    odd). Expects :func:`_normalise`'d text; see the module docstring."""
    kept: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if _HEADER.match(stripped):
            break
        if stripped.startswith(">"):
            continue
        kept.append(line)
    joined = "\n".join(kept)
    marks = [i for i, ch in enumerate(joined) if ch in QUOTES]
    if not marks:
        return joined
    end = len(joined) if len(marks) % 2 else marks[-1] + 1
    return joined[: marks[0]] + " " + joined[end:]


def _tidy(text: str) -> str:
    """Upper case, runs of white space as one space, trailing punctuation and space gone."""
    words = " ".join(text.split()).upper()
    end = len(words)
    while end and (words[end - 1].isspace() or unicodedata.category(words[end - 1])[0] == "P"):
        end -= 1
    return words[:end]


def parse(text: str) -> Reply | None:
    """What the received ``text`` says: a :class:`Reply`, or None for anything that is not an
    acknowledgement (see the module docstring for the grammar). Never raises."""
    words = _tidy(unquote(_normalise(text)))
    first = _FIRST_WORD.match(words)
    if first is not None and first.group() in OPT_OUT:
        return None
    if m := _ACK_CODE.match(words):
        return Reply("code", m.group(1))
    if _EXACT_CODE.fullmatch(words):
        return Reply("code", words)
    if _ACK_ALL.match(words) or _OK_ALL.fullmatch(words):
        return Reply("all")
    if words == "ACK":
        return Reply("bare")
    return None


# --- matches -------------------------------------------------------------------------------


def counts_for(
    candidate: Candidate, contact: str, stamp: dt.datetime | None, seen_at: dt.datetime
) -> bool:
    """Whether a reply from ``contact`` may acknowledge ``candidate``: the incident has texted
    them, and the reply's ``stamp`` is no earlier than 2 minutes before the opening, or, with
    no stamp (or a naive one, which cannot be placed), it was ``seen_at`` or after the
    opening."""
    if contact not in candidate.texted:
        return False
    if stamp is not None and stamp.tzinfo is not None:
        return stamp >= candidate.opened_at - SLACK
    return seen_at >= candidate.opened_at


def matches(
    reply: Reply,
    contact: str | None,
    stamp: dt.datetime | None,
    seen_at: dt.datetime,
    candidates: Sequence[Candidate],
    open_count: int,
) -> list[str]:
    """The codes ``reply`` acknowledges, in ``candidates``' order, each once; often empty.

    ``contact`` is the sender's contact name (None: a stranger, who acknowledges nothing);
    ``stamp`` the phone's or provider's timestamp (None when it gives none); ``seen_at`` when
    we first read the text (aware); ``candidates`` the open, unacknowledged incidents;
    ``open_count`` how many incidents are open and unacknowledged in total. A candidate counts
    only as :func:`counts_for` says. ``code``: the candidate with that code; ``all``: every
    candidate that counts; ``bare``: the one candidate, only when ``open_count`` is 1 and
    exactly one candidate is given (anything else is ambiguous and acknowledges nothing).
    """
    if contact is None:
        return []
    if reply.kind == "bare" and (open_count != 1 or len(candidates) != 1):
        return []
    out: list[str] = []
    for c in candidates:
        if reply.kind == "code" and c.code != reply.code:
            continue
        if c.code not in out and counts_for(c, contact, stamp, seen_at):
            out.append(c.code)
    return out


# --- who sent it ---------------------------------------------------------------------------


def e164(sender: str, country_code: str) -> str | None:
    """The received ``sender`` in E.164, or None when it cannot be a person's phone.

    ``+15551234567`` stays as it is; national digits (``5551234567``, ``(555) 123-4567``) get
    ``+<country_code>``; for country code 1, 11 digits starting with 1 are read as
    ``+1…``; elsewhere a leading ``00`` is the international prefix and one leading trunk
    ``0`` is dropped (as :func:`mqtt2sms.carriers.normalize_number` does). An email-ish
    gateway sender (``5551234567@tmomail.net``, also ``Name <…>``) is its local part's
    digits, read the same way. Alphanumeric senders (``TWILIO``, ``alex@gmail.com``), short
    codes (6 digits or fewer) and anything else that is not a phone number give None.
    Never raises."""
    text = _normalise(sender).strip()
    if "<" in text and text.endswith(">"):
        text = text[text.rfind("<") + 1 : -1].strip()
    if "@" in text:
        text = text[: text.rfind("@")].strip()
    if sum(ch.isdigit() for ch in text) <= 6:
        return None
    try:
        return normalize_number(text, country_code)
    except ValueError:
        return None


def contact_of(sender: str, contacts: Mapping[str, Contact], country_code: str) -> str | None:
    """The name of the contact who sent a text from ``sender``, or None for a stranger.

    A contact is the sender when their ``e164``, or the digits of their ``gateway_address``
    or ``email`` read by :func:`e164`, equal the sender's E.164. Nothing else is compared (an
    email address without a phone number in it matches no sender). When two contacts share a
    number, the first in ``contacts``' order is named. Never raises."""
    number = e164(sender, country_code)
    if number is None:
        return None
    for contact in contacts.values():
        own = (
            contact.e164,
            *(e164(a, country_code) for a in (contact.gateway_address, contact.email) if a),
        )
        if number in own:
            return contact.name
    return None


def mask(sender: str) -> str:
    """``sender`` as a log may show it: ``+15551234567`` is ``+1555•••••67``.

    The head (up to 5 characters, always leaving at least 5 hidden when it can) and the last 2
    characters stay, the rest becomes ``•`` (at most 8 of them, so a long sender does not fill
    the line); an email-ish sender keeps its domain (its first 40 characters). Characters a
    log line should not carry (controls, line breaks) become ``?``. Never raises."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(sender).strip())
    domain = ""
    if "@" in text:
        at = text.rfind("@")
        text, domain = text[:at], text[at:]
    n = len(text)
    tail = 2 if n >= 6 else 0
    head = min(5, max(0, n - tail - 5))
    hidden = n - head - tail
    return text[:head] + "•" * min(hidden, 8) + text[n - tail :] + domain[:40]
