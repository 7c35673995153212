"""Secrets: ``${VAR}`` substitution and ``*_file`` keys.

Pure functions: the environment and the file reader come in as arguments (``read_text`` is the
default reader, the only place a secret file is opened).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

# `$${` is a literal `${` (an escape, so that any text can be written: the add-on writes what
# a user typed this way); else `${NAME}` is the variable NAME.
VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}")
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_text(path: str) -> str:
    """The default file reader: the file's text (UTF-8). Raises OSError or ValueError."""
    with open(path, encoding="utf-8") as f:
        return f.read()


def literal(text: str) -> str:
    """``text`` escaped so that ``substitute`` gives it back unchanged (``${`` -> ``$${``)."""
    return text.replace("${", "$${")


def substitute(text: str, env: Mapping[str, str], secret: bool = False) -> tuple[str, list[str]]:
    """``text`` with every ``${VAR}`` replaced from ``env`` and every ``$${`` made ``${``, and
    the problems found (a bad reference, an unset variable). A value is never echoed; for a
    ``secret`` (a password), not even a reference, unless it is the whole value."""
    problems: list[str] = []
    whole = VAR.fullmatch(text) is not None

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:
            return "${"
        valid = VAR_NAME.fullmatch(name) is not None
        if secret and not (whole and valid):
            # part of a password: naming the reference would print part of the password
            why = "is not set" if valid and name not in env else "is not a variable name"
            if valid and name in env:
                return env[name]
            problems.append(
                f"holds a ${{...}} reference that {why} (write $${{ for a literal ${{, "
                "or put the password in a file and use the *_file key)"
            )
            return ""
        if not valid:
            problems.append(f"bad variable reference '${{{name}}}' (write $${{ for a literal ${{)")
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
