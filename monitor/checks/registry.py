"""Finds every check: each module of this package registers its builder when imported.

The registry imports the package's modules itself (``pkgutil.iter_modules``), so a new check
is one new module here and nothing else; no module imports the registry back, so there is
no import cycle.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

import monitor.checks
from monitor.checks.base import BUILDERS, Builder, Check, CheckContext

_NOT_CHECKS = frozenset({"base", "registry"})


@functools.cache
def builders() -> tuple[Builder, ...]:
    """Every check's builder, in module-name order (imported once)."""
    for module in pkgutil.iter_modules(monitor.checks.__path__):
        if module.name not in _NOT_CHECKS:
            importlib.import_module(f"monitor.checks.{module.name}")
    return tuple(BUILDERS)


def build_checks(context: CheckContext) -> list[Check]:
    """The checks that are on for this channel input."""
    return [check for make in builders() if (check := make(context)) is not None]
