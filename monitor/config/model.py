"""Configuration: the typed model every other part of streamqc reads.

Plain frozen dataclasses: the daemon's file is read into ``Config`` by ``monitor.config.load``,
and code (tests, ``analyze`` without --config) builds them directly with their defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from annotated_types import Ge, Interval

from detectors.ad_breaks import AdBreakSettings
from detectors.avsync import AvSyncSettings
from detectors.black import BlackSettings
from detectors.captions import CaptionSettings
from detectors.corruption import CorruptionSettings
from detectors.freeze import FreezeSettings
from detectors.graphics import GraphicSettings
from detectors.ladder import LadderSettings
from detectors.loudness import LoudnessSettings
from detectors.silence import SilenceSettings
from detectors.subtitles import SubtitleSettings
from failover.policy_settings import FailoverSettings
from monitor.config.yaml_lines import KeyPath, YamlDocument
from monitor.decode.media_source import PictureSelection, sparser
from monitor.errors import ConfigError

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
    """A URL (file, http, https, udp, rtp, srt, tcp) or a file path."""
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    watchdog_s: float = 10.0
    """A live input whose decoded media time stops advancing this long is restarted."""
    pictures: PictureSelection = "all"
    """Pictures this input decodes (the probe tier): all; reference, I and P pictures only
    (about two thirds of the cost, black/freeze within ~0.2 s, no captions or A/V sync);
    keyframes only (a few percent of the cost, black/freeze within a GOP, no graphics,
    picture_corrupt, captions or A/V sync). Audio, transport and input loss are exact in
    every tier. A check written for the channel that the tier cannot run is refused."""
    ladder_pictures: PictureSelection = "reference"
    """Pictures decoded on the lower renditions of an HLS ladder (the largest decodes
    ``pictures``): all; reference, I and P pictures (a third of the cost, black/freeze
    within ~0.2 s); keyframes (a few percent, black/freeze within a GOP). A rung never
    decodes more than ``pictures``."""

    def rung_pictures(self, largest: bool) -> PictureSelection:
        """What one rendition of this input decodes: ``pictures`` on the largest (or only)
        one, the sparser of ``pictures`` and ``ladder_pictures`` on the others."""
        if largest:
            return self.pictures
        return sparser(self.pictures, self.ladder_pictures)


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
    input_loss: DetectorConfig[Presence] = field(
        default_factory=lambda: _default(
            Presence(), raise_after_s=1.0, clear_after_s=0.0, severity="critical"
        )
    )
    """No media arriving from a live input: raised after raise_after, cleared when it flows."""
    transport: DetectorConfig[Presence] = field(
        default_factory=lambda: _default(Presence(), raise_after_s=0.0, clear_after_s=2.0)
    )
    """The one rule of every transport alarm: tr101290_*, srt_*, hls_*, rendition_missing."""
    loudness: DetectorConfig[LoudnessSettings] = field(
        default_factory=lambda: _default(
            LoudnessSettings(), enabled=False, raise_after_s=5.0, clear_after_s=5.0
        )
    )
    """EBU R128 / ATSC A/85 per audio stream: alarms loudness, true_peak, audio_clipping."""
    av_sync: DetectorConfig[AvSyncSettings] = field(
        default_factory=lambda: _default(
            AvSyncSettings(), enabled=False, raise_after_s=5.0, clear_after_s=5.0
        )
    )
    """Audio/video offset (+ = audio leads) against the preset's window: alarm av_sync."""
    rendition_mismatch: DetectorConfig[LadderSettings] = field(
        default_factory=lambda: _default(
            LadderSettings(), enabled=False, raise_after_s=2.0, clear_after_s=1.0
        )
    )
    """One rendition of a live HLS ladder shows what the others do not (2+ renditions)."""
    picture_corrupt: DetectorConfig[CorruptionSettings] = field(
        default_factory=lambda: _default(
            CorruptionSettings(), enabled=False, raise_after_s=1.0, clear_after_s=2.0
        )
    )
    """Decode garbage on the macroblock grid, against the channel's own baseline."""
    captions: DetectorConfig[CaptionSettings] = field(
        default_factory=lambda: _default(
            CaptionSettings(), enabled=False, raise_after_s=30.0, clear_after_s=2.0
        )
    )
    """CEA-608/CTA-708 captions in the video: alarms captions_missing, captions_empty."""
    subtitles: DetectorConfig[SubtitleSettings] = field(
        default_factory=lambda: _default(
            SubtitleSettings(), enabled=False, raise_after_s=10.0, clear_after_s=1.0
        )
    )
    """DVB subtitle and teletext PIDs of an MPEG-TS input: alarm subtitles_missing."""
    scte35: DetectorConfig[AdBreakSettings] = field(
        default_factory=lambda: _default(
            AdBreakSettings(), enabled=False, raise_after_s=0.0, clear_after_s=0.0
        )
    )
    """SCTE-35 cues of an MPEG-TS input: the break state, cue events, alarms ad_break_overrun
    and scte35_missing; graphics and black/silence follow the breaks."""
    graphics: tuple[DetectorConfig[GraphicSettings], ...] = ()
    """Graphics to watch (logo, clock, lower third): ``detectors.graphics``, a list merged
    from the defaults' by name."""
    row_step: int | None = None
    """Analyse every n-th picture row; None picks about 135 rows whatever the size."""
    written: frozenset[str] = frozenset()
    """The detectors the channel's own ``detectors`` block writes (not those it takes from
    ``defaults``): an input's ``pictures`` tier refuses these when it cannot run them, and
    turns the others off for that input."""
    failover: FailoverSettings = field(default_factory=FailoverSettings)
    """When to switch the encoder to the backup input and back (mode off by default)."""


