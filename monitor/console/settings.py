"""``console.yaml``: what ``streamqc console`` serves, where it listens and which broker it reads.

Loaded the way the daemon's and the agent's files are (same YAML reader, same one-line errors
``FILE:LINE: KEY.PATH: what is wrong, got VALUE``), with the daemon's ``mqtt`` keys minus the
embedded broker: a console always reads a real broker that every site publishes to. This is
the one module of the console that uses the configuration machinery of ``monitor.config``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, PlainValidator

from monitor.config import (
    DAEMON_ONLY_MQTT_KEYS,
    MqttConfig,
    host_port,
    load_document,
    parse_duration,
)
from monitor.config.schema import Section, Version, validated
from monitor.errors import ConfigError
from monitor.util.mqtt_connection import BrokerSettings

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_PREFIXES = ("streamqc/+",)
DEFAULT_HISTORY_S = 30 * 86_400.0
USERS_FILE = "users.json"


@dataclass(frozen=True)
class ServerTls:
    """HTTPS for the console itself (else put it behind a reverse proxy that terminates TLS)."""

    cert: str
    """Certificate chain (PEM)."""
    key: str
    """Its private key (PEM)."""


@dataclass(frozen=True)
class ConsoleSettings:
    """A loaded console configuration."""

    listen_host: str
    listen_port: int
    mqtt: MqttConfig
    prefixes: tuple[str, ...]
    """Topic prefixes to watch; a ``+`` level matches every site."""
    users_file: Path
    state_dir: Path
    tls: ServerTls | None
    history_s: float
    """How long alarm history is kept."""
    source: str = "<defaults>"

    def broker(self) -> BrokerSettings:
        """Reads the password and TLS files now: a bad path is a ConfigError at start-up."""
        return BrokerSettings.from_config(self.mqtt, default_client_id())

    @property
    def database(self) -> Path:
        return self.state_dir / "console.db"


def default_client_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", os.uname().nodename.split(".")[0]) or "host"
    return f"streamqc-console-{host}"


def default_state_dir() -> Path:
    if os.environ.get("STATE_DIRECTORY"):  # systemd's StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    return Path.home() / ".local" / "state" / "streamqc-console"


# --- Schema -----------------------------------------------------------------------------------


def _listen(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
    host_port(value, "listen")
    return value


def _prefix(value: object) -> str:
    if not isinstance(value, str) or not value.strip("/"):
        raise ValueError("must be a topic prefix such as streamqc/+ or streamqc/london")
    levels = value.strip("/").split("/")
    for level in levels:
        if not level or "#" in level or "\0" in level or ("+" in level and level != "+"):
            raise ValueError(
                f"must be topic levels, '+' standing alone for any site (no '#'), got {value!r}"
            )
    return "/".join(levels)


def _history(value: object) -> float:
    """A duration, with ``d`` for days as well (``30d``)."""
    if isinstance(value, str) and (days := re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*d\s*", value)):
        seconds = float(days[1]) * 86_400.0
    else:
        seconds = parse_duration(value)
    if seconds < 3600.0:
        raise ValueError("must be at least 1h (the channel page plots the last 24 h)")
    return seconds


def _path(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a path")
    return value


Listen = Annotated[str, PlainValidator(_listen)]
Prefix = Annotated[str, PlainValidator(_prefix)]


# Sections generated at run time from the dataclasses; to the type checker, any value.
if TYPE_CHECKING:
    _Mqtt = Any
    _ServerTls = Any
else:
    # The daemon's mqtt keys and checks, url required, without the embedded broker, the event
    # queue and the prefix: a console reads every site's prefix (``prefixes``).
    _Mqtt = validated(
        MqttConfig, omit=DAEMON_ONLY_MQTT_KEYS | {"prefix"}, require=frozenset({"url"})
    )
    _ServerTls = validated(ServerTls)


class _ConsoleFile(Section):
    version: Version
    listen: Listen = DEFAULT_LISTEN
    mqtt: _Mqtt
    prefixes: Annotated[list[Prefix], Field(min_length=1)] = list(DEFAULT_PREFIXES)
    users_file: Annotated[str, PlainValidator(_path)] | None = None
    state_dir: Annotated[str, PlainValidator(_path)] | None = None
    tls: _ServerTls | None = None
    history: Annotated[float, PlainValidator(_history)] = DEFAULT_HISTORY_S


def load_console_settings(path: str | Path) -> ConsoleSettings:
    """Read and validate console.yaml; raise ConfigError naming file, line and key."""
    source = str(path)
    spec, document = load_document(path, _ConsoleFile, "version and mqtt at least")
    if len(set(spec.prefixes)) != len(spec.prefixes):
        raise document.error(("prefixes",), "lists a prefix twice")
    host, port = host_port(spec.listen)
    state_dir = Path(spec.state_dir) if spec.state_dir else default_state_dir()
    users_file = Path(spec.users_file) if spec.users_file else state_dir / USERS_FILE
    return ConsoleSettings(
        listen_host=host,
        listen_port=port,
        mqtt=spec.mqtt,
        prefixes=tuple(spec.prefixes),
        users_file=users_file,
        state_dir=state_dir,
        tls=spec.tls,
        history_s=spec.history,
        source=source,
    )


def check_tls_files(settings: ConsoleSettings) -> None:
    """A missing certificate or key is a ConfigError before the console starts listening."""
    if settings.tls is None:
        return
    for key in ("cert", "key"):
        name = getattr(settings.tls, key)
        if not Path(name).is_file():
            raise ConfigError(f"{settings.source}: tls.{key}: no such file {name}")
