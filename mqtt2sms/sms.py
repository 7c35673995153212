"""The text a phone can take: GSM-7 transliteration, length, truncate or split.

Theory of operation
-------------------
``compose`` is the one entry point the router needs (``format_sms`` is its parts alone). It
chooses the charset (``choose_charset``), cleans the text for it (``to_gsm7`` for GSM-7; for
UCS-2 only control characters go), strips it, and makes it fit:

* the charset: ``auto`` (the default) is GSM-7 when the text survives transliteration, that is
  when no letter or digit would be deleted (an emoji may go, a curly quote become straight,
  ``á`` become ``a``), else UCS-2: ``Привет мир: протечка`` is never sent as ``:``.
  ``gsm7`` asks for GSM-7 (160 septets, what some plans charge less for): Cyrillic and Greek
  letters are then written in Latin (``Привет`` -> ``Privet``); a script with no such spelling
  here (Chinese, Arabic, Hebrew, ...) falls back to UCS-2 all the same, and the reason says so:
  a script GSM-7 lacks is never deleted. ``unicode`` is always UCS-2.

* ``gsm7``: length is counted in GSM-7 septets (``septets``): an extension character
  (``€ [ ] { } ^ ~ | \\`` and form feed) counts 2. A text that fits ``max_length`` is sent as
  one part. When split, each part *including* its ``(1/3) `` prefix fits
  ``min(max_length, 153)``: a concatenated SMS carries 153 septets per part, the other 7 go to
  the header that glues the parts together.
* ``unicode``: characters are kept as they are; length is counted in UTF-16 code units (an
  emoji outside the BMP counts 2). One part holds ``min(max_length, 70)``; when split, each part
  holds ``min(max_length, 67)``. A unicode text that happens to be pure GSM-7 still gets the
  unicode limit: the limit depends on the config, never on the text, so it is predictable.

``long="truncate"`` cuts the text and ends it with ``...``; ``long="split"`` makes at most
``max_parts`` parts with ``(i/n) `` prefixes and truncates the last one when even that is not
enough. A ``suffix`` (`` (+19 more)``, `` ACK 417``) always ends the final text, unmodified
except for the charset cleaning; the message is cut to make room for it. Only when the suffix
alone does not fit the limit is it cut too (as part of the text).

Cuts happen between Python characters (code points), so a surrogate pair or an extension
character is never cut in half; a cut prefers a word boundary within the last 15 characters
(or the last quarter of the room, when that is less).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7_TABLE",
    "Formatted",
    "choose_charset",
    "compose",
    "format_sms",
    "septets",
    "to_gsm7",
]

#: The GSM 03.38 basic table in code-point order: ``GSM7_TABLE[n]`` is septet ``n`` (0-127);
#: 0x1B is ESC, which only introduces an extension character. A modem in text mode with
#: ``AT+CSCS="GSM"`` takes these code points as bytes (``transports/at.py``).
GSM7_TABLE: str = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

#: The GSM 03.38 basic character set (one septet each), without ESC (0x1B), which only
#: introduces an extension character. It includes CR, which ``to_gsm7`` never emits (it turns
#: CR LF and lone CR into LF).
GSM7_BASIC: frozenset[str] = frozenset(GSM7_TABLE) - {"\x1b"}

#: The GSM 03.38 extension table (ESC + one septet: two septets each). ``to_gsm7`` turns the
#: form feed into a space like any other control character.
GSM7_EXTENSION: frozenset[str] = frozenset("€[]{}^~|\\\f")

_GSM7 = GSM7_BASIC | GSM7_EXTENSION

#: Characters NFKD does not reduce to GSM-7 but a reader would write so.
_TRANSLIT: dict[str, str] = {
    # quotes and apostrophes
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u00b4": "'",
    "`": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u2033": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    "\u2039": "'",
    "\u203a": "'",
    # dashes and hyphens
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u2015": "-",
    "\u2212": "-",
    # punctuation and symbols
    "\u2026": "...",
    "\u2022": "*",
    "\u00b7": ".",
    "\u2044": "/",
    "\u00d7": "x",
    "\u00f7": "/",
    "\u00a9": "(c)",
    "\u00ae": "(R)",
    "\u00b0": "",  # 21.5°C -> 21.5C
    "\u00b5": "u",  # micro sign: µg/m³ -> ug/m3
    "\u03bc": "u",
    "\u00a2": "c",
    # letters NFKD leaves alone
    "\u0141": "L",
    "\u0142": "l",
    "\u0110": "D",
    "\u0111": "d",
    "\u00d0": "D",
    "\u00f0": "d",
    "\u0131": "i",
    "\u0152": "OE",
    "\u0153": "oe",
    "\u00de": "TH",
    "\u00fe": "th",
    "\u0126": "H",
    "\u0127": "h",
    "\u0166": "T",
    "\u0167": "t",
    "\u1e9e": "SS",
    # comparisons a threshold alert may well contain
    "\u2264": "<=",
    "\u2265": ">=",
    "\u2260": "!=",
}

#: Charset ``gsm7``: Cyrillic and Greek in Latin letters (lower case; an upper-case letter
#: takes the capitalised form: Ж -> Zh).
_LATIN: dict[str, str] = {
    **dict(
        zip(
            "абвгдезийклмнопрстуфыэ",
            "abvgdeziyklmnoprstufye",
            strict=True,
        )
    ),
    **{"ё": "e", "ж": "zh", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch"},
    **{"ъ": "'", "ь": "'", "ю": "yu", "я": "ya", "є": "ye", "і": "i", "ї": "yi", "ґ": "g"},
    **{"ў": "u", "ђ": "dj", "ј": "j", "љ": "lj", "њ": "nj", "ћ": "c", "џ": "dz", "ѕ": "dz"},
    **dict(
        zip(
            "αβγδεζηικλμνξοπρσςτυφω",
            "avgdeziiklmnxoprsstyfo",
            strict=True,
        )
    ),
    **{"θ": "th", "χ": "ch", "ψ": "ps"},
}

_LONG_MODES = ("truncate", "split")
CHARSETS = ("auto", "gsm7", "unicode")  # what `charset` may say
_CHARSETS = CHARSETS
_ELLIPSIS = "..."
#: A cut backs up to a word boundary when there is one within this many characters (or a
#: quarter of the room, when that is less: a 20-character text must not lose 15 of them).
_WORD_WINDOW = 15
#: Septets of one concatenated GSM-7 part / UTF-16 units of one concatenated UCS-2 part.
_GSM7_CONCAT_PART = 153
_UNICODE_SINGLE = 70
_UNICODE_CONCAT_PART = 67
#: A split needs room for at least this much text next to its prefix, else it truncates.
_MIN_SPLIT_ROOM = 4

_SPACES_RE = re.compile(r" {2,}")
_AROUND_NEWLINE_RE = re.compile(r" *\n *")
_BLANK_LINES_RE = re.compile(r"\n{3,}")


def _map_char(c: str) -> str:
    """One character of ``to_gsm7`` (``\\r`` is handled before)."""
    if c == "\n":
        return c
    if c in _GSM7 and c != "\f":
        return c
    if c in _TRANSLIT:
        return _TRANSLIT[c]
    category = unicodedata.category(c)
    if category in ("Zl", "Zp"):
        return "\n"
    if category in ("Cc", "Zs"):  # tab, form feed, NBSP, thin space, ...
        return " "
    if category[0] in ("C", "M"):  # format (zero width, bidi), surrogate, unassigned, marks
        return ""
    out = []
    for d in unicodedata.normalize("NFKD", c):
        if d in _GSM7 and d not in ("\f", "\r", "\n"):
            out.append(d)
        elif d in _TRANSLIT:
            out.append(_TRANSLIT[d])
        elif d == " ":
            out.append(" ")
        # anything else (combining marks, emoji, other scripts) is dropped
    return "".join(out)


def _latin(c: str) -> str | None:
    """``c`` in Latin letters when it is Cyrillic or Greek (accents dropped), else None."""
    base = unicodedata.normalize("NFD", c)[:1]
    lower = base.lower()
    if lower not in _LATIN:
        return None
    out = _LATIN[lower]
    return out.capitalize() if base != lower else out


def _tidy_whitespace(text: str) -> str:
    """Collapse runs of spaces, spaces around newlines, and more than one blank line."""
    text = _SPACES_RE.sub(" ", text)
    text = _AROUND_NEWLINE_RE.sub("\n", text)
    return _BLANK_LINES_RE.sub("\n\n", text)


def to_gsm7(text: str, *, latin: bool = False) -> str:
    """Transliterate ``text`` to the GSM 03.38 character set.

    Curly quotes become straight, dashes ``-``, ``…`` ``...``, every kind of space and every
    control character but ``\\n`` a space (CR LF and CR become ``\\n``), accented letters GSM-7
    lacks their base letter (``á`` -> ``a``; ``é``, ``ñ``, ``ü``, ``Ç``, ``Ø``, ... stay, GSM-7
    has them), compatibility forms their plain form (``²`` -> ``2``, ``ﬁ`` -> ``fi``); emoji and
    whatever else cannot be represented are removed. Then runs of spaces collapse to one, spaces
    next to a newline go and at most one blank line remains: SMS has no layout to keep. The ends
    are not stripped (``format_sms`` does that), so a suffix keeps its leading space.

    With ``latin``, Cyrillic and Greek letters are first written in Latin (``Привет`` ->
    ``Privet``); without it they are deleted like any other script GSM-7 lacks, which is why
    ``compose`` chooses UCS-2 for such a text (``choose_charset``).

    In: any ``str``. Out: a ``str`` whose every character is in ``GSM7_BASIC`` or
    ``GSM7_EXTENSION`` (never CR, ESC or form feed). Raises nothing.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if latin:
        return _tidy_whitespace("".join(_latin(c) or _map_char(c) for c in text))
    return _tidy_whitespace("".join(_map_char(c) for c in text))


