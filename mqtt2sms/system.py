"""The host's clocks, time zone and state paths: the few facts the shell reads from the system.

Kept apart from ``daemon.py`` so that ``cli.py`` and the engine read them without the daemon.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import zoneinfo
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqtt2sms import config as cfg


def utcnow() -> dt.datetime:
    """The wall clock, aware, in UTC (it steps: use it for what a person reads)."""
    return dt.datetime.now(dt.UTC)


def monotonic() -> float:
    """Elapsed seconds since some fixed point (never steps: use it for durations)."""
    return time.monotonic()


def tz_problem(env: Mapping[str, str]) -> str | None:
    """Why ``$TZ`` cannot be used, or None when it is unset or names a known zone."""
    name = env.get("TZ", "").lstrip(":")
    if not name:
        return None
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError, OSError):
        return f"TZ={name!r} is not a known time zone (see /usr/share/zoneinfo)"
    return None


def local_tz(env: Mapping[str, str]) -> dt.tzinfo:
    """The local zone with its DST rules ($TZ, else /etc/localtime, else a fixed offset)."""
    name = env.get("TZ", "").lstrip(":")
    try:
        if name:
            return zoneinfo.ZoneInfo(name)
        with open("/etc/localtime", "rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError, zoneinfo.ZoneInfoNotFoundError):
        return dt.datetime.now().astimezone().tzinfo or dt.UTC


def tz_name(tz: dt.tzinfo) -> str:
    """A name a person can read for ``tz``."""
    key = getattr(tz, "key", None)
    if isinstance(key, str) and key != "localtime":
        return key
    return dt.datetime.now(tz).strftime("%Z (UTC%z)")


def read_boot_id() -> str:
    """This boot's id: the monotonic clock is comparable only within one boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def outbox_path(config: cfg.Config) -> str:
    return os.path.join(config.state_dir, "outbox.sqlite3")


def maildir_path(config: cfg.Config) -> str:
    return os.path.join(config.state_dir, "maildir")
