"""Our own frozen types for what flows through the daemon.

A paho message becomes a ``Message`` at the edge (``mqtt.py``); the router turns it into
``Text`` rows (one SMS part to one recipient) and ``Event`` records (one per outcome).
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

MAX_PAYLOAD = 64 * 1024

# The outcomes an alert can end in, and the intermediate states published on the event topic.
STATES = frozenset(
    {"sent", "delivered", "undelivered", "suppressed", "rejected", "failed", "expired", "deferred"}
)


@dataclass(frozen=True)
class Message:
    """One MQTT message as it arrived.

    ``retained``: the broker sent it from its store of retained messages (on a new
    subscription, a reconnect, a restart), not as it was published; ``dup`` and ``mid``: a
    redelivery of a QoS 1 message, and its packet id (valid within one broker session);
    ``digest`` (below) identifies the topic and payload, whichever way it came.
    """

    topic: str
    payload: bytes
    received_at: dt.datetime
    retained: bool = False
    dup: bool = False
    mid: int = 0
    qos: int = 1

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None:
            raise ValueError("Message.received_at must be timezone-aware")

    @property
    def blank(self) -> bool:
        """No alert: an empty payload, or only white space (Unicode's too), as
        `mosquitto_pub -r -n` sends to clear a retained message."""
        return not self.payload.decode("utf-8", "replace").strip()

    @property
    def digest(self) -> str:
        """Identifies topic and payload, for recognising a redelivery."""
        topic = self.topic.encode("utf-8", "replace")
        return f"{zlib.crc32(self.payload, zlib.crc32(topic)):08x}-{len(self.payload)}"


@dataclass(frozen=True)
class RetainedSeen:
    """What was routed last on one topic, so that one retained message (topic and payload) is
    acted on once until it changes.

    The broker sends a retained message again on every reconnect and restart, and once per
    matching filter when two of our filters overlap (``home/+/leak`` and ``home/basement/#``);
    each copy is a new message with its own packet id. ``repeats`` tells a copy of what was
    already routed; ``after`` is what to remember once a message was routed (texts or not).

    A live message counts too: under MQTT 3.1.1 a subscriber cannot tell whether a live message
    was published retained, and when it was, the broker replays it as retained next time. So
    both digests are kept: the last retained one routed and the last live one. A live message is
    always routed (a repeated alert is an alert); an empty payload (a cleared retained message)
    forgets the topic.

    Pure and immutable; ``seen.py`` keeps one per topic, in the outbox across restarts.
    """

    retained: str = ""  # digest of the last retained message routed on this topic
    live: str = ""  # digest of the last live message routed on this topic

    def repeats(self, msg: Message) -> bool:
        """``msg`` is a retained copy of what was already routed on its topic: skip it."""
        return msg.retained and msg.digest in (self.retained, self.live)

    def after(self, msg: Message) -> RetainedSeen | None:
        """What to remember for ``msg.topic`` once ``msg`` was routed; None: forget the topic
        (an empty or blank payload: a cleared retained message)."""
        if msg.blank:
            return None
        if msg.retained:
            return replace(self, retained=msg.digest)
        return replace(self, live=msg.digest)


@dataclass(frozen=True)
class Text:
    """One SMS (one part of a split message) for one recipient."""

    id: str
    alert_id: str
    rule: str
    key: str
    recipient: str
    via: tuple[str, ...]
    addresses: Mapping[str, str]  # transport name -> address for it
    body: str
    created_at: dt.datetime
    subject: str | None = None
    priority: str = "normal"
    not_before: dt.datetime | None = None  # a quiet-hours deferral


@dataclass(frozen=True)
class Event:
    id: str
    state: str
    at: dt.datetime
    rule: str | None = None
    to: str | None = None
    via: str | None = None
    attempts: int = 0
    error: str | None = None
    latency_ms: float | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown event state {self.state!r}")

    def as_json(self) -> dict[str, object]:
        """The payload published on ``<base>/event``: times as ISO 8601 with offset."""
        out: dict[str, object] = {
            "id": self.id,
            "rule": self.rule,
            "to": self.to,
            "via": self.via,
            "state": self.state,
            "attempts": self.attempts,
            "error": self.error,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "at": self.at.isoformat(timespec="milliseconds"),
        }
        for k, v in self.extra.items():
            out.setdefault(k, v.isoformat() if isinstance(v, dt.datetime) else v)
        return out
