"""Channel configuration: the typed model every other part of streamqc reads.

Loading and validation (YAML with file/line/key-path errors) live below the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from detectors.black import BlackSettings
from detectors.freeze import FreezeSettings
from detectors.silence import SilenceSettings

Severity = Literal["critical", "major", "minor", "warning", "info"]
S = TypeVar("S")


@dataclass(frozen=True)
class AlarmRule:
    """When a measured condition becomes an alarm: hold-offs in seconds of media time."""

    enabled: bool = True
    raise_after_s: float = 2.0
    clear_after_s: float = 1.0
    severity: Severity = "major"


@dataclass(frozen=True)
class Presence:
    """Settings of the audio_missing / video_missing checks (only the alarm rule for now)."""


@dataclass(frozen=True)
class DetectorConfig(Generic[S]):
    rule: AlarmRule
    settings: S


@dataclass(frozen=True)
class InputConfig:
    url: str
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0


def _default(settings: S, **rule: object) -> DetectorConfig[S]:
    return DetectorConfig(AlarmRule(**rule), settings)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    inputs: dict[str, InputConfig] = field(default_factory=dict)
    black: DetectorConfig[BlackSettings] = field(default_factory=lambda: _default(BlackSettings()))
    freeze: DetectorConfig[FreezeSettings] = field(
        default_factory=lambda: _default(FreezeSettings())
    )
    silence: DetectorConfig[SilenceSettings] = field(
        default_factory=lambda: _default(SilenceSettings())
    )
    audio_missing: DetectorConfig[Presence] = field(
        default_factory=lambda: _default(Presence(), severity="critical")
    )
    video_missing: DetectorConfig[Presence] = field(
        default_factory=lambda: _default(Presence(), severity="critical")
    )
    row_step: int | None = None
    """Analyse every n-th picture row; None picks about 270 rows whatever the size."""


@dataclass(frozen=True)
class Config:
    version: int
    site: str
    channels: tuple[ChannelConfig, ...]
    source: str = "<defaults>"

    def channel(self, name: str | None) -> ChannelConfig:
        """The named channel, or the only one when ``name`` is None."""
        raise NotImplementedError


def default_channel(name: str = "default") -> ChannelConfig:
    """The channel ``streamqc analyze`` uses without --config: every detector at its defaults."""
    return ChannelConfig(name=name)
