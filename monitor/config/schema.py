"""The schema machinery every configuration file shares: pydantic sections generated from
plain frozen dataclasses, strict scalars, durations, names that go into MQTT topics.

A section forbids unknown keys and never coerces a string to a number or a bool; a float field
named ``*_s`` is a duration written with its unit (``raise_after: 2s``). The daemon's file
(``monitor.config.load``), the agent's (``monitor.config.agent``) and the console's are built
from these pieces, so their errors read the same.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

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
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from failover.policy_settings import Trigger

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


class Section(BaseModel):
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
        items = tuple(_strict(arg) if arg is not ... else arg for arg in get_args(hint))
        return tuple.__class_getitem__(items)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return validated(hint)
    return _STRICT.get(hint, hint)


def section_fields(
    cls: type, omit: frozenset[str] = frozenset(), require: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """create_model field definitions for a dataclass: types, constraints, defaults.

    A float field named ``*_s`` is a duration: the YAML key drops the ``_s`` (the unit is in
    the value: ``raise_after: 2s``) and takes ``'500ms'``, ``'2m'``, ... as well as numbers.
    Fields in ``omit`` are not keys of the section (their defaults stand); fields in
    ``require`` must be written even though the dataclass has a default.
    """
    hints = get_type_hints(cls, include_extras=True)
    definitions: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        if spec.name in omit:
            continue
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
        if spec.name in require:
            default = Field(alias=alias)
        elif spec.default is not dataclasses.MISSING:
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
def validated(
    cls: type, omit: frozenset[str] = frozenset(), require: frozenset[str] = frozenset()
) -> Any:
    """A type that validates a YAML mapping and yields an instance of the dataclass ``cls``
    (``omit`` and ``require`` as in ``section_fields``)."""
    model = create_model(cls.__name__, __base__=Section, **section_fields(cls, omit, require))
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


RESERVED_CHANNEL_NAMES = frozenset({"daemon", "agents"})
"""Topic levels under the prefix that are not channels: ``<prefix>/daemon/status`` (the
daemon's own status) and ``<prefix>/agents/<id>/status`` (the failover agents')."""


def _channel_name(name: str) -> str:
    _name(name)
    if name in RESERVED_CHANNEL_NAMES:
        taken = ", ".join(sorted(RESERVED_CHANNEL_NAMES))
        raise ValueError(
            f"'{name}' is reserved: its MQTT topics are streamqc's own (reserved: {taken})"
        )
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


Version = Annotated[int, PlainValidator(_version)]
Url = Annotated[StrictStr, AfterValidator(_url)]
Workers = Annotated[int | None, PlainValidator(_workers)]
Name = Annotated[StrictStr, AfterValidator(_name)]
ChannelName = Annotated[StrictStr, AfterValidator(_channel_name)]
RowStep = Annotated[int | None, PlainValidator(_row_step)]
