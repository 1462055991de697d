"""Shared pieces of the benchmarks: the summary report printed at the end of the run.

Benchmarks measure and print; they assert nothing about timing. Each one adds its lines to a
report section, and the sections are printed in pytest's terminal summary, so the tables show
with or without ``-s``. With ``--benchmark-disable`` (the project default) every benchmark runs
its code once on a short clip, as a smoke test, and reports nothing.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mqttbroker import Mosquitto

_SECTIONS = pytest.StashKey[dict[str, list[str]]]()


class Report:
    """Named sections of lines, printed after the run in the order they were started."""

    def __init__(self, sections: dict[str, list[str]]) -> None:
        self._sections = sections

    def add(self, section: str, *lines: str) -> None:
        self._sections.setdefault(section, []).extend(lines)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SECTIONS] = {}


@pytest.fixture(scope="session")
def report(pytestconfig: pytest.Config) -> Report:
    return Report(pytestconfig.stash[_SECTIONS])


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    sections = config.stash.get(_SECTIONS, {})
    if not sections:
        return
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs,"
        f" {platform.python_implementation()} {platform.python_version()}"
    )
    terminalreporter.write_sep("=", f"streamqc benchmark results ({machine})")
    for title, lines in sections.items():
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real Mosquitto on loopback for the daemon benchmarks (no persistence)."""
    mosquitto = Mosquitto(tmp_path / "mosquitto", persistence=False).start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()
