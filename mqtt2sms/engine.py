"""The engine: the loop, intake, the hand-off to workers and the ack; the one owner of the
outbox, the live throttle state, the stats and the health of each way out.

Theory of operation. One thread (``_main``) takes items from its inbox: MQTT ``Message``s,
``Reload``s, ``Session``s (the broker accepted a connection) and the ``Done`` results the
workers (one per way out, ``workers.py``) hand back, which go first. A message is routed
(``router.route``) into texts, each a ``texts.Record`` of a ``flights.Flight``; the delivery
policy (``delivery.decide``) says what to do with each, ``texts.plan`` turns that into a
``Change``, and ``_apply`` makes it: the only place a text moves, its event is published and
its try is handed to a worker, whether the text is in memory or a row of the outbox. A
result comes back the same way (``delivery.after``, ``texts.plan_after``, ``_apply``). When
none of a message's texts is being tried, the queued ones are committed, the throttle
changes kept, and only then is the message acknowledged. Queued rows are picked from the
outbox when due, in queue order, and go through the same ``_dispatch``.

The rooms around it: ``clock.py`` (the elapsed and throttle axes, clock steps),
``throttle_store.py`` (cooldowns and rates between messages), ``seen.py`` (redeliveries and
retained copies), ``flights.py`` (a message until its ack), ``disk.py`` (what a full disk
refused), ``polling.py`` (delivery reports and received texts), ``texts.py`` (a text's one
record and table), ``escalation.py`` (incidents: their triggers, steps, acknowledgements).

Clocks, the random source, transports and the publish and ack functions come in as
arguments, so tests run the engine in-process (``threaded=False`` with ``InlineWorker``s, or
real worker threads) with fake clocks.
"""

from __future__ import annotations

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

from mqtt2sms import config as cfg
from mqtt2sms import delivery, elapsed, texts, throttle
from mqtt2sms.clock import Clock
from mqtt2sms.delivery import Health
from mqtt2sms.disk import Disk
from mqtt2sms.errors import StorageError
from mqtt2sms.escalation import Desk, for_way
from mqtt2sms.events import EventSink, Stats
from mqtt2sms.flights import Flight, Try
from mqtt2sms.model import Message
from mqtt2sms.outbox import Outbox, ts
from mqtt2sms.polling import Poller
from mqtt2sms.render import Templates
from mqtt2sms.router import Routed, route
from mqtt2sms.seen import Seen, without
from mqtt2sms.system import read_boot_id, utcnow
from mqtt2sms.texts import Change, Now, Record, changed, plan, plan_after
from mqtt2sms.throttle_store import LiveThrottle
from mqtt2sms.transports import registry
from mqtt2sms.transports.base import OutgoingText, Transport
from mqtt2sms.workers import Done, Job, Pool

log = logging.getLogger("mqtt2sms")

Publish = Callable[[str, str, bool], None]
Ack = Callable[[Message], None]

