"""``streamqc agent``: the agent's YAML (format: ``configs/agent-example.yaml``) and its start.

Loading follows ``monitor.config.model``: the same YAML reader, schema machinery and one-line
errors (``FILE:LINE: KEY.PATH: what is wrong, got VALUE``), the same ``mqtt`` keys as the
daemon minus the embedded broker (the agent always talks to the daemon's broker, so ``url`` is
required). ``run_agent`` wires ``failover.agent.agent.Agent`` to the broker, logging, signals and
systemd.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import aiomqtt
from annotated_types import Interval
from pydantic import Field, PlainValidator, StrictStr, ValidationError, model_validator

from failover.agent.agent import Agent
from failover.agent.settings import (
    AgentChannel,
    AgentSettings,
    HttpSettings,
    ProcessSettings,
    ScriptSettings,
)
from monitor.config.model import (
    MqttConfig,
    Name,
    TlsConfig,
    _first_problem,
    _read_text,
    _Section,
    _show,
    _validated,
    _version,
)
from monitor.config.yaml_lines import KeyPath, YamlDocument, load_yaml
from monitor.daemon.sdnotify import Notifier
from monitor.logs import get_logger
from monitor.sinks.mqtt import BrokerSettings

STATE_FILE = "agent-state.json"


@dataclass(frozen=True)
class AgentMqttConfig:
    """The daemon's ``mqtt`` keys without the embedded broker and the event queue."""

    url: str
    """mqtt://HOST[:PORT] or mqtts://HOST[:PORT]: the broker the daemon uses."""
    client_id: str | None = None
    """Default: streamqc-agent-<site>-<agent_id>."""
    username: str | None = None
    password_file: str | None = None
    tls: TlsConfig | None = None
    prefix: str | None = None
    """Topic prefix; default streamqc/<site>. Must be the daemon's."""
    keepalive_s: Annotated[float, Interval(ge=5.0, le=3600.0)] = 30.0

    def __post_init__(self) -> None:
        self.to_mqtt()  # the daemon's checks of url and prefix

    def to_mqtt(self) -> MqttConfig:
        return MqttConfig(
            url=self.url,
            client_id=self.client_id,
            username=self.username,
            password_file=self.password_file,
            tls=self.tls,
            prefix=self.prefix,
            keepalive_s=self.keepalive_s,
        )


@dataclass(frozen=True)
class AgentConfig:
    """A loaded agent configuration: the agent's settings and where its broker is."""

    settings: AgentSettings
    mqtt: MqttConfig
    site: str
    source: str

    def broker(self) -> BrokerSettings:
        """Reads the password and TLS files now: a bad path is a ConfigError at start-up."""
        default_id = f"streamqc-agent-{self.site}-{self.settings.agent_id}"
        return BrokerSettings.from_config(self.mqtt, default_id)


def default_agent_id() -> str:
    """The host's short name, in the characters a topic level may use here."""
    name = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name) or "agent"


def default_state_dir() -> Path:
    if os.environ.get("STATE_DIRECTORY"):  # systemd's StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    return Path.home() / ".local" / "state" / "streamqc-agent"


# --- Schema -----------------------------------------------------------------------------------


