"""What a durable commit costs on this disk: SQLite WAL, one INSERT + COMMIT at a time.

Compares `synchronous=FULL` (what the outbox uses), `NORMAL` and `OFF`, in a temporary
directory next to where the state directory would be (default: the current directory;
`--dir` to point at the disk the daemon's state lives on, e.g. an SD card).

    python bench/fsync.py                    # 2,000 commits per mode
    python bench/fsync.py --commits 500 --dir /var/lib
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, machine, summary_ms

ROW = "x" * 200  # about the size of one outbox row


def measure(directory: Path, mode: str, commits: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mqtt2sms-fsync-", dir=directory) as tmp:
        db = sqlite3.connect(os.path.join(tmp, "t.sqlite3"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={mode}")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL, at REAL)")
        for _ in range(20):  # warm up: the WAL file exists and has its size
            db.execute("INSERT INTO t (body, at) VALUES (?, ?)", (ROW, time.time()))
        out: list[float] = []
        for _ in range(commits):
            t0 = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (body, at) VALUES (?, ?)", (ROW, time.time()))
            db.execute("COMMIT")
            out.append((time.perf_counter() - t0) * 1000.0)
        db.close()
    return summary_ms(out)


def filesystem(directory: Path) -> str:
    """The mount point and type that hold `directory` (from /proc/self/mounts)."""
    best = ("?", "?")
    path = str(directory.resolve())
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                _dev, mnt, fstype = line.split()[:3]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(
                    best[0]
                ):
                    best = (mnt, fstype)
    except OSError:
        pass
    return f"{best[1]} (mounted on {best[0]})"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--commits", type=int, default=2000, help="commits per mode")
    ap.add_argument("--dir", default=".", help="where to put the test database")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    a = ap.parse_args()
    directory = Path(a.dir)
    rows = ["| synchronous | p50 ms | p99 ms | max ms | mean ms |", "|---|---|---|---|---|"]
    for mode in ("FULL", "NORMAL", "OFF"):
        s = measure(directory, mode, a.commits)
        rows.append(
            f"| {mode} | {s['p50']:.3f} | {s['p99']:.3f} | {s['max']:.3f} | {s['mean']:.3f} |"
        )
    table = "\n".join(rows)
    print(table)
    if not a.no_doc:
        from e2e import write_section

        m = machine()
        cmd = " ".join(["python", "bench/fsync.py", *sys.argv[1:]])
        body = (
            f"- machine: {m['cpus']} × {m['model']}, Python {m['python']},"
            f" SQLite {sqlite3.sqlite_version}\n"
            f"- filesystem: {filesystem(directory)}\n"
            f"- command: `{cmd}` ({a.commits} commits per mode, one ~200-byte row each)\n"
            f"- date: {m['date']}\n\n{table}\n"
        )
        write_section(ROOT / "docs" / "benchmarks.md", "fsync", body)
        print("docs/benchmarks.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
