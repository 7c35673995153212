"""A private Mosquitto on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .wait import free_port, port_open, wait_for


def mosquitto_exe() -> str:
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def have_mosquitto() -> bool:
    return os.path.exists(mosquitto_exe())


class Mosquitto:
    """``users``: name -> password (anonymous refused); ``tls``: (certfile, keyfile) on the
    listener; ``persistence``: keep sessions and queued messages across ``restart()``;
    ``max_queued_messages``: raise the per-client queue cap (1,000 by default)."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str] | None = None,
        tls: tuple[str, str] | None = None,
        persistence: bool = True,
        max_queued_messages: int | None = None,
    ) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = [f"listener {self.port} 127.0.0.1"]
        if tls is not None:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        if users:
            pwfile = workdir / "passwd"
            pwfile.write_text("")
            for name, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pwfile), name, password], check=True)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if max_queued_messages is not None:
            lines.append(f"max_queued_messages {max_queued_messages}")
        if persistence:
            lines += ["persistence true", f"persistence_location {workdir}/", "autosave_interval 1"]
        lines += ["log_dest stderr", "log_type error", "log_type warning"]
        if os.geteuid() == 0:
            # started as root it would drop to the mosquitto user, who cannot write workdir
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [mosquitto_exe(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=logf
            )
        wait_for(lambda: port_open(self.port), 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
