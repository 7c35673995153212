"""Which ways out exist, what address each takes, and how each is built from the config.

The names, the address each takes (``smtp`` a gateway e-mail address, the phone ways out
``twilio``, ``modem``, ``android`` an E.164 number) and which are built live in
``mqtt2sms.ways``, which the config reads too; they are re-exported here. The daemon, a reload
and ``check --probe`` all build their transports here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mqtt2sms.ways import ADDRESS, BUILT, NAMES, NOT_BUILT, AddressKind, address_for, addresses

from .base import Transport

if TYPE_CHECKING:
    from mqtt2sms import config as cfg

__all__ = [
    "ADDRESS",
    "BUILT",
    "NAMES",
    "NOT_BUILT",
    "AddressKind",
    "address_for",
    "addresses",
    "build",
]


def resolve(config: cfg.Config, recipient: str, transport: str) -> tuple[str | None, str]:
    """The address of contact ``recipient`` for ``transport`` in ``config``, or None and why
    (the contact was removed, or has no address for that way out any more)."""
    contact = config.contacts.get(recipient)
    if contact is None:
        return None, f"contact {recipient} is no longer in the config"
    address = address_for(contact, transport)
    if address is None:
        return None, f"contact {recipient} has no address for {transport} any more"
    return address, ""


def changed(old: cfg.Config, new: cfg.Config) -> set[str]:
    """The ways out whose section differs between two configs: a reload rebuilds those and
    keeps the others as they are (their connection, their health)."""
    return {name for name in NAMES if getattr(old, name, None) != getattr(new, name, None)}


def build(config: cfg.Config, only: set[str] | None = None) -> dict[str, Transport]:
    """The configured ways out, by name, in the order ``ways.NAMES`` lists them.

    Without an ``smtp`` section its texts go to the dry-run maildir in the state directory.
    ``twilio``, ``modem`` and ``android`` are built when their section is there; each tells
    the poller (``polling.py``) how often it is asked (its section's ``poll``) and whether it
    reads received texts (``twilio.receive``, ``android.receive``; the modem does not read its SIM
    yet). Building opens nothing: the first send or probe does.
    ``only``: build just these.
    """
    out: dict[str, Transport] = {}
    if only is not None and "smtp" not in only:
        pass
    elif config.smtp is not None:
        from .smtp import SmtpTransport

        out["smtp"] = SmtpTransport(config.smtp)
    else:
        from .maildir import MaildirTransport  # the dry run only

        out["smtp"] = MaildirTransport(os.path.join(config.state_dir, "maildir"))
    if config.twilio is not None and (only is None or "twilio" in only):
        from .twilio import TwilioTransport

        out["twilio"] = TwilioTransport(config.twilio)
    if config.modem is not None and (only is None or "modem" in only):
        from .modem import ModemTransport

        out["modem"] = ModemTransport(config.modem)
    if config.android is not None and (only is None or "android" in only):
        from .android import AndroidTransport

        out["android"] = AndroidTransport(config.android)
    return out
