"""sd_notify(3) over ``$NOTIFY_SOCKET``; a no-op without it, and never raises."""

from __future__ import annotations

import logging
import os
import socket
import time
import unicodedata
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Tells systemd about our state (``Type=notify`` / ``notify-reload``, ``WatchdogSec=``)."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        elif address and not address.startswith("/"):
            log.debug("NOTIFY_SOCKET %r not supported, not notifying", address)
            address = None
        self._address = address or None
        self._watchdog_usec = watchdog_usec

    @classmethod
    def from_env(cls, env: Mapping[str, str], pid: int | None = None) -> Notifier:
        """Read $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (checked against ``pid``)."""
        usec: int | None = None
        wanted = env.get("WATCHDOG_PID", "")
        if not wanted or wanted.strip() == str(os.getpid() if pid is None else pid):
            try:
                usec = int(env.get("WATCHDOG_USEC", "")) or None
            except ValueError:
                usec = None
        return cls(env.get("NOTIFY_SOCKET"), usec)

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None."""
        return (
            self._watchdog_usec / 2e6 if self._watchdog_usec and self._watchdog_usec > 0 else None
        )

    def ready(self) -> None:
        self._send("READY=1")

    def reloading(self) -> None:
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def status(self, text: str) -> None:
        """Set the one-line status ``systemctl status`` shows."""
        line = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
        self._send("STATUS=" + " ".join(line.split()))

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # a hung systemd must not hang us
                sock.sendto(message.encode("utf-8", "replace"), self._address)
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", message.split("=")[0], exc)
