"""Shared helpers for the benchmarks: /proc readings, percentiles, MQTT clients.

Ports, waiting, Mosquitto and the SMTP sink come from the test harness (``tests.harness``), so
the benchmarks and the tests run the same parts. Everything listens on 127.0.0.1 only. The SMTP
sink runs in its own process (``python -m tests.harness sink``, started by ``SinkProc``) so that
its work does not share a GIL with the publisher; it appends one line per accepted mail to a file:

    <time.time() at the end of DATA> <seq> <publish time in microseconds>

where seq and the publish time are read from the body (``bench <seq> <us>``; see ``payload``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the harness lives in tests/ at the repository root
    sys.path.insert(0, str(ROOT))

from tests import harness  # noqa: E402
from tests.harness import SinkProc, free_port, mosquitto_exe, port_open, wait_for  # noqa: E402
from tests.harness.sink import BENCH_BODY as BODY  # noqa: E402

__all__ = ["BODY", "ROOT", "SinkProc", "free_port", "port_open", "wait_for"]

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- small things


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


class Mosquitto(harness.Mosquitto):
    """The harness's Mosquitto with the benchmarks' settings: no persistence unless asked, and
    a burst of 10,000 QoS 1 messages must not hit the default cap of 1,000 queued messages per
    client (the broker would drop the rest); the in-flight window to each subscriber stays at
    its default of 20, as on a user's broker."""

    def __init__(self, workdir: Path, persistence: bool = False) -> None:
        super().__init__(workdir, persistence=persistence, max_queued_messages=200000)


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
    """``python bench/common.py sink --port ... --out ... --mode-file ...``: the harness's sink
    process, kept under its old name."""
    from tests.harness.sink import main as sink_main

    if sys.argv[1:2] != ["sink"]:
        sys.exit("usage: common.py sink --port PORT --out FILE --mode-file FILE")
    sink_main(sys.argv[2:])


if __name__ == "__main__":
    main()
