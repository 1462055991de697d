"""Finds every check: the ``Check`` subclasses defined in the modules of this package.

The registry imports the package's modules itself (``pkgutil.iter_modules``) and keeps each
subclass that defines its own ``build``, by scope, so a new check is one new module here and
nothing else; no check module imports the registry, so there is no import cycle.

It also says what the checks need of an input's picture tier (``pictures: all | reference |
keyframes``): each check declares ``needs_pictures`` and the detector keys that turn it on
(``enabled_by``); ``refuse_unrunnable`` refuses a configuration whose channel writes one its
input cannot run, and ``at_pictures`` turns off, per input, the ones it did not write.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import replace
from typing import Any, get_args

import monitor.checks
from monitor.checks.base import Check, CheckContext, Scope
from monitor.config import ChannelConfig, Config
from monitor.decode.media_source import PICTURE_TIERS, PictureSelection, can_run

_NOT_CHECKS = frozenset({"base", "registry"})


def _subclasses(cls: type[Check]) -> list[type[Check]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


@functools.cache
def check_types(scope: Scope) -> tuple[type[Check], ...]:
    """Every check class of ``scope``, in the order they see each thing."""
    for module in pkgutil.iter_modules(monitor.checks.__path__):
        if module.name not in _NOT_CHECKS:
            importlib.import_module(f"monitor.checks.{module.name}")
    found = {c for c in _subclasses(Check) if "build" in vars(c) and c.scope == scope}
    return tuple(sorted(found, key=lambda c: (c.order, c.__module__, c.__qualname__)))


def build_checks(scope: Scope, context: CheckContext) -> list[Check]:
    """The checks of ``scope`` that are on for this context."""
    return [check for cls in check_types(scope) if (check := cls.build(context)) is not None]


@functools.cache
def picture_needs() -> dict[str, PictureSelection]:
    """Each detector key whose check needs more than keyframes → the sparsest picture
    selection that check still runs at (``Check.needs_pictures`` of every scope)."""
    needs: dict[str, PictureSelection] = {}
    for scope in get_args(Scope):
        for cls in check_types(scope):
            for key in cls.enabled_by:
                # Two checks turned on by one key: the key needs what the more demanding does.
                if key not in needs or not can_run(needs[key], cls.needs_pictures):
                    needs[key] = cls.needs_pictures
    return needs


def _enabled(channel: ChannelConfig, key: str) -> bool:
    value = getattr(channel, key)
    if isinstance(value, tuple):  # graphics: a list of detectors
        return any(graphic.rule.enabled for graphic in value)
    enabled: bool = value.rule.enabled
    return enabled


def unrunnable(channel: ChannelConfig, pictures: PictureSelection) -> dict[str, PictureSelection]:
    """The detectors on for ``channel`` that an input decoding ``pictures`` cannot run, with
    what each needs."""
    return {
        key: needs
        for key, needs in picture_needs().items()
        if not can_run(pictures, needs) and _enabled(channel, key)
    }


def at_pictures(channel: ChannelConfig, pictures: PictureSelection) -> ChannelConfig:
    """The channel as an input (or rendition) decoding ``pictures`` runs it: the detectors it
    cannot run are off there. Those the channel wrote itself were refused at load
    (``refuse_unrunnable``); these come from ``defaults`` or are on by default."""
    off: dict[str, Any] = {}
    for key in unrunnable(channel, pictures):
        value = getattr(channel, key)
        if isinstance(value, tuple):
            off[key] = ()
        else:
            off[key] = replace(value, rule=replace(value.rule, enabled=False))
    return replace(channel, **off) if off else channel


def refuse_unrunnable(config: Config) -> None:
    """ConfigError naming the input's ``pictures`` key when a channel writes a detector that
    an input's picture tier cannot run (``graphics`` at ``keyframes``, say)."""
    for index, channel in enumerate(config.channels):
        for name, source in channel.inputs.items():
            refused = unrunnable(channel, source.pictures)
            for key, needs in refused.items():
                if key not in channel.written:
                    continue
                tiers = PICTURE_TIERS[: PICTURE_TIERS.index(needs) + 1]
                raise config.error(
                    ("channels", index, "inputs", name, "pictures"),
                    f"{source.pictures} cannot run {key} of channel {channel.name} "
                    f"(it needs pictures: {' or '.join(tiers)})",
                )
