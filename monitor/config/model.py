"""Channel configuration: the typed model every other part of streamqc reads, and its loader.

``load_config`` reads a YAML file (format: ``configs/example.yaml``) into ``Config``. Every
problem is one ``ConfigError`` line, ``FILE:LINE: KEY.PATH: what is wrong, got VALUE``.

Validation is pydantic, but the models are generated here from the plain dataclasses of
``detectors/`` (and ``AlarmRule``, ``InputConfig``), constraints and defaults included, so a new
detector only needs its ``DetectorConfig`` field on ``ChannelConfig``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import (
    Annotated,
    Any,
    Generic,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)
from urllib.parse import urlsplit

import yaml
from annotated_types import Ge, Interval
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from detectors.avsync import AvSyncSettings
from detectors.black import BlackSettings
from detectors.corruption import CorruptionSettings
from detectors.freeze import FreezeSettings
from detectors.graphics import GraphicSettings, load_reference
from detectors.ladder import LadderSettings
from detectors.loudness import LoudnessSettings
from detectors.silence import SilenceSettings
from failover.policy_settings import FailoverSettings, Trigger
from monitor.config.yaml_lines import KeyPath, YamlDocument, load_yaml
from monitor.decode.media_source import PictureSelection
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
    ladder_pictures: PictureSelection = "reference"
    """Pictures decoded on the lower renditions of an HLS ladder (the largest is decoded in
    full): all; reference, I and P pictures (a third of the cost, black/freeze within ~0.2 s);
    keyframes (a few percent, black/freeze within a GOP)."""


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
    graphics: tuple[DetectorConfig[GraphicSettings], ...] = ()
    """Graphics to watch (logo, clock, lower third): ``detectors.graphics``, a list merged
    from the defaults' by name."""
    row_step: int | None = None
    """Analyse every n-th picture row; None picks about 135 rows whatever the size."""
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


# --- Loading --------------------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML configuration; raise ConfigError naming file, line and key."""
    source = str(path)
    document = load_yaml(_read_text(path), source)
    if document.data is None:
        raise document.error((), "the file is empty; expected version, site and channels")
    if not isinstance(document.data, dict):
        raise document.error(
            (), f"expected a mapping of version, site and channels, got {_show(document.data)}"
        )
    try:
        spec = _File.model_validate(document.data)
    except ValidationError as error:
        raise _first_problem(error, document) from None
    return _build(spec, document)


_DURATION = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(ms|s|m|h)?")
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from ``'500ms'``, ``'5s'``, ``'2m'``, ``'1h'``, ``'1.5s'`` or a number of seconds.

    Raises ValueError (worded for a configuration message) on anything else or a negative value.
    """
    match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif match:
        seconds = float(match[1]) * _SECONDS_PER_UNIT[match[2]]
    else:
        raise ValueError("must be a duration like 500ms, 5s, 2m, 1h or a number of seconds")
    if not math.isfinite(seconds):
        raise ValueError("must be a finite duration")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def _read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None


# --- Schema: pydantic models generated from the dataclasses ----------------------------------


class _Section(BaseModel):
    """A YAML mapping: no unknown keys, no coercion of strings to numbers or bools."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        if data is None:  # `detectors:` with nothing under it means "all defaults"
            return {}
        if isinstance(data, dict):
            known = [spec.alias or name for name, spec in cls.model_fields.items()]
            for key in data:
                if key not in known:
                    raise PydanticCustomError(
                        "unknown_key", "unknown key {key}", {"key": key, "known": known}
                    )
        return data


Duration = Annotated[float, PlainValidator(parse_duration)]

_STRICT: dict[Any, Any] = {bool: StrictBool, int: StrictInt, float: StrictFloat, str: StrictStr}


def _strict(hint: Any) -> Any:
    """The pydantic type of a dataclass field's type: strict scalars, dataclasses as models."""
    if get_origin(hint) is Annotated:
        base, *metadata = get_args(hint)
        return Annotated[(_strict(base), *metadata)]
    if get_origin(hint) in (Union, UnionType):
        return Union[tuple(_strict(arg) for arg in get_args(hint))]  # noqa: UP007
    if get_origin(hint) is tuple:
        return tuple[tuple(_strict(arg) if arg is not ... else arg for arg in get_args(hint))]
    if dataclasses.is_dataclass(hint):
        return _validated(hint)
    return _STRICT.get(hint, hint)


