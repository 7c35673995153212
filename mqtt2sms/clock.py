"""The engine's two clocks, read in one place.

Theory of operation. Durations are measured on the elapsed axis (``elapsed.py``): it follows
the monotonic clock while we run and carries on across a restart from what was saved. The
wall clock is for what a person reads (quiet hours, the local day, event times) and it steps:
``check`` notices a step and says how far. Windows that hold texts back (cooldowns, rate
windows) are measured on the *throttle axis*, the elapsed axis plus every forward step seen
(``ahead``): a Pi that booted with an old time and whose NTP then caught up has really been
away that long, so the step may shorten a window; a step back never lengthens one. Ages,
expiry and backoffs stay on the elapsed axis: a step never expires a text.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from mqtt2sms import elapsed

log = logging.getLogger("mqtt2sms")


def _seconds(t: dt.datetime) -> float:
    return t.timestamp()


class Clock:
    def __init__(
        self,
        wall: Callable[[], dt.datetime],
        mono: Callable[[], float],
        boot: str,
        saved: str | None,
        ahead: str | None,
    ) -> None:
        self.wall = wall
        self.mono = mono
        self.boot = boot
        m, w = mono(), _seconds(wall())
        self.axis = elapsed.Axis(elapsed.resume(elapsed.Saved.from_json(saved), m, w, boot), m)
        self.offset = w - m  # wall - monotonic: a step from now on is noticed
        self.ahead = _non_negative(ahead)

    def now_e(self) -> float:
        """Seconds on the elapsed axis."""
        return self.axis.at(self.mono())

    def now(self) -> dt.datetime:
        """The elapsed axis as the pure core's ``now``."""
        return elapsed.instant(self.now_e())

    def throttle_now(self) -> dt.datetime:
        """Where cooldowns and rate windows are measured (see the module's comment)."""
        return elapsed.instant(self.now_e() + self.ahead)

    def wall_of(self, t: dt.datetime) -> dt.datetime:
        """The wall time a person would read for the axis instant ``t``."""
        return elapsed.to_wall(t, self.now(), self.wall())

    def check(self) -> float | None:
        """The wall clock's step since the last look, in seconds (positive: forward), or
        None. A step is logged; a forward one is added to ``ahead``."""
        self.offset, jump = elapsed.step(self.offset, self.mono(), _seconds(self.wall()))
        if jump is None:
            return None
        if jump > 0:
            self.ahead += jump
        log.warning(
            "the wall clock stepped %s by %s; ages and backoffs follow elapsed time%s",
            "forward" if jump > 0 else "back",
            span(abs(jump)),
            ", cooldowns and rate windows count the step" if jump > 0 else "",
        )
        return jump

    def saved(self) -> dict[str, str]:
        """What to store so that the axis carries on after a restart."""
        state = self.axis.saved(self.mono(), _seconds(self.wall()), self.boot)
        return {"clock": state.to_json(), "ahead": repr(self.ahead)}


def _non_negative(text: str | None) -> float:
    try:
        return max(0.0, float(text or 0.0))
    except ValueError:
        return 0.0


def span(seconds: float) -> str:
    """``2d 03:04:05``: a duration for a person."""
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"
