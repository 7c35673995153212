"""Wiring: build the parts, turn signals into flags, reload, and one ordered shutdown.

Threads: paho's network thread turns each message into our own ``Message`` and hands it to
the engine's inbox; the engine's thread (``engine.py``) owns all state and acts on the
core's decisions; one worker thread per way out sends (``workers.py``); the main thread
handles signals, sd_notify and the watchdog.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from collections.abc import Mapping
from types import FrameType
from typing import TYPE_CHECKING

from mqtt2sms import config as cfg
from mqtt2sms import control, discovery, health
from mqtt2sms.engine import STATS_NOW, Engine, Session
from mqtt2sms.errors import ConfigError, StorageError
from mqtt2sms.model import Message
from mqtt2sms.mqtt import MqttLink
from mqtt2sms.notify import Notifier
from mqtt2sms.outbox import Outbox
from mqtt2sms.system import (
    Held,
    Locked,
    local_tz,
    lock_path,
    lock_state_dir,
    monotonic,
    outbox_path,
    utcnow,
)
from mqtt2sms.transports import registry

if TYPE_CHECKING:
    from mqtt2sms.broker import EmbeddedBroker

log = logging.getLogger("mqtt2sms")

STOP_GRACE = 10.0  # seconds the transaction in flight may take at a stop
RELOAD_WAIT = 5.0  # seconds a reload waits for the sender and the broker before READY=1


class Daemon:
    """`mqtt2sms run`: builds the parts, then waits for signals."""

    def __init__(self, loaded: cfg.Loaded, cli_path: str | None, env: Mapping[str, str]) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.cli_path = cli_path
        self.env = env
        self.notifier = Notifier.from_env(env)
        self._reload = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set with either flag, so the main loop acts at once
        self._online = False
        self.broker: EmbeddedBroker | None = None  # only with mqtt.embedded
        self.link: MqttLink | None = None
        self.outbox: Outbox | None = None
        self.engine: Engine | None = None
        self.lock: Locked | None = None  # the state directory's, held for the process's life

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload.set()
        else:
            self._stop.set()
        self._wake.set()

    def _publish(self, topic: str, payload: str, retain: bool) -> None:
        if self.link is not None:
            self.link.publish(topic, payload, retain=retain)

    def _ack(self, msg: Message) -> None:
        if self.link is not None:
            self.link.ack(msg)

    def _on_message(self, msg: Message) -> None:
        c = self.config
        if control.kind(c, msg.topic) == "birth":
            # Home Assistant (re)started: it wants our discovery configs again.
            if msg.payload.strip() == b"online":
                # its broker may have lost our retained topics too
                self._publish_discovery()
                self._publish(f"{c.mqtt.base_topic}/status", "online", True)
                if self.engine is not None:
                    self.engine.submit(STATS_NOW)
            self._ack(msg)
            return
        if self.engine is not None and not self._stop.is_set():
            self.engine.submit(msg)

    def _on_online(self, online: bool) -> None:
        self._online = online
        if online:
            self._publish_discovery()
        self._status()
        self._wake.set()  # health.json says so now, not at the next tick

    def _publish_discovery(self) -> None:
        c = self.config
        if c.homeassistant.discovery:
            messages = discovery.discovery_messages(c, _version())
        else:
            # Empty retained configs remove what an earlier run with discovery on published.
            messages = discovery.removal_messages(c)
        for topic, payload in messages:
            self._publish(topic, payload, True)

    def _status(self) -> None:
        c = self.config.mqtt
        where = f"{c.host}:{c.port}"
        if not self._online:
            text = f"waiting for broker {where}"
            if self.link is not None and self.link.refused:
                text += f": it refused us ({self.link.refused})"
        else:
            e = self.engine
            queued = e.queued if e else 0
            text = f"connected to {where}, {queued} queued"
            stats = e.sink.stats if e else None
            if stats and stats.last_sent_at:
                text += f", last sent {stats.last_sent_at[11:16]}"
            if stats and stats.last_error:
                text += f"; last error: {stats.last_error}"
        self.notifier.status(text)

    def _start_link(self) -> None:
        self.link = MqttLink(
            self.config.mqtt,
            control.subscriptions(self.config),
            self._on_message,
            self._on_online,
            utcnow,
            on_session=self._on_session,
        )
        self.link.start()

    def _on_session(self, present: bool) -> None:
        # paho's thread, before the subscriptions and so before any message of the session:
        # the engine's inbox keeps the order
        if self.engine is not None:
            self.engine.submit(Session(present))

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._signal)
        c = self.config
        if c.smtp is None:
            log.info(
                "no smtp section: dry run, texts go to %s", os.path.join(c.state_dir, "maildir")
            )
        # Exit 1, not 2, for what is not the config (a full disk, a second daemon): systemd's
        # RestartPreventExitStatus=2 would never restart us.
        try:
            lock = lock_state_dir(c.state_dir)
        except OSError as exc:
            log.error("state_dir: cannot take the lock %s: %s", lock_path(c.state_dir), exc)
            return 1
        if isinstance(lock, Held):
            log.error("%s", lock.message())
            return 1
        self.lock = lock
        try:
            self.outbox = Outbox(outbox_path(c))
            self.engine = Engine(
                c,
                self.outbox,
                registry.build(c),
                self._publish,
                self._ack,
                tz=local_tz(self.env),
                wall=utcnow,
                mono=monotonic,
                commit_first=c.mqtt.embedded,
            )
        except (OSError, StorageError) as exc:
            log.error(
                "state_dir: cannot open the outbox %s: %s (exiting to be restarted)",
                outbox_path(c),
                exc,
            )
            return 1
        self.engine.start()
        # what start-up allocated (config, templates, imports) is never collected: a
        # collection then only walks what alerts allocate (no 10-50 ms pauses in a burst)
        gc.collect()
        gc.freeze()
        self.notifier.ready()
        self.notifier.status(f"waiting for broker {c.mqtt.host}:{c.mqtt.port}")
        if c.mqtt.embedded:
            from mqtt2sms.broker import EmbeddedBroker  # asyncio only when it is needed

            self.broker = EmbeddedBroker(c.mqtt.host, c.mqtt.port)
            try:
                self.broker.start()
            except RuntimeError as exc:
                log.error("%s", exc)
                self.shutdown()
                return 1
        self._start_link()
        log.info(
            "mqtt2sms %s started: %d rule(s), state in %s", _version(), len(c.rules), c.state_dir
        )
        wd = self.notifier.watchdog_interval()
        tick = min(wd, 5.0) if wd else 5.0
        code = 0
        recorder = health.Recorder(os.path.join(c.state_dir, "health.json"))
        # at once: a file left by an earlier run must not speak for this one
        e = self.engine
        recorder.tick(
            e.alive(), monotonic() - e.stuck_for(), self._healthy(), self._online, force=True
        )
        while True:
            self._wake.wait(tick)
            self._wake.clear()
            if self._stop.is_set():
                break
            if self._reload.is_set():
                self._reload.clear()
                self._do_reload()
            if not self.engine.alive():
                log.critical("the engine stopped; exiting so that the service is restarted")
                code = 1
                break
            healthy = self._healthy()
            if wd and healthy:
                self.notifier.watchdog()
            # health.json: the watchdog's view, for `mqtt2sms health` (a container's check)
            e = self.engine
            recorder.tick(e.alive(), monotonic() - e.stuck_for(), healthy, self._online)
            self._status()
        self.shutdown()
        recorder.stopped()
        return code

    def _healthy(self) -> bool:
        """Every loop alive and none wedged: only then is the watchdog fed."""
        e = self.engine
        if e is None or not e.alive():
            return False
        if self.link is not None and not self.link.alive():
            return False
        return e.stuck_for() < 60.0

    def _do_reload(self) -> None:
        self.notifier.reloading()
        try:
            loaded = cfg.load_config(self.cli_path or self.config.path, self.env)
        except ConfigError as exc:
            for p in exc.problems:
                log.error("%s", p)
            n = len(exc.problems)
            log.error("reload refused (%d problem%s): keeping the running config", n, "s"[: n != 1])
            self.notifier.ready()
            return
        if loaded.config.state_dir != self.config.state_dir:
            log.error(
                "reload refused: state_dir changed (%s -> %s); restart to move the outbox",
                self.config.state_dir,
                loaded.config.state_dir,
            )
            self.notifier.ready()
            return
        for w in loaded.warnings:
            log.warning("%s", w)
        old = self.config
        self.config = loaded.config
        assert self.engine is not None and self.link is not None
        applied = self.engine.reload(loaded)
        if old.mqtt != loaded.config.mqtt:
            log.info("mqtt section changed: reconnecting")
            self.link.stop()
            self._start_link()
        else:
            subscribed = self.link.set_filters(control.subscriptions(loaded.config))
            # READY=1 once the new rules are in force: the sender has them and the broker
            # has acknowledged the new subscriptions (bounded: a lost SUBACK must not hang us)
            subscribed.wait(RELOAD_WAIT)
        applied.wait(RELOAD_WAIT)
        self._publish_discovery()
        self.notifier.ready()

    def shutdown(self) -> None:
        self.notifier.stopping()
        self.notifier.status("stopping")
        log.info("stopping")
        # intake is stopped already (with `_stop` set new messages stay unacknowledged with
        # the broker); the engine finishes the sends in flight and acks them, then the link goes
        if self.engine is not None:
            self.engine.stop(STOP_GRACE)
        if self.link is not None:
            self.link.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.outbox is not None and (self.engine is None or not self.engine.thread.is_alive()):
            self.outbox.close()
        log.info("stopped")


def _version() -> str:
    from mqtt2sms import __version__

    return __version__
