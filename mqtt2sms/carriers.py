"""The email-to-SMS gateway table, and phone numbers reduced to what a gateway wants.

Pure: no I/O. Statuses are what we know (PARTS.md, November 2026), not what we hope:

- ``active``: reported working (T-Mobile, with a note: it filters heavily);
- ``unverified``: listed by the carrier or by others, not checked by us;
- ``shut down``: the gateway is gone; ``alternative`` says what to use instead.

A gateway wants the national number: 10 digits for the US and Canada
(``+1 (555) 123-4567`` -> ``5551234567@tmomail.net``).
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass

ACTIVE = "active"
UNVERIFIED = "unverified"
SHUT_DOWN = "shut down"
STATUSES = (ACTIVE, UNVERIFIED, SHUT_DOWN)

_NO_GATEWAY = "use twilio, modem or android"


@dataclass(frozen=True)
class Carrier:
    """One gateway: ``<national number>@<domain>``."""

    key: str  # what `carrier:` says in the config
    name: str  # for people
    domain: str
    country: str  # "US" | "CA"
    status: str  # active | unverified | shut down
    digits: int = 10  # length of the national number the gateway wants
    calling_code: str = "1"  # the country calling code of the numbers it serves
    note: str = ""
    alternative: str | None = None  # what to use instead, for a shut-down gateway

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"carrier {self.key}: bad status {self.status!r}")


def _table(*carriers: Carrier) -> Mapping[str, Carrier]:
    return types.MappingProxyType({c.key: c for c in carriers})


_VERIZON_RETIRING = "Verizon is reported to retire vtext.com on 2027-03-31"

CARRIERS: Mapping[str, Carrier] = _table(
    # ------------------------------------------------------------------ United States
    Carrier(
        "tmobile",
        "T-Mobile",
        "tmomail.net",
        "US",
        ACTIVE,
        note="reported dead by some since late 2024, still delivering for others; filters "
        "heavily (one recipient per mail, some sending domains refused)",
    ),
    Carrier(
        "verizon",
        "Verizon",
        "vtext.com",
        "US",
        UNVERIFIED,
        note=_VERIZON_RETIRING,
        alternative=_NO_GATEWAY,
    ),
    Carrier(
        "uscellular",
        "UScellular",
        "email.uscc.net",
        "US",
        UNVERIFIED,
        note="UScellular's wireless business was sold to T-Mobile (2025)",
    ),
    Carrier("cricket", "Cricket Wireless", "sms.cricketwireless.net", "US", UNVERIFIED),
    Carrier("googlefi", "Google Fi", "msg.fi.google.com", "US", UNVERIFIED),
    Carrier("mint", "Mint Mobile", "tmomail.net", "US", UNVERIFIED, note="T-Mobile's gateway"),
    Carrier("boost", "Boost Mobile", "sms.myboostmobile.com", "US", UNVERIFIED),
    Carrier("metropcs", "Metro by T-Mobile", "mymetropcs.com", "US", UNVERIFIED),
    Carrier(
        "visible",
        "Visible",
        "vtext.com",
        "US",
        UNVERIFIED,
        note="Verizon's gateway; " + _VERIZON_RETIRING,
        alternative=_NO_GATEWAY,
    ),
    Carrier("consumercellular", "Consumer Cellular", "mailmymobile.net", "US", UNVERIFIED),
    Carrier(
        "republic",
        "Republic Wireless",
        "text.republicwireless.com",
        "US",
        UNVERIFIED,
        note="Republic Wireless moved its customers to Boost Mobile (2022); likely gone",
        alternative="boost, or " + _NO_GATEWAY,
    ),
    Carrier("ting", "Ting", "message.ting.com", "US", UNVERIFIED),
    Carrier(
        "xfinity",
        "Xfinity Mobile",
        "vtext.com",
        "US",
        UNVERIFIED,
        note="runs on Verizon's gateway; " + _VERIZON_RETIRING,
        alternative=_NO_GATEWAY,
    ),
    Carrier(
        "straighttalk",
        "Straight Talk",
        "vtext.com",
        "US",
        UNVERIFIED,
        note="depends on the network the line runs on (Verizon: vtext.com, "
        "T-Mobile: tmomail.net); give `email:` for another",
    ),
    Carrier(
        "tracfone",
        "Tracfone",
        "mmst5.tracfone.com",
        "US",
        UNVERIFIED,
        note="depends on the network the line runs on; give `email:` for another",
    ),
    Carrier("pageplus", "Page Plus", "vtext.com", "US", UNVERIFIED, note="Verizon's gateway"),
    Carrier(
        "att",
        "AT&T",
        "txt.att.net",
        "US",
        SHUT_DOWN,
        note="AT&T's email-to-text gateway shut down on 2025-06-17 (550 since)",
        alternative=_NO_GATEWAY,
    ),
    Carrier(
        "sprint",
        "Sprint",
        "messaging.sprintpcs.com",
        "US",
        SHUT_DOWN,
        note="Sprint merged into T-Mobile; its domain no longer resolves",
        alternative="tmobile if the line moved to T-Mobile, or " + _NO_GATEWAY,
    ),
    # ------------------------------------------------------------------ Canada
    Carrier("bell", "Bell", "txt.bell.ca", "CA", UNVERIFIED),
    Carrier("telus", "Telus", "msg.telus.com", "CA", UNVERIFIED),
    Carrier("fido", "Fido", "fido.ca", "CA", UNVERIFIED, note="owned by Rogers"),
    Carrier("koodo", "Koodo", "msg.koodomobile.com", "CA", UNVERIFIED),
    Carrier("virginca", "Virgin Plus (Canada)", "vmobile.ca", "CA", UNVERIFIED),
    Carrier("freedom", "Freedom Mobile", "txt.freedommobile.ca", "CA", UNVERIFIED),
    Carrier("publicmobile", "Public Mobile", "msg.telus.com", "CA", UNVERIFIED),
    Carrier("sasktel", "SaskTel", "sms.sasktel.com", "CA", UNVERIFIED),
    Carrier(
        "rogers",
        "Rogers",
        "pcs.rogers.com",
        "CA",
        SHUT_DOWN,
        note="Rogers' gateway domain no longer resolves",
        alternative=_NO_GATEWAY,
    ),
)

# Spellings people write, reduced by _squash, -> table key.
_ALIASES: Mapping[str, str] = types.MappingProxyType(
    {
        "tmo": "tmobile",
        "tmobileusa": "tmobile",
        "at&t": "att",
        "attwireless": "att",
        "fi": "googlefi",
        "projectfi": "googlefi",
        "google": "googlefi",
        "usc": "uscellular",
        "cricketwireless": "cricket",
        "mintmobile": "mint",
        "boostmobile": "boost",
        "metro": "metropcs",
        "metrobytmobile": "metropcs",
        "visiblewireless": "visible",
        "consumer": "consumercellular",
        "republicwireless": "republic",
        "tingmobile": "ting",
        "xfinitymobile": "xfinity",
        "comcast": "xfinity",
        "straighttalkwireless": "straighttalk",
        "bellmobility": "bell",
        "bellcanada": "bell",
        "telusmobility": "telus",
        "fidomobile": "fido",
        "koodomobile": "koodo",
        "virgin": "virginca",
        "virginplus": "virginca",
        "virginmobile": "virginca",
        "virginmobilecanada": "virginca",
        "freedommobile": "freedom",
        "rogerswireless": "rogers",
        "sprintpcs": "sprint",
        "verizonwireless": "verizon",
    }
)


def _squash(key: str) -> str:
    """Lower case, with everything but letters, digits and ``&`` removed."""
    return re.sub(r"[^a-z0-9&]", "", key.lower())


def lookup(key: str) -> Carrier | None:
    """The carrier ``key`` names, or None.

    Case, spaces, dots and dashes do not matter, and common names are understood:
    ``"T-Mobile"``, ``"AT&T"``, ``"Google Fi"``, ``"u.s. cellular"``.
    """
    squashed = _squash(key)
    for candidate in (squashed, squashed.replace("&", "")):
        if candidate in CARRIERS:
            return CARRIERS[candidate]
        if candidate in _ALIASES:
            return CARRIERS[_ALIASES[candidate]]
    return None


def suggest(key: str) -> str | None:
    """The table key closest to an unknown ``key`` (a did-you-mean), or None."""
    names = {**{k: k for k in CARRIERS}, **_ALIASES}
    close = difflib.get_close_matches(_squash(key), list(names), n=1, cutoff=0.6)
    return names[close[0]] if close else None


# What `mqtt2sms carriers` says under the table, and what the README and docs/config.md say
# at more length (tests/unit/test_i17_docs.py keeps them saying it).
CLOSING = (
    "Carrier email gateways are closing: AT&T's shut down on 2025-06-17, Sprint's and "
    "Rogers' are gone, T-Mobile's is reported dead by some, Verizon's is reported to retire "
    "on 2027-03-31; and a gateway never says whether a text arrived.",
    "Add a second way out to each contact's `via`: `twilio` (delivery reports; outside the "
    "US, or with a registered business: Twilio refuses US 10DLC and toll-free registration "
    "for texting yourself or your family, error 30532) or `modem` (a USB GSM modem with its "
    "own SIM, which works with the internet down); an Android phone is coming. See "
    "docs/config.md.",
)


def normalize_number(number: str, country_code: str) -> str:
    """A phone number in E.164: ``"+15551234567"``.

    ``number`` may carry spaces, dots, dashes and parentheses, and a leading ``+`` (or
    ``00``) with its country code; without one, ``country_code`` (``"1"``, also ``"+1"``) is
    used. For country code 1 (US, Canada) the number must then have 10 digits, or 11 starting
    with 1: ``"555-123-4567"``, ``"15551234567"`` and ``"+1 (555) 123-4567"`` all give
    ``"+15551234567"``. Elsewhere one leading trunk ``0`` is dropped.

    Raises ValueError, with a message naming the number, for letters, stray characters, or a
    wrong number of digits.
    """
    cc = country_code.strip().removeprefix("+")
    if not re.fullmatch(r"[1-9][0-9]{0,2}", cc):
        raise ValueError(f'bad country code {country_code!r}: 1 to 3 digits, such as "1"')
    text = number.strip()
    if not text:
        raise ValueError("empty phone number")
    if re.search(r"[A-Za-z]", text):
        raise ValueError(f"phone number {number!r} has letters in it")
    if not re.fullmatch(r"\+?[0-9 ().\-/]+", text):
        raise ValueError(f"phone number {number!r} has characters other than digits, spaces, ()-.")
    digits = re.sub(r"[^0-9]", "", text)
    if text.startswith("+") or digits.startswith("00"):
        full = digits[2:] if not text.startswith("+") else digits
        if full.startswith("1") and len(full) != 11:
            raise ValueError(f"phone number {number!r}: a +1 number has 10 digits after the +1")
        if not 8 <= len(full) <= 15 or full.startswith("0"):
            raise ValueError(f"phone number {number!r}: not a valid international number")
        return "+" + full
    if cc == "1":
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        if len(digits) != 10:
            raise ValueError(
                f"phone number {number!r} has {len(digits)} digits: a US or Canadian number "
                "has 10 (or 11 starting with 1)"
            )
        return "+1" + digits
    national = digits.removeprefix("0")
    if not 8 <= len(cc) + len(national) <= 15 or len(national) < 4:
        raise ValueError(f"phone number {number!r}: wrong number of digits for +{cc}")
    return f"+{cc}{national}"


def gateway_address(number: str, carrier: str | Carrier, country_code: str) -> str:
    """The gateway address of ``number`` at ``carrier``: ``"5551234567@tmomail.net"``.

    ``carrier`` is a key or alias (see ``lookup``) or a Carrier; ``number`` is read by
    ``normalize_number(number, country_code)`` and reduced to the national digits the gateway
    wants. A shut-down gateway still gets its address (the config check warns about it).

    Raises ValueError for an unknown carrier, a bad number, or a number of another country.
    """
    found = carrier if isinstance(carrier, Carrier) else lookup(carrier)
    if found is None:
        raise ValueError(f"unknown carrier {carrier!r}")
    e164 = normalize_number(number, country_code)
    prefix = "+" + found.calling_code
    national = e164[len(prefix) :]
    if not e164.startswith(prefix) or len(national) != found.digits:
        raise ValueError(
            f"{found.name}'s gateway takes +{found.calling_code} numbers of {found.digits} "
            f"digits, not {e164}"
        )
    return f"{national}@{found.domain}"
