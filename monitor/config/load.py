"""Loading the daemon's configuration file (format: ``configs/example.yaml``) into ``Config``.

Every problem is one ``ConfigError`` line, ``FILE:LINE: KEY.PATH: what is wrong, got VALUE``.
The YAML sections are generated from the plain dataclasses of ``monitor.config.model`` and
``detectors/`` (constraints and defaults included), so a new detector only needs its
``DetectorConfig`` field on ``ChannelConfig``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

from pydantic import BaseModel, Field, StrictStr, ValidationError, create_model

from detectors.graphics import GraphicSettings, load_reference
from failover.policy_settings import FailoverSettings
from monitor.config.messages import first_problem, show
from monitor.config.model import (
    AlarmRule,
    ChannelConfig,
    Config,
    DaemonConfig,
    DetectorConfig,
    InputConfig,
    MetricsConfig,
    MqttConfig,
    ThumbnailConfig,
)
from monitor.config.schema import (
    ChannelName,
    Name,
    RowStep,
    Section,
    Url,
    Version,
    Workers,
    section_fields,
    validated,
)
from monitor.config.yaml_lines import KeyPath, YamlDocument, load_yaml
from monitor.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_config_text(path: str | Path) -> str:
    """The text of a configuration file; ConfigError naming the file when it cannot be read."""
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


def load_document(path: str | Path, model: type[M], expected: str) -> tuple[M, YamlDocument]:
    """Read a YAML file and validate it as ``model``; ``expected`` names the top-level keys for
    the message about an empty or non-mapping file."""
    document = load_yaml(read_config_text(path), str(path))
    if document.data is None:
        raise document.error((), f"the file is empty; expected {expected}")
    if not isinstance(document.data, dict):
        raise document.error((), f"expected a mapping of {expected}, got {show(document.data)}")
    try:
        return model.model_validate(document.data), document
    except ValidationError as error:
        raise first_problem(error, document) from None


DAEMON_ONLY_MQTT_KEYS = frozenset({"embedded_listen", "queue_max_messages"})
"""``mqtt`` keys of the daemon alone: its embedded broker and its on-disk event queue."""


def broker_section() -> Any:
    """The ``mqtt`` section of a client of the daemon's broker (the agent, the console): the
    daemon's keys and checks (one ``MqttConfig`` for all three), ``url`` required, without
    the embedded broker and the event queue that only the daemon has."""
    return validated(
        MqttConfig,
        omit=DAEMON_ONLY_MQTT_KEYS,
        require=frozenset({"url"}),
    )


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML configuration; raise ConfigError naming file, line and key."""
    spec, document = load_document(path, _File, "version, site and channels")
    return _build(spec, document)


def _detector_settings() -> dict[str, type]:
    """Every ``DetectorConfig[Settings]`` field of ChannelConfig: detector name → Settings."""
    hints = get_type_hints(ChannelConfig)
    return {
        name: get_args(hint)[0]
        for name, hint in hints.items()
        if get_origin(hint) is DetectorConfig
    }


_RULE_FIELDS = frozenset(spec.name for spec in dataclasses.fields(AlarmRule))


def _detector_block(name: str, settings: type) -> type[Section]:
    """A detector's YAML block: the alarm rule's keys, then the detector's own settings."""
    rule = section_fields(AlarmRule)
    return create_model(name, __base__=Section, **rule, **section_fields(settings))


_DETECTORS = {name: _detector_block(name, cls) for name, cls in _detector_settings().items()}


def _graphic_entry() -> type[Section]:
    """One entry of ``detectors.graphics``: the alarm rule's keys, then the graphic's. Only
    ``name`` is required here, so a channel's entry may override the defaults' of its name."""
    fields = {**section_fields(AlarmRule), **section_fields(GraphicSettings)}
    kind, _ = fields["roi"]
    fields["roi"] = (kind | None, Field(None))
    return create_model("graphic", __base__=Section, **fields)


# Sections generated at run time from the dataclasses; to the type checker, any value.
if TYPE_CHECKING:
    _Graphic = Any
    _Detectors = Any
    _Input = Any
    _Failover = Any
    _Mqtt = Any
    _Metrics = Any
    _Thumbnails = Any
else:
    _Graphic = _graphic_entry()
    _Detectors = create_model(
        "detectors",
        __base__=Section,
        **{name: (block, Field(default_factory=block)) for name, block in _DETECTORS.items()},
        graphics=(list[_Graphic], Field(default_factory=list)),
    )
    _Input = create_model(
        "input", __base__=Section, **{**section_fields(InputConfig), "url": (Url, ...)}
    )
    _Failover = create_model("failover", __base__=Section, **section_fields(FailoverSettings))
    _Mqtt = validated(MqttConfig)
    _Metrics = validated(MetricsConfig)
    _Thumbnails = validated(ThumbnailConfig)


class _Inputs(Section):
    primary: _Input
    backup: _Input | None = None


class _Defaults(Section):
    row_step: RowStep = None
    detectors: _Detectors = Field(default_factory=_Detectors)
    failover: _Failover = Field(default_factory=_Failover)


class _Channel(Section):
    name: ChannelName
    inputs: _Inputs
    row_step: RowStep = None
    detectors: _Detectors = Field(default_factory=_Detectors)
    failover: _Failover = Field(default_factory=_Failover)


class _File(Section):
    version: Version
    site: Name
    mqtt: _Mqtt = Field(default_factory=MqttConfig)
    metrics: _Metrics = Field(default_factory=MetricsConfig)
    thumbnails: _Thumbnails = Field(default_factory=ThumbnailConfig)
    workers: Workers = None
    state_dir: StrictStr | None = None
    defaults: _Defaults = Field(default_factory=_Defaults)
    channels: Annotated[list[_Channel], Field(min_length=1)]


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
        lines=document.lines,
    )


def _channel(
    spec: _Channel, defaults: _Defaults, document: YamlDocument, where: KeyPath
) -> ChannelConfig:
    """Defaults, then the channel's own keys on top, key by key."""
    base = ChannelConfig(name=spec.name)
    inputs = {name: InputConfig(**dict(value)) for name, value in spec.inputs if value is not None}
    row_step = spec.row_step if "row_step" in spec.model_fields_set else defaults.row_step
    detectors: dict[str, Any] = {}
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
        base,
        inputs=inputs,
        row_step=row_step,
        failover=settings,
        graphics=graphics,
        written=_written(spec.detectors),
        **detectors,
    )


def _written(detectors: Any) -> frozenset[str]:
    """The detectors a ``detectors`` block writes keys for (``black:`` alone writes none)."""
    written = {name for name in _DETECTORS if getattr(detectors, name).model_fields_set}
    if detectors.graphics:
        written.add("graphics")
    return frozenset(written)


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


def _merged(base: DetectorConfig[Any], *blocks: Section) -> DetectorConfig[Any]:
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
