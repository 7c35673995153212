"""Wiring: the MQTT link, the sender thread, signals, reload and an ordered shutdown.

Threads: paho's network thread hands each Message to the sender's inbox and returns; the
sender thread owns the outbox, the transports and the throttle state, and does every send
and every write; the main thread handles signals, sd_notify and the watchdog.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import queue
import random
import signal
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Literal

from mqtt2sms import config as cfg
from mqtt2sms import discovery, retry, throttle
from mqtt2sms.errors import ConfigError, PermanentDeliveryError, TemporaryDeliveryError
from mqtt2sms.model import Event, Message, Text
from mqtt2sms.mqtt import MqttLink
from mqtt2sms.notify import Notifier
from mqtt2sms.outbox import Outbox, OutboxError, Row, from_ts, ts
from mqtt2sms.render import Templates
from mqtt2sms.router import route
from mqtt2sms.system import local_tz, outbox_path, utcnow
from mqtt2sms.transports.base import OutgoingText, Transport
from mqtt2sms.transports.smtp import SmtpTransport

if TYPE_CHECKING:
    from mqtt2sms.broker import EmbeddedBroker

log = logging.getLogger("mqtt2sms")
elog = logging.getLogger("mqtt2sms.event")

IDLE_CLOSE = 15.0  # seconds without work before an SMTP connection is closed
STOP_GRACE = 10.0  # seconds the transaction in flight may take at a stop
RELOAD_WAIT = 5.0  # seconds a reload waits for the sender and the broker before READY=1


def build_transports(config: cfg.Config) -> dict[str, Transport]:
    out: dict[str, Transport] = {}
    if config.smtp is not None:
        out["smtp"] = SmtpTransport(config.smtp)
    else:
        from mqtt2sms.transports.maildir import MaildirTransport  # the dry run only

        out["smtp"] = MaildirTransport(os.path.join(config.state_dir, "maildir"))
    return out


# --------------------------------------------------------------------------- stats


@dataclass
class Stats:
    day: str = ""
    sent_today: int = 0
    suppressed_today: int = 0
    failed_today: int = 0
    last_sent_at: str | None = None
    last_error: str | None = None

    def roll(self, today: dt.date) -> None:
        if self.day != today.isoformat():
            self.day = today.isoformat()
            self.sent_today = self.suppressed_today = self.failed_today = 0

    @classmethod
    def from_json(cls, text: str | None) -> Stats:
        try:
            data = json.loads(text or "{}")
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names})
        except (ValueError, TypeError):
            return cls()


@dataclass
class TransportState:
    down_until: float = 0.0
    failures: int = 0
    last_error: str | None = None
    auth: bool = False
    last_used: float = 0.0


@dataclass
class Outcome:
    state: Literal["sent", "failed", "queued"]
    fields: dict[str, object] = field(default_factory=dict)
    via: str | None = None
    error: str | None = None
    attempts: int = 0


@dataclass(frozen=True)
class Reload:
    loaded: cfg.Loaded
    applied: threading.Event = field(default_factory=threading.Event)


_WAKE = object()


# --------------------------------------------------------------------------- the sender


class Sender:
    """Owns the outbox, transports and throttle state; runs in its own thread."""

    def __init__(
        self,
        config: cfg.Config,
        outbox: Outbox,
        publish: Callable[[str, str, bool], None],
        ack: Callable[[Message], None],
        env: Mapping[str, str],
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.publish = publish
        self.ack = ack
        self.clock = clock
        self.tz = local_tz(env)
        self.templates = Templates()
        self.transports = build_transports(config)
        self.tstate: dict[str, TransportState] = {n: TransportState() for n in self.transports}
        self.inbox: queue.Queue[object] = queue.Queue()
        self.stopping = threading.Event()
        self.heartbeat = time.monotonic()
        self.rand = random.Random()
        self.seen: OrderedDict[int, str] = OrderedDict()
        self.throttle = throttle.from_json(outbox.get_kv("throttle") or "")
        self.stats = Stats.from_json(outbox.get_kv("stats"))
        self.epoch = int(outbox.get_kv("epoch") or "0") + 1
        outbox.set_kv({"epoch": str(self.epoch)})
        for mid, digest in reversed(outbox.digests(self.epoch - 3).items()):
            self.seen[mid] = digest
        self._next_due: float | None = None
        self._blocked_until: float | None = None
        self._due_changed = True
        self._dirty = False
        self._flushed = 0.0
        self._stats_dirty = True
        self._stats_published = 0.0
        self._data_version = outbox.data_version()
        self._last_prune = 0.0
        self.queued = 0
        self.failures = 0
        self.thread = threading.Thread(target=self._main, name="sender", daemon=True)

    # -- the loop --------------------------------------------------------------------------

    def start(self) -> None:
        now = self.clock()
        n = self.outbox.requeue_on_start(now)
        if n:
            log.info("%d queued text(s) will be tried now", n)
        self._refresh_due()
        self.thread.start()

    def submit(self, item: object) -> None:
        self.inbox.put(item)

    def stop(self, grace: float = STOP_GRACE) -> None:
        self.stopping.set()
        self.inbox.put(_WAKE)
        self.thread.join(grace)

    def _main(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("the sender stopped on an unexpected error")
            raise
        finally:
            self._flush(force=True)
            for t in self.transports.values():
                try:
                    t.close()
                except Exception as exc:  # closing must not block a stop
                    log.debug("closing %s: %s", t.name, exc)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.heartbeat = time.monotonic()
            try:
                item = self.inbox.get(timeout=self._wait_time())
            except queue.Empty:
                item = None
            if self.stopping.is_set():
                break
            self.heartbeat = time.monotonic()
            try:
                self._process_due()
                if isinstance(item, Message):
                    self.handle(item)
                elif isinstance(item, Reload):
                    self._apply_reload(item.loaded)
                    item.applied.set()
                if self.inbox.empty():
                    self._housekeeping()
            except Exception:
                # A message whose texts could not be sent or committed (a full disk, say) is
                # not acknowledged: the broker keeps it and hands it over again later.
                self.failures += 1
                log.exception("could not handle %s", _describe(item))
                if self.failures >= 20:
                    raise
                self.stopping.wait(min(30.0, 0.5 * 2**self.failures))
            else:
                self.failures = 0

    def _wait_time(self) -> float:
        """Seconds until something is due: a queued text, a stats or state write, or the
        once-a-second look for `queue` commands. Nothing polls faster than that."""
        now = ts(self.clock())
        wait = 1.0
        nd = self._next_due
        if nd is not None:
            if nd <= now:
                nd = self._blocked_until if self._blocked_until is not None else now
            wait = min(wait, nd - now)
        mono = time.monotonic()
        if self._stats_dirty:
            wait = min(wait, self._stats_published + 1.0 - mono)
        if self._dirty:
            wait = min(wait, self._flushed + 1.0 - mono)
        return max(0.0, wait)

    def _housekeeping(self) -> None:
        now = self.clock()
        self._flush()
        dv = self.outbox.data_version()
        if dv != self._data_version:
            # `queue retry` or `queue drop` ran: a user asking for a try now also gets one
            # through a transport that is backing off.
            self._data_version = dv
            for st in self.tstate.values():
                st.down_until = 0.0
            self._due_changed = True
            self._refresh_due()
        mono = time.monotonic()
        for name, st in self.tstate.items():
            if st.last_used and mono - st.last_used > IDLE_CLOSE:
                self.transports[name].close()
                st.last_used = 0.0
        if mono - self._last_prune > 3600:
            self._last_prune = mono
            pruned = self.outbox.prune(now - dt.timedelta(seconds=self.config.limits.keep))
            if pruned:
                log.info("pruned %d finished text(s) older than %s", pruned, "limits.keep")
            self.throttle = self._pruned(self.throttle, now)
        if (self._stats_dirty and mono - self._stats_published >= 1.0) or (
            mono - self._stats_published >= 60.0
        ):
            self._publish_stats(now)

    def _pruned(self, state: throttle.ThrottleState, now: dt.datetime) -> throttle.ThrottleState:
        """Forget throttle state of rules that are gone and of windows long past."""
        rules = self.config.rules
        horizon = max([86400.0, *(r.options.cooldown for r in rules)])
        return throttle.prune(
            state, now, {r.name for r in rules}, self._rate_window(), cooldown_horizon=horizon
        )

    def _rate_window(self) -> float | None:
        rate = self.config.limits.per_recipient
        return rate.per if rate else None

    def _refresh_due(self) -> None:
        nd = self.outbox.next_due()
        if nd != self._next_due:
            self._due_changed = True
        self._next_due = nd
        self.queued = self.outbox.queued_count()
        self._stats_dirty = True

    # -- one message -----------------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        """Route, send what can go now, commit the rest, then acknowledge the message."""
        if msg.dup and msg.qos > 0 and self.seen.get(msg.mid) == msg.digest:
            log.info(
                "redelivery of message %d on %s already handled; acknowledged", msg.mid, msg.topic
            )
            self.ack(msg)
            return
        now = self.clock()
        alert_id = os.urandom(5).hex()
        routed = route(self.config, self.templates, msg, self.throttle, now, self.tz, alert_id)
        self.throttle = routed.state
        self._dirty = True
        for problem in routed.problems:
            log.warning("%s", problem)
        for ev in routed.events:
            self.emit(ev)
        commit: list[tuple[Text, dict[str, object]]] = []
        done: list[tuple[Text, dict[str, object]]] = []
        tag = {"mid": msg.mid if msg.qos > 0 else None, "digest": msg.digest, "epoch": self.epoch}
        for text in routed.texts:
            if text.not_before is not None and text.not_before > now:
                commit.append((text, {**tag, "reason": "quiet"}))
                continue
            out = self._attempt(_row_of(text), now)
            fields = {**tag, **out.fields}
            if out.state == "queued":
                commit.append((text, fields))
            else:
                done.append((text, {**fields, "state": out.state}))
        if done:
            self.outbox.record(done)
        if commit:
            self.outbox.enqueue(commit)
            self._refresh_due()
        self.ack(msg)
        if msg.qos > 0:
            self.seen[msg.mid] = msg.digest
            self.seen.move_to_end(msg.mid)
            while len(self.seen) > 2000:
                self.seen.popitem(last=False)

    # -- queued texts ----------------------------------------------------------------------

    def _process_due(self) -> None:
        now = self.clock()
        nd = self._next_due
        if nd is None or nd > ts(now):
            return
        if (
            self._blocked_until is not None
            and ts(now) < self._blocked_until
            and not self._due_changed
        ):
            return  # everything due waits for a way out that is backing off
        self._due_changed = False
        self._blocked_until = None
        old = now - dt.timedelta(seconds=self.config.limits.max_age)
        for row in self.outbox.expire(old, now):
            error = f"not delivered within {self.config.limits.max_age:g}s"
            if row.last_error:
                error += f": {row.last_error}"
            self._row_event(row, "expired", row.current_via, row.attempts, error)
        while not self.stopping.is_set():
            rows = self.outbox.due(now, 200)
            progressed = False
            for row in rows:
                if self.stopping.is_set():
                    break
                if self._blocked(row, now):
                    continue
                self.heartbeat = time.monotonic()
                self.outbox.update(row.id, "sending")
                out = self._attempt(row, now)
                try:
                    self.outbox.update(row.id, out.state, **out.fields)
                except OutboxError as exc:  # `queue drop` ran while it was being sent
                    log.warning("text %s: %s (changed while it was being sent)", row.id, exc)
                progressed = True
                now = self.clock()
            if not progressed or len(rows) < 200:
                break
        self._refresh_due()

    def _blocked(self, row: Row, now: dt.datetime) -> bool:
        """True when the row's transport is backing off and it is not yet time to fail over."""
        st = self.tstate.get(row.current_via)
        t_now = ts(now)
        if st is None or st.down_until <= t_now:
            return False
        until = st.down_until
        if row.via_index + 1 < len(row.via) and row.first_fail_at is not None:
            fo = row.first_fail_at + self._options(row.rule).failover_after
            if fo <= t_now:
                return False
            until = min(until, fo)
        if self._blocked_until is None or until < self._blocked_until:
            self._blocked_until = until
        return True

    def _options(self, rule: str) -> cfg.RuleOptions:
        for r in self.config.rules:
            if r.name == rule:
                return r.options
        return self.config.defaults

    # -- one attempt -----------------------------------------------------------------------

    def _attempt(self, row: Row, now: dt.datetime) -> Outcome:
        """Try a text on its transports in order; the Outcome says what the row becomes."""
        via_index = row.via_index
        first_fail = row.first_fail_at
        attempts = row.attempts
        last_error = row.last_error
        failover_after = self._options(row.rule).failover_after
        t_now = ts(now)

        def queued(reason: str, next_at: float, error: str | None) -> Outcome:
            return Outcome(
                "queued",
                {
                    "via_index": via_index,
                    "attempts": attempts,
                    "first_fail_at": first_fail,
                    "next_at": next_at,
                    "reason": reason,
                    "last_error": error,
                },
                via=row.via[via_index],
                error=error,
                attempts=attempts,
            )

        while via_index < len(row.via):
            name = row.via[via_index]
            transport = self.transports.get(name)
            can_fail_over = via_index + 1 < len(row.via)
            if transport is None:
                last_error = f"transport {name} is not configured"
                via_index, first_fail = via_index + 1, None
                continue
            st = self.tstate[name]
            if st.down_until > t_now:
                first_fail = first_fail if first_fail is not None else t_now
                if can_fail_over and retry.failover_due(from_ts(first_fail), failover_after, now):
                    via_index, first_fail = via_index + 1, None
                    continue
                out = queued("transport", t_now, st.last_error or last_error)
                if row.seq == 0:  # a new text that waits for its way out: say so
                    self._deferred_event(row, out, st.down_until)
                return out
            attempts += 1
            address = row.addresses.get(name, "")
            started = time.monotonic()
            try:
                receipt = transport.send(
                    OutgoingText(
                        id=row.id,
                        address=address,
                        body=row.body,
                        subject=row.subject,
                        priority=row.priority,
                    )
                )
            except TemporaryDeliveryError as exc:
                last_error = str(exc)
                first_fail = first_fail if first_fail is not None else t_now
                st.last_used = time.monotonic()
                if exc.scope == "transport":
                    self._transport_failed(name, exc, now)
                    reason, next_at = "transport", t_now
                else:
                    reason = "retry"
                    # never later than the text's expiry: it is marked `expired` on time
                    nxt = retry.retry_or_expire(
                        from_ts(row.created_at),
                        attempts,
                        self.config.limits.retry,
                        self.config.limits.max_age,
                        now,
                        self.rand.random(),
                    )
                    next_at = t_now if nxt is None else ts(nxt)
                if can_fail_over and retry.failover_due(from_ts(first_fail), failover_after, now):
                    via_index, first_fail = via_index + 1, None
                    continue
                out = queued(reason, next_at, last_error)
                self._deferred_event(row, out, next_at)
                return out
            except PermanentDeliveryError as exc:
                last_error = str(exc)
                st.last_used = time.monotonic()
                log.warning(
                    "text %s to %s: %s is permanent for %s", row.id, row.recipient, last_error, name
                )
                via_index, first_fail = via_index + 1, None
                continue
            st.last_used = time.monotonic()
            self._transport_ok(name)
            done = self.clock()
            latency = (done - from_ts(row.created_at)).total_seconds() * 1000.0
            self.stats.last_sent_at = done.astimezone(self.tz).isoformat(timespec="seconds")
            send_ms = round((time.monotonic() - started) * 1000, 1)
            self._row_event(
                row, "sent", name, attempts, None, latency_ms=latency, extra={"send_ms": send_ms}
            )
            return Outcome(
                "sent",
                {
                    "via_index": via_index,
                    "attempts": attempts,
                    "finished_at": ts(done),
                    "transport": name,
                    "remote_id": receipt.remote_id,
                    "last_error": None,
                },
                via=name,
                attempts=attempts,
            )
        self._row_event(row, "failed", row.via[-1] if row.via else None, attempts, last_error)
        return Outcome(
            "failed",
            {
                "via_index": max(0, len(row.via) - 1),
                "attempts": attempts,
                "finished_at": t_now,
                "last_error": last_error,
            },
            error=last_error,
            attempts=attempts,
        )

    def _deferred_event(self, row: Row, out: Outcome, next_at: float) -> None:
        next_try = from_ts(next_at).isoformat(timespec="seconds")
        self._row_event(
            row, "deferred", out.via, out.attempts, out.error, extra={"next_try": next_try}
        )

    def _row_event(
        self,
        row: Row,
        state: str,
        via: str | None,
        attempts: int,
        error: str | None,
        latency_ms: float | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        self.emit(
            Event(
                id=row.id,
                state=state,
                at=self.clock(),
                rule=row.rule,
                to=row.recipient,
                via=via,
                attempts=attempts,
                error=error,
                latency_ms=latency_ms,
                extra=extra or {},
            )
        )

    def _transport_failed(self, name: str, exc: TemporaryDeliveryError, now: dt.datetime) -> None:
        st = self.tstate[name]
        st.failures += 1
        st.auth = exc.auth
        st.last_error = str(exc)
        until = retry.transport_backoff(
            st.failures, self.config.limits.retry, now, self.rand.random(), exc.auth
        )
        st.down_until = ts(until)
        self.transports[name].close()
        self.stats.last_error = f"{name}: {exc}"
        self._stats_dirty = True
        log.error(
            "%s is failing (%s); next try at %s",
            name,
            exc,
            until.astimezone(self.tz).strftime("%H:%M:%S"),
        )

    def _transport_ok(self, name: str) -> None:
        st = self.tstate[name]
        if st.failures:
            log.info("%s works again", name)
        # also an error saved by an earlier run: it is over once this way out works
        if self.stats.last_error and self.stats.last_error.startswith(f"{name}:"):
            self.stats.last_error = None
            self._stats_dirty = True
        st.failures = 0
        st.down_until = 0.0
        st.auth = False
        st.last_error = None

    # -- outcomes --------------------------------------------------------------------------

    def _count(self, state: str) -> None:
        self.stats.roll(self.clock().astimezone(self.tz).date())
        if state == "sent":
            self.stats.sent_today += 1
        elif state == "suppressed":
            self.stats.suppressed_today += 1
        elif state in ("failed", "expired"):
            self.stats.failed_today += 1
        self._stats_dirty = True

    def emit(self, ev: Event) -> None:
        """Count, log and publish one outcome."""
        self._count(ev.state)
        if ev.state == "suppressed" and ev.error and ev.error.startswith("daily cap"):
            self.stats.last_error = ev.error
        payload = ev.as_json()
        level = logging.INFO if ev.state in ("sent", "suppressed", "delivered") else logging.WARNING
        parts = [ev.state, ev.id, f"rule={ev.rule}"]
        if ev.to:
            parts.append(f"to={ev.to}")
        if ev.via:
            parts.append(f"via={ev.via}")
        if ev.attempts:
            parts.append(f"attempts={ev.attempts}")
        if ev.latency_ms is not None:
            parts.append(f"latency_ms={ev.latency_ms:.0f}")
        if ev.error:
            parts.append(f"error={ev.error}")
        elog.log(level, "%s", " ".join(parts))
        self.publish(f"{self.config.mqtt.base_topic}/event", json.dumps(payload), False)

    def _publish_stats(self, now: dt.datetime) -> None:
        self.stats.roll(now.astimezone(self.tz).date())
        self.queued = self.outbox.queued_count()
        body = {
            "queued": self.queued,
            "sent_today": self.stats.sent_today,
            "suppressed_today": self.stats.suppressed_today,
            "failed_today": self.stats.failed_today,
            "last_sent_at": self.stats.last_sent_at,
            "last_error": self.stats.last_error,
        }
        self.publish(f"{self.config.mqtt.base_topic}/stats", json.dumps(body), True)
        self._stats_published = time.monotonic()
        self._stats_dirty = False

    def _flush(self, force: bool = False) -> None:
        """Save throttle state and counters, at most once a second (and at a stop)."""
        mono = time.monotonic()
        if self._dirty and (force or mono - self._flushed >= 1.0):
            self.outbox.set_kv(
                {
                    "throttle": throttle.to_json(self.throttle),
                    "stats": json.dumps(dataclasses.asdict(self.stats)),
                },
                durable=False,
            )
            self._dirty = False
            self._flushed = mono

    # -- reload ----------------------------------------------------------------------------

    def _apply_reload(self, loaded: cfg.Loaded) -> None:
        old = self.config
        self.config = loaded.config
        self.templates = Templates()
        if old.smtp != loaded.config.smtp or old.state_dir != loaded.config.state_dir:
            for t in self.transports.values():
                t.close()
            self.transports = build_transports(loaded.config)
            self.tstate = {n: TransportState() for n in self.transports}
        else:
            for st in self.tstate.values():
                st.down_until = 0.0
        self.throttle = self._pruned(self.throttle, self.clock())
        n = self.outbox.requeue_on_start(self.clock())
        self._due_changed = True
        self._blocked_until = None
        self._refresh_due()
        log.info(
            "config reloaded: %d rule(s)%s",
            len(loaded.config.rules),
            f", {n} queued text(s) tried now" if n else "",
        )


def _row_of(text: Text) -> Row:
    return Row(
        seq=0,
        id=text.id,
        alert_id=text.alert_id,
        rule=text.rule,
        key=text.key,
        recipient=text.recipient,
        via=text.via,
        via_index=0,
        addresses=dict(text.addresses),
        body=text.body,
        subject=text.subject,
        priority=text.priority,
        state="queued",
        reason="new",
        created_at=ts(text.created_at),
        next_at=ts(text.created_at),
        attempts=0,
        first_fail_at=None,
        last_error=None,
        finished_at=None,
        transport=None,
    )


# --------------------------------------------------------------------------- the daemon


def subscriptions(config: cfg.Config) -> list[str]:
    filters = {r.topic for r in config.rules}
    filters.add(f"{config.mqtt.base_topic}/ack")
    if config.homeassistant.discovery:
        filters.add(discovery.birth_topic(config))
    return sorted(filters)


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
        self.sender: Sender | None = None

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
        if c.homeassistant.discovery and msg.topic == discovery.birth_topic(c):
            # Home Assistant (re)started: it wants our discovery configs again.
            if msg.payload.strip() == b"online":
                self._publish_discovery()
            self._ack(msg)
            return
        if self.sender is not None and not self._stop.is_set():
            self.sender.submit(msg)

    def _on_online(self, online: bool) -> None:
        self._online = online
        if online:
            self._publish_discovery()
        self._status()

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
            s = self.sender
            queued = s.queued if s else 0
            text = f"connected to {where}, {queued} queued"
            if s and s.stats.last_sent_at:
                text += f", last sent {s.stats.last_sent_at[11:16]}"
            if s and s.stats.last_error:
                text += f"; last error: {s.stats.last_error}"
        self.notifier.status(text)

    def _start_link(self) -> None:
        self.link = MqttLink(
            self.config.mqtt, subscriptions(self.config), self._on_message, self._on_online, utcnow
        )
        self.link.start()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._signal)
        c = self.config
        if c.smtp is None:
            log.info(
                "no smtp section: dry run, texts go to %s", os.path.join(c.state_dir, "maildir")
            )
        try:
            self.outbox = Outbox(outbox_path(c))
        except (OSError, sqlite3.Error) as exc:
            log.error("state_dir: cannot open the outbox %s: %s", outbox_path(c), exc)
            return 2
        self.sender = Sender(c, self.outbox, self._publish, self._ack, self.env)
        self.sender.start()
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
        # health.json for `mqtt2sms health` (issue 12): the watchdog's view, written each tick
        from mqtt2sms import health

        recorder = health.Recorder(os.path.join(c.state_dir, "health.json"))
        while True:
            self._wake.wait(tick)
            self._wake.clear()
            if self._stop.is_set():
                break
            if self._reload.is_set():
                self._reload.clear()
                self._do_reload()
            if not self.sender.thread.is_alive():
                log.critical("the sender stopped; exiting so that the service is restarted")
                code = 1
                break
            if wd and self._healthy():
                self.notifier.watchdog()
            s = self.sender  # issue 12: health.json
            recorder.tick(s.thread.is_alive(), s.heartbeat, self._healthy(), self._online)
            self._status()
        self.shutdown()
        return code

    def _healthy(self) -> bool:
        """Both loops alive and the sender not wedged: only then is the watchdog fed."""
        s = self.sender
        if s is None or not s.thread.is_alive():
            return False
        if self.link is not None and not self.link.alive():
            return False
        busy_for = time.monotonic() - s.heartbeat
        limit = max(60.0, (self.config.smtp.timeout * 3) if self.config.smtp else 60.0)
        return busy_for < limit

    def _do_reload(self) -> None:
        self.notifier.reloading()
        try:
            loaded = cfg.load_config(self.cli_path or self.config.path, self.env)
        except ConfigError as exc:
            for p in exc.problems:
                log.error("reload refused: %s", p)
            log.error("reload refused: keeping the running config")
            self.notifier.ready()
            return
        for w in loaded.warnings:
            log.warning("%s", w)
        old = self.config
        self.config = loaded.config
        assert self.sender is not None and self.link is not None
        reload = Reload(loaded)
        self.sender.submit(reload)
        if old.mqtt != loaded.config.mqtt:
            log.info("mqtt section changed: reconnecting")
            self.link.stop()
            self._start_link()
        else:
            subscribed = self.link.set_filters(subscriptions(loaded.config))
            # READY=1 once the new rules are in force: the sender has them and the broker
            # has acknowledged the new subscriptions (bounded: a lost SUBACK must not hang us)
            subscribed.wait(RELOAD_WAIT)
        reload.applied.wait(RELOAD_WAIT)
        self._publish_discovery()
        self.notifier.ready()

    def shutdown(self) -> None:
        self.notifier.stopping()
        self.notifier.status("stopping")
        log.info("stopping")
        if self.sender is not None:
            self.sender.stop(STOP_GRACE)
        if self.link is not None:
            self.link.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.outbox is not None and (self.sender is None or not self.sender.thread.is_alive()):
            self.outbox.close()
        log.info("stopped")


def _describe(item: object) -> str:
    if isinstance(item, Message):
        return f"the message on {item.topic} (left unacknowledged for redelivery)"
    if isinstance(item, Reload):
        return "the reload"
    return "queued texts"


def _version() -> str:
    from mqtt2sms import __version__

    return __version__
