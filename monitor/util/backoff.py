"""Exponential backoff with jitter: how long to wait before the next try of something that
failed (a broker connection, an input, a worker, an encoder).

One policy for the whole daemon and the agent: the wait doubles from ``first_s`` up to
``max_s``, scaled by a random factor from ``spread`` so that many clients that failed together
do not retry together (no reconnect storms). ``reset()`` after a long enough success makes the
next outage start small again. Pure arithmetic: it reads no clock and sleeps nowhere.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """The waits between tries: ``first_s``, then doubling, at most ``max_s``.

    Args:
        first_s: The wait after the first failure.
        max_s: The longest wait.
        spread: The random factor each wait is scaled by, as (low, high); ``(1.0, 1.0)`` for
            exact waits, ``(0.5, 1.0)`` for "equal jitter".
    """

    first_s: float
    max_s: float
    spread: tuple[float, float] = (0.8, 1.2)
    failures: int = field(default=0, init=False)
    """Failures since the last ``reset()``."""

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError(
                f"backoff: need 0 < first_s <= max_s, got {self.first_s}, {self.max_s}"
            )
        low, high = self.spread
        if not 0 < low <= high:
            raise ValueError(f"backoff: need 0 < low <= high spread, got {self.spread}")

    @property
    def ceiling_s(self) -> float:
        """The next wait before jitter."""
        return min(self.max_s, self.first_s * 2.0 ** min(self.failures, 30))

    def next_s(self) -> float:
        """One more failure: the wait before the next try."""
        wait_s: float = self.ceiling_s * random.uniform(*self.spread)
        self.failures += 1
        return wait_s

    def reset(self) -> None:
        """It worked (long enough): the next failure waits ``first_s`` again."""
        self.failures = 0
