"""What a running channel input reports about itself, about once a second, for the metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class InputStats:
    """One rendition of one channel input (rendition None: the input's only stream).

    Counters are totals since the daemon started the input (they survive worker restarts).
    """

    channel: str
    input: str
    rendition: str | None
    flowing: bool
    """Decoded media advanced during the last interval."""
    media_lag_s: float
    """Wall clock minus the wall time of the newest decoded media: how far the analysis trails
    the live edge (buffering in the path, decode backlog)."""
    pictures: int
    frames_dropped: int
    """Pictures missing from the timeline (timestamp gaps) or lost to undecodable packets."""
    frames_late: int
    """Pictures analysed more than a second after they were decoded (the analysis fell behind)."""
    picture_wait_max_s: float
    """Longest time from a picture decoded to it analysed, over the last interval: within a
    frame interval while the analysis keeps up; growing when a queue builds."""
    reconnects: int
    """Decoder restarts: reopened after the input ended, failed or stalled."""
    bytes_in: int
    luma_mean_cv: float | None
    """Mean luma of the last picture, 8-bit code values (16 black .. 235 white in limited range)."""
    audio_peak_dbfs: tuple[tuple[int, int, float], ...]
    """(audio stream, channel, sample peak in dBFS over the last interval) for every channel."""
    gauges: tuple[tuple[str, tuple[tuple[str, str], ...], float], ...] = ()
    """The pluggable checks' measurements: (name, extra labels, value), exported as
    ``streamqc_<name>`` (see ``monitor.checks.base.Gauge``)."""
    status: tuple[tuple[str, Any], ...] = ()
    """The checks' facts for the channel status (captions on air, break state), sorted by
    key (see ``monitor.checks.base.MediaCheck.status``)."""
