"""Which ways out exist, what address each takes, and how each is built from the config.

The one place that knows that ``smtp`` takes a gateway e-mail address and the phone ways
out (``twilio``, ``modem``, ``android``) an E.164 number. The daemon, a reload and
``check --probe`` all build their transports here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from .base import Transport

if TYPE_CHECKING:
    from mqtt2sms import config as cfg

AddressKind = Literal["email", "e164"]

# name -> the kind of address it takes
ADDRESS: Mapping[str, AddressKind] = {
    "smtp": "email",
    "twilio": "e164",
    "modem": "e164",
    "android": "e164",
}
NAMES = tuple(ADDRESS)
BUILT = frozenset({"smtp"})  # the ways out this version can send by


def address_for(contact: cfg.Contact, transport: str) -> str | None:
    """The contact's address for ``transport``, or None when it cannot be reached that way."""
    kind = ADDRESS.get(transport)
    if kind == "email":
        return contact.gateway_address or None
    if kind == "e164":
        return contact.e164 or None
    return None


def addresses(contact: cfg.Contact, via: tuple[str, ...]) -> dict[str, str]:
    """Transport name -> the contact's address for it; a way out it lacks one for is left out."""
    out: dict[str, str] = {}
    for name in via:
        a = address_for(contact, name)
        if a:
            out[name] = a
    return out


def build(config: cfg.Config) -> dict[str, Transport]:
    """The configured ways out, by name. Without an ``smtp`` section its texts go to the
    dry-run maildir in the state directory."""
    out: dict[str, Transport] = {}
    if config.smtp is not None:
        from .smtp import SmtpTransport

        out["smtp"] = SmtpTransport(config.smtp)
    else:
        from .maildir import MaildirTransport  # the dry run only

        out["smtp"] = MaildirTransport(os.path.join(config.state_dir, "maildir"))
    return out
