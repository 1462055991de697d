"""The agent's YAML (``streamqc agent``; format: ``configs/agent-example.yaml``).

Loading follows the daemon's (``monitor.config.load``): the same YAML reader, schema machinery
and one-line errors (``FILE:LINE: KEY.PATH: what is wrong, got VALUE``), the same ``mqtt``
model as the daemon without the embedded broker (the agent always talks to the daemon's
broker, so ``url`` is required). ``monitor.daemon.agent_service`` runs it.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from annotated_types import Gt
from pydantic import Field, PlainValidator, StrictStr, model_validator

from failover.agent.settings import (
    AgentChannel,
    AgentSettings,
    HttpSettings,
    ProcessSettings,
    ScriptSettings,
)
from monitor.config.load import broker_section, load_document
from monitor.config.model import MqttConfig
from monitor.config.schema import (
    ChannelName,
    Name,
    Section,
    Version,
    parse_duration,
    validated,
)
from monitor.config.yaml_lines import KeyPath, YamlDocument
from monitor.util.mqtt_connection import BrokerSettings

STATE_FILE = "agent-state.json"


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

# Sections generated at run time from the dataclasses; to the type checker, any value.
if TYPE_CHECKING:
    _Process = Any
    _Http = Any
    _Script = Any
    _Mqtt = Any
else:
    _Process = validated(ProcessSettings)
    _Http = validated(HttpSettings)
    _Script = validated(ScriptSettings)
    _Mqtt = broker_section()


class _Action(Section):
    process: _Process | None = None
    http: _Http | None = None
    script: _Script | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> _Action:
        given = [name for name in _ACTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"must hold exactly one of {', '.join(_ACTIONS)}")
        return self

    def settings(self) -> Any:
        return next(getattr(self, name) for name in _ACTIONS if getattr(self, name) is not None)


class _Channel(Section):
    name: ChannelName
    inputs: Annotated[dict[StrictStr, InputValue], Field(min_length=1)]
    initial: Name | None = None
    action: _Action


class _AgentFile(Section):
    version: Version
    site: Name
    agent_id: Name | None = None
    mqtt: _Mqtt
    state_dir: StrictStr | None = None
    max_command_age: Annotated[float, PlainValidator(parse_duration), Gt(0.0)] | None = None
    channels: Annotated[list[_Channel], Field(min_length=1)]


# --- Loading ----------------------------------------------------------------------------------


def load_agent_config(path: str | Path) -> AgentConfig:
    """Read and validate an agent configuration; raise ConfigError naming file, line and key."""
    spec, document = load_document(path, _AgentFile, "version, site, mqtt and channels")
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
    mqtt: MqttConfig = spec.mqtt
    state_dir = Path(spec.state_dir) if spec.state_dir else default_state_dir()
    agent_id = spec.agent_id or default_agent_id()
    settings = AgentSettings(
        agent_id=agent_id,
        prefix=mqtt.prefix or f"streamqc/{spec.site}",
        channels=tuple(channels),
        state_file=str(state_dir / STATE_FILE),
        max_command_age_s=(
            AgentSettings.max_command_age_s
            if spec.max_command_age is None
            else spec.max_command_age
        ),
    )
    return AgentConfig(settings, mqtt, spec.site, document.source)
