"""Our own frozen types for what flows through the daemon.

A paho message becomes a ``Message`` at the edge (``mqtt.py``); the router turns it into
``Text`` rows (one SMS part to one recipient) and ``Event`` records (one per outcome).
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_PAYLOAD = 64 * 1024

# The outcomes an alert can end in, and the intermediate states published on the event topic.
STATES = frozenset(
    {"sent", "delivered", "undelivered", "suppressed", "rejected", "failed", "expired", "deferred"}
)


@dataclass(frozen=True)
class Message:
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
    def digest(self) -> str:
        """Identifies topic and payload, for recognising a redelivery."""
        topic = self.topic.encode("utf-8", "replace")
        return f"{zlib.crc32(self.payload, zlib.crc32(topic)):08x}-{len(self.payload)}"


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
