"""The installed version of streamqc, for ``streamqc --version`` and ``streamqc_build_info``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def streamqc_version() -> str:
    """The distribution's version, or ``unknown`` when run from a tree that is not installed."""
    try:
        return version("streamqc")
    except PackageNotFoundError:
        return "unknown"
