"""Secrets: ``${VAR}`` substitution and ``*_file`` keys.

Pure functions: the environment and the file reader come in as arguments (``read_text`` is the
default reader, the only place a secret file is opened).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

VAR = re.compile(r"\$\{([^}]*)\}")
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_text(path: str) -> str:
    """The default file reader: the file's text (UTF-8). Raises OSError or ValueError."""
    with open(path, encoding="utf-8") as f:
        return f.read()


def substitute(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """``text`` with every ``${VAR}`` replaced from ``env``, and the problems found (a bad
    reference, an unset variable); the value itself is never echoed."""
    problems: list[str] = []

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if not VAR_NAME.fullmatch(name):
            problems.append(f"bad variable reference '${{{name}}}'")
            return ""
        if name not in env:
            problems.append(f"environment variable {name} is not set")
            return ""
        return env[name]

    return VAR.sub(one, text), problems


def read_secret_file(read_file: Callable[[str], str], path: str) -> str:
    """A ``*_file`` secret: the file's content, one trailing newline (LF or CRLF) stripped.

    Raises whatever ``read_file`` raises (OSError, ValueError)."""
    content = read_file(path)
    if content.endswith("\r\n"):
        return content[:-2]
    return content.removesuffix("\n")
