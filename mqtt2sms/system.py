"""The host's clocks, time zone and state paths: the few facts the shell reads from the system.

Kept apart from ``daemon.py`` so that ``cli.py`` and the engine read them without the daemon.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import os
import time
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
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


def lock_path(state_dir: str) -> str:
    return os.path.join(state_dir, "mqtt2sms.lock")


@dataclass(frozen=True)
class Locked:
    """This process holds the state directory: keep ``fd`` open for the process's life (the
    kernel releases the lock when the process ends, kill -9 included)."""

    fd: int
    path: str


@dataclass(frozen=True)
class Held:
    """Another process holds the state directory; ``pid`` is None if it wrote none yet."""

    pid: int | None
    path: str

    def message(self) -> str:
        who = f"pid {self.pid}" if self.pid is not None else "another process"
        return (
            f"another mqtt2sms ({who}) is running on this state directory (it holds "
            f"{self.path}); stop it first, or give this one its own state_dir"
        )


def lock_state_dir(state_dir: str) -> Locked | Held:
    """Take the state directory's exclusive lock (``flock`` on ``mqtt2sms.lock``, without
    waiting) and write our pid into the file, for the next one to name.

    Two daemons on one state directory would share the outbox and the MQTT client id and
    knock each other off the broker. Only the daemon takes this lock: the CLI's readers of
    the outbox (``queue list``, ``test``, ``health``) never do. Raises: ``OSError`` when the
    directory or the file cannot be made (a full disk, no permission).
    """
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = lock_path(state_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        return Held(int(text) if text.isdigit() else None, path)
    # the pid is for a person and for the next daemon's message: a full disk must not stop
    # us here (the lock is what matters, and it is held)
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return Locked(fd, path)