def _lost(text: str, *, latin: bool) -> list[str]:
    """The letters and digits of ``text`` that ``to_gsm7`` would delete."""
    lost = []
    for c in text:
        category = unicodedata.category(c)
        if category[0] not in "LN" or category == "Lm" or c.isascii():
            continue
        if not ((latin and _latin(c)) or _map_char(c).strip()):
            lost.append(c)
    return lost


def _scripts(chars: list[str]) -> str:
    """``Cyrillic``, ``Greek and CJK``: the scripts (first word of the Unicode names)."""
    names: list[str] = []
    for c in chars:
        word = unicodedata.name(c, "UNKNOWN").split()[0]
        word = word if len(word) <= 3 else word.capitalize()
        if word not in names:
            names.append(word)
    return " and ".join(names[:3]) if len(names) <= 3 else ", ".join(names[:3]) + ", ..."


def choose_charset(text: str, charset: str = "auto") -> tuple[str, str]:
    """Which charset ``text`` goes in, and why (what ``mqtt2sms test`` shows).

    In: the whole text (message, suffix and subject) and the configured charset: ``auto``,
    ``gsm7`` or ``unicode`` (see the module docstring). Out: ``("gsm7" | "unicode", reason)``,
    the reason one short sentence (``"UCS-2: GSM-7 would delete the Cyrillic letters"``).
    Raises ``ValueError`` for another charset.
    """
    if charset not in _CHARSETS:
        raise ValueError(f"charset must be one of {_CHARSETS}, not {charset!r}")
    if charset == "unicode":
        return "unicode", "UCS-2: charset unicode is set"
    explicit = charset == "gsm7"
    lost = _lost(text, latin=explicit)
    if lost:
        if explicit:
            return "unicode", f"UCS-2: charset gsm7 is set, but GSM-7 cannot write {_scripts(lost)}"
        return "unicode", f"UCS-2: GSM-7 would delete the {_scripts(lost)} letters"
    set_ = " (charset gsm7 is set)" if explicit else ""
    if explicit:
        written = [c for c in text if _latin(c) is not None]
        if written:
            return "gsm7", f"GSM-7{set_}: {_scripts(written)} letters written in Latin"
    clean = text.replace("\r\n", "\n").replace("\r", "\n")
    if all(c in _GSM7 and c != "\f" for c in clean):
        return "gsm7", f"GSM-7{set_}: every character is GSM-7"
    return "gsm7", f"GSM-7{set_}: transliterated, no letter lost"