def _input_value(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string (what the encoder is given as {input}, e.g. a URL)")
    if not value.strip():
        raise ValueError("must not be empty")
    return value


InputValue = Annotated[str, PlainValidator(_input_value)]
_ACTIONS = ("process", "http", "script")


class _Action(_Section):
    process: _validated(ProcessSettings) | None = None  # type: ignore[valid-type]
    http: _validated(HttpSettings) | None = None  # type: ignore[valid-type]
    script: _validated(ScriptSettings) | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _exactly_one(self) -> _Action:
        given = [name for name in _ACTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"must hold exactly one of {', '.join(_ACTIONS)}")
        return self

    def settings(self) -> Any:
        return next(getattr(self, name) for name in _ACTIONS if getattr(self, name) is not None)


class _Channel(_Section):
    name: Name
    inputs: Annotated[dict[StrictStr, InputValue], Field(min_length=1)]
    initial: Name | None = None
    action: _Action


class _AgentFile(_Section):
    version: Annotated[int, PlainValidator(_version)]
    site: Name
    agent_id: Name | None = None
    mqtt: _validated(AgentMqttConfig)  # type: ignore[valid-type]
    state_dir: StrictStr | None = None
    channels: Annotated[list[_Channel], Field(min_length=1)]


# --- Loading ----------------------------------------------------------------------------------


def load_agent_config(path: str | Path) -> AgentConfig:
    """Read and validate an agent configuration; raise ConfigError naming file, line and key."""
    source = str(path)
    document = load_yaml(_read_text(path), source)
    if document.data is None:
        raise document.error((), "the file is empty; expected version, site, mqtt and channels")
    if not isinstance(document.data, dict):
        raise document.error(
            (),
            f"expected a mapping of version, site, mqtt and channels, got {_show(document.data)}",
        )
    try:
        spec = _AgentFile.model_validate(document.data)
    except ValidationError as error:
        raise _first_problem(error, document) from None
    return _build(spec, document)


def _build(spec: _AgentFile, document: YamlDocument) -> AgentConfig:
    channels = []
    first_line: dict[str, int] = {}
    for i, channel in enumerate(spec.channels):
        where: KeyPath = ("channels", i)
        if channel.name in first_line:
            first = first_line[channel.name]
            raise document.error(
                (*where, "name"), f"duplicate channel name '{channel.name}' (first at line {first})"
            )
        first_line[channel.name] = document.line((*where, "name"))
        for name in channel.inputs:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise document.error(
                    (*where, "inputs", name),
                    "an input name must be letters, digits, '_', '.' or '-' (commands name it)",
                )
        if channel.initial is None and "primary" not in channel.inputs:
            raise document.error(
                (*where, "initial"),
                f"not set, and no input is named primary (inputs: {', '.join(channel.inputs)})",
            )
        try:
            channels.append(
                AgentChannel(
                    name=channel.name,
                    inputs=dict(channel.inputs),
                    action=channel.action.settings(),
                    initial=channel.initial or "primary",
                )
            )
        except ValueError as error:
            key, _, message = str(error).partition(": ")
            raise document.error((*where, key), message) from None
    mqtt: AgentMqttConfig = spec.mqtt
    state_dir = Path(spec.state_dir) if spec.state_dir else default_state_dir()
    agent_id = spec.agent_id or default_agent_id()
    settings = AgentSettings(
        agent_id=agent_id,
        prefix=mqtt.prefix or f"streamqc/{spec.site}",
        channels=tuple(channels),
        state_file=str(state_dir / STATE_FILE),
    )
    return AgentConfig(settings, mqtt.to_mqtt(), spec.site, document.source)


# --- Running ----------------------------------------------------------------------------------


def client_factory(broker: BrokerSettings) -> Any:
    """``failover.agent.agent.Connect`` for the broker: a client per connection, with its will."""

    def connect(will: aiomqtt.Will) -> aiomqtt.Client:
        return aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=broker.client_id,
            username=broker.username,
            password=broker.password,
            tls_context=broker.tls,
            will=will,
            clean_session=True,  # no commands kept for an absent agent: see failover.agent.agent
            keepalive=max(1, round(broker.keepalive_s)),
            timeout=10.0,
        )

    return connect


async def run_agent(config: AgentConfig, broker: BrokerSettings) -> int:
    """Run the agent until SIGTERM / SIGINT; tell systemd (Type=notify, WatchdogSec=)."""
    log = get_logger()
    notifier = Notifier.from_env()
    agent = Agent(config.settings, client_factory(broker), log, notify=notifier)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    log.info(
        "agent configuration",
        config=config.source,
        broker=f"{broker.host}:{broker.port}",
        prefix=config.settings.prefix,
        state_file=config.settings.state_file,
    )
    try:
        await agent.run()
    finally:
        notifier.close()
    return 0
