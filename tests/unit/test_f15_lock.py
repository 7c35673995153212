"""The state directory's lock: one daemon per state directory, the next one names the first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mqtt2sms.system import Held, Locked, lock_path, lock_state_dir

HOLD = """
import sys, time
from mqtt2sms.system import Locked, lock_state_dir
got = lock_state_dir(sys.argv[1])
assert isinstance(got, Locked)
print("locked", flush=True)
time.sleep(60)
"""


def test_the_second_taker_is_told_the_first_ones_pid_until_it_ends(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    first = subprocess.Popen([sys.executable, "-c", HOLD, state], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "locked"
        held = lock_state_dir(state)
        assert held == Held(first.pid, lock_path(state))
        assert f"pid {first.pid}" in held.message()
    finally:
        first.kill()  # kill -9: the kernel releases the lock
        first.wait()
        if first.stdout is not None:
            first.stdout.close()
    mine = lock_state_dir(state)
    assert isinstance(mine, Locked)
    assert Path(lock_path(state)).read_text().strip() == str(os.getpid())
    # a second open file in this very process is refused too (flock is per open file)
    again = lock_state_dir(state)
    assert again == Held(os.getpid(), lock_path(state))
    os.close(mine.fd)
    last = lock_state_dir(state)
    assert isinstance(last, Locked)
    os.close(last.fd)


def test_a_lock_file_without_a_pid_is_named_as_another_process(tmp_path: Path) -> None:
    assert "another process" in Held(None, "x").message()


def test_a_state_directory_that_cannot_be_made_is_an_os_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OSError):
        lock_state_dir(str(tmp_path / "file" / "state"))
