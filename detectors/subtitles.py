"""DVB subtitle and teletext presence: whether each language's PID keeps carrying packets.

Pure decision logic on media time (no clock, no I/O). A teletext PID (EN 300 472) carries a
PES with every picture, so a short window finds it gone; a DVB bitmap subtitle PID
(EN 300 743) sends only display and clear sets, and may be silent for long between lines:
its window must cover the longest silence of the programme.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LANGUAGE = re.compile(r"[a-z]{3}")


@dataclass(frozen=True)
class SubtitleSettings:
    """Which subtitle languages must keep coming (ISO 639-2 codes, as the PMT's descriptors
    name them)."""

    languages: tuple[str, ...] = ()
    """Languages that must be there from the start, e.g. [eng, fra]; every other language
    is watched from its first packet on (default none: only those seen)."""

    def __post_init__(self) -> None:
        for language in self.languages:
            if not _LANGUAGE.fullmatch(language):
                raise ValueError(
                    f"languages: {language!r} is not an ISO 639-2 code (three lowercase letters)"
                )


class SubtitlePresence:
    """When each subtitle language last had a packet, and which have been silent too long."""

    def __init__(self, expected: tuple[str, ...], window_s: float) -> None:
        self.window_s = window_s
        self._expected = expected
        self.last_s: dict[str, float] = {}
        self._start_s: float | None = None

    def packet(self, language: str, t_s: float) -> None:
        self.last_s[language] = t_s

    def silent(self, t_s: float) -> dict[str, float]:
        """Each language silent for the window as of ``t_s``: since when (its last packet,
        or the start for an expected language never seen)."""
        if self._start_s is None:
            self._start_s = t_s
        out: dict[str, float] = {}
        for language in self._expected:
            if language not in self.last_s and t_s - self._start_s >= self.window_s:
                out[language] = self._start_s
        for language, last_s in self.last_s.items():
            if t_s - last_s >= self.window_s:
                out[language] = last_s
        return out

    def languages(self) -> list[str]:
        return sorted(set(self._expected) | self.last_s.keys())
