"""Fixtures of the sink tests: a real Mosquitto (from tests.mqttbroker) and a log capture."""

from __future__ import annotations

from typing import Any

import pytest

from tests.mqttbroker import mosquitto  # noqa: F401 - the fixture, for the tests here


class LogCapture:
    """A structlog-style ``log(event, **fields)`` that keeps what it was given."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, **fields: Any) -> None:
        self.records.append((event, fields))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [fields for event, fields in self.records if event == name]

    def lines(self) -> list[str]:
        """Every record as the one line a renderer would print."""
        return [
            " ".join([event, *(f"{key}={value!r}" for key, value in fields.items())])
            for event, fields in self.records
        ]


@pytest.fixture
def mqtt_log() -> LogCapture:
    return LogCapture()
