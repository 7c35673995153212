"""Run `mqtt2sms` with timing probes (and, on request, candidate fixes) patched in at start.

A measuring tool for bench/e2e.py (`--probe`), not part of the daemon: it wraps the engine's
steps, the outbox's calls, the worker's send, the event publish, the ack and the GC with
timers, and writes what it saw as JSON when the daemon exits. Nothing in `mqtt2sms/` changes.

    MQTT2SMS_PROBE_OUT=probe.json python bench/probe.py run -c config.yaml
    MQTT2SMS_PROBE_PATCH=ckpt,qos0 ...   # candidate fixes, see PATCHES below

What it writes:

- ``spans``: for each wrapped function, calls, total and CPU (thread time) in ms, inclusive
  of what it calls, and the calls that took longer than ``MQTT2SMS_PROBE_SLOW`` ms (default
  5) with their start (monotonic) and duration;
- ``gc``: each collection by generation, count, total and the longest;
- ``stages``: per message, paho's hand-over -> engine's pick-up -> worker -> send -> result
  back in the engine -> ack, as percentiles in ms; and the slowest messages, each with the
  stage that took the time and the slow spans and collections that overlapped it;
- ``threads``: each thread's CPU time at exit (engine, worker, paho, main).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import json
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

PATCHES = {
    "none": "nothing: the wrapper alone, to compare with",
    "qos0": "events and stats published at QoS 0 (no PUBACK to wait for or keep state of)",
    "nolog": "the per-event INFO log line dropped (mqtt2sms.event at WARNING)",
    "gcfreeze": "gc.freeze() once the daemon runs, and gen-0 threshold 10,000",
    "ckpt": "no automatic WAL checkpoint in the engine's commits; a thread with its own"
    " connection checkpoints (PASSIVE) once a second",
    "idleckpt": "wal_autocheckpoint 10,000 pages (a bound, not the rule); the engine runs a"
    " PASSIVE checkpoint itself once it has had no message and no send for 50 ms",
    "trim": "once the engine has been idle 50 ms after work: gc.collect() and glibc"
    " malloc_trim(0), so a burst's backlog is handed back to the OS",
    "bound": "paho's thread waits in on_message while 100 messages are held (inbox plus"
    " messages not acked): TCP pushes back on the broker instead of memory growing",
    "quickack": "TCP_QUICKACK set again on the broker socket after every read (Linux):"
    " our kernel acknowledges at once instead of up to 40 ms later",
    "idlesave": "the once-a-second save (and stats publish) waits while messages are waiting",
    "cache": "SQLite cache_size 2 MiB instead of 512 KiB",
    "earlyset": "the worker may start its next send once the result's history row is written"
    " (before the event, the log line and the ack), not after the whole result",
    "dvskip": "PRAGMA data_version asked at most every 0.5 s (it runs whenever the inbox is empty)",
    "noautoinc": "the texts table without AUTOINCREMENT (one page fewer per commit: no"
    " sqlite_sequence update); a fresh state directory only",
    "nowait": "the worker does not wait for the engine to record a result before its next send"
    " (breaks the one-duplicate-per-kill bound: measured only to size the hand-shake)",
}

mono = time.monotonic
SLOW_MS = float(os.environ.get("MQTT2SMS_PROBE_SLOW", "5"))


class Probe:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        self.slow: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.gc: dict[int, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        self.gc_slow: list[tuple[float, float, int]] = []
        self._gc_t0 = 0.0
        # per message (by mid) and per text (by id) timestamps
        self.msg: dict[int, dict[str, float]] = {}
        self.text: dict[str, dict[str, float]] = {}
        self.text_mid: dict[str, int] = {}
        self.threads: dict[str, float] = {}
        self.phase = 0  # SIGUSR1 (bench/e2e.py, between its runs) starts the next
        self.phase_at: list[float] = [mono()]
        self.phase_threads: list[dict[str, float]] = []

    def next_phase(self, *_a: object) -> None:
        self.phase_threads.append(dict(self.threads))
        self.phase += 1
        self.phase_at.append(mono())

    def wrap(self, owner: Any, attr: str, name: str | None = None) -> None:
        fn = getattr(owner, attr, None)
        if fn is None:  # the engine of another version: time what is there
            print(f"probe: no {attr} on {owner.__name__}; not timed", file=sys.stderr)
            return
        label = name or f"{getattr(owner, '__name__', type(owner).__name__)}.{attr}"
        slow = self.slow[label]

        @functools.wraps(fn)
        def timed(*a: Any, **kw: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                dt = (time.perf_counter() - t0) * 1000.0
                calls = self.calls[f"{self.phase}|{label}"]
                calls[0] += 1
                calls[1] += dt
                calls[2] += (time.thread_time() - c0) * 1000.0
                if dt >= SLOW_MS:
                    slow.append((mono() - dt / 1000.0, dt))

        setattr(owner, attr, timed)

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
            return
        dt = (time.perf_counter() - self._gc_t0) * 1000.0
        g = self.gc[self.phase * 10 + int(info["generation"])]
        g[0] += 1
        g[1] += dt
        g[2] = max(g[2], dt)
        if dt >= 1.0:
            self.gc_slow.append((mono() - dt / 1000.0, dt, int(info["generation"])))

    def stamp_msg(self, mid: int, what: str) -> None:
        if what == "arrive":  # packet ids wrap at 65,535
            self.msg[mid] = {"phase": self.phase, "arrive": mono()}
        else:
            self.msg.setdefault(mid, {"phase": self.phase}).setdefault(what, mono())

    def stamp_text(self, tid: str, what: str) -> None:
        self.text.setdefault(tid, {}).setdefault(what, mono())

    # -- the report ------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        self.phase_threads.append(dict(self.threads))
        phases = []
        for ph in range(self.phase + 1):
            cpu = self.phase_threads[ph]
            before = self.phase_threads[ph - 1] if ph else {}
            phases.append(
                {
                    "phase": ph,
                    "thread_cpu_s": {k: round(v - before.get(k, 0.0), 2) for k, v in cpu.items()},
                    "gc": {
                        str(g % 10): {
                            "n": int(v[0]),
                            "ms": round(v[1], 1),
                            "max_ms": round(v[2], 2),
                        }
                        for g, v in sorted(self.gc.items())
                        if g // 10 == ph
                    },
                    "spans": {
                        k.split("|", 1)[1]: {
                            "calls": int(v[0]),
                            "ms": round(v[1], 1),
                            "cpu_ms": round(v[2], 1),
                        }
                        for k, v in sorted(self.calls.items(), key=lambda kv: -kv[1][1])
                        if v[0] and k.startswith(f"{ph}|")
                    },
                    **self._stages(ph),
                }
            )
        return {
            "patches": os.environ.get("MQTT2SMS_PROBE_PATCH", ""),
            "slow_ms": SLOW_MS,
            "phases": phases,
            "slow": {
                k: [(round(t, 4), round(d, 1)) for t, d in v] for k, v in self.slow.items() if v
            },
            "gc_slow": [(round(t, 4), round(d, 2), g) for t, d, g in self.gc_slow],
        }

    def _stages(self, ph: int) -> dict[str, Any]:
        rows = []
        for tid, ts in self.text.items():
            mid = self.text_mid.get(tid)
            m = self.msg.get(mid, {}) if mid is not None else {}
            if m.get("phase") != ph or "arrive" not in m or "ack" not in m or "send_end" not in ts:
                continue
            rows.append({**m, **ts})
        stages: dict[str, dict[str, float]] = {}
        for a, b, label in STAGES:
            xs = sorted((r[b] - r[a]) * 1000.0 for r in rows if a in r and b in r)
            if xs:
                stages[label] = {
                    "p50": round(xs[len(xs) // 2], 3),
                    "p99": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 3),
                    "max": round(xs[-1], 3),
                    "mean": round(sum(xs) / len(xs), 3),
                }
        worst = sorted(
            rows, key=lambda r: r["send_end"] - r.get("published", r["arrive"]), reverse=True
        )[:10]
        slowest = []
        for r in worst:
            t0, t1 = r.get("published", r["arrive"]), r["ack"]
            parts = {
                label: round((r[b] - r[a]) * 1000.0, 2)
                for a, b, label in STAGES[:-1]
                if a in r and b in r
            }
            # the innermost slow calls that overlapped this message's time in the daemon
            over = [
                (k, round((t - t0) * 1000.0, 1), d)
                for k, v in self.slow.items()
                if k not in ("Engine.step", "Engine._take_results", "Engine._done")
                for t, d in v
                if t < t1 and t + d / 1000.0 > t0
            ]
            over += [
                (f"gc gen {g}", round((t - t0) * 1000.0, 1), round(d, 2))
                for t, d, g in self.gc_slow
                if t < t1 and t + d / 1000.0 > t0
            ]
            slowest.append(
                {
                    "arrived_s": round(t0 - self.phase_at[ph], 3),
                    "ms": round((t1 - t0) * 1000.0, 2),
                    "stages": parts,
                    "overlapping slow calls (name, ms after arrival, ms)": over,
                }
            )
        return {"messages": len(rows), "stages": stages, "slowest": slowest}


STAGES = [
    ("published", "arrive", "publisher -> broker -> paho"),
    ("arrive", "handle", "queue: paho -> engine"),
    ("handle", "give", "engine: route, throttle, decide"),
    ("give", "send_start", "queue: engine -> worker"),
    ("send_start", "send_end", "SMTP send"),
    ("send_end", "done", "queue: worker -> engine"),
    ("done", "ack", "engine: record, event, ack"),
    ("published", "send_end", "publish to the server's 250"),
]


P = Probe()


def _thread_cpu() -> None:
    """Each Python thread's CPU seconds (utime + stime from /proc), sampled twice a second
    and kept after the thread ends."""
    tick = os.sysconf("SC_CLK_TCK")
    base = f"/proc/{os.getpid()}/task"
    while True:
        for t in threading.enumerate():
            try:
                with open(f"{base}/{t.native_id}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, TypeError):
                continue
            name = t.name.split(" ")[0]
            P.threads[name] = max(
                P.threads.get(name, 0.0), (int(fields[11]) + int(fields[12])) / tick
            )
        time.sleep(0.5)


def install(patches: set[str], timers: bool) -> None:
    from mqtt2sms import engine, mqtt, outbox, workers

    if timers:
        install_timers()
    E = engine.Engine
    _patch(E, engine, mqtt, outbox, workers, patches)


def install_timers() -> None:
    from mqtt2sms import daemon, engine, events, mqtt, outbox, workers
    from mqtt2sms.transports import smtp

    E = engine.Engine
    for a in (
        "step",
        "_handle",
        "_take_results",
        "_done",
        "_housekeeping",
        "_save",
        "_prune",
        "publish_stats",
        "_process_due",
        "_retry_held",
        "_check_clock",
        "_refresh",
        "_maybe_finish",
        "_poll",
    ):
        P.wrap(E, a)
    for a in (
        "record",
        "enqueue",
        "update",
        "save_throttle",
        "save_topics",
        "data_version",
        "due",
        "next_due",
        "queued_count",
        "handled",
        "prune",
        "get_cooldown",
    ):
        P.wrap(outbox.Outbox, a)
    P.wrap(events.EventSink, "emit")
    P.wrap(events.EventSink, "publish_stats")
    P.wrap(mqtt.MqttLink, "publish")
    P.wrap(mqtt.MqttLink, "ack")
    P.wrap(engine, "route", "router.route")
    P.wrap(smtp.SmtpTransport, "send")
    P.wrap(smtp, "build_email", "smtp.build_email")
    gc.callbacks.append(P.on_gc)

    # per-message stamps (the wrappers above are the innermost; these go around them)
    on_message = daemon.Daemon._on_message

    def _on_message(self: Any, msg: Any) -> None:
        P.stamp_msg(msg.mid, "arrive")
        parts = msg.payload.split()
        if len(parts) == 3 and parts[0] == b"bench":  # bench/e2e.py: the publish time (us)
            m = P.msg[msg.mid]
            m["published"] = m["arrive"] - (time.time() - int(parts[2]) / 1e6)
        on_message(self, msg)

    daemon.Daemon._on_message = _on_message  # type: ignore[method-assign]

    handle = E._handle

    def _handle(self: Any, msg: Any) -> None:
        P.stamp_msg(msg.mid, "handle")
        handle(self, msg)
        # how much is held in memory: messages not acked yet, and waiting in the inbox
        c = P.calls[f"{P.phase}|max flights (count, not ms)"]
        c[0], c[1] = 1, max(c[1], len(self.flights))
        c = P.calls[f"{P.phase}|max inbox (count, not ms)"]
        c[0], c[1] = 1, max(c[1], self.inbox.qsize())

    E._handle = _handle  # type: ignore[method-assign]

    give = E._give

    def _give(self: Any, d: Any, *rest: Any) -> None:
        # (d, flight, row, text) at 13d96d4; (d, record, flight) after the engine's rework
        flight = next((x for x in rest if hasattr(x, "msg")), None)
        src = next(x for x in reversed(rest) if x is not None and hasattr(x, "id"))
        if flight is not None:
            P.text_mid[src.id] = flight.msg.mid
        P.stamp_text(src.id, "give")
        give(self, d, *rest)

    E._give = _give  # type: ignore[method-assign]

    run = workers.run

    def _run(name: str, transport: Any, job: Any, m: Callable[[], float]) -> Any:
        P.stamp_text(job.key, "send_start")
        try:
            return run(name, transport, job, m)
        finally:
            P.stamp_text(job.key, "send_end")

    workers.run = _run

    done = E._done

    def _done(self: Any, d: Any) -> None:
        P.stamp_text(d.job.key, "done")
        done(self, d)

    E._done = _done  # type: ignore[method-assign]

    ack = mqtt.MqttLink.ack

    def _ack(self: Any, msg: Any) -> None:
        ack(self, msg)
        P.stamp_msg(msg.mid, "ack")

    mqtt.MqttLink.ack = _ack  # type: ignore[method-assign]


def _patch(E: Any, engine: Any, mqtt: Any, outbox: Any, workers: Any, patches: set[str]) -> None:
    """The candidate fixes, each on its own name (see PATCHES)."""
    if "qos0" in patches:
        publish = mqtt.MqttLink.publish

        def _publish0(
            self: Any, topic: str, payload: str, retain: bool = False, qos: int = 1
        ) -> None:
            publish(self, topic, payload, retain, 0 if not retain else qos)

        mqtt.MqttLink.publish = _publish0  # type: ignore[method-assign]
    if "nolog" in patches:
        import logging

        logging.getLogger("mqtt2sms.event").setLevel(logging.WARNING)
    if "gcfreeze" in patches:
        start = E.start

        def _start(self: Any) -> None:
            start(self)
            gc.collect()
            gc.freeze()
            gc.set_threshold(10_000, 10, 10)

        E.start = _start  # type: ignore[method-assign]
    if "ckpt" in patches or "cache" in patches:
        init = outbox.Outbox.__init__

        def _init(self: Any, path: str) -> None:
            init(self, path)
            if "cache" in patches:
                self.db.execute("PRAGMA cache_size=-2048")
            if "ckpt" in patches:
                self.db.execute("PRAGMA wal_autocheckpoint=0")
                threading.Thread(target=_checkpointer, args=(path,), daemon=True).start()

        outbox.Outbox.__init__ = _init  # type: ignore[method-assign]
    if "idleckpt" in patches:
        init2 = outbox.Outbox.__init__

        def _init2(self: Any, path: str) -> None:
            init2(self, path)
            self.db.execute("PRAGMA wal_autocheckpoint=10000")

        outbox.Outbox.__init__ = _init2  # type: ignore[method-assign]
        busy_at = [mono(), 0.0]  # last message or result; last checkpoint
        for name in ("_handle", "_done"):
            fn = getattr(E, name)

            def busy(self: Any, x: Any, _fn: Any = fn) -> None:
                busy_at[0] = mono()
                _fn(self, x)

            setattr(E, name, busy)
        hk = E._housekeeping

        def _hk2(self: Any) -> None:
            hk(self)
            m = mono()
            if (
                m - busy_at[0] >= 0.05
                and busy_at[1] < busy_at[0]
                and not self.tries
                and self.inbox.empty()
                and self.results.empty()
            ):
                busy_at[1] = m
                t0 = time.perf_counter()
                self.outbox.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                c = P.calls[f"{P.phase}|idle checkpoint"]
                c[0] += 1
                c[1] += (time.perf_counter() - t0) * 1000.0

        E._housekeeping = _hk2  # type: ignore[method-assign]
    if "trim" in patches:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        work_at = [mono(), mono()]  # last message or result; last trim
        for name in ("_handle", "_done"):
            fn3 = getattr(E, name)

            def busy3(self: Any, x: Any, _fn: Any = fn3) -> None:
                work_at[0] = mono()
                _fn(self, x)

            setattr(E, name, busy3)
        hk3 = E._housekeeping

        def _hk3(self: Any) -> None:
            hk3(self)
            m = mono()
            if m - work_at[0] >= 0.05 and work_at[1] < work_at[0] and not self.tries:
                work_at[1] = m
                gc.collect()
                libc.malloc_trim(0)

        E._housekeeping = _hk3  # type: ignore[method-assign]
    if "bound" in patches:
        from mqtt2sms import daemon as dmod

        onm = dmod.Daemon._on_message

        def _bounded(self: Any, msg: Any) -> None:
            e = self.engine
            while e is not None and e.inbox.qsize() + len(e.flights) >= 100:
                time.sleep(0.001)
            onm(self, msg)

        dmod.Daemon._on_message = _bounded  # type: ignore[method-assign]
    if "quickack" in patches:
        import socket

        import paho.mqtt.client as paho

        recv = paho.Client._sock_recv

        def _sock_recv(self: Any, bufsize: int) -> bytes:
            data = recv(self, bufsize)
            sock = self._sock
            if sock is not None and hasattr(socket, "TCP_QUICKACK"):
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            return data

        paho.Client._sock_recv = _sock_recv
    if "idlesave" in patches:
        housekeeping = E._housekeeping

        def _hk(self: Any) -> None:
            # step() calls housekeeping only with an empty inbox; this also waits for the
            # workers' results and for the next message that paho may be handing over
            if not self.results.empty():
                return
            housekeeping(self)

        E._housekeeping = _hk  # type: ignore[method-assign]
        save = E._save

        def _save(self: Any, force: bool = False) -> None:
            if not force and (not self.inbox.empty() or self.tries):
                return
            save(self, force)

        E._save = _save  # type: ignore[method-assign]
    if "earlyset" in patches:
        cur: list[Any] = [None]
        done2 = E._done

        def _done_early(self: Any, d: Any) -> None:
            cur[0] = d
            try:
                done2(self, d)
            finally:
                cur[0] = None

        E._done = _done_early  # type: ignore[method-assign]
        record = outbox.Outbox.record

        def _record(self: Any, items: Any) -> None:
            record(self, items)
            d = cur[0]
            ids = {x.id if hasattr(x, "id") else x[0].id for x in items}
            mine = d is not None and d.job.key in ids
            if mine and d.processed is not None:
                d.processed.set()

        outbox.Outbox.record = _record  # type: ignore[method-assign]
    if "dvskip" in patches:
        dv = outbox.Outbox.data_version
        last: list[Any] = [0.0, None]

        def _dv(self: Any) -> int:
            m = mono()
            if last[1] is None or m - last[0] >= 0.5:
                last[0], last[1] = m, dv(self)
            return int(last[1])

        outbox.Outbox.data_version = _dv  # type: ignore[method-assign]
    if "noautoinc" in patches:
        outbox._SCHEMA = outbox._SCHEMA.replace(" AUTOINCREMENT", "")
    if "nowait" in patches:
        wrun = workers.Worker._run

        def _wrun(self: Any) -> None:
            done_cb = self.done

            def done_now(d: Any) -> None:
                done_cb(d)
                if d.processed is not None:
                    d.processed.set()

            self.done = done_now
            wrun(self)

        workers.Worker._run = _wrun  # type: ignore[method-assign]


def _checkpointer(path: str) -> None:
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=0")
    while True:
        time.sleep(1.0)
        t0 = time.perf_counter()
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            continue
        dt = (time.perf_counter() - t0) * 1000.0
        c = P.calls[f"{P.phase}|checkpointer(thread)"]
        c[0] += 1
        c[1] += dt


def _write(path: str) -> None:
    with open(path, "w") as f:
        json.dump(P.report(), f, indent=1)


def main() -> int:
    patches = {p for p in os.environ.get("MQTT2SMS_PROBE_PATCH", "").split(",") if p}
    unknown = patches - set(PATCHES)
    if unknown:
        print(f"unknown patch(es): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    out = os.environ.get("MQTT2SMS_PROBE_OUT")
    install(patches, timers=bool(out))
    signal.signal(signal.SIGUSR1, P.next_phase)
    if out:
        threading.Thread(target=_thread_cpu, name="probe", daemon=True).start()
        atexit.register(_write, out)
    from mqtt2sms import cli

    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