def _clean_unicode(text: str) -> str:
    """Charset ``unicode``: keep characters, but control characters become spaces.

    Format characters (zero-width joiner, variation selectors) stay: emoji sequences need them.
    Lone surrogates cannot be sent and go.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out = []
    for c in text:
        if c == "\n":
            out.append(c)
            continue
        category = unicodedata.category(c)
        if category == "Cc":
            out.append(" ")
        elif category == "Cs":
            continue
        else:
            out.append(c)
    return _tidy_whitespace("".join(out))


def septets(text: str) -> int:
    """GSM-7 length of ``text``: one septet per character, two for an extension character.

    In: a ``str`` (normally already passed through ``to_gsm7``; a character outside GSM-7
    counts 1). Out: the number of septets. Raises nothing.
    """
    return len(text) + sum(1 for c in text if c in GSM7_EXTENSION)


def _utf16_units(text: str) -> int:
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _char_cost_gsm7(c: str) -> int:
    return 2 if c in GSM7_EXTENSION else 1


def _char_cost_unicode(c: str) -> int:
    return 2 if ord(c) > 0xFFFF else 1


_Measure = Callable[[str], int]


def _prefix_that_fits(text: str, room: int, cost: Callable[[str], int]) -> int:
    """Index ``k`` of the longest ``text[:k]`` that costs at most ``room``."""
    used = 0
    for k, c in enumerate(text):
        used += cost(c)
        if used > room:
            return k
    return len(text)


def _cut(text: str, room: int, cost: Callable[[str], int]) -> tuple[str, str]:
    """Split ``text`` into (head that fits ``room``, rest), at a word boundary when close.

    The head is right-stripped, the rest left-stripped.
    """
    k = _prefix_that_fits(text, room, cost)
    if k < len(text) and not text[k].isspace():
        boundary = max(text.rfind(" ", 0, k), text.rfind("\n", 0, k))
        if boundary > 0 and k - boundary <= min(_WORD_WINDOW, room // 4):
            k = boundary
    return text[:k].rstrip(), text[k:].lstrip()


def _truncate(
    body: str, suffix: str, limit: int, measure: _Measure, cost: Callable[[str], int]
) -> str:
    """``body + suffix`` cut to ``limit``, ending with ``...`` + suffix when cut."""
    if measure(body) + measure(suffix) <= limit:
        return body + suffix
    if measure(suffix) > limit:
        # Last resort: the suffix alone does not fit, so it is cut like the rest.
        return _truncate((body + suffix).strip(), "", limit, measure, cost)
    room = limit - measure(suffix) - len(_ELLIPSIS)
    if room < 0:  # no room for "...": hard cut, the suffix still ends the text
        head, _ = _cut(body, limit - measure(suffix), cost)
        return head + suffix
    head, _ = _cut(body, room, cost)
    head = head.rstrip(" \n.,;:")
    return head + _ELLIPSIS + suffix


def _split_into(
    body: str,
    suffix: str,
    n: int,
    part_limit: int,
    measure: _Measure,
    cost: Callable[[str], int],
    *,
    force: bool,
) -> tuple[str, ...] | None:
    """Greedy split of ``body`` into exactly ``n`` prefixed parts, or None if it does not fit.

    With ``force`` the last part is truncated instead of failing.
    """
    parts: list[str] = []
    rest = body
    for i in range(1, n):
        prefix = f"({i}/{n}) "
        head, rest = _cut(rest, part_limit - measure(prefix), cost)
        parts.append(prefix + head)
    prefix = f"({n}/{n}) "
    room = part_limit - measure(prefix)
    if not rest:
        last = suffix.lstrip()
        if (not last or measure(last) > room) and not force:
            return None
        parts.append(prefix + _truncate(last, "", room, measure, cost))
        return tuple(parts)
    if measure(rest) + measure(suffix) > room and not force:
        return None
    parts.append(prefix + _truncate(rest, suffix, room, measure, cost))
    return tuple(parts)


@dataclass(frozen=True)
class Formatted:
    """What ``compose`` made: the parts, the subject to send, the charset used and why."""

    parts: tuple[str, ...]
    subject: str | None
    charset: str  # "gsm7" or "unicode", the one used
    reason: str


def format_sms(
    text: str,
    *,
    max_length: int = 160,
    long: str = "truncate",
    max_parts: int = 3,
    charset: str = "gsm7",
    suffix: str = "",
) -> tuple[str, ...]:
    """The parts of ``compose(...)`` (no subject); see there."""
    return compose(
        text, max_length=max_length, long=long, max_parts=max_parts, charset=charset, suffix=suffix
    ).parts


def compose(
    text: str,
    *,
    max_length: int = 160,
    long: str = "truncate",
    max_parts: int = 3,
    charset: str = "auto",
    suffix: str = "",
    subject: str | None = None,
) -> Formatted:
    """Make ``text`` (plus ``suffix``) into the SMS part(s) to send.

    In:
      ``text``: the rendered message (any ``str``); ``max_length``: the limit of one text in
      septets (GSM-7) or, capped at 70, in UTF-16 code units (UCS-2); ``long``: ``"truncate"``
      or ``"split"``; ``max_parts``: the most parts a split may make; ``charset``: ``"auto"``,
      ``"gsm7"`` or ``"unicode"`` (the charset used comes from ``choose_charset`` on the
      message, the suffix and the subject together); ``suffix``: text that must end the final
      text, cleaned for the charset but not stripped; ``subject``: the rendered subject, or
      None. Most gateways show the subject in the text, so it is cleaned like the text (one
      line), cut to at most half of the limit, and it and a separator count toward the limit
      of every part (each part is a mail with the subject).
    Out:
      ``Formatted``: ``parts`` is a non-empty tuple, each within its limit (see the module
      docstring for the limit of a split part). One part has no prefix; several have
      ``(i/n) `` prefixes and the suffix ends the last one (if the text exactly fills the
      earlier parts, the last part is the prefix and the suffix without its leading
      whitespace). When the text is empty after cleaning, the result is the suffix alone,
      stripped, as one part; ``("",)`` when that is empty too (the caller decides what an
      empty message means). ``subject`` is the cleaned subject (None when none is left);
      ``charset`` and ``reason`` say which charset was used and why.
    Raises:
      ``ValueError`` for an unknown ``long`` or ``charset`` or a ``max_length`` or
      ``max_parts`` below 1 (the config check refuses those before).
    """
    if long not in _LONG_MODES:
        raise ValueError(f"long must be one of {_LONG_MODES}, not {long!r}")
    if charset not in _CHARSETS:
        raise ValueError(f"charset must be one of {_CHARSETS}, not {charset!r}")
    if max_length < 1 or max_parts < 1:
        raise ValueError("max_length and max_parts must be at least 1")
    used, reason = choose_charset("\n".join((subject or "", text, suffix)), charset)

    measure: _Measure
    cost: Callable[[str], int]
    clean: Callable[[str], str]
    if used == "gsm7":
        latin = charset == "gsm7"

        def clean(s: str) -> str:
            return to_gsm7(s, latin=latin)

        measure, cost = septets, _char_cost_gsm7
        single, per_part = max_length, min(max_length, _GSM7_CONCAT_PART)
    else:
        clean = _clean_unicode
        measure, cost = _utf16_units, _char_cost_unicode
        single = min(max_length, _UNICODE_SINGLE)
        per_part = min(max_length, _UNICODE_CONCAT_PART)

    shown: str | None = None
    if subject is not None:
        head = " ".join(clean(subject).split())
        room = single // 2 - 1
        if head and room > 0:
            shown = _truncate(head, "", room, measure, cost).strip() or None
    if shown is not None:
        reserve = measure(shown) + 1  # and a space or line break between it and the text
        single, per_part = single - reserve, per_part - reserve
    body, tail = clean(text).strip(), clean(suffix)
    parts = _fit(body, tail, single, per_part, long, max_parts, measure, cost)
    return Formatted(parts, shown, used, reason)


def _fit(
    body: str,
    tail: str,
    single: int,
    per_part: int,
    long: str,
    max_parts: int,
    measure: _Measure,
    cost: Callable[[str], int],
) -> tuple[str, ...]:
    if not body:
        body, tail = tail.strip(), ""
    if measure(body) + measure(tail) <= single:
        return (body + tail,)
    too_tight = per_part - measure(f"({max_parts}/{max_parts}) ") < _MIN_SPLIT_ROOM
    if long == "truncate" or max_parts == 1 or too_tight:
        return (_truncate(body, tail, single, measure, cost),)
    for n in range(2, max_parts + 1):
        parts = _split_into(body, tail, n, per_part, measure, cost, force=False)
        if parts is not None:
            return parts
    forced = _split_into(body, tail, max_parts, per_part, measure, cost, force=True)
    assert forced is not None
    return forced
