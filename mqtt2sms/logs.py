"""Logging to stderr: one line per event; journald gets syslog priority prefixes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6)
        text = super().format(record).replace("\n", " | ")
        return f"<{prio}>{text}"


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " | ")


def setup(env: Mapping[str, str], verbose: bool = False) -> None:
    """Send our logs to stderr: plain timestamps on a terminal, `<N>` prefixes under journald."""
    handler = logging.StreamHandler(sys.stderr)
    if env.get("MQTT2SMS_LOG") == "plain":
        # a container: the runtime stamps each line itself, and reads stdout
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_OneLine("%(levelname)s %(name)s: %(message)s"))
    elif env.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            _OneLine("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("amqtt", "transitions", "websockets", "paho"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
