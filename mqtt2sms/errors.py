"""The one exception tree of mqtt2sms.

::

    Mqtt2SmsError
    ├── ConfigError                 a config that cannot be used; carries every problem found
    ├── TemplateError               a Jinja2 template or expression failed to compile or render
    ├── PayloadError                an MQTT payload we refuse (becomes a ``rejected`` event)
    ├── StorageError                the outbox's SQLite file cannot be opened, read or written
    │                                 (a full disk, an I/O error, a locked or corrupt file):
    │                                 nothing is lost, the work waits in memory and is retried
    ├── TransitionError             an outbox row cannot make that move (``queue drop`` took a
    │                                 text while it was being sent; no such text)
    ├── MqttError                   the MQTT edge failed: TLS files that do not load, a broker
    │   │                             that refuses us or does not acknowledge a publish in time
    │   └── BrokerUnreachableError  the broker cannot be reached at all (refused, no route,
    │                                 a host name not known, TLS, a timeout)
    └── DeliveryError               a way out failed to take a text
        ├── TemporaryDeliveryError  try again later; ``scope`` says what backs off:
        │                             "transport": the way out itself is down (connection,
        │                               TLS, auth, 421, 4xx/5xx to HELO or MAIL)
        │                             "text": only this text (4xx to RCPT or DATA)
        └── PermanentDeliveryError  this text cannot go this way (5xx to RCPT, ...)

Library errors (smtplib, ssl, socket, sqlite3, paho) are translated into these at one
boundary each (``raise ... from exc``); nothing above the edges sees a library exception.
"""

from __future__ import annotations

from typing import Literal


class Mqtt2SmsError(Exception):
    """Base of every error mqtt2sms raises on purpose."""


class ConfigError(Mqtt2SmsError):
    """A config that cannot be used.

    ``problems`` holds every message, each already formatted as
    ``file:line: yaml.path: what is wrong``.
    """

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class TemplateError(Mqtt2SmsError):
    """A template or expression failed to compile or render."""


class PayloadError(Mqtt2SmsError):
    """A payload we refuse to act on."""


class StorageError(Mqtt2SmsError):
    """The outbox's file cannot be opened, read or written (``sqlite3`` and ``OSError``
    errors, translated in ``outbox.py`` and nowhere else)."""


class TransitionError(Mqtt2SmsError):
    """An outbox row cannot make the move asked for (another process moved it first, or it
    does not exist)."""


class MqttError(Mqtt2SmsError):
    """The MQTT edge (``mqtt.py``) failed; the paho, socket or ssl error is its ``__cause__``."""


class BrokerUnreachableError(MqttError):
    """The TCP or TLS connection to the broker could not be made."""


class DeliveryError(Mqtt2SmsError):
    """A transport failed to take a text."""


class TemporaryDeliveryError(DeliveryError):
    """Try again later. ``scope``: "transport" or "text"; ``auth`` marks a login failure."""

    def __init__(
        self,
        message: str,
        *,
        scope: Literal["transport", "text"] = "transport",
        auth: bool = False,
    ) -> None:
        super().__init__(message)
        self.scope: Literal["transport", "text"] = scope
        self.auth = auth


class PermanentDeliveryError(DeliveryError):
    """This text cannot go this way; the next transport in ``via`` may take it."""