def host_port(listen: str, key: str = "listen") -> tuple[str, int]:
    """``'127.0.0.1:9108'`` → ``('127.0.0.1', 9108)``; ``'[::1]:9108'`` for IPv6."""
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})", listen)
    if not match or not 0 <= int(match[2]) < 65536:
        raise ValueError(f"{key}: must be HOST:PORT, e.g. 127.0.0.1:9108, got {listen!r}")
    return match[1].strip("[]"), int(match[2])


def broker_address(url: str) -> tuple[str, int, bool]:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` → (host, port, tls)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"url: must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {url!r}")
    if parts.username or parts.password:
        raise ValueError(
            "url: no credentials in the URL (they would end up in logs): use username and "
            "password_file, or STREAMQC_MQTT_PASSWORD"
        )
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ValueError(f"url: bad port in {url!r}") from None
    return parts.hostname, port, tls


@dataclass(frozen=True)
class TlsConfig:
    """TLS to the broker. Without ``ca`` the system's trusted CAs verify the broker."""

    ca: str | None = None
    """CA bundle (PEM) that signed the broker's certificate."""
    cert: str | None = None
    """Client certificate (PEM), for brokers that authenticate clients by certificate."""
    key: str | None = None
    """The client certificate's private key (PEM)."""


@dataclass(frozen=True)
class MqttConfig:
    """Where alarms, status and thumbnails go.

    Without ``url`` the daemon starts an embedded broker on ``embedded_listen`` (loopback) so
    everything works on a bare machine; production points ``url`` at a real broker.
    """

    url: str | None = None
    """mqtt://HOST[:PORT] (default port 1883) or mqtts://HOST[:PORT] (TLS, default 8883)."""
    embedded_listen: str = "127.0.0.1:1883"
    client_id: str | None = None
    """Default: streamqc-<site>-<hostname>."""
    username: str | None = None
    password_file: str | None = None
    """File holding the password (one line). Or set STREAMQC_MQTT_PASSWORD; never in YAML."""
    tls: TlsConfig | None = None
    """Also implied by mqtts://."""
    prefix: str | None = None
    """Topic prefix; default streamqc/<site>."""
    keepalive_s: Annotated[float, Interval(ge=5.0, le=3600.0)] = 30.0
    queue_max_messages: Annotated[int, Ge(100)] = 100_000
    """Bound of the on-disk queue that keeps events while the broker is away (oldest dropped)."""

    def __post_init__(self) -> None:
        if self.url is not None:
            broker_address(self.url)
        host_port(self.embedded_listen, "embedded_listen")
        if self.prefix is not None and (
            not self.prefix.strip("/") or any(c in self.prefix for c in "#+\0")
        ):
            raise ValueError(f"prefix: must be a topic without wildcards, got {self.prefix!r}")


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus ``/metrics`` and ``/healthz``."""

    enabled: bool = True
    listen: str = "127.0.0.1:9108"

    def __post_init__(self) -> None:
        host_port(self.listen)


@dataclass(frozen=True)
class ThumbnailConfig:
    """JPEG thumbnails: one per channel every ``interval``, and one with each raised alarm."""

    enabled: bool = True
    interval_s: Annotated[float, Ge(1.0)] = 10.0
    width: Annotated[int, Interval(ge=32, le=1920)] = 320
    quality: Annotated[int, Interval(ge=10, le=100)] = 75


@dataclass(frozen=True)
class DaemonConfig:
    """What ``streamqc run`` needs beyond the channels."""

    mqtt: MqttConfig = field(default_factory=MqttConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    thumbnails: ThumbnailConfig = field(default_factory=ThumbnailConfig)
    workers: int | None = None
    """Worker processes decoding the channels; None: one per CPU core."""
    state_dir: str | None = None
    """Where the on-disk event queue lives; default $STATE_DIRECTORY (systemd), else
    ~/.local/state/streamqc."""


@dataclass(frozen=True)
class Config:
    version: int
    site: str
    channels: tuple[ChannelConfig, ...]
    source: str = "<defaults>"
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    lines: Mapping[KeyPath, int] = field(default_factory=dict, compare=False, repr=False)
    """The line of each key path written in the file, for errors found after loading."""

    def error(self, path: KeyPath, message: str) -> ConfigError:
        """``FILE:LINE: KEY.PATH: message``, as the loader's own errors read."""
        document = YamlDocument(None, self.lines, self.source)
        return document.error(path, message)

    def channel(self, name: str | None) -> ChannelConfig:
        """The named channel, or the only one when ``name`` is None."""
        names = ", ".join(channel.name for channel in self.channels)
        if name is None:
            if len(self.channels) == 1:
                return self.channels[0]
            raise ConfigError(f"{self.source}: {len(self.channels)} channels, name one of: {names}")
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise ConfigError(f"{self.source}: no channel named '{name}' (channels: {names})")


def default_channel(name: str = "default") -> ChannelConfig:
    """The channel ``streamqc analyze`` uses without --config: every detector at its defaults."""
    return ChannelConfig(name=name)