def _fields(cls: type) -> dict[str, Any]:
    """create_model field definitions for a dataclass: types, constraints, defaults.

    A float field named ``*_s`` is a duration: the YAML key drops the ``_s`` (the unit is in
    the value: ``raise_after: 2s``) and takes ``'500ms'``, ``'2m'``, ... as well as numbers.
    """
    hints = get_type_hints(cls, include_extras=True)
    definitions: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        hint = hints[spec.name]
        alias = None
        optional = get_origin(hint) in (Union, UnionType) and type(None) in get_args(hint)
        if optional:  # `X | None`: the duration test below is on X
            hint = next(arg for arg in get_args(hint) if arg is not type(None))
        base = get_args(hint)[0] if get_origin(hint) is Annotated else hint
        if spec.name.endswith("_s") and base is float:
            # A duration: any constraints stay, checked on the parsed seconds.
            metadata = get_args(hint)[1:] if get_origin(hint) is Annotated else ()
            hint = Annotated[(float, PlainValidator(parse_duration), *metadata)]
            alias = spec.name.removesuffix("_s")
        if optional:
            hint = hint | None
        if spec.default is not dataclasses.MISSING:
            default = Field(spec.default, alias=alias)
        elif spec.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=spec.default_factory, alias=alias)
        else:
            default = Field(alias=alias)
        definitions[spec.name] = (_strict(hint), default)
    return definitions


_SHORTHAND: dict[type, str] = {Trigger: "alarm"}
"""Dataclasses that may be written as one scalar: ``black`` for ``{alarm: black}``."""


@functools.cache
def _validated(cls: type) -> Any:
    """A type that validates a YAML mapping and yields an instance of the dataclass ``cls``."""
    model = create_model(cls.__name__, __base__=_Section, **_fields(cls))
    build = AfterValidator(lambda section: cls(**dict(section)))
    if cls in _SHORTHAND:
        key = _SHORTHAND[cls]
        expand = BeforeValidator(lambda value: {key: value} if isinstance(value, str) else value)
        return Annotated[model, expand, build]
    return Annotated[model, build]


_SCHEMES = ("file", "http", "https", "udp", "rtp", "srt", "tcp")


def _url(url: str) -> str:
    if not url.strip():
        raise ValueError("must not be empty")
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if scheme and scheme[1].lower() not in _SCHEMES:
        raise ValueError(f"unsupported scheme '{scheme[1]}' (use {', '.join(_SCHEMES)} or a path)")
    return url


def _name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError("must be letters, digits, '_', '.' or '-' (it goes into MQTT topics)")
    return name


def _version(version: object) -> int:
    if type(version) is not int or version != 1:
        raise ValueError("must be 1, the only format version so far")
    return version


def _row_step(row_step: object) -> int | None:
    if row_step == "auto":
        return None
    if type(row_step) is not int or row_step < 1:
        raise ValueError("must be 'auto' or an integer >= 1")
    return row_step


def _workers(workers: object) -> int | None:
    if workers == "auto":
        return None
    if type(workers) is not int or workers < 1:
        raise ValueError("must be 'auto' or an integer >= 1")
    return workers


Url = Annotated[StrictStr, AfterValidator(_url)]
Workers = Annotated[int | None, PlainValidator(_workers)]
Name = Annotated[StrictStr, AfterValidator(_name)]
RowStep = Annotated[int | None, PlainValidator(_row_step)]


def _detector_settings() -> dict[str, type]:
    """Every ``DetectorConfig[Settings]`` field of ChannelConfig: detector name → Settings."""
    hints = get_type_hints(ChannelConfig)
    return {
        name: get_args(hint)[0]
        for name, hint in hints.items()
        if get_origin(hint) is DetectorConfig
    }


_RULE_FIELDS = frozenset(spec.name for spec in dataclasses.fields(AlarmRule))


def _detector_block(name: str, settings: type) -> type[_Section]:
    """A detector's YAML block: the alarm rule's keys, then the detector's own settings."""
    rule = _fields(AlarmRule)
    return create_model(name, __base__=_Section, **rule, **_fields(settings))


_DETECTORS = {name: _detector_block(name, cls) for name, cls in _detector_settings().items()}


def _graphic_entry() -> type[_Section]:
    """One entry of ``detectors.graphics``: the alarm rule's keys, then the graphic's. Only
    ``name`` is required here, so a channel's entry may override the defaults' of its name."""
    fields = {**_fields(AlarmRule), **_fields(GraphicSettings)}
    kind, _ = fields["roi"]
    fields["roi"] = (kind | None, Field(None))
    return create_model("graphic", __base__=_Section, **fields)


_Graphic = _graphic_entry()
_Detectors = create_model(
    "detectors",
    __base__=_Section,
    **{name: (block, Field(default_factory=block)) for name, block in _DETECTORS.items()},
    graphics=(list[_Graphic], Field(default_factory=list)),
)


_Input = create_model("input", __base__=_Section, **{**_fields(InputConfig), "url": (Url, ...)})


class _Inputs(_Section):
    primary: _Input
    backup: _Input | None = None


