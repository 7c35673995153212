"""What the commands share: a plain table, an age, and the daemon's clocks as they read them
from the outbox (the times there are on the daemon's elapsed axis)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqtt2sms.clock import Clock
    from mqtt2sms.outbox import Outbox


def table(rows: Sequence[Sequence[object]]) -> None:
    cols = [str(x) for x in rows[0]]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(cols))]
    for r in rows:
        print("  ".join(str(v).ljust(widths[i]) for i, v in enumerate(r)).rstrip())


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def daemon_clock(box: Outbox) -> Clock:
    """The daemon's clocks as it saved them: its elapsed axis (the outbox's times are on it)
    and its throttle axis."""
    import time

    from mqtt2sms.clock import Clock
    from mqtt2sms.system import read_boot_id, utcnow

    return Clock(utcnow, time.monotonic, read_boot_id(), box.get_kv("clock"), box.get_kv("ahead"))


def elapsed_now(box: Outbox) -> float:
    """Now on the daemon's elapsed axis."""
    return daemon_clock(box).now_e()
