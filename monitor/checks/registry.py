"""Finds every check: the ``Check`` subclasses defined in the modules of this package.

The registry imports the package's modules itself (``pkgutil.iter_modules``) and keeps each
subclass that defines its own ``build``, by scope, so a new check is one new module here and
nothing else; no check module imports the registry, so there is no import cycle.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

import monitor.checks
from monitor.checks.base import Check, CheckContext, Scope

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
