"""Shared helpers for the benchmarks: ports, Mosquitto, the SMTP sink process, /proc readings.

Everything listens on 127.0.0.1 only. The SMTP sink runs in its own process
(``python bench/common.py sink ...``) so that its work does not share a GIL with the
publisher; it appends one line per accepted mail to a file:

    <time.time() at the end of DATA> <seq> <publish time in microseconds>

where seq and the publish time are read from the body (``bench <seq> <us>``; see ``payload``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BODY = re.compile(rb"bench (\d+) (\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- small things


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], object], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def payload(seq: int) -> str:
    """Plain digits, well under 160 characters: mqtt2sms sends it as the text unchanged."""
    return f"bench {seq} {int(time.time() * 1_000_000)}"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


# --------------------------------------------------------------------------- /proc


def rss_mb(pid: int) -> float:
    """VmRSS of one process, in MB (1024 * 1024 bytes)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def idle_cpu_percent(pid: int, seconds: float) -> float:
    """CPU used over `seconds` of wall time, as % of one core."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    return 100.0 * (c1 - c0) / (t1 - t0)


def machine() -> dict[str, str]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mosq = mosquitto_exe()
    try:
        out = subprocess.run([mosq, "-h"], capture_output=True, text=True, timeout=5).stdout
        mosq_v = out.splitlines()[0].replace("mosquitto version ", "") if out else "?"
    except (OSError, subprocess.SubprocessError):
        mosq_v = "?"
    try:
        from importlib.metadata import version

        paho_v = version("paho-mqtt")
        m2s_v = version("mqtt2sms")
    except Exception:
        paho_v = m2s_v = "?"
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "mqtt2sms"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        rev = (rev or "?") + (" + uncommitted changes in mqtt2sms/" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        rev = "?"
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {
        "rev": rev,
        "load": load,
        "cpus": str(os.cpu_count()),
        "model": model,
        "python": sys.version.split()[0],
        "paho": paho_v,
        "mosquitto": mosq_v,
        "mqtt2sms": m2s_v,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


# --------------------------------------------------------------------------- Mosquitto


def mosquitto_exe() -> str:
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    """A private Mosquitto on a free 127.0.0.1 port."""

    def __init__(self, workdir: Path, persistence: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            # a burst of 10,000 QoS 1 messages must not hit the default cap of 1,000 queued
            # messages per client (the broker would drop the rest); the in-flight window to
            # each subscriber stays at its default of 20, as on a user's broker
            "max_queued_messages 200000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if persistence:
            lines += [
                "persistence true",
                f"persistence_location {workdir}/",
                "autosave_interval 1",
            ]
        if os.geteuid() == 0:
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        with open(self.workdir / "mosquitto.log", "ab") as logf:
            self.proc = subprocess.Popen(
                [mosquitto_exe(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=logf
            )
        wait_for(lambda: port_open(self.port), 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


# --------------------------------------------------------------------------- the SMTP sink


class SinkProc:
    """The sink in its own process; `received()` reads what it has recorded so far."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.out = workdir / "sink.txt"
        self.mode_file = workdir / "sink.mode"
        self.out.write_text("")
        self.mode_file.write_text("ok")
        self.proc: subprocess.Popen[bytes] | None = None
        self._pos = 0
        self._lines: list[tuple[float, int, int]] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "sink",
                "--port",
                str(self.port),
                "--out",
                str(self.out),
                "--mode-file",
                str(self.mode_file),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), 10, "the SMTP sink to listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def set_mode(self, mode: str) -> None:
        """`ok`, or an SMTP reply code to give to DATA for a while (`451`, `421`)."""
        tmp = self.mode_file.with_suffix(".tmp")
        tmp.write_text(mode)
        tmp.replace(self.mode_file)

    def received(self) -> list[tuple[float, int, int]]:
        """(arrival time, seq, publish time in us) of every mail so far."""
        with open(self.out, "rb") as f:
            f.seek(self._pos)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._pos += end
        for line in chunk[:end].splitlines():
            t, seq, sent = line.split()
            self._lines.append((float(t), int(seq), int(sent)))
        return self._lines


def _run_sink(port: int, out: str, mode_file: str) -> None:
    from aiosmtpd.controller import Controller

    f = open(out, "ab", buffering=0)  # noqa: SIM115 (kept open for the life of the process)
    mode = ["ok"]
    checked = [0.0]

    def current_mode() -> str:
        now = time.monotonic()
        if now - checked[0] > 0.05:
            checked[0] = now
            try:
                mode[0] = Path(mode_file).read_text().strip() or "ok"
            except OSError:
                mode[0] = "ok"
        return mode[0]

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            m = current_mode()
            if m == "421":
                return "421 4.3.2 service shutting down (bench)"
            if m == "451":
                return "451 4.3.0 try again later (bench)"
            now = time.time()
            data = bytes(envelope.original_content or envelope.content)
            found = BODY.search(data)
            if found:
                f.write(b"%.6f %s %s\n" % (now, found.group(1), found.group(2)))
            return "250 2.0.0 queued"

    ctl = Controller(Handler(), hostname="127.0.0.1", port=port)
    ctl.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    ctl.stop()
    f.close()


# --------------------------------------------------------------------------- MQTT helpers


def mqtt_client(port: int, client_id: str, clean: bool = True) -> Any:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


class RetainedWatch:
    """Records (time.time(), payload) of each message on some topics."""

    def __init__(self, port: int, topics: Iterable[str]) -> None:
        self.seen: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()
        self.client = mqtt_client(port, f"bench-watch-{os.getpid()}-{id(self)}")
        self.client.on_message = self._on
        ready = threading.Event()
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.subscribe([(t, 1) for t in topics])
        ready.wait(5)

    def _on(self, _c: Any, _u: Any, msg: Any) -> None:
        with self.lock:
            self.seen.append((time.time(), msg.topic, msg.payload.decode(errors="replace")))

    def first(self, topic: str, value: str, after: float) -> float | None:
        with self.lock:
            for t, top, p in self.seen:
                if top == topic and p == value and t >= after:
                    return t
        return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def clear_retained(client: Any, topic: str) -> None:
    client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)


def main() -> None:
    ap = argparse.ArgumentParser(description="bench helpers (the SMTP sink process)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sink", help="run the SMTP sink")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--mode-file", required=True)
    a = ap.parse_args()
    if a.cmd == "sink":
        asyncio.set_event_loop(asyncio.new_event_loop())
        _run_sink(a.port, a.out, a.mode_file)


if __name__ == "__main__":
    main()
