"""Finding the config file and opening it."""

from __future__ import annotations

import os.path
from collections.abc import Callable, Mapping

from mqtt2sms.config.build import parse_config
from mqtt2sms.config.model import (
    Loaded,
)
from mqtt2sms.errors import ConfigError

CONFIG_SEARCH = ("config.yaml", "/etc/mqtt2sms/config.yaml")


def find_config_path(
    cli_path: str | None, env: Mapping[str, str], exists: Callable[[str], bool]
) -> str:
    """Where the config is: ``-c PATH``, else $MQTT2SMS_CONFIG, else the first of
    ./config.yaml and /etc/mqtt2sms/config.yaml that ``exists``.

    A path given by -c or the environment is returned even when missing (the caller reports
    it); with neither and no file found, the last place looked (/etc/mqtt2sms/config.yaml).
    """
    if cli_path:
        return cli_path
    if env.get("MQTT2SMS_CONFIG"):
        return env["MQTT2SMS_CONFIG"]
    for candidate in CONFIG_SEARCH:
        if exists(candidate):
            return candidate
    return CONFIG_SEARCH[-1]


def load_config(cli_path: str | None, env: Mapping[str, str]) -> Loaded:
    """Find, read and parse the config (see find_config_path and parse_config).

    Raises ConfigError: a missing or unreadable file (one line), or every problem in it.
    """
    path = find_config_path(cli_path, env, os.path.isfile)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if cli_path or env.get("MQTT2SMS_CONFIG"):
            raise ConfigError([f"{path}: config file not found"]) from None
        raise ConfigError(
            [
                "config file not found: looked for ./config.yaml and /etc/mqtt2sms/config.yaml "
                "(give one with -c PATH or $MQTT2SMS_CONFIG)"
            ]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: cannot read config file: not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror or exc}"]) from None
    return parse_config(text, path, env)
