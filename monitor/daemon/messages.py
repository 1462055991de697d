"""What the supervisor and its worker processes say to each other over their duplex pipe.

Frozen dataclasses, pickled by ``multiprocessing``; one class per kind of message, so both
sides match on the type and a message cannot be read with the wrong shape.

To a worker: ``StartUnit``, ``StopUnit``, ``ExitWorker``. From a worker: ``Heartbeat``,
``UnitEvent``, ``UnitInfo``, ``UnitStats``, ``UnitThumbnail``, ``WorkerLog``, ``UnitStopped``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.alarms.input_stats import InputStats
from monitor.config import ChannelConfig, ThumbnailConfig

UnitKey = tuple[str, str]
"""(channel, input): one unit of monitoring, one live session in a worker."""


@dataclass(frozen=True)
class UnitSpec:
    """One channel input to monitor, with what it carries over from an earlier run."""

    channel: ChannelConfig
    input: str
    origin_wall_s: float
    """time.time() of the unit's first start: its media timeline's zero."""
    thumbnails: ThumbnailConfig
    active: tuple[dict[str, Any], ...] = field(default=())
    """Alarm events (raised, as dicts) active when the unit last stopped."""

    @property
    def key(self) -> UnitKey:
        return (self.channel.name, self.input)


# --- To a worker --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartUnit:
    spec: UnitSpec


@dataclass(frozen=True)
class StopUnit:
    """Stop the unit; the worker answers ``UnitStopped`` once its session has ended."""

    key: UnitKey


@dataclass(frozen=True)
class ExitWorker:
    """Stop every unit, send what is queued, exit."""


ToWorker = StartUnit | StopUnit | ExitWorker


# --- From a worker ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    ages_s: dict[UnitKey, float]
    """Per unit, seconds since its control loop last ticked."""


@dataclass(frozen=True)
class UnitEvent:
    key: UnitKey
    event: dict[str, Any]
    """An ``AlarmEvent`` as its dict (the MQTT payload)."""
    jpeg: bytes | None
    """The picture at the onset of a raised alarm (region outlined), if there is one."""


@dataclass(frozen=True)
class UnitInfo:
    key: UnitKey
    event: dict[str, Any]
    """An informational event (``monitor.checks.base.InfoEvent``, an SCTE-35 cue) as its dict
    (the MQTT payload)."""


@dataclass(frozen=True)
class UnitStats:
    key: UnitKey
    stats: list[InputStats]


@dataclass(frozen=True)
class UnitThumbnail:
    key: UnitKey
    rendition: str | None
    jpeg: bytes


@dataclass(frozen=True)
class WorkerLog:
    level: str
    message: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class UnitStopped:
    key: UnitKey


FromWorker = Heartbeat | UnitEvent | UnitInfo | UnitStats | UnitThumbnail | WorkerLog | UnitStopped