SAVE_EVERY = 1.0  # seconds between saves of the throttle state and counters, at most
CLOCK_EVERY = 30.0  # seconds between saves of the elapsed clock, at least
STATS_EVERY = 60.0  # seconds between stats messages, at least
PRUNE_EVERY = 3600.0
CHECKPOINT_EVERY = 5.0  # seconds between idle copies of the WAL into the database, at least


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
        self.disk = Disk(outbox, self.sink, mono)
        self.throttle = LiveThrottle(outbox, self.clock.now_e(), wall())
        # a run, or a broker session within one, is an epoch: a redelivered message is
        # looked for among the texts written since its broker session began
        self.seen = Seen(outbox)
        self.flights: dict[tuple[int, str], Flight] = {}  # (mid, digest) -> not acked yet
        # the embedded broker keeps nothing: its messages' texts are committed before a try
        self.commit_first = commit_first

        self.transports: dict[str, Transport] = dict(transports)
        self.health: dict[str, Health] = {n: delivery.HEALTHY for n in self.transports}
        self.workers = Pool(self._result, threaded, idle_close, mono)
        self.tries: dict[str, Try] = {}
        self.held: list[Flight] = []  # messages the outbox refused to take
        self.retry_messages: list[tuple[float, int, Message]] = []
        self.queued = 0
        self._due_changed = True
        self._wake_at: float | None = None  # elapsed: when a waiting row may go
        self._saved_at = -1e18
        self._stats_at = -1e18
        self._pruned_at = mono()
        self._checkpointed = mono()
        self.desk = Desk(config, outbox, self.sink, self.throttle, tz, self.new_id, self.workers)
        self.poller = Poller(outbox, self.disk, self.sink, poll_every, self.desk.on_received)
        self.thread = threading.Thread(target=self._main, name="engine", daemon=True)

    # -- clocks ----------------------------------------------------------------------------

    def now_e(self) -> float:
        return self.clock.now_e()

    def _now(self) -> dt.datetime:
        return self.clock.now()

    def _check_clock(self) -> None:
        if self.clock.check() is not None:  # a step: logged there
            self.throttle.dirty = True  # the clock moved: save it
            self._reschedule_quiet()
            self._due_changed = True

    def _reschedule_quiet(self) -> None:
        """Texts held by quiet hours wait for the end of the window the local time is in
        now, or go now when it is in none (a clock stepped back does not hold them longer)."""
        now_w = self.wall()
        until = ts(throttle.quiet_release(self.config.limits.quiet_hours, now_w, self.tz))
        self.disk.attempt(lambda: self.outbox.reschedule_held(self.now_e(), ts(now_w), until))

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        e = self._now()
        n = self.disk.attempt(lambda: self.outbox.requeue_on_start(e)) or 0
        self._reschedule_quiet()
        if n:
            log.info("%d queued text(s) will be tried now", n)
        for name, t in self.transports.items():
            self.workers.start(name, t)
        self._save(force=True)
        self._refresh()
        self.desk.publish_list()
        if self.threaded:
            self.thread.start()

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
        """Seconds the engine's loop has been busy without coming back. A worker in a long
        send is not counted: every way out bounds its own sends (``smtp.timeout`` for a whole
        send, the HTTP timeouts, the modem's per-command ones), and a slow one holds back no
        other, so a hung modem must not get the whole daemon restarted by the watchdog."""
        return self.mono() - self.heartbeat

    def stop(self, grace: float = 10.0) -> None:
        """Finish the sends in flight (at most ``grace`` seconds), save, close."""
        self.stopping.set()
        self.desk.hang_up_all()
        deadline = self.mono() + grace
        self.workers.stop_all(grace)
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
            self.desk.publish_list()
        elif isinstance(item, Session):
            self.disk.attempt(lambda: self.seen.session(item.present))
        elif isinstance(item, Reload):
            try:
                self._guard(lambda: self._apply_reload(item.loaded))
            finally:
                item.applied.set()
        if self.stopping.is_set():
            return
        self._guard(self._retry_held)
        self._guard(self._process_due)
        self._guard(self.desk.ring)  # a step's calls, after its texts went to their workers
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
            self.sink.set_error(f"internal: {type(exc).__name__}: {exc}", "internal")
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

    def _handle(self, msg: Message) -> None:
        if self.desk.control(msg, self._now_both()):  # an acknowledgement, a drill
            self.ack(msg)
            return
        if msg.qos > 0 and (msg.mid, msg.digest) in self.flights:
            # the broker sent it again (a reconnect) while its texts are still out: the
            # flight acknowledges it when they end
            log.info("redelivery of message %d on %s: still being sent", msg.mid, msg.topic)
            return
        if self.seen.retained_again(msg):
            log.info("retained message on %s acted on before; acknowledged", msg.topic)
            self.ack(msg)
            return
        done = self.disk.attempt(lambda: self.seen.handled_before(msg)) or []
        now_w, e = self.wall(), self.now_e()
        view, t_now = self.throttle.view(), self.clock.throttle_now()
        routed = route(
            self.config, self.templates, msg, view, now_w, self.tz, self.new_id(), elapsed=t_now
        )
        if done:
            routed = without(routed, done)
            if not routed.texts:
                log.info("redelivery of message %d on %s already handled", msg.mid, msg.topic)
                self.ack(msg)
                return
            log.info(
                "redelivery of message %d on %s: %d text(s) of it went before, the rest go now",
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
        forget = self.seen.note(msg)
        try:
            if routed.triggers:  # written before the message is acknowledged
                self.desk.on_triggers(routed.triggers, Now(e, now_w))
            self._start_flight(msg, routed, e, now_w)
        except Exception:
            undo()  # nothing of it was handed to a way out: its retry starts from scratch
            forget()
            self.flights.pop((msg.mid, msg.digest), None)
            raise

    def _start_flight(self, msg: Message, routed: Routed, e: float, now_w: dt.datetime) -> None:
        deferred = {ev.id: ev for ev in routed.events if ev.state == "deferred"}
        flight = Flight(msg, routed.state)
        if msg.qos > 0:
            self.flights[(msg.mid, msg.digest)] = flight
        tag: dict[str, object] = {
            "mid": msg.mid if msg.qos > 0 else None,
            "digest": msg.digest,
            "epoch": self.seen.epoch,
            "arrival": e,
        }
        for text in routed.texts:
            rec = Record.of(replace(text, created_at=elapsed.instant(e), not_before=None), **tag)
            if text.not_before is not None and text.not_before > now_w:
                # quiet hours: held without ageing, until the window's end on the wall clock
                hold = ts(text.not_before)
                rec = rec.moved(
                    "queued", reason="quiet", hold_until=hold, next_at=e + hold - ts(now_w)
                )
                flight.records[rec.id] = rec
                if text.id in deferred:
                    flight.held_events[rec.id] = deferred[text.id]
            else:
                flight.records[rec.id] = rec
                self._dispatch(rec, flight)
        self._maybe_finish(flight)

    def _now_both(self) -> Now:
        return Now(self.now_e(), self.wall())

    def _dispatch(self, rec: Record, flight: Flight | None, before: Record | None = None) -> None:
        """Ask the policy what to do with ``rec`` now (a new text, or a row that is due:
        ``before`` is the row as stored) and do it."""
        now = self._now_both()
        track, opts = rec.track(), delivery.options_for(self.config, rec.rule)
        d = delivery.decide(track, self.health, opts, now.instant)
        if flight is not None and isinstance(d, delivery.Send) and self._commits_first(d):
            self._apply(rec, Change(rec.moved("queued", next_at=now.e)), flight)
            return  # it leaves from the outbox, once committed
        may = isinstance(d, delivery.Send) and self._may_send(d.transport)
        health = self.health.get(track.current or "")
        self._apply(before or rec, plan(rec, d, may, health, now), flight)

    def _apply(self, before: Record, change: Change, flight: Flight | None) -> None:
        """Make a change: the one place a text's record moves, its event is published and
        its try starts, for a text in memory and for a row alike."""
        rec = change.record
        if change.wake is not None:
            self._wake(change.wake)
        if flight is not None:
            flight.records[rec.id] = rec
            if change.event is not None and rec.state == "queued" and rec.reason != "failover":
                flight.held_events[rec.id] = change.event  # said once it is committed
            elif change.event is not None:
                flight.held_events.pop(rec.id, None)
                self.sink.emit(change.event)
            if flight.record_now(rec):
                self._record(flight, rec)
        elif rec is not before:
            if not self.disk.update(rec.id, rec.state, changed(before, rec)):
                return  # `queue drop` took it meanwhile
            self._due_changed = True
            if change.event is not None:
                self.sink.emit(change.event)
        if change.send is not None:
            self._give(change.send, rec, flight)

    def _commits_first(self, d: delivery.Send) -> bool:
        """Is a text committed before it is tried? With the embedded broker, which keeps
        nothing (a kill mid-send would lose an alert its publisher was told was taken), and
        for a way out that takes our text id and answers a resend of it as done (the phone's
        409): one fsync there buys no duplicate at all after a kill."""
        return self.commit_first or bool(getattr(self.transports[d.transport], "commit_first", 0))

    def _may_send(self, transport: str) -> bool:
        """A way out that failed gets one text at a time until it works again, so a queue
        of texts does not count as many failures."""
        if transport not in self.workers:
            return False
        if self.health[transport].failures == 0:
            return True
        return not any(t.send.transport == transport for t in self.tries.values())

    def _give(self, d: delivery.Send, rec: Record, flight: Flight | None) -> None:
        self.tries[rec.id] = Try(d, rec, flight)
        if flight is not None:
            flight.outstanding.add(rec.id)
        # the config in force now: a reload that changed a number or removed a contact
        # changes where a waiting text goes
        address, why = registry.resolve(self.config, rec.recipient, d.transport)
        if address is None:
            # no try: the contact was removed, or has no address for this way out any more
            self._result(Done(Job(rec.id), d.transport, delivery.Permanent(why)))
            return
        max_age = self.config.limits.max_age
        ttl = max_age - (self.now_e() - rec.created_at) if max_age > 0 else None
        body = for_way(self.config, rec, d.transport)
        out = OutgoingText(rec.id, address, body, rec.subject, rec.priority, ttl)
        self.workers[d.transport].put(Job(rec.id, out))

    def _maybe_finish(self, flight: Flight) -> None:
        if not flight.ended():
            return
        commit, done = flight.to_commit(), flight.to_record()
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
                self.sink.clear_error("outbox")
        if done:
            try:
                self.outbox.record(done)
            except StorageError as exc:
                # they are sent (or finished): only the record that recognises a redelivery
                # after a crash is missing
                self.disk.error(f"cannot record {len(done)} finished text(s)", exc)
        self.throttle.keep(flight.state)
        for ev in flight.held_events.values():
            self.sink.emit(ev)  # deferred (committed now)
        self.ack(flight.msg)
        msg = flight.msg
        if self.flights.get((msg.mid, msg.digest)) is flight:
            del self.flights[(msg.mid, msg.digest)]
        if commit:
            self._refresh()

    def _record(self, flight: Flight, rec: Record) -> None:
        try:
            self.outbox.record([rec])
        except StorageError as exc:
            self.disk.error(f"cannot record text {rec.id}", exc)
            return
        flight.recorded.add(rec.id)

    def _hold(self, flight: Flight, exc: BaseException) -> None:
        wait = flight.hold(self.mono())
        if flight not in self.held:
            self.held.append(flight)
        error = f"outbox: cannot commit texts ({exc}); {len(self.held)} message(s) held in memory"
        if flight.tries == 1 or flight.tries % 10 == 0:
            log.error("%s, retrying in %.0fs", error, wait)
        self.sink.set_error(error, "outbox")

    def _retry_held(self) -> None:
        now = self.mono()
        for flight in list(self.held):
            if flight.retry_at > now or not flight.ended():
                continue
            # a text whose way out works now can leave without the disk
            for rec in list(flight.records.values()):
                if rec.state == "queued" and rec.reason != "quiet":
                    opts = delivery.options_for(self.config, rec.rule)
                    d = delivery.decide(rec.track(), self.health, opts, self._now())
                    if isinstance(d, delivery.Send) and self._may_send(d.transport):
                        flight.held_events.pop(rec.id, None)
                        self._apply(rec, plan(rec, d, True, None, self._now_both()), flight)
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
        if self.disk.flush():
            self._due_changed = True

    # -- results ---------------------------------------------------------------------------

    def _done(self, done: Done) -> None:
        """A worker's result: the policy says what it changes, and the change is made."""
        if done.job.kind != "send":
            self._polled(done)
            return
        t = self.tries.pop(done.job.key, None)
        if t is None:
            return
        flight = t.flight
        rec = flight.records[t.record.id] if flight is not None else t.record
        if flight is not None:
            flight.outstanding.discard(rec.id)
        if done.result is None:  # not tried: handed back by a stopping or recalled worker
            if not self.stopping.is_set():
                if flight is not None:
                    # never tried, so it is where it was before the hand-off: new
                    rec = flight.records[rec.id] = replace(rec, state="new")
                    self._dispatch(rec, flight)
                else:
                    self.disk.update(rec.id, "queued", {"next_at": self.now_e()})
                    self._due_changed = True
            if flight is not None:
                self._maybe_finish(flight)
            return
        name = t.send.transport
        before = self.health.get(name, delivery.HEALTHY)
        now = self._now_both()
        opts = delivery.options_for(self.config, rec.rule)
        a = delivery.after(t.send, done.result, before, opts, now.instant, self.rand.random())
        self._health(name, before, a.health, done.result)
        extra: dict[str, object] = {}
        via, remote = name, None
        if a.state == "sent":
            extra = {"send_ms": done.send_ms, **a.extra}
            if a.extra.get("dry_run"):
                via = "maildir"  # the dry run: written for a person to read, not sent
            if isinstance(done.result, delivery.Ok):
                remote = done.result.remote_id
        change = plan_after(rec, a, via, extra, remote, now)
        self._apply(rec, change, flight)
        if flight is not None:
            if change.record.state == "queued" and change.record.reason == "failover":
                self._dispatch(change.record, flight)  # its next way out, at once
            self._maybe_finish(flight)

    def _health(self, name: str, before: Health, after: Health, result: delivery.Result) -> None:
        self.health[name] = after
        if after.failures > before.failures and after.down_until is not None:
            log.error(
                "%s is failing (%s); next try at %s",
                name,
                after.last_error,
                self.clock.wall_of(after.down_until).astimezone(self.tz).strftime("%H:%M:%S"),
            )
            self.sink.set_error(f"{name}: {after.last_error}", name)
            self._due_changed = True
            worker = self.workers.get(name)
            if worker is not None:
                worker.recall()
        elif isinstance(result, delivery.Ok):
            if before.failures:
                log.info("%s works again", name)
                self._released()
            self.sink.clear_error(name)

    def _released(self) -> None:
        """A way out works again (or the user asked): texts held for one are due now."""
        self.disk.attempt(lambda: self.outbox.release(self.now_e()))
        self._due_changed = True

    # -- queued texts ----------------------------------------------------------------------

    def _process_due(self) -> None:
        e = self.now_e()
        if self.desk.tick(self._now_both()):
            self._due_changed = True
        desk_due = self.desk.next_due()
        if desk_due is not None:
            self._wake(desk_due)
        if not self._due_changed and (self._wake_at is None or self._wake_at > e):
            return
        self._due_changed = False
        self._wake_at = None
        now = self._now_both()
        max_age = self.config.limits.max_age
        if max_age > 0:
            cut = elapsed.instant(e - max_age)
            for row in self.disk.attempt(lambda: self.outbox.expire(cut, now.instant)) or []:
                opts = delivery.options_for(self.config, row.rule)
                err = delivery.expiry_error(row.track(), opts)
                self.sink.emit(texts.event(row, "expired", now, error=err))
        rows = self.disk.attempt(lambda: self.outbox.due(now.instant, 500)) or []
        waiting = self.disk.waiting()  # its last move is not on disk yet
        for row in rows:
            if row.id in self.tries or row.id in waiting:
                continue
            # quiet hours held it without ageing it: its age counts from now
            rec = replace(row, created_at=e) if row.reason == "quiet" else row
            self._dispatch(rec, None, before=row)
        if len(rows) >= 500:
            self._due_changed = True
        later = self.disk.attempt(lambda: self.outbox.next_due(after=e))
        if isinstance(later, float):
            self._wake(later)
        self._refresh()

    def _wake(self, at: float) -> None:
        if self._wake_at is None or at < self._wake_at:
            self._wake_at = at

    def _refresh(self) -> None:
        q = self.disk.attempt(self.outbox.queued_count)
        queued = (q or 0) + sum(
            1 for f in self.held for r in f.records.values() if r.state == "queued"
        )
        if queued != self.queued:
            self.queued = queued
            self.sink.stats_changed = True

    # -- housekeeping ----------------------------------------------------------------------

    def _housekeeping(self) -> None:
        m = self.mono()
        if self.disk.changed_outside():
            # `queue retry` or `queue drop` ran: a user asking for a try now also gets one
            # through a way out that is backing off
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
        if not self.tries and m - self._checkpointed >= CHECKPOINT_EVERY:
            # idle: nothing on the wire and nothing waiting in the inbox (housekeeping runs
            # only then), so the fsyncs of a checkpoint are off every alert's path
            self._checkpointed = m
            self.disk.attempt(self.outbox.checkpoint)

    # -- reports and received texts --------------------------------------------------------

    def _poll(self) -> None:
        """Ask the ways out that can tell for delivery reports and received texts."""
        now, since = self._now(), self.now_e() - max(self.config.limits.max_age, 3600.0)
        for name, t in self.transports.items():
            worker = self.workers.get(name)
            if worker is not None and not self.health.get(name, delivery.HEALTHY).is_down(now):
                for job in self.poller.due(name, t, self.mono(), since, self.desk.listening):
                    worker.put(job)

    def _polled(self, done: Done) -> None:
        if done.job.kind == "call":
            return self.desk.called(done, self._now_both())
        for row, changes in self.poller.answered(done, self.config, self._now_both()):
            for change in changes:  # a report moves a row, and maybe on to its next way out
                self._apply(row, change, None)
                row = change.record

    def publish_stats(self) -> None:
        self._stats_at = self.mono()
        self.sink.publish_stats(self.queued, self.wall())

    def _prune(self) -> None:
        now = self._now()
        keep = self.config.limits.keep
        pruned = self.disk.attempt(lambda: self.outbox.prune(now - dt.timedelta(seconds=keep))) or 0
        if pruned:
            log.info("pruned %d finished text(s) older than %s", pruned, "limits.keep")
        self.disk.attempt(lambda: self.desk.prune(self.now_e() - keep))
        self.disk.attempt(lambda: self.throttle.prune(self.clock.throttle_now(), self.config))

    def _save(self, force: bool = False) -> None:
        """Save what changed of the throttle state, the counters and the elapsed clock: at
        most once a second, and the clock at least every CLOCK_EVERY seconds."""
        m = self.mono()
        dirty = self.throttle.dirty or self.sink.dirty or bool(self.seen.dirty)
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
            self.disk.error("cannot save the throttle state and counters", exc)
            self._saved_at = m  # try again in a second, not at once
            return
        try:
            self.seen.save()
        except StorageError as exc:
            self.disk.error("cannot save the topics' last messages", exc)
        self.sink.dirty = False
        self._saved_at = m
        self._clock_saved = m

    # -- reload ----------------------------------------------------------------------------

    def _apply_reload(self, loaded: cfg.Loaded) -> None:
        old = self.config
        new = loaded.config
        self.config = self.desk.config = new
        self.templates = Templates()
        self.sink.base_topic = new.mqtt.base_topic
        # a way out whose section changed is built anew, with a clean health (a fixed
        # password is tried at once); the others keep their connection and their health
        rebuilt = registry.changed(old, new)
        built = registry.build(new, only=rebuilt) if rebuilt else {}
        for name in rebuilt:
            self.workers.drop(name)
            self.transports.pop(name, None)
            self.health.pop(name, None)
            if name in built:
                self.transports[name] = built[name]
                self.health[name] = delivery.HEALTHY
                self.workers.start(name, built[name])
        if old.limits.quiet_hours != new.limits.quiet_hours:
            self._reschedule_quiet()
        # rows being sent right now stay `sending`: their result is on its way
        n = self.disk.attempt(lambda: self.outbox.requeue_on_start(self._now(), sending=False)) or 0
        self._prune()
        self._due_changed = True
        self._refresh()
        log.info(
            "config reloaded: %d rule(s)%s",
            len(new.rules),
            f", {n} queued text(s) tried now" if n else "",
        )


__all__ = ["STATS_NOW", "Engine", "Reload", "Session"]
