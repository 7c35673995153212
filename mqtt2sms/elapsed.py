"""Elapsed time that survives a restart and never steps with the wall clock.

Theory of operation. Durations (a text's age, cooldowns, rate windows, backoffs, failover,
later escalation steps) are measured on one axis, in seconds: while the process runs it
advances with the monotonic clock; across a restart it carries on from the value saved last
("so much had elapsed"), plus the time the process was away. That time is taken from the
monotonic clock when the machine did not reboot (same ``boot`` id), else from the wall clock,
never negative: a Pi that boots with the time it saved at shutdown counts the outage as
nothing, and NTP stepping the clock forward later moves nothing on this axis.

The axis is shown as aware datetimes (``instant``) so that the pure core (``retry``,
``throttle``, ``delivery``) takes it where it takes ``now``; such a datetime is *not* a wall
time. A brand-new state starts the axis at the wall time, so in a healthy run the two agree
closely, which keeps stored values readable. ``to_wall`` maps an instant back for a person.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
STEP_THRESHOLD = 2.0  # seconds: a change of (wall - monotonic) larger than this is a step


@dataclass(frozen=True)
class Saved:
    """What is stored: the axis value ``e`` at monotonic ``mono`` and wall ``wall`` on
    boot ``boot``."""

    e: float
    mono: float
    wall: float
    boot: str

    def to_json(self) -> str:
        return json.dumps({"e": self.e, "mono": self.mono, "wall": self.wall, "boot": self.boot})

    @classmethod
    def from_json(cls, text: str | None) -> Saved | None:
        """The saved state, or None when missing or unreadable. Raises: nothing."""
        if not text:
            return None
        try:
            d = json.loads(text)
            return cls(float(d["e"]), float(d["mono"]), float(d["wall"]), str(d["boot"]))
        except (ValueError, TypeError, KeyError):
            return None


def resume(saved: Saved | None, mono: float, wall: float, boot: str) -> float:
    """The axis value now, from what was saved and the clocks read now.

    In: the saved state (None: a new one), the monotonic and wall clocks (seconds) and this
    boot's id. Out: seconds on the axis. Raises: nothing.
    """
    if saved is None:
        return wall
    if saved.boot == boot and mono >= saved.mono:
        away = mono - saved.mono
    else:
        away = max(0.0, wall - saved.wall)
    return saved.e + away


@dataclass(frozen=True)
class Axis:
    """The axis as a function of the monotonic clock: ``e = e0 + (mono - mono0)``."""

    e0: float
    mono0: float

    def at(self, mono: float) -> float:
        return self.e0 + (mono - self.mono0)

    def saved(self, mono: float, wall: float, boot: str) -> Saved:
        return Saved(self.at(mono), mono, wall, boot)


def instant(e: float) -> dt.datetime:
    """An axis value as an aware datetime, for the pure core's ``now`` arguments."""
    return _EPOCH + dt.timedelta(seconds=e)


def seconds(t: dt.datetime) -> float:
    """An axis instant back to seconds."""
    return (t - _EPOCH).total_seconds()


def to_wall(t: dt.datetime, e_now: dt.datetime, wall_now: dt.datetime) -> dt.datetime:
    """The wall time a person would read for the axis instant ``t``, given both clocks now."""
    return wall_now + (t - e_now)


def step(previous_offset: float | None, mono: float, wall: float) -> tuple[float, float | None]:
    """Notice a wall-clock step.

    In: the offset ``wall - mono`` seen last (None: first look) and both clocks now.
    Out: the offset now, and the step in seconds (positive: forward) when it moved more than
    ``STEP_THRESHOLD``, else None. Raises: nothing.
    """
    offset = wall - mono
    if previous_offset is None:
        return offset, None
    jump = offset - previous_offset
    return offset, (jump if abs(jump) > STEP_THRESHOLD else None)
