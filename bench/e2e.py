"""End-to-end benchmark: MQTT publish -> SMTP DATA, mqtt2sms against a floor and mqttwarn.

One Mosquitto and one SMTP sink (its own process) on 127.0.0.1; then, one after another:

- floor: bench/floor.py, a paho subscriber calling smtplib sendmail on one kept connection;
- mqtt2sms: `python -m mqtt2sms run` with one rule `bench/#` to one contact;
- mqtt2sms-100k: the same with 100,000 finished rows already in its outbox (latency only);
- mqttwarn 0.36.1 in its own venv (skipped, with the reason, when it cannot be installed).

For each: start-to-ready time, RSS after start, latency p50/p99/max over N alerts published
5 ms apart, burst throughput (M alerts published at once), RSS after the run, idle CPU over
S seconds. Prints a table and rewrites the e2e section of docs/benchmarks.md.

    python bench/e2e.py                 # full: 2,000 alerts, burst 10,000, 60 s idle
    python bench/e2e.py --quick         # about a minute
    python bench/e2e.py --issue16       # issue 16's side by side: 2 rounds of 300 alerts 5 ms
                                        # apart, the systems in turn; a burst of 2,000; RSS
                                        # over 20,000 alerts (about 3 minutes)
    python bench/e2e.py --only mqtt2sms --rounds 1 --probe DIR [--patch qos0,gcfreeze]
                                        # timings from inside the daemon (bench/probe.py)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    ROOT,
    Mosquitto,
    RetainedWatch,
    SinkProc,
    clear_retained,
    cpu_seconds,
    idle_cpu_percent,
    machine,
    mqtt_client,
    payload,
    rss_mb,
    summary_ms,
    wait_for,
)

MQTTWARN_VERSION = "0.36.1"
WARMUP = 20


@dataclass
class Result:
    name: str
    ready_s: float = float("nan")
    ready_means: str = ""
    rss_start: float = float("nan")
    rss_after: float = float("nan")
    lat: dict[str, float] = field(default_factory=dict)
    lat_n: int = 0
    lat_lost: int = 0
    burst_n: int = 0
    burst_got: int = 0
    burst_s: float = float("nan")
    burst_cpu_ms: float = float("nan")
    idle_cpu: float = float("nan")
    note: str = ""
    samples: list[float] = field(default_factory=list)  # every round's latencies, pooled
    rounds: list[dict[str, float]] = field(default_factory=list)
    growth: list[tuple[int, float]] = field(default_factory=list)  # (alerts so far, RSS MB)

    @property
    def burst_rate(self) -> float:
        return self.burst_got / self.burst_s if self.burst_s > 0 else float("nan")


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.a = args
        self.work = work
        self.broker = Mosquitto(work / "mosquitto")
        if args.broker_nodelay:
            # Nagle off on the broker's sockets (its default is on): see docs/benchmarks.md
            with open(self.broker.conf, "a") as f:
                f.write("set_tcp_nodelay true\n")
        self.broker.start()
        self.sink = SinkProc(work)
        self.sink.start()
        self.pub = mqtt_client(self.broker.port, f"bench-pub-{os.getpid()}")
        self.base = 0
        self.probe_n = 0
        self.m2s_n = 0
        self._m2s_session = ""
        # Cached bytecode for every system, as after `pip install` (which byte-compiles):
        # without it (PYTHONDONTWRITEBYTECODE, an editable install) mqtt2sms would compile
        # its modules at every start, which costs start-up time and memory.
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env["PYTHONPYCACHEPREFIX"] = str(cache_dir() / "pycache")
        self.env.pop("NOTIFY_SOCKET", None)

    def close(self) -> None:
        self.pub.disconnect()
        self.pub.loop_stop()
        self.sink.stop()
        self.broker.stop()

    def _seqs(self, n: int) -> range:
        self.base += 1_000_000
        return range(self.base, self.base + n)

    def _arrivals(self, seqs: range) -> dict[int, tuple[float, int]]:
        out: dict[int, tuple[float, int]] = {}
        for t, seq, sent in self.sink.received():
            if seq in seqs and seq not in out:
                out[seq] = (t, sent)
        return out

    def _wait_all(self, seqs: range, timeout: float) -> dict[int, tuple[float, int]]:
        deadline = time.monotonic() + timeout
        got = self._arrivals(seqs)
        while len(got) < len(seqs) and time.monotonic() < deadline:
            time.sleep(0.05)
            got = self._arrivals(seqs)
        return got

    def _publish(self, seq: int) -> Any:
        return self.pub.publish("bench/alert", payload(seq), qos=1)

    def latency(self, r: Result, n: int) -> None:
        warm = self._seqs(WARMUP)
        for s in warm:
            self._publish(s)
            time.sleep(0.005)
        self._wait_all(warm, 30)
        seqs = self._seqs(n)
        start = time.monotonic()
        for i, s in enumerate(seqs):
            delay = start + i * self.a.spacing / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._publish(s)
        got = self._wait_all(seqs, 30 + n * 0.01)
        lat = [(t - sent / 1e6) * 1000.0 for t, sent in got.values()]
        r.samples.extend(lat)
        r.rounds.append(summary_ms(lat))
        r.lat = summary_ms(r.samples)
        r.lat_n += len(got)
        r.lat_lost += n - len(got)

    def burst(self, r: Result, m: int, pid: int) -> None:
        seqs = self._seqs(m)
        c0 = cpu_seconds(pid)
        t0 = time.time()
        infos = [self._publish(s) for s in seqs]
        got = self._wait_all(seqs, max(60.0, m / 40))
        for i in infos[-1:]:
            i.wait_for_publish(5)
        r.burst_cpu_ms = 1000.0 * (cpu_seconds(pid) - c0) / max(1, len(got))
        r.burst_n = m
        r.burst_got = len(got)
        if got:
            r.burst_s = max(t for t, _ in got.values()) - t0

    def run_system(self, r: Result, proc: subprocess.Popen[Any], ready: float, pid: int) -> None:
        r.ready_s = ready
        time.sleep(1.0)
        r.rss_start = rss_mb(pid)
        self.latency(r, self.a.alerts)
        if self.a.burst:
            self._next_phase(r, pid)
            self.burst(r, self.a.burst, pid)
        time.sleep(0.5)
        r.rss_after = rss_mb(pid)
        if self.a.idle:
            time.sleep(1.0)
            r.idle_cpu = idle_cpu_percent(pid, self.a.idle)
        print(f"  {r.name}: done", flush=True)

    def _next_phase(self, r: Result, pid: int) -> None:
        """Under bench/probe.py, SIGUSR1 starts the probe's next phase (latency, burst, ...)."""
        if (self.a.probe or self.a.patch) and r.name.startswith("mqtt2sms"):
            os.kill(pid, signal.SIGUSR1)
            time.sleep(0.1)

    # -- issue 16: rounds alternating between the systems, then a burst, then growth ---------

    def side_by_side(self, which: list[str]) -> dict[str, Result]:
        """`--rounds` latency runs of each system in turn (a fresh start each time: floor,
        mqtt2sms, mqttwarn, floor, mqtt2sms, ...), the last round followed by the burst,
        RSS after and idle CPU; ready and RSS start are the first round's."""
        results: dict[str, Result] = {}
        for rnd in range(self.a.rounds):
            last = rnd == self.a.rounds - 1
            for name in which:
                print(f"round {rnd + 1}: {name} ...", flush=True)
                try:
                    proc, ready, r0 = self._start(name)
                except (OSError, subprocess.SubprocessError, TimeoutError) as exc:
                    print(f"{name} skipped: {exc}", flush=True)
                    continue
                r = results.setdefault(name, r0)
                try:
                    if rnd == 0:
                        r.ready_s = ready
                        time.sleep(1.0)
                        r.rss_start = rss_mb(proc.pid)
                        time.sleep(max(0.0, self.a.settle - 1.0))
                    else:
                        time.sleep(self.a.settle)
                    self.latency(r, self.a.alerts)
                    if last and self.a.burst:
                        self._next_phase(r, proc.pid)
                        self.burst(r, self.a.burst, proc.pid)
                    if last:
                        time.sleep(0.5)
                        r.rss_after = rss_mb(proc.pid)
                        if self.a.idle:
                            time.sleep(1.0)
                            r.idle_cpu = idle_cpu_percent(proc.pid, self.a.idle)
                finally:
                    self._stop(proc)
                    self._forget(name)
        return results

    def growth(self, name: str, r: Result, total: int, step: int = 1000) -> None:
        """RSS of a fresh start (idle, 1 s after ready), then after the first `step` alerts
        and after every further 2,000 of `total`, published `step` at a time (each batch
        drained before the next)."""
        proc, _, _ = self._start(name)
        try:
            time.sleep(1.0)
            r.growth = [(0, rss_mb(proc.pid))]
            sent = 0
            while sent < total:
                got = self._wait_all(self._burst_seqs(step), 120)
                sent += step
                if len(got) < step:
                    r.note += f" growth: {step - len(got)} of a batch missing;"
                if sent == step or sent % 2000 == 0 or sent >= total:
                    time.sleep(0.3)
                    r.growth.append((sent, rss_mb(proc.pid)))
        finally:
            self._stop(proc)
            self._forget(name)

    def _burst_seqs(self, n: int) -> range:
        seqs = self._seqs(n)
        for s in seqs:
            self._publish(s)
        return seqs

    def _start(self, name: str) -> tuple[subprocess.Popen[Any], float, Result]:
        if name == "floor":
            p, ready = self._floor_start()
            return p, ready, Result("floor", ready_means="SUBACK received (its own line)")
        if name == "mqtt2sms":
            self.m2s_n += 1
            d = self.work / f"m2s{self.m2s_n}"
            state = d / "state"
            state.mkdir(parents=True)
            self._m2s_session = f"mqtt2sms-bench-{d.name}"
            p, ready = self._m2s_start(state, self._m2s_config(state))
            return (
                p,
                ready,
                Result(
                    "mqtt2sms", ready_means="retained `online` on mqtt2sms/status (after SUBACK)"
                ),
            )
        exe = ensure_mqttwarn(Path(self.a.mqttwarn_venv))
        ini = self._mqttwarn_ini()
        p, ready = self._mqttwarn_start(exe, ini)
        time.sleep(0.3)  # its SUBACK follows the LWT publish
        return (
            p,
            ready,
            Result(
                "mqttwarn",
                ready_means="retained LWT `1` (published in on_connect after SUBSCRIBE,"
                " before SUBACK)",
            ),
        )

    def _forget(self, name: str) -> None:
        if name == "mqtt2sms":
            self.drop_session(self._m2s_session)
        elif name == "mqttwarn":
            self.drop_session("mqttwarn-bench")

    # -- the systems ---------------------------------------------------------------------

    def floor(self) -> Result:
        r = Result("floor", ready_means="SUBACK received (its own line)")
        proc, ready = self._floor_start()
        try:
            self.run_system(r, proc, ready, proc.pid)
        finally:
            self._stop(proc)
        return r

    def _floor_start(self) -> tuple[subprocess.Popen[str], float]:
        t0 = time.time()
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "floor.py"),
                "--mqtt-port",
                str(self.broker.port),
                "--smtp-port",
                str(self.sink.port),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("ready "):
            self._stop(proc)
            raise RuntimeError(f"floor did not start: {line!r}")
        return proc, float(line.split()[1]) - t0

    def warm_up(self, which: set[str]) -> None:
        """Start and stop each system once, so every measured start finds its bytecode."""
        if "floor" in which:
            self._stop(self._floor_start()[0])
        if which & {"mqtt2sms", "full"}:
            state = self.work / "warm" / "state"
            state.mkdir(parents=True)
            self._stop(self._m2s_start(state, self._m2s_config(state))[0])
            self.drop_session(f"mqtt2sms-bench-{state.parent.name}")
        if "mqttwarn" in which and self.a.rounds:
            try:
                exe = ensure_mqttwarn(Path(self.a.mqttwarn_venv))
                self._stop(self._mqttwarn_start(exe, self._mqttwarn_ini())[0])
                self.drop_session("mqttwarn-bench")
            except (OSError, subprocess.SubprocessError, TimeoutError) as exc:
                print(f"mqttwarn: no warm-up start: {exc}", flush=True)

    def drop_session(self, client_id: str) -> None:
        """Connect once with a clean session: the broker forgets the persistent one."""
        c = mqtt_client(self.broker.port, client_id, clean=True)
        c.disconnect()
        c.loop_stop()

    def _m2s_config(self, state: Path) -> Path:
        # One persistent session per phase, dropped when the phase ends: a session left
        # behind would collect every later alert and replay it into the next phase.
        client_id = f"mqtt2sms-bench-{state.parent.name}"
        cfg = state.parent / "config.yaml"
        cfg.write_text(
            textwrap.dedent(
                f"""\
                mqtt: {{host: 127.0.0.1, port: {self.broker.port}, client_id: {client_id}}}
                smtp:
                  host: 127.0.0.1
                  port: {self.sink.port}
                  security: none
                  from: alerts@example.org
                contacts:
                  alex: {{number: "+1 (555) 123-4567", carrier: tmobile}}
                defaults: {{to: [alex]}}
                limits: {{per_recipient: 0, daily_cap: 0}}
                alert_topic: null
                rules:
                  - {{name: bench, topic: "bench/#", to: [alex]}}
                """
            )
        )
        return cfg

    def _m2s_start(self, state: Path, cfg: Path) -> tuple[subprocess.Popen[bytes], float]:
        watch = RetainedWatch(self.broker.port, ["mqtt2sms/status"])
        clear_retained(self.pub, "mqtt2sms/status")
        time.sleep(0.2)
        env = {**self.env, "STATE_DIRECTORY": str(state), "PYTHONUNBUFFERED": "1"}
        env.update(dict(kv.split("=", 1) for kv in self.a.daemon_env or []))
        cmd = [sys.executable, "-m", "mqtt2sms"]
        if self.a.probe or self.a.patch:
            # the same daemon with timers (and candidate fixes) patched in: bench/probe.py
            cmd = [sys.executable, str(ROOT / "bench" / "probe.py")]
            env["MQTT2SMS_PROBE_PATCH"] = self.a.patch or ""
            if self.a.probe:
                self.probe_n += 1
                out = Path(self.a.probe) / f"{state.parent.name}-{self.probe_n}.json"
                out.parent.mkdir(parents=True, exist_ok=True)
                env["MQTT2SMS_PROBE_OUT"] = str(out.resolve())
        log = open(state.parent / "daemon.log", "ab")  # noqa: SIM115 (the child keeps it)
        t0 = time.time()
        if self.a.daemon_prefix:
            # e.g. strace: the pid measured is then the tracer's, so RSS and CPU are not ours
            cmd = [*shlex.split(self.a.daemon_prefix), *cmd]
        proc = subprocess.Popen(
            [*cmd, "run", "-c", str(cfg)],
            cwd=state.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        try:
            t = wait_for(
                lambda: watch.first("mqtt2sms/status", "online", t0), 30, "mqtt2sms online"
            )
        finally:
            watch.close()
        return proc, t - t0

    @staticmethod
    def _stop(proc: subprocess.Popen[Any]) -> None:
        if proc.poll() is None:
            # under --daemon-prefix the daemon is the prefix's child, and a tracer (strace,
            # py-spy) that gets SIGTERM leaves its child running: the child goes first
            for child in _children(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def mqtt2sms(self) -> Result:
        r = Result("mqtt2sms", ready_means="retained `online` on mqtt2sms/status (after SUBACK)")
        d = self.work / "m2s"
        state = d / "state"
        state.mkdir(parents=True)
        proc, ready = self._m2s_start(state, self._m2s_config(state))
        try:
            self.run_system(r, proc, ready, proc.pid)
        finally:
            self._stop(proc)
            self.drop_session(f"mqtt2sms-bench-{d.name}")
        return r

    def mqtt2sms_full_outbox(self, rows: int) -> Result:
        r = Result(f"mqtt2sms-{rows // 1000}k", ready_means="as mqtt2sms")
        d = self.work / "m2s-full"
        state = d / "state"
        state.mkdir(parents=True)
        cfg = self._m2s_config(state)
        proc, _ = self._m2s_start(state, cfg)  # creates the schema
        self._stop(proc)
        fill_outbox(state / "outbox.sqlite3", rows)
        proc, ready = self._m2s_start(state, cfg)
        try:
            r.ready_s = ready
            time.sleep(1.0)
            r.rss_start = rss_mb(proc.pid)
            self.latency(r, self.a.alerts)
            r.rss_after = rss_mb(proc.pid)
            with sqlite3.connect(state / "outbox.sqlite3") as db:
                n = db.execute("SELECT count(*) FROM texts").fetchone()[0]
            r.note = f"{n} rows in the outbox after the run"
        finally:
            self._stop(proc)
            self.drop_session(f"mqtt2sms-bench-{d.name}")
        return r

    def mqttwarn(self) -> Result:
        r = Result(
            "mqttwarn",
            ready_means="retained LWT `1` (published in on_connect after SUBSCRIBE, before SUBACK)",
        )
        exe = ensure_mqttwarn(Path(self.a.mqttwarn_venv))
        ini = self._mqttwarn_ini()
        self._stop(self._mqttwarn_start(exe, ini)[0])  # warm-up start (bytecode)
        proc, ready = self._mqttwarn_start(exe, ini)
        try:
            time.sleep(0.3)  # its SUBACK follows the LWT publish
            self.run_system(r, proc, ready, proc.pid)
        finally:
            self._stop(proc)
            self.drop_session("mqttwarn-bench")
        return r

    def _mqttwarn_ini(self) -> Path:
        d = self.work / "mqttwarn"
        d.mkdir(exist_ok=True)
        ini = d / "mqttwarn.ini"
        ini.write_text(
            textwrap.dedent(
                f"""\
                [defaults]
                hostname = '127.0.0.1'
                port = {self.broker.port}
                clientid = 'mqttwarn-bench'
                lwt = 'clients/mqttwarn-bench'
                protocol = 4
                logfile = 'stream://sys.stderr'
                loglevel = INFO
                launch = smtp
                status_publish = False

                [config:smtp]
                server = '127.0.0.1:{self.sink.port}'
                sender = 'alerts@example.org'
                starttls = False
                targets = {{
                    'bench': ['5551234567@tmomail.net'],
                    }}

                [bench/#]
                targets = smtp:bench
                qos = 1
                """
            )
        )
        return ini

    def _mqttwarn_start(self, exe: Path, ini: Path) -> tuple[subprocess.Popen[bytes], float]:
        watch = RetainedWatch(self.broker.port, ["clients/mqttwarn-bench"])
        clear_retained(self.pub, "clients/mqttwarn-bench")
        time.sleep(0.2)
        env = {**self.env, "MQTTWARNINI": str(ini)}
        log = open(ini.parent / "mqttwarn.log", "ab")  # noqa: SIM115 (the child keeps it)
        t0 = time.time()
        proc = subprocess.Popen([str(exe)], cwd=ini.parent, env=env, stdout=log, stderr=log)
        log.close()
        try:
            t = wait_for(
                lambda: watch.first("clients/mqttwarn-bench", "1", t0), 60, "mqttwarn online"
            )
        except TimeoutError:
            self._stop(proc)
            raise
        finally:
            watch.close()
        return proc, t - t0


def _children(pid: int) -> list[int]:
    """The direct children of a process (Linux), [] when /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def fill_outbox(path: Path, rows: int) -> None:
    """Insert finished (`sent`) rows, recent enough that `limits.keep` does not prune them."""
    now = time.time()
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO texts (id, alert_id, rule, key, recipient, via, via_index, addresses,"
            " body, subject, priority, state, reason, created_at, next_at, attempts,"
            " finished_at, transport, mid, digest, epoch)"
            " VALUES (?, ?, 'bench', 'bench/alert', 'alex', '[\"smtp\"]', 0, ?, ?, NULL,"
            " 'normal', 'sent', 'new', ?, ?, 1, ?, 'smtp', ?, ?, 0)",
            (
                (
                    f"fill{i:08d}",
                    f"a{i:09d}",
                    json.dumps({"smtp": "5551234567@tmomail.net"}),
                    f"bench {i} 0",
                    now - 3600 + i * 0.01,
                    now - 3600 + i * 0.01,
                    now - 3600 + i * 0.01,
                    i % 65535 + 1,
                    f"{i:016x}",
                )
                for i in range(rows)
            ),
        )


def cache_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mqtt2sms-bench"


def default_mqttwarn_venv() -> Path:
    return cache_dir() / f"mqttwarn-{MQTTWARN_VERSION}"


def ensure_mqttwarn(venv: Path) -> Path:
    exe = venv / "bin" / "mqttwarn"
    if exe.exists():
        return exe
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"mqttwarn=={MQTTWARN_VERSION}"],
        check=True,
        timeout=600,
    )
    return exe


def mqttwarn_version(venv: Path) -> str:
    try:
        out = subprocess.run(
            [str(venv / "bin" / "mqttwarn"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip().split()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "not installed"


# --------------------------------------------------------------------------- report


def _f(x: float, nd: int = 1) -> str:
    return "n/a" if x != x else f"{x:.{nd}f}"


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def report(results: dict[str, Result], args: argparse.Namespace) -> tuple[str, str]:
    rows = [
        "| system | ready s | RSS start MB | RSS after MB | p50 ms | p99 ms | max ms"
        " | alerts | burst/s | CPU ms/alert | idle CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        burst = (
            f"{_f(r.burst_rate, 0)} ({r.burst_got}/{r.burst_n} in {_f(r.burst_s, 2)} s)"
            if r.burst_n
            else "-"
        )
        rows.append(
            f"| {r.name} | {_f(r.ready_s, 3)} | {_f(r.rss_start)} | {_f(r.rss_after)}"
            f" | {_f(r.lat.get('p50', float('nan')), 2)} | {_f(r.lat.get('p99', float('nan')), 2)}"
            f" | {_f(r.lat.get('max', float('nan')), 2)} | {r.lat_n}"
            + (f" ({r.lat_lost} missing)" if r.lat_lost else "")
            + f" | {burst} | {_f(r.burst_cpu_ms, 2) if r.burst_n else '-'}"
            + f" | {_f(r.idle_cpu, 3) if r.idle_cpu == r.idle_cpu else '-'} |"
        )
    table = "\n".join(rows)
    if any(len(r.rounds) > 1 for r in results.values()):
        table += "\n\nEach round on its own (p50 / p99 ms; the table above pools them):\n\n"
        table += "| system | " + " | ".join(
            f"round {i + 1}" for i in range(max(len(r.rounds) for r in results.values()))
        )
        table += " |\n|---|" + "---|" * max(len(r.rounds) for r in results.values()) + "\n"
        table += "\n".join(
            f"| {r.name} | "
            + " | ".join(f"{_f(x['p50'], 2)} / {_f(x['p99'], 2)}" for x in r.rounds)
            + " |"
            for r in results.values()
        )
    grown = [r for r in results.values() if len(r.growth) > 1]
    if grown:
        table += (
            "\n\nRSS (MB) of a fresh start, idle, then after so many alerts (published 1,000"
            " at a time); growth from idle, and from after the first 1,000:\n\n"
        )
        table += "| system | " + " | ".join(f"{n:,}" for n, _ in grown[0].growth)
        table += " | growth | after 1,000 |\n"
        table += "|---|" + "---|" * (len(grown[0].growth) + 2) + "\n"
        table += "\n".join(
            f"| {r.name} | "
            + " | ".join(_f(x) for _, x in r.growth)
            + f" | {r.growth[-1][1] - r.growth[0][1]:+.1f}"
            + f" | {r.growth[-1][1] - r.growth[1][1]:+.1f} |"
            for r in grown
        )

    m = results.get("mqtt2sms")
    fl = results.get("floor")
    mw = results.get("mqttwarn")
    full = next((r for k, r in results.items() if k.startswith("mqtt2sms-")), None)
    t: list[tuple[str, str, str]] = []
    if m and fl:
        t.append(
            (
                "p50 ≤ 1.5 × floor",
                f"{_f(m.lat['p50'], 2)} vs {_f(1.5 * fl.lat['p50'], 2)} ms"
                f" ({_f(m.lat['p50'] / fl.lat['p50'], 2)} ×)",
                _mark(m.lat["p50"] <= 1.5 * fl.lat["p50"]),
            )
        )
        t.append(
            (
                "p99 ≤ 2 × floor",
                f"{_f(m.lat['p99'], 2)} vs {_f(2 * fl.lat['p99'], 2)} ms"
                f" ({_f(m.lat['p99'] / fl.lat['p99'], 2)} ×)",
                _mark(m.lat["p99"] <= 2 * fl.lat["p99"]),
            )
        )
    if m and mw and mw.lat:
        t.append(
            (
                "p99 below mqttwarn's",
                f"{_f(m.lat['p99'], 2)} vs {_f(mw.lat['p99'], 2)} ms",
                _mark(m.lat["p99"] < mw.lat["p99"]),
            )
        )
        t.append(
            (
                "p50 below mqttwarn's",
                f"{_f(m.lat['p50'], 2)} vs {_f(mw.lat['p50'], 2)} ms",
                _mark(m.lat["p50"] < mw.lat["p50"]),
            )
        )
    if m and fl and m.burst_n:
        t.append(
            (
                "burst ≥ 50 % of floor",
                f"{_f(m.burst_rate, 0)} vs {_f(fl.burst_rate, 0)} alerts/s"
                f" ({_f(100 * m.burst_rate / fl.burst_rate, 0)} %)",
                _mark(m.burst_rate >= 0.5 * fl.burst_rate and m.burst_got == m.burst_n),
            )
        )
    if m and fl and m.burst_n and fl.burst_n:
        t.append(
            (
                "CPU per alert ≤ 2 × floor",
                f"{_f(m.burst_cpu_ms, 2)} vs {_f(fl.burst_cpu_ms, 2)} ms"
                f" ({_f(m.burst_cpu_ms / fl.burst_cpu_ms, 1)} ×)",
                _mark(m.burst_cpu_ms <= 2 * fl.burst_cpu_ms),
            )
        )
    if m and len(m.growth) > 1:
        g = m.growth[-1][1] - m.growth[0][1]
        g1 = m.growth[-1][1] - m.growth[1][1]
        t.append(
            (
                f"RSS growth ≤ 3 MB over {m.growth[-1][0]:,} alerts",
                f"{g:+.1f} MB from idle ({_f(m.growth[0][1])} -> {_f(m.growth[-1][1])});"
                f" {g1:+.1f} MB after the first {m.growth[1][0]:,}",
                _mark(g <= 3.0),
            )
        )
    if m and fl:
        t.append(
            (
                "idle RSS ≤ floor + 6 MB",
                f"{_f(m.rss_start)} vs {_f(fl.rss_start + 6)} MB (floor {_f(fl.rss_start)})",
                _mark(m.rss_start <= fl.rss_start + 6),
            )
        )
    if m and mw and mw.rss_start == mw.rss_start:
        t.append(
            (
                "idle RSS at most mqttwarn's",
                f"{_f(m.rss_start)} vs {_f(mw.rss_start)} MB",
                _mark(m.rss_start <= mw.rss_start),
            )
        )
    if m and m.idle_cpu == m.idle_cpu:
        t.append(
            (
                "idle CPU < 0.1 % of a core",
                f"{_f(m.idle_cpu, 3)} % over {args.idle} s",
                _mark(m.idle_cpu < 0.1),
            )
        )
    if m:
        t.append(("ready < 0.5 s", f"{_f(m.ready_s, 3)} s", _mark(m.ready_s < 0.5)))
    if m and full:
        t.append(
            (
                "p50 with 100k rows within 10 % of empty",
                f"{_f(full.lat['p50'], 2)} vs {_f(m.lat['p50'], 2)} ms"
                f" ({_f(100 * (full.lat['p50'] / m.lat['p50'] - 1), 0)} %)",
                _mark(full.lat["p50"] <= 1.1 * m.lat["p50"]),
            )
        )
    targets = "| target | measured | |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in t
    )
    return table, targets


def write_section(doc: Path, name: str, body: str) -> None:
    """Replace what lies between `<!-- name:begin -->` and `<!-- name:end -->` in the doc."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        pattern = re.escape(begin) + r".*?" + re.escape(end)
        text = re.sub(pattern, lambda _m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def machine_lines(extra: dict[str, str]) -> str:
    m = {**machine(), **extra}
    return (
        f"- machine: {m['cpus']} × {m['model']}, Python {m['python']};"
        f" load average at the end {m['load']}\n"
        f"- mqtt2sms tree: {m['rev']}\n"
        f"- versions: paho-mqtt {m['paho']}, Mosquitto {m['mosquitto']},"
        f" mqtt2sms {m['mqtt2sms']}"
        + (f", mqttwarn {m['mqttwarn']}" if "mqttwarn" in m else "")
        + f"\n- date: {m['date']}\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description="End-to-end benchmark: mqtt2sms vs a floor script vs mqttwarn.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(__doc__ or "").split("\n\n", 1)[1],
    )
    ap.add_argument("--alerts", type=int, default=2000, help="latency alerts, --spacing apart")
    ap.add_argument("--spacing", type=float, default=5.0, help="ms between latency alerts")
    ap.add_argument("--burst", type=int, default=10000, help="alerts published at once (0: skip)")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU (0: skip)")
    ap.add_argument("--rows", type=int, default=100_000, help="rows pre-filled (0: skip)")
    ap.add_argument(
        "--quick", action="store_true", help="--alerts 500 --burst 2000 --idle 10 --rows 100000"
    )
    ap.add_argument("--no-mqttwarn", action="store_true", help="skip mqttwarn")
    ap.add_argument(
        "--mqttwarn-venv",
        default=str(default_mqttwarn_venv()),
        help="where mqttwarn is (or gets) installed (default: ~/.cache/mqtt2sms-bench/...)",
    )
    ap.add_argument(
        "--issue16",
        action="store_true",
        help="the side by side of issue 16: --rounds 2 --alerts 300 --spacing 5 --burst 2000"
        " --growth 20000 --idle 20 --rows 0, floor / mqtt2sms / mqttwarn in turn",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="latency rounds, the systems alternating, each a fresh start (0: one run each)",
    )
    ap.add_argument(
        "--broker-nodelay",
        action="store_true",
        help="Mosquitto with set_tcp_nodelay true (Nagle off towards every client)",
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=0.3,
        help="with --rounds: seconds from ready to the first alert (at least 1 in round 1)",
    )
    ap.add_argument(
        "--growth",
        type=int,
        default=0,
        help="then RSS of a fresh mqtt2sms (and floor) over this many alerts (0: skip)",
    )
    ap.add_argument("--only", nargs="*", help="floor mqtt2sms full mqttwarn (default: all)")
    ap.add_argument(
        "--probe",
        metavar="DIR",
        help="run mqtt2sms under bench/probe.py and write its timings as JSON into DIR",
    )
    ap.add_argument(
        "--patch",
        default="",
        help="candidate fixes for bench/probe.py to patch in, comma-separated (see PATCHES there)",
    )
    ap.add_argument(
        "--daemon-env",
        action="append",
        metavar="K=V",
        help="extra environment for mqtt2sms (e.g. MALLOC_ARENA_MAX=2); may repeat",
    )
    ap.add_argument(
        "--daemon-prefix",
        metavar="CMD",
        help="a command line put before mqtt2sms's (e.g. 'strace -f -e trace=fsync -o f');"
        " RSS and CPU are then the prefix's",
    )
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument(
        "--section", default="e2e", help="the marked section of docs/benchmarks.md to rewrite"
    )
    a = ap.parse_args()
    if a.quick:
        a.alerts, a.burst, a.idle = 500, 2000, 10.0
    if a.issue16:
        a.rounds, a.alerts, a.spacing, a.burst = a.rounds or 2, 300, 5.0, 2000
        a.growth, a.idle, a.rows = a.growth or 20000, 20.0, 0
        if a.section == "e2e":
            a.section = "e2e-issue16"
    only = set(a.only or ["floor", "mqtt2sms", "full", "mqttwarn"])
    if a.no_mqttwarn:
        only.discard("mqttwarn")

    results: dict[str, Result] = {}
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mqtt2sms-e2e-") as tmp:
        b = Bench(a, Path(tmp))
        try:
            b.warm_up(only)
            if a.rounds:
                order = [n for n in ("floor", "mqtt2sms", "mqttwarn") if n in only]
                results = b.side_by_side(order)
                skipped += [f"{n} skipped (see above)" for n in order if n not in results]
                for n in ("floor", "mqtt2sms"):
                    if a.growth and n in results:
                        print(f"{n}: RSS over {a.growth} alerts ...", flush=True)
                        b.growth(n, results[n], a.growth)
            if "floor" in only and not a.rounds:
                print("floor ...", flush=True)
                results["floor"] = b.floor()
            if "mqtt2sms" in only and not a.rounds:
                print("mqtt2sms ...", flush=True)
                results["mqtt2sms"] = b.mqtt2sms()
            if "full" in only and a.rows and not a.rounds:
                print(f"mqtt2sms with {a.rows} rows in the outbox ...", flush=True)
                r = b.mqtt2sms_full_outbox(a.rows)
                results[r.name] = r
            if "mqttwarn" in only and not a.rounds:
                print(f"mqttwarn {MQTTWARN_VERSION} ...", flush=True)
                try:
                    results["mqttwarn"] = b.mqttwarn()
                except (OSError, subprocess.SubprocessError, TimeoutError) as exc:
                    msg = f"mqttwarn skipped: {exc}"
                    print(msg, flush=True)
                    skipped.append(msg)
        finally:
            b.close()

    table, targets = report(results, a)
    print()
    print(table)
    print()
    print(targets)
    for s in skipped:
        print(s)
    if not a.no_doc:
        extra = {}
        if "mqttwarn" in results:
            extra["mqttwarn"] = mqttwarn_version(Path(a.mqttwarn_venv))
        cmd = " ".join(["python", "bench/e2e.py", *sys.argv[1:]])
        ready = "\n".join(f"- `{r.name}` ready means: {r.ready_means}" for r in results.values())
        body = (
            f"{machine_lines(extra)}- command: `{cmd}`\n"
            f"- latency: {a.alerts} alerts {a.spacing:g} ms apart (after {WARMUP} warm-up alerts)"
            + (f", {a.rounds} rounds, the systems in turn, each a fresh start" if a.rounds else "")
            + (f"; burst: {a.burst} alerts published at once" if a.burst else "; no burst")
            + (f"; idle CPU over {a.idle:g} s\n" if a.idle else "; no idle period\n")
            + f"{ready}\n\n{table}\n\n{targets}\n"
            + "".join(f"\n{s}\n" for s in skipped)
        )
        write_section(ROOT / "docs" / "benchmarks.md", a.section, body)
        print("docs/benchmarks.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