_Failover = create_model("failover", __base__=_Section, **_fields(FailoverSettings))


class _Defaults(_Section):
    row_step: RowStep = None
    detectors: _Detectors = Field(default_factory=_Detectors)  # type: ignore[valid-type]
    failover: _Failover = Field(default_factory=_Failover)  # type: ignore[valid-type]


class _Channel(_Section):
    name: Name
    inputs: _Inputs
    row_step: RowStep = None
    detectors: _Detectors = Field(default_factory=_Detectors)  # type: ignore[valid-type]
    failover: _Failover = Field(default_factory=_Failover)  # type: ignore[valid-type]


class _File(_Section):
    version: Annotated[int, PlainValidator(_version)]
    site: Name
    mqtt: _validated(MqttConfig) = Field(default_factory=MqttConfig)  # type: ignore[valid-type]
    metrics: _validated(MetricsConfig) = Field(default_factory=MetricsConfig)  # type: ignore[valid-type]
    thumbnails: _validated(ThumbnailConfig) = Field(default_factory=ThumbnailConfig)  # type: ignore[valid-type]
    workers: Workers = None
    state_dir: StrictStr | None = None
    defaults: _Defaults = Field(default_factory=_Defaults)
    channels: Annotated[list[_Channel], Field(min_length=1)]


# --- From validated sections to the model ----------------------------------------------------


def _build(spec: _File, document: YamlDocument) -> Config:
    first_line: dict[str, int] = {}
    for i, channel in enumerate(spec.channels):
        where = ("channels", i, "name")
        if channel.name in first_line:
            first = first_line[channel.name]
            raise document.error(
                where, f"duplicate channel name '{channel.name}' (first at line {first})"
            )
        first_line[channel.name] = document.line(where)
    channels = tuple(
        _channel(channel, spec.defaults, document, ("channels", i))
        for i, channel in enumerate(spec.channels)
    )
    daemon = DaemonConfig(
        mqtt=spec.mqtt,
        metrics=spec.metrics,
        thumbnails=spec.thumbnails,
        workers=spec.workers,
        state_dir=spec.state_dir,
    )
    return Config(
        version=spec.version,
        site=spec.site,
        channels=channels,
        source=document.source,
        daemon=daemon,
    )


def _channel(
    spec: _Channel, defaults: _Defaults, document: YamlDocument, where: KeyPath
) -> ChannelConfig:
    """Defaults, then the channel's own keys on top, key by key."""
    base = ChannelConfig(name=spec.name)
    inputs = {name: InputConfig(**dict(value)) for name, value in spec.inputs if value is not None}
    row_step = spec.row_step if "row_step" in spec.model_fields_set else defaults.row_step
    detectors = {}
    for name in _DETECTORS:
        written = (getattr(defaults.detectors, name), getattr(spec.detectors, name))
        try:
            detectors[name] = _merged(getattr(base, name), *written)
        except ValueError as error:  # a check across keys in a Settings' __post_init__
            raise document.error((*where, "detectors", name), str(error)) from None
    graphics = _graphics(defaults.detectors.graphics, spec.detectors.graphics, document, where)
    failover: dict[str, Any] = {}
    for block in (defaults.failover, spec.failover):
        failover.update({name: getattr(block, name) for name in block.model_fields_set})
    try:
        settings = FailoverSettings(**failover)
    except ValueError as error:  # a check across keys
        raise document.error((*where, "failover"), str(error)) from None
    if settings.mode != "off" and not {settings.primary, settings.backup} <= set(inputs):
        raise document.error(
            (*where, "failover"),
            f"mode {settings.mode} needs inputs '{settings.primary}' and '{settings.backup}'",
        )
    return dataclasses.replace(
        base, inputs=inputs, row_step=row_step, failover=settings, graphics=graphics, **detectors
    )


def _graphics(
    defaults: list[Any], own: list[Any], document: YamlDocument, where: KeyPath
) -> tuple[DetectorConfig[GraphicSettings], ...]:
    """The defaults' graphics, each overridden key by key by the channel's entry of the same
    name, then the channel's other graphics."""
    keys: dict[str, dict[str, Any]] = {}
    written: dict[str, dict[str, KeyPath]] = {}  # graphic → key → where it was written last
    lists = (
        (("defaults", "detectors", "graphics"), defaults),
        ((*where, "detectors", "graphics"), own),
    )
    for origin, entries in lists:
        first_line: dict[str, int] = {}
        for i, entry in enumerate(entries):
            path = (*origin, i)
            if entry.name in first_line:
                first = first_line[entry.name]
                raise document.error(
                    (*path, "name"),
                    f"duplicate graphic name '{entry.name}' (first at line {first})",
                )
            first_line[entry.name] = document.line((*path, "name"))
            merged = keys.setdefault(entry.name, {})
            sources = written.setdefault(entry.name, {})
            for key in entry.model_fields_set:
                merged[key] = getattr(entry, key)
                sources[key] = (*path, key)
            sources[""] = path
    return tuple(_graphic(keys[name], written[name], document) for name in keys)


