"""The ways out by name: which exist, which this version can send by, the address each takes.

The one source of truth that the config (which checks a contact can be reached) and the
transports (``transports.registry``, which builds them) both read. It imports nothing of
either, so the config and the transports do not import each other: the transports read the
config, the config reads only this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

AddressKind = Literal["email", "e164"]

# name -> the kind of address it takes, in the order docs/config.md lists the ways out
ADDRESS: Mapping[str, AddressKind] = {
    "smtp": "email",
    "twilio": "e164",
    "modem": "e164",
    "android": "e164",
}
NAMES: tuple[str, ...] = tuple(ADDRESS)
# the ways out this version can send by (transports.registry builds each of them)
BUILT: frozenset[str] = frozenset({"smtp", "twilio", "modem", "android"})
# the ones a user may name in `via` but this version cannot send by yet (none today; kept
# so that a way out added to NAMES before its transport is warned about, not silently used)
NOT_BUILT: tuple[str, ...] = tuple(n for n in NAMES if n not in BUILT)
# the ways out that are not a carrier's email gateway, for the advice to a user whose gateway
# is closing
PHONE_WAYS: tuple[str, ...] = tuple(n for n in NAMES if ADDRESS[n] == "e164")


class Addressable(Protocol):
    """What a contact has that a way out can send to (``config.Contact``)."""

    @property
    def gateway_address(self) -> str | None: ...

    @property
    def e164(self) -> str | None: ...


def address_for(contact: Addressable, transport: str) -> str | None:
    """The contact's address for ``transport``, or None when it cannot be reached that way."""
    kind = ADDRESS.get(transport)
    if kind == "email":
        return contact.gateway_address or None
    if kind == "e164":
        return contact.e164 or None
    return None


def addresses(contact: Addressable, via: tuple[str, ...]) -> dict[str, str]:
    """Transport name -> the contact's address for it; a way out it lacks one for is left out."""
    out: dict[str, str] = {}
    for name in via:
        a = address_for(contact, name)
        if a:
            out[name] = a
    return out


class _TwilioReads(Protocol):
    @property
    def from_number(self) -> str | None: ...


class _Configured(Protocol):
    """What of ``config.Config`` tells whether a way out reads replies."""

    @property
    def twilio(self) -> _TwilioReads | None: ...

    @property
    def modem(self) -> object | None: ...

    @property
    def android(self) -> object | None: ...


def reads_replies(config: _Configured, way: str) -> bool:
    """Can a reply to a text sent by ``way`` be read, so that it can acknowledge an incident?

    ``modem`` and ``android`` read their inbox (the SIM, the phone's); ``twilio`` reads the
    messages sent to ``twilio.from``, so only with ``from`` set (a messaging service alone has
    no one number to list). ``smtp`` never: a reply to a gateway text goes back as email, which
    nothing reads. A way out the config does not set up reads nothing. Raises nothing.
    """
    if way == "modem":
        return config.modem is not None
    if way == "android":
        return config.android is not None
    if way == "twilio":
        return config.twilio is not None and bool(config.twilio.from_number)
    return False


def can_call(config: _Configured, way: str) -> bool:
    """Can ``way`` ring a phone? The modem (a voice-capable one: it says so at the first
    call), and Twilio from a number (``twilio.from``). Raises nothing."""
    if way == "modem":
        return config.modem is not None
    if way == "twilio":
        return config.twilio is not None and bool(config.twilio.from_number)
    return False


def caller(config: _Configured, via: Sequence[str]) -> str | None:
    """The first way out in ``via`` that can ring a phone (``can_call``), or None."""
    return next((way for way in via if can_call(config, way)), None)
