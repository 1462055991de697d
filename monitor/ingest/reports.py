"""What live inputs report: transport conditions, observed over time like any measurement."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TransportCondition:
    """``alarm`` (a name from the alarm contract) is present or not, as of ``at_s``.

    ``at_s`` is on the monitoring session's clock (``time.monotonic()`` seconds); the runner
    maps it onto the channel's timeline. ``subject`` narrows the alarm where one input has
    several (a rendition, a PID); ``detail`` becomes the event's detail.
    """

    alarm: str
    active: bool
    at_s: float
    subject: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


Report = Callable[[TransportCondition], None]
"""Readers call this from their own thread; it must be cheap and thread-safe."""