def _graphic(
    keys: dict[str, Any], sources: dict[str, KeyPath], document: YamlDocument
) -> DetectorConfig[GraphicSettings]:
    rule = {key: value for key, value in keys.items() if key in _RULE_FIELDS}
    settings = {key: value for key, value in keys.items() if key not in _RULE_FIELDS}
    if settings.get("roi") is None:
        raise document.error(sources[""], "missing required key 'roi'")
    if settings.get("reference") is not None:  # relative to the configuration file
        folder = Path(document.source).parent
        settings["reference"] = os.path.abspath(folder / settings["reference"])
    try:
        graphic = GraphicSettings(**settings)
        if graphic.reference is not None:
            load_reference(graphic.reference)
    except ValueError as error:  # a check across keys, or unreadable artwork
        key, _, rest = str(error).partition(": ")
        if key in sources and rest:
            raise document.error(sources[key], rest) from None
        raise document.error(sources[""], str(error)) from None
    return DetectorConfig(AlarmRule(**rule), graphic)


def _merged(base: DetectorConfig[Any], *blocks: _Section) -> DetectorConfig[Any]:
    """The base's rule and settings with the blocks' keys on top. A detector that is off
    unless asked for (loudness, av_sync, ...) is on once a block is written for it, so
    ``av_sync: {preset: ebu_r37}`` means what it says; ``enabled: false`` still turns it off."""
    rule: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    for block in blocks:
        for name in block.model_fields_set:
            (rule if name in _RULE_FIELDS else settings)[name] = getattr(block, name)
    if not base.rule.enabled and "enabled" not in rule and any(b.model_fields_set for b in blocks):
        rule["enabled"] = True
    return DetectorConfig(
        dataclasses.replace(base.rule, **rule), dataclasses.replace(base.settings, **settings)
    )


# --- Pydantic errors in our words -------------------------------------------------------------


def _first_problem(error: ValidationError, document: YamlDocument) -> ConfigError:
    """The problem written first in the file, as one line."""
    problems = [_describe(details) for details in error.errors()]
    path, message, line_of = min(problems, key=lambda problem: document.line(problem[2]))
    return document.error(path, message, line_of=line_of)


def _describe(details: ErrorDetails) -> tuple[KeyPath, str, KeyPath]:
    """(key path shown, message, key path whose line is reported) of one pydantic error."""
    path: KeyPath = tuple(details["loc"])
    kind = details["type"]
    context = details.get("ctx", {})
    if kind == "missing":
        return path[:-1], f"missing required key '{path[-1]}'", path[:-1]
    if kind == "unknown_key":
        key, known = str(context["key"]), context["known"]
        noun = "detector" if path and path[-1] == "detectors" else "key"
        close = difflib.get_close_matches(key, known, n=1)
        hint = f", did you mean '{close[0]}'?" if close else ""
        return path, f"unknown {noun} '{key}'{hint} (known: {', '.join(known)})", (*path, key)
    if kind == "value_error" and isinstance(details["input"], dict):
        # A check in a dataclass's __post_init__ saying "key: what is wrong" points at that
        # key, and does not echo the section (the mqtt section may hold a secret).
        key, _, rest = str(context["error"]).partition(": ")
        if key in details["input"] and rest:
            return (*path, key), rest, (*path, key)
    return path, f"{_message(kind, context, details['msg'])}, got {_show(details['input'])}", path


_MESSAGES = {
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "too_short": "must not be empty",
}
_BOUNDS = {"le": "<=", "ge": ">=", "lt": "<", "gt": ">"}


def _message(kind: str, context: dict[str, Any], fallback: str) -> str:
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "value_error":
        return str(context["error"])
    if kind == "literal_error":  # pydantic's "'peak' or 'rms'"
        choices = context["expected"].replace(" or ", ", ").replace("'", "")
        return f"must be {choices}" if "," not in choices else f"must be one of: {choices}"
    for bound, sign in _BOUNDS.items():
        if bound in context:
            return f"must be {sign} {context[bound]:g}"
    return fallback


def _show(value: Any) -> str:
    """A value in YAML's spelling (null, true, .nan, {x: 1}), strings quoted, on one short line."""
    if isinstance(value, str):
        text = repr(value)
    else:
        dumped = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, sort_keys=False)
        text = " ".join(dumped.removesuffix("...\n").split())
    return text if len(text) <= 80 else text[:77] + "..."
