"""The engine: the one owner of the outbox, the throttle state, the stats and the health of
each way out, and the only place that acts on the core's decisions.

Theory of operation. One thread (``_loop``) takes items from its inbox: MQTT ``Message``s,
``Reload``s and the ``Done`` results that the workers (one per way out, ``workers.py``) hand
back. For a message it routes (``router.route``), asks the delivery policy
(``delivery.decide``) for each text, gives a text that can leave now to its way out's worker
and commits the others to the outbox. When every text of the message is sent, finished or
committed, it writes the history row (no fsync), applies the throttle changes and only then
acknowledges the message to the broker. A result comes back as ``Done``; ``delivery.after``
says what it changes. Queued texts are picked from the outbox when due, in queue order.

What can go wrong without losing an alert:
- the outbox cannot be written (a full disk): the message stays in memory, unacknowledged,
  and the commit (or a send, once its way out works) is retried with a backoff; the error is
  reported in the log, ``stats.last_error`` and STATUS=;
- anything unexpected while handling a message: it is retried the same way;
- the wall clock steps: every duration is on the elapsed axis (``elapsed.py``), so nothing
  expires, cools down or backs off because of it; the step is logged and quiet-hours holds
  are recomputed from their wall-clock end.

Clocks, the random source, transports and the publish and ack functions come in as
arguments, so tests run the engine in-process (``threaded=False`` with ``InlineWorker``s, or
real worker threads) with fake clocks.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

from mqtt2sms import config as cfg
from mqtt2sms import delivery, elapsed, throttle
from mqtt2sms.clock import Clock, span
from mqtt2sms.delivery import Health, Track
from mqtt2sms.errors import StorageError, TransitionError
from mqtt2sms.events import EventSink, Stats
from mqtt2sms.model import Event, Message, Text
from mqtt2sms.outbox import Outbox, Row, ts
from mqtt2sms.polling import Poller, received_body
from mqtt2sms.render import Templates
from mqtt2sms.router import Routed, route
from mqtt2sms.system import read_boot_id, utcnow
from mqtt2sms.throttle_store import LiveThrottle
from mqtt2sms.transports import registry
from mqtt2sms.transports.base import OutgoingText, Transport
from mqtt2sms.workers import Done, InlineWorker, Job, Worker

log = logging.getLogger("mqtt2sms")

_T = TypeVar("_T")
Publish = Callable[[str, str, bool], None]
Ack = Callable[[Message], None]

SAVE_EVERY = 1.0  # seconds between saves of the throttle state and counters, at most
CLOCK_EVERY = 30.0  # seconds between saves of the elapsed clock, at least
STATS_EVERY = 60.0  # seconds between stats messages, at least
PRUNE_EVERY = 3600.0
STORAGE_LOG_EVERY = 60.0  # seconds between log lines for the same storage error, at least
HELD_RETRY_MAX = 30.0  # seconds: the longest wait between tries to commit a held message


@dataclass(frozen=True)
class Reload:
    loaded: cfg.Loaded
    applied: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Session:
    """The broker accepted our connection; ``present``: it kept our session (else packet
    ids start again, and no message of the old session can be redelivered)."""

    present: bool


_WAKE = object()
STATS_NOW = object()  # submit it to have the stats published at once (a broker lost them)


@dataclass
class _Item:
    """One text of a message that is not acknowledged yet."""

    text: Text
    track: Track
    fields: dict[str, object] = field(default_factory=dict)
    state: str = "new"  # new | sending | queued (to commit) | sent | failed | expired
    event: Event | None = None  # published once the item is committed (a deferred event)
    recorded: bool = False  # written as history already


@dataclass
class _Flight:
    """A message whose texts are being sent or committed; acknowledged when it ends."""

    msg: Message
    tag: dict[str, object]
    items: dict[str, _Item]
    state: throttle.ThrottleState
    outstanding: set[str] = field(default_factory=set)
    tries: int = 0
    retry_at: float = 0.0  # monotonic: the next try to commit it, while the disk refuses


@dataclass
class _Try:
    """A text handed to a worker: ``flight`` is None for a row of the outbox."""

    send: delivery.Send
    flight: _Flight | None
    row: Row | None


class Engine:
    def __init__(
        self,
        config: cfg.Config,
        outbox: Outbox,
        transports: Mapping[str, Transport],
        publish: Publish,
        ack: Ack,
        *,
        tz: dt.tzinfo,
        wall: Callable[[], dt.datetime] = utcnow,
        mono: Callable[[], float] = time.monotonic,
        rand: random.Random | None = None,
        boot_id: str | None = None,
        threaded: bool = True,
        idle_close: float = 15.0,
        new_id: Callable[[], str] | None = None,
        poll_every: float = 15.0,
        commit_first: bool = False,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.publish = publish
        self.ack = ack
        self.tz = tz
        self.wall = wall
        self.mono = mono
        self.rand = rand or random.Random()
        self.boot = read_boot_id() if boot_id is None else boot_id
        self.threaded = threaded
        self.idle_close = idle_close
        self.new_id = new_id or (lambda: os.urandom(5).hex())
        self.templates = Templates()
        self.inbox: queue.Queue[object] = queue.Queue()
        self.results: queue.Queue[Done] = queue.Queue()  # handled before anything else
        self.stopping = threading.Event()
        self.heartbeat = mono()

        self.clock = Clock(wall, mono, self.boot, outbox.get_kv("clock"), outbox.get_kv("ahead"))
        self._clock_saved = -1e18
        self.sink = EventSink(
            publish, config.mqtt.base_topic, tz, Stats.from_json(outbox.get_kv("stats"))
        )
        self.throttle = LiveThrottle(outbox, self.clock.now_e(), wall())
        # a run, or a broker session within one, is an epoch: a redelivered message is
        # looked for among the texts written since its broker session began
        self.epoch = int(outbox.get_kv("epoch") or "0") + 1
        self.session_epoch = int(outbox.get_kv("session_epoch") or "0")
        outbox.set_kv({"epoch": str(self.epoch)})
        self.flights: dict[tuple[int, str], _Flight] = {}  # (mid, digest) -> not acked yet
        # topic -> digests of the last retained and the last live message acted on
        self.topics = outbox.load_topics()
        self._dirty_topics: set[str] = set()
        self.commit_first = commit_first

        self.transports: dict[str, Transport] = dict(transports)
        self.health: dict[str, Health] = {n: delivery.HEALTHY for n in self.transports}
        self.workers: dict[str, Worker | InlineWorker] = {}
        self.tries: dict[str, _Try] = {}
        self.held: list[_Flight] = []  # messages the outbox refused to take
        self.retry_messages: list[tuple[float, int, Message]] = []
        self.pending_updates: list[tuple[str, str, dict[str, object]]] = []
        self._storage_logged: tuple[str, float] = ("", -1e18)
        self.queued = 0
        self._due_changed = True
        self._wake_at: float | None = None  # elapsed: when a waiting row may go
        self._saved_at = -1e18
        self._stats_at = -1e18
        self._pruned_at = mono()
        self._data_version = outbox.data_version()
        self.poller = Poller(poll_every)
        self.thread = threading.Thread(target=self._main, name="engine", daemon=True)

    # -- clocks ----------------------------------------------------------------------------

    def now_e(self) -> float:
        return self.clock.now_e()

    def _now(self) -> dt.datetime:
        return self.clock.now()

    def _check_clock(self) -> None:
        jump = self.clock.check()
        if jump is None:
            return
        log.warning(
            "the wall clock stepped %s by %s; ages and backoffs follow elapsed time%s",
            "forward" if jump > 0 else "back",
            span(abs(jump)),
            ", cooldowns and rate windows count the step" if jump > 0 else "",
        )
        self.throttle.dirty = True  # the clock moved: save it
        self._reschedule_quiet()
        self._due_changed = True

    def _reschedule_quiet(self) -> None:
        """Texts held by quiet hours wait for the end of the window the local time is in
        now, or go now when it is in none (a clock stepped back does not hold them longer)."""
        now_w = self.wall()
        q = self.config.limits.quiet_hours
        end = throttle.quiet_window_end(q, now_w, self.tz) if q else None
        until = ts(end) if end else ts(now_w)
        self._try_db(lambda: self.outbox.reschedule_held(self.now_e(), ts(now_w), until))

    # -- the throttle's live state ---------------------------------------------------------

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        e = self._now()
        n = self._try_db(lambda: self.outbox.requeue_on_start(e)) or 0
        self._reschedule_quiet()
        if n:
            log.info("%d queued text(s) will be tried now", n)
        self._start_workers()
        self._save(force=True)
        self._refresh()
        if self.threaded:
            self.thread.start()

    def _start_workers(self) -> None:
        for name, t in self.transports.items():
            w: Worker | InlineWorker
            if self.threaded:
                w = Worker(name, t, self._result, self.idle_close, self.mono)
            else:
                w = InlineWorker(name, t, self._result)
            w.start()
            self.workers[name] = w

    def submit(self, item: object) -> None:
        self.inbox.put(item)

    def _result(self, done: Done) -> None:
        """A worker's callback (its own thread): the result waits for the engine's."""
        self.results.put(done)
        self.inbox.put(_WAKE)

    def _take_results(self) -> None:
        while True:
            try:
                done = self.results.get_nowait()
            except queue.Empty:
                return
            try:
                self._guard(functools.partial(self._done, done))
            finally:
                if done.processed is not None:
                    done.processed.set()

    def reload(self, loaded: cfg.Loaded) -> threading.Event:
        r = Reload(loaded)
        self.inbox.put(r)
        return r.applied

    def alive(self) -> bool:
        return self.thread.is_alive() if self.threaded else True

    def stuck_for(self) -> float:
        """Seconds the engine, or a worker in one send, has been busy without coming back."""
        now = self.mono()
        busy = now - self.heartbeat
        for w in self.workers.values():
            if w.busy_since is not None:
                busy = max(busy, now - w.busy_since)
        return busy

    def stop(self, grace: float = 10.0) -> None:
        """Finish the sends in flight (at most ``grace`` seconds), save, close."""
        self.stopping.set()
        for w in self.workers.values():
            w.stop()
        deadline = self.mono() + grace
        for w in self.workers.values():
            w.join(max(0.0, deadline - self.mono()))
        self.inbox.put(_WAKE)
        if self.threaded and self.thread.is_alive():
            self.thread.join(max(0.5, deadline - self.mono()))
        if not self.threaded or not self.thread.is_alive():
            self._take_results()
            self._save(force=True)

    def _main(self) -> None:
        try:
            while not self.stopping.is_set():
                self.heartbeat = self.mono()
                try:
                    item = self.inbox.get(timeout=self._wait_time())
                except queue.Empty:
                    item = None
                self.heartbeat = self.mono()
                self.step(item)
        except Exception:
            log.exception("the engine stopped on an unexpected error")
            raise
        finally:
            if self.stopping.is_set():
                self._take_results()
                self._save(force=True)

    def drain(self, rounds: int = 1000) -> None:
        """Tests (``threaded=False``): handle everything in the inbox and everything due."""
        for _ in range(rounds):
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                self.step(None)
                if self.inbox.empty() and self.results.empty():
                    return
                continue
            self.step(item)

    def step(self, item: object) -> None:
        """One turn of the loop: the workers' results, the item (if any), then what is due."""
        self._check_clock()
        self._take_results()
        if isinstance(item, Message):
            if not self.stopping.is_set():
                self._guard(lambda: self._handle(item), item)
        elif item is STATS_NOW:
            self.publish_stats()
        elif isinstance(item, Session):
            self._session(item.present)
        elif isinstance(item, Reload):
            try:
                self._guard(lambda: self._apply_reload(item.loaded))
            finally:
                item.applied.set()
        if self.stopping.is_set():
            return
        self._guard(self._retry_held)
        self._guard(self._process_due)
        if self.inbox.empty():
            self._guard(self._housekeeping)

    def _guard(self, fn: Callable[[], object], msg: Message | None = None) -> None:
        """An unexpected error ends in a retry, never in a message left to a redelivery
        that MQTT makes only on reconnect."""
        try:
            fn()
        except Exception as exc:
            log.exception(
                "unexpected error%s", f" handling the message on {msg.topic}" if msg else ""
            )
            self.sink.set_error(f"internal: {type(exc).__name__}: {exc}")
            if msg is not None:
                self.retry_messages.append((self.mono() + 5.0, 1, msg))

    def _wait_time(self) -> float:
        wait = 1.0
        if self._wake_at is not None:
            wait = min(wait, self._wake_at - self.now_e())
        if self.held:
            wait = min(wait, min(f.retry_at for f in self.held) - self.mono())
        return max(0.0, wait)

    # -- one message -----------------------------------------------------------------------

    def _session(self, present: bool) -> None:
        if present:
            return
        # a new session: packet ids start again at 1, so what was written under the old
        # ones can never be taken for a redelivery
        self.epoch += 1
        self.session_epoch = self.epoch
        self._try_db(
            lambda: self.outbox.set_kv(
                {"epoch": str(self.epoch), "session_epoch": str(self.session_epoch)}
            )
        )

    def _handle(self, msg: Message) -> None:
        if msg.qos > 0 and (msg.mid, msg.digest) in self.flights:
            # the broker sent it again (a reconnect) while its texts are still out: the
            # flight acknowledges it when they end
            log.info("redelivery of message %d on %s: still being sent", msg.mid, msg.topic)
            return
        if msg.retained and msg.digest in self.topics.get(msg.topic, (None, None)):
            log.info("retained message on %s acted on before; acknowledged", msg.topic)
            self._note_topic(msg)  # it is what the broker keeps now
            self.ack(msg)
            return
        done: list[tuple[str, str]] = []
        if msg.dup and msg.qos > 0:
            done = (
                self._try_db(lambda: self.outbox.handled(msg.mid, msg.digest, self.session_epoch))
                or []
            )
        now_w = self.wall()
        e = self.now_e()
        alert_id = self.new_id()
        routed = route(
            self.config,
            self.templates,
            msg,
            self.throttle.view(),
            now_w,
            self.tz,
            alert_id,
            elapsed=self.clock.throttle_now(),
        )
        if done:
            routed = _without(routed, done)
            if not routed.texts:
                log.info(
                    "redelivery of message %d on %s already handled; acknowledged",
                    msg.mid,
                    msg.topic,
                )
                self.ack(msg)
                return
            log.info(
                "redelivery of message %d on %s: %d text(s) of it were sent or queued before,"
                " the others go now",
                msg.mid,
                msg.topic,
                len(done),
            )
        for problem in routed.problems:
            log.warning("%s", problem)
        for ev in routed.events:
            if ev.state != "deferred":
                self.sink.emit(ev)
        undo = self.throttle.take(routed.state)
        undo_topic = self._note_topic(msg)
        try:
            self._start_flight(msg, routed, e, now_w)
        except Exception:
            undo()  # nothing of it was handed to a way out: its retry starts from scratch
            undo_topic()
            self.flights.pop((msg.mid, msg.digest), None)
            raise

    def _note_topic(self, msg: Message) -> Callable[[], None]:
        """Remember the message's digest for its topic (a retained copy of it is not acted
        on again); an empty payload clears a retained message, and our memory of it."""
        old = self.topics.get(msg.topic)
        if not msg.payload.strip():
            if old is not None:
                del self.topics[msg.topic]
        elif msg.retained:
            self.topics[msg.topic] = (msg.digest, old[1] if old else None)
        else:
            self.topics[msg.topic] = (old[0] if old else None, msg.digest)
        self._dirty_topics.add(msg.topic)

        def undo() -> None:
            if old is None:
                self.topics.pop(msg.topic, None)
            else:
                self.topics[msg.topic] = old

        return undo

    def _start_flight(self, msg: Message, routed: Routed, e: float, now_w: dt.datetime) -> None:
        deferred = {ev.id: ev for ev in routed.events if ev.state == "deferred"}
        tag: dict[str, object] = {
            "mid": msg.mid if msg.qos > 0 else None,
            "digest": msg.digest,
            "epoch": self.epoch,
            "arrival": e,
        }
        flight = _Flight(msg, tag, {}, routed.state)
        if msg.qos > 0:
            self.flights[(msg.mid, msg.digest)] = flight
        created = elapsed.instant(e)
        for text in routed.texts:
            on_axis = replace(text, created_at=created, not_before=None)
            item = _Item(on_axis, Track(text.id, text.via, created))
            flight.items[text.id] = item
            if text.not_before is not None and text.not_before > now_w:
                hold = ts(text.not_before)
                item.state = "queued"
                item.fields = {
                    "reason": "quiet",
                    "hold_until": hold,
                    "next_at": e + hold - ts(now_w),
                }
                item.event = deferred.get(text.id)
                continue
            if self.commit_first:
                # the embedded broker keeps nothing: a kill mid-send would lose an alert the
                # publisher was told was taken, so it is committed first and sent from there
                item.state = "queued"
                item.fields = self._queued_fields(item.track, "new", e)
                continue
            self._dispatch_new(flight, item)
        self._maybe_finish(flight)

    def _options(self, rule: str) -> delivery.Options:
        o = self.config.defaults
        for r in self.config.rules:
            if r.name == rule:
                o = r.options
                break
        lim = self.config.limits
        return delivery.Options(o.failover_after, lim.max_age, lim.retry)

    def _dispatch_new(self, flight: _Flight, item: _Item) -> None:
        now = self._now()
        d = delivery.decide(item.track, self.health, self._options(item.text.rule), now)
        item.track = d.track
        if isinstance(d, delivery.Send) and self._may_send(d.transport):
            item.state = "sending"
            flight.outstanding.add(item.text.id)
            self._give(d, flight, None, item.text)
            return
        if isinstance(d, delivery.GiveUp):
            item.state = d.state
            item.fields = self._finished_fields(d.track, now, d.error)
            item.event = self._event(item.text, d.state, d.track, error=d.error)
            return
        # it waits for its way out: committed, and a deferred event says until when
        item.state = "queued"
        h = self.health.get(item.track.current or "")
        if isinstance(d, delivery.Wait):
            until = d.until
        elif h is not None and h.is_down(now) and h.down_until is not None:
            until = h.down_until
        else:
            until = now  # behind the one text that tries a way out coming back
        # due when its way out may be tried again (sooner if it comes back: `_released`)
        item.fields = self._queued_fields(item.track, "transport", elapsed.seconds(until))
        item.event = self._event(
            item.text,
            "deferred",
            item.track,
            error=item.track.last_error,
            extra={"next_try": self.clock.wall_of(until).isoformat(timespec="seconds")},
        )

    def _may_send(self, transport: str) -> bool:
        """A way out that failed gets one text at a time until it works again, so a queue
        of texts does not count as many failures."""
        if transport not in self.workers:
            return False
        if self.health[transport].failures == 0:
            return True
        return not any(t.send.transport == transport for t in self.tries.values())

    def _give(
        self, d: delivery.Send, flight: _Flight | None, row: Row | None, text: Text | None
    ) -> None:
        src: Text | Row | None = text if text is not None else row
        assert src is not None
        self.tries[src.id] = _Try(d, flight, row)
        address, why = self._address(src.recipient, d.transport)
        if address is None:
            # no try: the contact was removed, or has no address for this way out any more
            self._result(Done(Job(src.id), d.transport, delivery.Permanent(why)))
            return
        out = OutgoingText(src.id, address, src.body, src.subject, src.priority)
        self.workers[d.transport].put(Job(src.id, out))

    def _address(self, recipient: str, transport: str) -> tuple[str | None, str]:
        """Where a text goes is asked of the config in force when it leaves, so a reload
        that changes a number or removes a contact changes where waiting texts go."""
        contact = self.config.contacts.get(recipient)
        if contact is None:
            return None, f"contact {recipient} is no longer in the config"
        address = registry.address_for(contact, transport)
        if address is None:
            return None, f"contact {recipient} has no address for {transport} any more"
        return address, ""

    def _maybe_finish(self, flight: _Flight) -> None:
        if flight.outstanding:
            return
        commit = [
            (i.text, {**flight.tag, **i.fields})
            for i in flight.items.values()
            if i.state == "queued"
        ]
        done = [
            (i.text, {**flight.tag, **i.fields, "state": i.state})
            for i in flight.items.values()
            if i.state in ("sent", "failed", "expired") and not i.recorded
        ]
        if commit:
            try:
                self.outbox.enqueue(commit)
            except StorageError as exc:
                self._hold(flight, exc)
                return
            self._due_changed = True
        if flight in self.held:
            self.held.remove(flight)
            log.info("the outbox takes texts again: message on %s committed", flight.msg.topic)
            if not self.held:
                self.sink.clear_error("outbox:")
        if done:
            try:
                self.outbox.record(done)
            except StorageError as exc:
                # they are sent (or finished): only the record that recognises a redelivery
                # after a crash is missing
                log.error("outbox: cannot record %d finished text(s): %s", len(done), exc)
        self.throttle.keep(flight.state)
        for i in flight.items.values():
            # what was decided before any try: deferred (committed now), or failed with no
            # way out; the outcomes of tries were published as they came back
            if i.event is not None and i.state in ("queued", "failed", "expired"):
                self.sink.emit(i.event)
        self.ack(flight.msg)
        msg = flight.msg
        if self.flights.get((msg.mid, msg.digest)) is flight:
            del self.flights[(msg.mid, msg.digest)]
        if commit:
            self._refresh()

    def _hold(self, flight: _Flight, exc: BaseException) -> None:
        flight.tries += 1
        wait = min(HELD_RETRY_MAX, 0.5 * 2**flight.tries)
        flight.retry_at = self.mono() + wait
        if flight not in self.held:
            self.held.append(flight)
        error = f"outbox: cannot commit texts ({exc}); {len(self.held)} message(s) held in memory"
        if flight.tries == 1 or flight.tries % 10 == 0:
            log.error("%s, retrying in %.0fs", error, wait)
        self.sink.set_error(error)

    def _retry_held(self) -> None:
        now = self.mono()
        for flight in list(self.held):
            if flight.retry_at > now or flight.outstanding:
                continue
            # a text whose way out works now can leave without the disk
            for item in flight.items.values():
                if item.state == "queued" and item.fields.get("reason") != "quiet":
                    d = delivery.decide(
                        item.track, self.health, self._options(item.text.rule), self._now()
                    )
                    if isinstance(d, delivery.Send) and self._may_send(d.transport):
                        item.track, item.state = d.track, "sending"
                        item.event = None
                        flight.outstanding.add(item.text.id)
                        self._give(d, flight, None, item.text)
            self._maybe_finish(flight)
        for entry in list(self.retry_messages):
            at, n, msg = entry
            if at <= now:
                self.retry_messages.remove(entry)
                try:
                    self._handle(msg)
                except Exception:
                    log.exception("handling the message on %s failed again", msg.topic)
                    self.retry_messages.append((now + min(300.0, 5.0 * 2**n), n + 1, msg))
        for upd in list(self.pending_updates):
            try:
                self.outbox.update(upd[0], upd[1], **upd[2])
            except TransitionError:
                pass
            except StorageError:
                return
            self.pending_updates.remove(upd)
            if not self.pending_updates:
                self.sink.clear_error("outbox:")
                self._due_changed = True

    # -- results ---------------------------------------------------------------------------

    def _done(self, done: Done) -> None:
        if done.job.kind != "send":
            self._polled(done)
            return
        t = self.tries.pop(done.job.key, None)
        if t is None:
            return
        if done.result is None:  # not tried: handed back by a stopping or recalled worker
            if self.stopping.is_set():
                if t.flight is not None:
                    t.flight.outstanding.discard(done.job.key)
                return
            if t.flight is not None:
                t.flight.outstanding.discard(done.job.key)
                self._dispatch_new(t.flight, t.flight.items[done.job.key])
                self._maybe_finish(t.flight)
            elif t.row is not None:
                self._update(t.row.id, "queued", {"next_at": self.now_e()})
                self._due_changed = True
            return
        name = t.send.transport
        before = self.health.get(name, delivery.HEALTHY)
        if t.row is not None:
            rule = t.row.rule
        else:
            assert t.flight is not None
            rule = t.flight.items[done.job.key].text.rule
        opts = self._options(rule)
        now = self._now()
        a = delivery.after(t.send, done.result, before, opts, now, self.rand.random())
        self._health(name, before, a.health, done.result)
        extra: dict[str, object] = {}
        via = name
        remote: str | None = None
        if a.state == "sent":
            extra = {"send_ms": done.send_ms, **a.extra}
            if a.extra.get("dry_run"):
                via = "maildir"  # the dry run: written for a person to read, not sent
            if isinstance(done.result, delivery.Ok):
                remote = done.result.remote_id
        if t.flight is not None:
            self._done_new(t.flight, done.job.key, a, via, extra, remote)
        else:
            assert t.row is not None
            self._done_row(t.row, a, via, extra, remote)

    def _health(self, name: str, before: Health, after: Health, result: delivery.Result) -> None:
        self.health[name] = after
        if after.failures > before.failures and after.down_until is not None:
            log.error(
                "%s is failing (%s); next try at %s",
                name,
                after.last_error,
                self.clock.wall_of(after.down_until).astimezone(self.tz).strftime("%H:%M:%S"),
            )
            self.sink.set_error(f"{name}: {after.last_error}")
            self._due_changed = True
            worker = self.workers.get(name)
            if worker is not None:
                worker.recall()
        elif isinstance(result, delivery.Ok):
            if before.failures:
                log.info("%s works again", name)
                self._released()
            self.sink.clear_error(f"{name}:")

    def _done_new(
        self,
        flight: _Flight,
        key: str,
        a: delivery.After,
        via: str,
        extra: dict[str, object],
        remote: str | None,
    ) -> None:
        item = flight.items[key]
        item.track = a.track
        flight.outstanding.discard(key)
        now = self._now()
        if a.state == "queued":
            if a.reason == "failover":
                self._dispatch_new(flight, item)
            else:
                item.state = "queued"
                nxt = self._next_at(a)
                item.fields = self._queued_fields(a.track, a.reason, nxt)
                nt = (
                    self.clock.wall_of(a.next_try).isoformat(timespec="seconds")
                    if a.next_try
                    else None
                )
                item.event = self._event(
                    item.text, "deferred", a.track, error=a.error, extra={"next_try": nt}
                )
        else:
            item.state = a.state
            item.fields = self._finished_fields(a.track, now, a.error)
            if a.state == "sent":
                item.fields.update(transport=a.track.current, remote_id=remote)
            ev = self._event(
                item.text, a.state, a.track, error=a.error, via=via, extra=extra, latency=True
            )
            if flight.outstanding or any(i.state == "queued" for i in flight.items.values()):
                # written now, not when the message ends: a kill before then must find it
                # sent, or its redelivery would send it again
                self._record(flight, item)
            self.sink.emit(ev)
        self._maybe_finish(flight)

    def _record(self, flight: _Flight, item: _Item) -> None:
        try:
            self.outbox.record([(item.text, {**flight.tag, **item.fields, "state": item.state})])
        except StorageError as exc:
            self._storage_error(f"cannot record text {item.text.id}", exc)
            return
        item.recorded = True

    def _done_row(
        self, row: Row, a: delivery.After, via: str, extra: dict[str, object], remote: str | None
    ) -> None:
        now = self._now()
        if a.state == "queued":
            fields = self._queued_fields(a.track, a.reason, self._next_at(a))
            self._update(row.id, "queued", fields)
            if a.event == "deferred":
                nt = (
                    self.clock.wall_of(a.next_try).isoformat(timespec="seconds")
                    if a.next_try
                    else None
                )
                self.sink.emit(
                    self._row_event(row, "deferred", a.track, a.error, extra={"next_try": nt})
                )
        else:
            fields = self._finished_fields(a.track, now, a.error)
            if a.state == "sent":
                fields.update(transport=a.track.current, remote_id=remote)
            self._update(row.id, a.state, fields)
            self.sink.emit(
                self._row_event(row, a.state, a.track, a.error, via=via, extra=extra, latency=True)
            )
        self._due_changed = True

    def _next_at(self, a: delivery.After) -> float:
        """When a queued text is due: for a way out that backs off, its next try."""
        if a.reason == "transport" and a.next_try is not None:
            return elapsed.seconds(a.next_try)
        return elapsed.seconds(a.next_at) if a.next_at else self.now_e()

    def _released(self) -> None:
        """A way out works again (or the user asked): texts held for one are due now."""
        self._try_db(lambda: self.outbox.release(self.now_e()))
        self._due_changed = True

    def _update(self, text_id: str, state: str, fields: dict[str, object]) -> None:
        if any(u[0] == text_id for u in self.pending_updates):
            self.pending_updates.append((text_id, state, fields))  # after the ones before it
            return
        try:
            self.outbox.update(text_id, state, **fields)
        except TransitionError as exc:  # `queue drop` ran while it was being sent
            log.warning("text %s: %s (changed while it was being sent)", text_id, exc)
        except StorageError as exc:
            self._storage_error(f"cannot record text {text_id} as {state}; will retry", exc)
            self.pending_updates.append((text_id, state, fields))

    def _storage_error(self, what: str, exc: StorageError) -> None:
        """Report a storage error: always in stats and STATUS, in the log when it is new or
        once every STORAGE_LOG_EVERY seconds (a full disk must not fill the journal too)."""
        message = f"outbox: {exc}"
        self.sink.set_error(message)
        m = self.mono()
        if message != self._storage_logged[0] or m - self._storage_logged[1] >= STORAGE_LOG_EVERY:
            self._storage_logged = (message, m)
            log.error("outbox: %s: %s", what, exc)

    # -- queued texts ----------------------------------------------------------------------

    def _process_due(self) -> None:
        e = self.now_e()
        if not self._due_changed and (self._wake_at is None or self._wake_at > e):
            return
        self._due_changed = False
        self._wake_at = None
        now = elapsed.instant(e)
        max_age = self.config.limits.max_age
        if max_age > 0:
            for row in (
                self._try_db(lambda: self.outbox.expire(elapsed.instant(e - max_age), now)) or []
            ):
                tr = self._track(row)
                err = delivery.expiry_error(tr, self._options(row.rule))
                self.sink.emit(self._row_event(row, "expired", tr, err))
        rows = self._try_db(lambda: self.outbox.due(now, 500)) or []
        waiting = {u[0] for u in self.pending_updates}  # its last word is not on disk yet
        for row in rows:
            if row.id in self.tries or row.id in waiting:
                continue
            tr = self._track(row)
            fields: dict[str, object] = {}
            if row.reason == "quiet":
                # quiet hours held it without ageing it: its age counts from now
                tr = replace(tr, created_at=now)
                fields["created_at"] = e
            d = delivery.decide(tr, self.health, self._options(row.rule), now)
            if isinstance(d, delivery.Send):
                if not self._may_send(d.transport):
                    self._wake(e + 1.0)
                    continue
                fields.update(
                    via_index=d.track.via_index, first_fail_at=_opt_s(d.track.first_fail_at)
                )
                try:
                    self.outbox.update(row.id, "sending", **fields)
                except TransitionError:
                    continue
                except StorageError as exc:
                    # the disk is full: it leaves all the same (a kill before the disk takes
                    # the marks can repeat it once); its marks are written when there is room
                    self._storage_error(f"cannot mark text {row.id} as being sent", exc)
                    self.pending_updates.append((row.id, "sending", fields))
                self._give(
                    d, None, replace(row, created_at=elapsed.seconds(d.track.created_at)), None
                )
            elif isinstance(d, delivery.Wait):
                self._wake(elapsed.seconds(d.until))
                self._update(
                    row.id,
                    "queued",
                    {
                        **fields,
                        "via_index": d.track.via_index,
                        "first_fail_at": _opt_s(d.track.first_fail_at),
                        "next_at": elapsed.seconds(d.until),
                        "reason": "transport",
                    },
                )
            else:
                self._update(row.id, d.state, self._finished_fields(d.track, now, d.error))
                self.sink.emit(self._row_event(row, d.state, d.track, d.error))
        if len(rows) >= 500:
            self._due_changed = True
        later = self._try_db(lambda: self.outbox.next_due(after=e))
        if isinstance(later, float):
            self._wake(later)
        self._refresh()

    def _wake(self, at: float) -> None:
        if self._wake_at is None or at < self._wake_at:
            self._wake_at = at

    def _refresh(self) -> None:
        q = self._try_db(self.outbox.queued_count)
        queued = (q or 0) + sum(
            1 for f in self.held for i in f.items.values() if i.state == "queued"
        )
        if queued != self.queued:
            self.queued = queued
            self.sink.stats_changed = True

    def _track(self, row: Row) -> Track:
        return Track(
            row.id,
            row.via,
            elapsed.instant(row.created_at),
            row.via_index,
            row.attempts,
            elapsed.instant(row.first_fail_at) if row.first_fail_at is not None else None,
            row.last_error,
        )

    def _queued_fields(self, tr: Track, reason: str, next_at: float) -> dict[str, object]:
        return {
            "via_index": tr.via_index,
            "attempts": tr.attempts,
            "first_fail_at": _opt_s(tr.first_fail_at),
            "next_at": next_at,
            "reason": reason,
            "last_error": tr.last_error,
        }

    def _finished_fields(self, tr: Track, now: dt.datetime, error: str | None) -> dict[str, object]:
        return {
            "via_index": min(tr.via_index, max(0, len(tr.via) - 1)),
            "attempts": tr.attempts,
            "finished_at": elapsed.seconds(now),
            "last_error": error,
        }

    # -- events ----------------------------------------------------------------------------

    def _event(
        self,
        text: Text,
        state: str,
        tr: Track,
        *,
        error: str | None = None,
        via: str | None = None,
        extra: Mapping[str, object] | None = None,
        latency: bool = False,
    ) -> Event:
        who = (text.id, text.rule, text.recipient, ts(text.created_at))
        return self._make_event(who, state, tr, error, via, extra, latency)

    def _row_event(
        self,
        row: Row,
        state: str,
        tr: Track,
        error: str | None,
        *,
        via: str | None = None,
        extra: Mapping[str, object] | None = None,
        latency: bool = False,
    ) -> Event:
        who = (row.id, row.rule, row.recipient, row.created_at)
        return self._make_event(who, state, tr, error, via, extra, latency)

    def _make_event(
        self,
        who: tuple[str, str, str, float],
        state: str,
        tr: Track,
        error: str | None,
        via: str | None,
        extra: Mapping[str, object] | None,
        latency: bool,
    ) -> Event:
        text_id, rule, recipient, created_e = who
        return Event(
            id=text_id,
            state=state,
            at=self.wall(),
            rule=rule,
            to=recipient,
            via=via or tr.current or (tr.via[-1] if tr.via else None),
            attempts=tr.attempts,
            error=error,
            latency_ms=(self.now_e() - created_e) * 1000.0 if latency else None,
            extra=dict(extra or {}),
        )

    # -- housekeeping ----------------------------------------------------------------------

    def _housekeeping(self) -> None:
        m = self.mono()
        dv = self._try_db(self.outbox.data_version)
        if dv is not None and dv != self._data_version:
            # `queue retry` or `queue drop` ran: a user asking for a try now also gets one
            # through a way out that is backing off
            self._data_version = dv
            self.health = {n: replace(h, down_until=None) for n, h in self.health.items()}
            self._released()
        self._poll()
        if m - self._pruned_at > PRUNE_EVERY:
            self._pruned_at = m
            self._prune()
        if (
            self.sink.stats_changed and m - self._stats_at >= 1.0
        ) or m - self._stats_at >= STATS_EVERY:
            self.publish_stats()
        self._save()

    # -- reports and received texts --------------------------------------------------------

    def _poll(self) -> None:
        """Ask the ways out that can tell for delivery reports and received texts."""
        m, now = self.mono(), self._now()
        since = self.now_e() - max(self.config.limits.max_age, 3600.0)
        for name, t in self.transports.items():
            worker = self.workers.get(name)
            if worker is None or self.health.get(name, delivery.HEALTHY).is_down(now):
                continue
            awaiting = functools.partial(self._awaiting, name, since)
            mark = functools.partial(self._try_db, functools.partial(self._mark, name))
            for job in self.poller.due(name, t, m, awaiting, mark):
                worker.put(job)

    def _awaiting(self, name: str, since: float) -> list[str]:
        got = self._try_db(functools.partial(self.outbox.awaiting_reports, name, since))
        return got or []

    def _mark(self, name: str) -> str | None:
        return self.outbox.get_kv(f"mark:{name}")

    def _polled(self, done: Done) -> None:
        name = done.transport
        self.poller.answered(name, done.job.kind)
        if done.error:
            log.warning("%s: asking for %s failed: %s", name, done.job.kind, done.error)
            return
        for rep in done.reports:
            if rep.state == "pending":
                continue
            row = self._try_db(functools.partial(self.outbox.by_remote, name, rep.remote_id))
            if row is None:
                continue
            tr = self._track(row)
            ar = delivery.after_report(
                tr,
                delivery.Report(rep.state, rep.detail),
                self._options(row.rule),
                self._now(),
                True,
            )
            final = "delivered" if ar.state == "delivered" else "undelivered"
            self._update(
                row.id, final, {"last_error": ar.track.last_error if final != "delivered" else None}
            )
            if ar.state == "queued":
                self._update(
                    row.id, "queued", self._queued_fields(ar.track, "failover", self.now_e())
                )
                self._due_changed = True
            self.sink.emit(self._row_event(row, ar.event, tr, rep.detail or None, via=name))
        if done.job.kind == "receive" and done.mark is not None:
            for rx in done.received:
                body = received_body(self.config, name, rx, self.wall())
                if body is not None:
                    self.sink.publish_json("received", body)
            self._try_db(lambda: self.outbox.set_kv({f"mark:{name}": str(done.mark)}))

    def publish_stats(self) -> None:
        self._stats_at = self.mono()
        self.sink.publish_stats(self.queued, self.wall())

    def _prune(self) -> None:
        now = self._now()
        keep = self.config.limits.keep
        pruned = self._try_db(lambda: self.outbox.prune(now - dt.timedelta(seconds=keep))) or 0
        if pruned:
            log.info("pruned %d finished text(s) older than %s", pruned, "limits.keep")
        rate = self.config.limits.per_recipient
        rules = [(r.name, r.options.cooldown) for r in self.config.rules]
        self._try_db(
            lambda: self.throttle.prune(
                self.clock.throttle_now(), rules, rate.per if rate else None
            )
        )

    def _save(self, force: bool = False) -> None:
        """Save what changed of the throttle state, the counters and the elapsed clock: at
        most once a second, and the clock at least every CLOCK_EVERY seconds."""
        m = self.mono()
        dirty = self.throttle.dirty or self.sink.dirty or bool(self._dirty_topics)
        if (
            not force
            and (m - self._saved_at < SAVE_EVERY or not dirty)
            and m - self._clock_saved < CLOCK_EVERY
        ):
            return
        kv = {**self.clock.saved(), "stats": self.sink.stats.to_json()}
        try:
            self.throttle.save(kv)
        except StorageError as exc:
            self._storage_error("cannot save the throttle state and counters", exc)
            self._saved_at = m  # try again in a second, not at once
            return
        if self._dirty_topics:
            topics = {t: self.topics.get(t) for t in self._dirty_topics}
            try:
                self.outbox.save_topics(topics)
            except StorageError as exc:
                self._storage_error("cannot save the topics' last messages", exc)
            else:
                self._dirty_topics.clear()
        self.sink.dirty = False
        self._saved_at = m
        self._clock_saved = m

    def _try_db(self, fn: Callable[[], _T]) -> _T | None:
        try:
            return fn()
        except StorageError as exc:
            self._storage_error("cannot read or write", exc)
            return None

    # -- reload ----------------------------------------------------------------------------

    def _apply_reload(self, loaded: cfg.Loaded) -> None:
        old = self.config
        new = loaded.config
        self.config = new
        self.templates = Templates()
        self.sink.base_topic = new.mqtt.base_topic
        if old.smtp != new.smtp:
            for w in self.workers.values():
                w.stop()
            self.transports = registry.build(new)
            self.workers = {}
            self._start_workers()
        self.health = {n: delivery.HEALTHY for n in self.transports}
        if old.limits.quiet_hours != new.limits.quiet_hours:
            self._reschedule_quiet()
        # rows being sent right now stay `sending`: their result is on its way
        n = self._try_db(lambda: self.outbox.requeue_on_start(self._now(), sending=False)) or 0
        self._prune()
        self._due_changed = True
        self._refresh()
        log.info(
            "config reloaded: %d rule(s)%s",
            len(new.rules),
            f", {n} queued text(s) tried now" if n else "",
        )


def _without(routed: Routed, done: list[tuple[str, str]]) -> Routed:
    """The routing of a redelivered message less the texts written for it before: the first
    texts of each (rule, recipient), in order (a split text's parts leave in order)."""
    left = collections.Counter(done)
    texts = []
    for t in routed.texts:
        if left[(t.rule, t.recipient)] > 0:
            left[(t.rule, t.recipient)] -= 1
        else:
            texts.append(t)
    ids = {t.id for t in texts}
    events = tuple(ev for ev in routed.events if ev.state != "deferred" or ev.id in ids)
    return replace(routed, texts=tuple(texts), events=events)


def _opt_s(t: dt.datetime | None) -> float | None:
    return None if t is None else elapsed.seconds(t)


__all__ = ["STATS_NOW", "Engine", "Reload", "Session"]
