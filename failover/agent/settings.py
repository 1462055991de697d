"""Settings of the encoder-side agent (``streamqc agent``): its channels, inputs and actions.

Plain frozen dataclasses; ``monitor/config/agent.py`` fills them from YAML
(``configs/agent-example.yaml``), a test or an embedding program may build them in code.
``__post_init__`` checks what the YAML schema cannot say, raising ``ValueError("key: what is
wrong")``.

Templates (a process's command line, an HTTP request, a script's arguments) take three
placeholders, replaced literally (so a JSON body keeps its own braces): ``{input}`` the URL of
the input to put on air, ``{input_name}`` its name (``primary``, ``backup``, ...), ``{channel}``
the channel's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Interval

from failover.policy_settings import check_ranges

PLACEHOLDERS = ("{input}", "{input_name}", "{channel}")
HttpMethod = Literal["GET", "POST", "PUT", "PATCH"]
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def fill(template: str, *, input_name: str, input_url: str, channel: str) -> str:
    """``template`` with its placeholders replaced (no ``str.format``: JSON has braces)."""
    return (
        template.replace("{input_name}", input_name)
        .replace("{input}", input_url)
        .replace("{channel}", channel)
    )


def _names_input(key: str, templates: tuple[str, ...]) -> None:
    """A template that names no input would make every switch the same call."""
    if not any("{input}" in t or "{input_name}" in t for t in templates):
        raise ValueError(f"{key}: must use {{input}} or {{input_name}} somewhere")


@dataclass(frozen=True)
class ProcessSettings:
    """Run the encoder as the agent's child; a switch restarts it with the other input.

    ``command`` is the command line (no shell), e.g. FFmpeg reading ``{input}``. The child runs
    in its own process group, gets SIGTERM (then SIGKILL after ``stop_timeout_s``) on a switch
    and when the agent stops, and SIGTERM if the agent dies. A switch is done once the new
    child has stayed up ``start_check_s``; a child that dies on its own is restarted on the
    same input with backoff (``restart_backoff_max_s`` at most between attempts).
    """

    command: tuple[str, ...]
    stop_timeout_s: Annotated[float, Gt(0.0)] = 5.0
    start_check_s: Annotated[float, Ge(0.0)] = 1.0
    restart_backoff_max_s: Annotated[float, Ge(1.0)] = 30.0

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.command or not self.command[0]:
            raise ValueError("command: must name a program, e.g. [ffmpeg, -i, '{input}', ...]")
        _names_input("command", self.command)


@dataclass(frozen=True)
class HttpSettings:
    """Call the encoder's HTTP API. Placeholders in ``url`` are URL-encoded, elsewhere not.

    The switch is done when the encoder answers with a status in ``expect_status`` (empty: any
    2xx) within ``timeout_s``.
    """

    url: str
    method: HttpMethod = "POST"
    body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: Annotated[float, Gt(0.0)] = 5.0
    expect_status: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_ranges(self)
        if not re.match(r"https?://[^/]", self.url):
            raise ValueError(f"url: must be http://... or https://..., got {self.url!r}")
        _names_input("url", (self.url, self.body or "", *self.headers.values()))
        for status in self.expect_status:
            if not 100 <= status <= 599:
                raise ValueError(f"expect_status: {status} is not an HTTP status")


@dataclass(frozen=True)
class ScriptSettings:
    """Run ``path ARGS...`` (no shell); exit status 0 means done.

    Killed (its whole process group) after ``timeout_s``. It also finds the values in its
    environment: STREAMQC_CHANNEL, STREAMQC_INPUT_NAME, STREAMQC_INPUT.
    """

    path: str
    args: tuple[str, ...] = ("{input_name}", "{input}", "{channel}")
    timeout_s: Annotated[float, Gt(0.0)] = 10.0

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.path:
            raise ValueError("path: must name a program")


ActionSettings = ProcessSettings | HttpSettings | ScriptSettings


@dataclass(frozen=True)
class AgentChannel:
    """One channel whose encoder this agent switches."""

    name: str
    inputs: Mapping[str, str]
    """Input name → what the encoder is given as ``{input}`` (usually a URL)."""
    action: ActionSettings
    initial: str = "primary"
    """The input put on air when the agent starts with nothing remembered."""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"name: must be letters, digits, '_', '.' or '-', got {self.name!r}")
        if not self.inputs:
            raise ValueError("inputs: must name at least one input")
        if self.initial not in self.inputs:
            names = ", ".join(self.inputs)
            raise ValueError(f"initial: {self.initial!r} is not an input (inputs: {names})")


@dataclass(frozen=True)
class AgentSettings:
    """Everything the agent needs besides the broker connection."""

    agent_id: str
    prefix: str
    """Topic prefix, the daemon's: ``streamqc/<site>`` unless configured."""
    channels: tuple[AgentChannel, ...]
    state_file: str | None = None
    """Where the input on air of each channel is remembered across restarts (None: nowhere)."""
    remember_commands: Annotated[int, Interval(ge=1, le=1_000_000)] = 1000
    """Command ids (and their last ack) kept to recognise a redelivered command."""
    max_queued: Annotated[int, Ge(1)] = 8
    """Commands of one channel waiting behind a switch in progress; more are rejected."""
    max_command_age_s: Annotated[float, Gt(0.0)] = 30.0
    """A command issued longer ago than this is rejected, not run: a switch redelivered
    minutes late (QoS 1 after a broker or agent restart) could take a healthy channel off
    air. Needs the daemon's and the agent's clocks in step (NTP)."""

    def __post_init__(self) -> None:
        check_ranges(self)
        if not _NAME.fullmatch(self.agent_id):
            raise ValueError(
                f"agent_id: must be letters, digits, '_', '.' or '-', got {self.agent_id!r}"
            )
        if not self.prefix.strip("/") or any(c in self.prefix for c in "#+\0"):
            raise ValueError(f"prefix: must be a topic without wildcards, got {self.prefix!r}")
        if not self.channels:
            raise ValueError("channels: must list at least one channel")
        names = [channel.name for channel in self.channels]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"channels: channel {name!r} is listed twice")

    def channel(self, name: str) -> AgentChannel | None:
        for channel in self.channels:
            if channel.name == name:
                return channel
        return None
