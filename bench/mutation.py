"""Mutation testing of the pure delivery policy: delivery.py, retry.py, throttle.py.

Run it when the policy changes (not in CI: it takes 10-20 minutes on two cores)::

    .venv/bin/pip install 'mutmut>=3.8,<4'      # a tool, not a dependency of the package
    .venv/bin/python bench/mutation.py          # all three modules
    .venv/bin/python bench/mutation.py --modules delivery retry

It copies the working tree (tracked and new files, not ignored ones) to a temporary directory,
adds a ``[tool.mutmut]`` section to the copy's pyproject.toml (the repo's own stays clean),
runs ``mutmut run`` there with the fast tests (tests/unit and tests/component), and prints,
per module, the mutants killed, the survivors, and the score: killed / (all - equivalent).
``EQUIVALENT`` below names the survivors judged equivalent (no test can tell them from the
original); docs/mutation.md says why for each. A survivor not in that list is a test to write.

Exit status: 0 when every module reaches ``--goal`` (90 % by default), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("delivery", "retry", "throttle")
TESTS = ("tests/unit", "tests/component")

# Survivors judged equivalent, by mutmut's name (see docs/mutation.md for why). The names are
# stable for a given source: a changed function renumbers its mutants, so rerun and re-judge.
EQUIVALENT: dict[str, str] = {
    "mqtt2sms.delivery.x_after__mutmut_172": "drops next_at=None: None is the default",
    "mqtt2sms.throttle.x__format_rate__mutmut_20": "// vs / on an exact multiple",
    "mqtt2sms.throttle.x__next_local_midnight__mutmut_19": "dt.time(0) == dt.time(0, 0)",
    "mqtt2sms.throttle.x__next_local_midnight__mutmut_20": "dt.time(0, ) == dt.time(0, 0)",
    "mqtt2sms.throttle.x_check_cooldown__mutmut_16": "a cooldown of 0 allows anyway",
    "mqtt2sms.throttle.x_from_json__mutmut_5": "'UTF-8' is 'utf-8'",
    "mqtt2sms.throttle.x_note_accepted__mutmut_13": "now was checked by note_deferred",
    "mqtt2sms.throttle.x_note_accepted__mutmut_17": "now was checked by note_deferred",
    "mqtt2sms.throttle.x_note_accepted__mutmut_18": "now was checked by note_deferred",
    "mqtt2sms.throttle.x_note_accepted__mutmut_28": "`not rate_window` already catches 0",
    "mqtt2sms.throttle.x_note_sent__mutmut_12": "suppressed=0 is the default",
    "mqtt2sms.throttle.x_prune__mutmut_22": "`rate_window and` already excludes 0",
    "mqtt2sms.throttle.x_quiet_window_end__mutmut_15": "start == end returned before",
    "mqtt2sms.throttle.x_quiet_window_end__mutmut_18": "wall == end: the fold loop gives None",
    "mqtt2sms.throttle.x_quiet_window_end__mutmut_25": "wall == end: the fold loop gives None",
    "mqtt2sms.throttle.x_quiet_window_end__mutmut_38": "instant == now needs wall == end",
    "mqtt2sms.throttle.x_to_json__mutmut_26": "ensure_ascii=None is falsy like False",
}

# A timeout is a kill (the mutant made a test loop); the type check is not configured.
KILLED = ("killed", "timeout", "caught by type check")


def copy_tree(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = Path(os.fsdecode(raw))
        src = ROOT / rel
        if not src.is_file():
            continue  # deleted in the working tree
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)


def configure(dest: Path, modules: list[str]) -> None:
    top = sorted({p.name for p in dest.iterdir() if p.name not in ("mqtt2sms", "mutants")})
    section = "\n".join(
        [
            "",
            "[tool.mutmut]",
            'source_paths = ["mqtt2sms"]',
            "only_mutate = " + json.dumps([f"mqtt2sms/{m}.py" for m in modules]),
            "pytest_add_cli_args_test_selection = " + json.dumps(list(TESTS)),
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:randomly"]',
            "also_copy = " + json.dumps(top),
            "",
        ]
    )
    with open(dest / "pyproject.toml", "a", encoding="utf-8") as f:
        f.write(section)


def results(work: Path) -> dict[str, str]:
    """mutant name -> status, from mutmut's metadata files."""
    from mutmut.stats import status_by_exit_code  # mutmut's own reading of its exit codes

    out: dict[str, str] = {}
    for meta in (work / "mutants").rglob("*.meta"):
        data = json.loads(meta.read_text(encoding="utf-8"))
        for name, code in data.get("exit_code_by_key", {}).items():
            out[name] = status_by_exit_code[code]
    return out


def module_of(name: str) -> str:
    m = re.match(r"mqtt2sms\.(\w+)\.", name)
    return m.group(1) if m else "?"


def report(statuses: dict[str, str], modules: list[str], goal: float) -> bool:
    ok = True
    for mod in modules:
        mine = {n: s for n, s in statuses.items() if module_of(n) == mod}
        killed = sum(1 for s in mine.values() if s in KILLED)
        survivors = sorted(n for n, s in mine.items() if s not in KILLED)
        equivalent = [n for n in survivors if n in EQUIVALENT]
        real = [n for n in survivors if n not in EQUIVALENT]
        scored = len(mine) - len(equivalent)
        score = killed / scored if scored else 1.0
        ok &= score >= goal
        print(
            f"{mod}: {len(mine)} mutants, {killed} killed, {len(equivalent)} equivalent, "
            f"{len(real)} other survivors: {score:.1%} of the non-equivalent killed"
        )
        for n in real:
            print(f"  survived ({mine[n]}): {n}")
        for n in equivalent:
            print(f"  equivalent: {n}: {EQUIVALENT[n]}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--modules", nargs="+", choices=MODULES, default=list(MODULES))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--goal", type=float, default=0.9)
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it (for `show`)")
    args = ap.parse_args()

    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if mutmut is None:
        print("mutmut is not installed: .venv/bin/pip install 'mutmut>=3.8,<4'", file=sys.stderr)
        return 2
    tmp = None
    if args.keep:
        work = args.keep.resolve()
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="mqtt2sms-mutation-")
        work = Path(tmp.name)
    try:
        copy_tree(work)
        configure(work, args.modules)
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        r = subprocess.run(
            [mutmut, "run", "--max-children", str(args.jobs)], cwd=work, env=env, check=False
        )
        if r.returncode != 0:
            print(f"mutmut run exited {r.returncode}", file=sys.stderr)
            return 2
        statuses = results(work)
        if not statuses:
            print("mutmut recorded no mutants", file=sys.stderr)
            return 2
        return 0 if report(statuses, args.modules, args.goal) else 1
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
