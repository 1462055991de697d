"""A/V sync: the offset between sound and picture of a live feed, in milliseconds.

Sign convention (standards.md §1): **positive = audio leads** (a sound is heard before the
picture it belongs to), negative = audio lags. Three measurements, all on what a viewer gets,
i.e. on presentation timestamps as decoded (codec delays such as AAC priming are carried by
the timestamps, so nothing here corrects for them):

* **content** (in service, no test signal): an audio onset envelope (three-band
  energy-difference onset strength on 5 ms frames, the method of Klapuri 1999 / Bello et al.
  2005 reduced to three bands) is cross-correlated with a video event envelope (the picture
  starts changing: a cut, a flash, motion starting; or stops after changing: motion stopping)
  over a sliding ``window`` every ``hop``. The best lag, refined between grid points by a
  parabola, is the offset; the confidence is how much better it correlates than any lag two
  frames or more away. A window without enough events (silence, a static picture, a steady
  tone) gives low confidence, and the last confident offset is held instead of a guess.
* **test_signal** (line-up): a flash (from a dark picture, mean luma rising by a quarter of
  the range in one picture) paired with the nearest beep (a tone or noise burst 20 dB above
  what precedes it). The flash is timed at its picture's timestamp, the beep at the sample
  where its power reaches half of the burst's; each pair gives an offset, and the reading is
  their mean over the last ``test_signal_events`` pairs, with their spread (max - min, "span").
* **timestamps**: each stream's timestamps against the media it carries (samples, picture
  durations): jumps, and the slope of the audio's against the video's in ppm, as the offset
  change they imply for a player that follows them. Reported in every reading; as the alarm's
  method it assumes the input started in sync and lost no media.

``method: auto`` uses the test signal while one is on air and the content otherwise.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from annotated_types import Ge, Interval

from detectors import avsync_kernels as k
from detectors.regions import Region

Preset = Literal["ebu_r37", "atsc_is191", "bt1359", "custom"]
Method = Literal["content", "test_signal", "timestamps"]

PRESETS: dict[str, tuple[float, float]] = {
    "ebu_r37": (40.0, 60.0),  # EBU R37-2007, at the output feeding the transmitter
    "atsc_is191": (15.0, 45.0),  # ATSC IS-191, at the input of the DTV encoder
    "bt1359": (90.0, 185.0),  # ITU-R BT.1359 acceptability, end to end
}
"""(max audio lead, max audio lag) in ms of each preset (standards.md §1.1)."""

FRAME_S = 0.005
"""Audio envelope grid: onset strength every 5 ms, so offsets resolve well below a frame."""
SMOOTH_S = 0.015
"""Half-width of the triangle that smooths the audio envelope: a picture can only show an
event at its own timestamp, so the lag score should not be sharper than a fraction of a frame."""
ANALYSED_ROWS = 68
"""About this many rows of each picture are read (every 15th at 1080p, every 5th at 360p):
cuts, flashes and moving objects span far more."""
PEAK_EXCLUSION_FRAMES = 2
"""The runner-up lag must be this many picture durations away from the best one."""
VIDEO_EVENT_CV = 2.0
"""A video event moves the picture's mean absolute change by this many 8-bit code values."""
AUDIO_EVENT_DB = 6.0
"""An audio event raises the band levels by this many dB in one 5 ms frame."""
FLASH_DARK_CV = 64.0
FLASH_RISE_CV = 64.0
"""A flash: from a dark picture (mean luma at most FLASH_DARK_CV), the mean luma rises by a
quarter of the 8-bit range in one picture ("the change from dark to light")."""
BEEP_RISE_DB = 20.0
BEEP_MIN_DBFS = -50.0
"""A beep: the level rises by BEEP_RISE_DB within two 5 ms frames, to BEEP_MIN_DBFS or more."""
BEEP_POWER_S = 0.002
"""Beep onsets are timed on the power over 2 ms centred on each sample."""
BEEP_PLATEAU_S = 0.015
"""A beep is timed once this much of it is decoded (its peak power is taken over it)."""
BEEP_GAP_S = 0.1
"""Onsets closer than this to the previous beep belong to it."""


@dataclass(frozen=True)
class AvSyncSettings:
    """Settings of the A/V sync detector (window: ``preset``, or its sides overridden)."""

    preset: Preset = "ebu_r37"
    """Tolerance window: ebu_r37 (+40/-60 ms), atsc_is191 (+15/-45), bt1359 (+90/-185), or
    custom (give both limits)."""
    max_audio_lead_ms: Annotated[float, Interval(ge=0.0, le=10_000.0)] | None = None
    """Audio may lead the picture by up to this much (overrides the preset's)."""
    max_audio_lag_ms: Annotated[float, Interval(ge=0.0, le=10_000.0)] | None = None
    """Audio may lag the picture by up to this much (overrides the preset's)."""
    method: Literal["auto", "content", "test_signal", "timestamps"] = "auto"
    """auto: the test signal while one is on air, else the content."""
    window_s: Annotated[float, Interval(ge=2.0, le=120.0)] = 10.0
    """Length of media each content reading correlates."""
    hop_s: Annotated[float, Interval(ge=0.2, le=30.0)] = 1.0
    """A reading every hop of media."""
    max_offset_ms: Annotated[float, Interval(ge=50.0, le=5_000.0)] = 1_000.0
    """Offsets searched, either way (content), and farthest beep paired with a flash."""
    min_confidence: Annotated[float, Interval(ge=0.0, le=1.0)] = 0.35
    """Readings below this confidence are not trusted: the last trusted offset is held."""
    min_events: Annotated[int, Ge(1)] = 8
    """Events a content window needs on each side before its offset is trusted."""
    roi: Region | None = None
    """Region of the picture whose changes count (e.g. the presenter's face); default all."""
    audio_stream: Annotated[int, Ge(0)] = 0
    """Which audio stream of the input (0-based) is measured against the picture."""
    test_signal_events: Annotated[int, Interval(ge=1, le=100)] = 5
    """Flash/beep pairs averaged per test-signal reading."""
    test_signal_max_span_ms: Annotated[float, Ge(0.0)] = 20.0
    """Pairs spread wider than this are not a line-up pattern (cuts and sounds by chance)."""

    def __post_init__(self) -> None:
        if self.preset == "custom" and (
            self.max_audio_lead_ms is None or self.max_audio_lag_ms is None
        ):
            raise ValueError("preset custom needs both max_audio_lead_ms and max_audio_lag_ms")
        if self.hop_s > self.window_s:
            raise ValueError(f"hop ({self.hop_s:g} s) must not exceed window ({self.window_s:g} s)")
        if self.max_offset_ms / 1000.0 > self.window_s / 2:
            raise ValueError(
                f"max_offset_ms ({self.max_offset_ms:g}) must be at most half the window"
                f" ({self.window_s * 500:g} ms)"
            )

    @property
    def limits_ms(self) -> tuple[float, float]:
        """(max audio lead, max audio lag) in ms, both >= 0: in sync within [-lag, +lead]."""
        lead, lag = PRESETS.get(self.preset, (math.nan, math.nan))
        if self.max_audio_lead_ms is not None:
            lead = self.max_audio_lead_ms
        if self.max_audio_lag_ms is not None:
            lag = self.max_audio_lag_ms
        return lead, lag

    def outside(self, offset_ms: float) -> bool:
        """True when an offset (+ = audio leads) is outside the tolerance window."""
        lead, lag = self.limits_ms
        return offset_ms > lead or offset_ms < -lag


@dataclass(frozen=True, slots=True)
class SyncEstimate:
    """One window's measurement."""

    t_s: float  # media time it describes: its window's middle, the test signal's mean flash
    offset_ms: float  # + = audio leads; NaN when the window gave no peak at all
    confidence: float  # 0..1
    method: Method
    events: int  # events (content: the fewer side) or pairs (test signal) it rests on
    spread_ms: float | None = None  # test signal: max - min of the pairs


@dataclass(frozen=True, slots=True)
class SyncReading:
    """A reading every hop: this window's estimate and the offset in force after it."""

    t_s: float  # media time it is dated at: the middle of its window
    measured: SyncEstimate
    in_force: SyncEstimate | None
    """This estimate if it was confident, else the last confident one (None before any)."""
    timestamp_offset_ms: float
    """The offset change the timestamps alone imply since the input began (TimestampDrift)."""
    clock_drift_ppm: float | None
    """How fast that moves (None until 10 s of each stream)."""

    @property
    def held(self) -> bool:
        return self.in_force is not None and self.in_force is not self.measured


# --- Timestamps -----------------------------------------------------------------------------


class TimestampDrift:
    """Audio timestamps against video timestamps, each relative to the media it carries.

    On the assumption that both streams' samples and pictures are continuous media (nothing
    lost) and were in sync at the start, a player that follows the timestamps, as every
    broadcast decoder does, shows the audio ``offset_ms`` earlier (+) or later (-) than at the
    start: audio timestamps that jump 80 ms ahead of their samples make the audio lag by 80 ms.
    A step is a jump; a steady slope is ``clock_drift_ppm``. A TS input's PCR never reaches the
    pipeline, so timestamps are compared with each other, not with the system clock.
    """

    def __init__(self) -> None:
        self.video = k.StreamClock(tolerance_s=0.002)
        self.audio = k.StreamClock(tolerance_s=0.002)  # the decode path's own block tolerance

    @property
    def offset_ms(self) -> float:
        return (self.video.error_s - self.audio.error_s) * 1000.0

    @property
    def clock_drift_ppm(self) -> float | None:
        """How fast ``offset_ms`` moves, in ppm of media time (20 ppm is 72 ms an hour): +
        when the audio's timestamps fall behind its samples against the video's."""
        a, v = self.audio.slope, self.video.slope
        return None if a is None or v is None else (v - a) * 1e6


# --- The detector ---------------------------------------------------------------------------


class AvSyncDetector:
    """Measures the A/V offset of one input from its pictures and one of its audio streams.

    Feed pictures and audio blocks in presentation order (each kind in order; the two kinds
    interleaved as decoded). Every ``hop`` of media a SyncReading is appended to ``readings``;
    the caller takes them with ``take()``.
    """

    def __init__(self, settings: AvSyncSettings) -> None:
        self.settings = settings
        self.readings: list[SyncReading] = []
        self.in_force: SyncEstimate | None = None
        self.pairs: deque[tuple[float, float]] = deque(maxlen=settings.test_signal_events)
        """(flash time, offset ms) of the latest flash/beep pairs."""
        self._window = settings.window_s
        self._beeps_wanted = settings.method in ("auto", "test_signal")
        self._max_offset = settings.max_offset_ms / 1000.0
        self._keep_s = self._window + 2 * self._max_offset + 2 * settings.hop_s + 1.0
        lags = np.arange(0.0, self._max_offset + 1e-9, FRAME_S)
        self._lags = np.concatenate((-lags[:0:-1], lags))
        self._scores = np.zeros(self._lags.size)
        half = round(SMOOTH_S / FRAME_S)
        smooth = 1.0 - np.abs(np.arange(-half, half + 1)) / (half + 1)
        self._smooth = smooth / smooth.sum()
        self.reset()

    def reset(self) -> None:
        """Start over from the next item (a new decoder): keep only the offset in force."""
        self.timestamps = TimestampDrift()
        self._pictures = k.Rows(k.PIC_COLUMNS)
        self._previous: np.ndarray | None = None
        self._format: tuple[tuple[int, ...], int] | None = None
        self._geometry = (0, 0, 0, 0, 1, 1.0)
        self._video_start_s: float | None = None
        self._video_end_s = -math.inf
        self._clocked = 0  # pictures already given to the timestamp clock
        self._rate = 0
        self._frame = 1
        self._low = self._high = 0.0
        self._audio_reset()
        self._next_hop_s: float | None = None
        self._flashes_to = 0  # pictures scanned for flashes
        self._flashes: list[float] = []
        self._beeps: list[float] = []
        self.pairs.clear()

    def _audio_reset(self) -> None:
        self._envelope = k.Rows(2)  # onset strength, level dBFS per FRAME_S frame
        self._mono = k.Rows(1, 1 << 16)
        self._audio_state = np.zeros(k.A_STATE)
        self._audio_t0: float | None = None  # media time of mono sample 0 (and frame 0's start)
        self._audio_next_s: float | None = None
        self._beeps_to = 0  # envelope frames scanned for beeps

    def take(self) -> list[SyncReading]:
        readings, self.readings = self.readings, []
        return readings

    # -- input -------------------------------------------------------------------------------

    def picture(self, luma: np.ndarray, pts_s: float, duration_s: float, bit_depth: int) -> None:
        """One decoded picture: its luma plane (2-D view) shown from ``pts_s``."""
        if (luma.shape, bit_depth) != self._format:
            self._format = (luma.shape, bit_depth)
            self._geometry = self._measure_geometry(luma.shape, bit_depth)
            self._previous = None
        previous = self._previous if self._previous is not None else luma
        row = self._reserve_picture()
        row[k.PIC_PTS] = pts_s
        row[k.PIC_DURATION] = duration_s
        row[k.PIC_CHANGE] = 0.0
        k.picture_change(luma, previous, *self._geometry, row)
        self._pictures.commit(1)
        self._previous = luma
        if self._video_start_s is None:
            self._video_start_s = pts_s
        self._video_end_s = pts_s + duration_s
        if self._next_hop_s is None or self._video_end_s >= self._next_hop_s:
            self._advance()

    def _measure_geometry(
        self, shape: tuple[int, ...], bit_depth: int
    ) -> tuple[int, int, int, int, int, float]:
        """(row0, row1, col0, col1, row step, scale to 8-bit) of the analysed part."""
        height, width = shape
        c0, r0, c1, r1 = (0, 0, width, height)
        if self.settings.roi is not None:
            c0, r0, c1, r1 = self.settings.roi.pixels(width, height)
            if c1 <= c0 or r1 <= r0:  # a region too small for this picture: its middle pixel
                c0, r0 = min(c0, width - 1), min(r0, height - 1)
                c1, r1 = c0 + 1, r0 + 1
        step = max(1, (r1 - r0) // ANALYSED_ROWS)
        return (r0, r1, c0, c1, step, 1.0 / (1 << (bit_depth - 8)))

    def _reserve_picture(self) -> np.ndarray:
        rows = self._pictures
        if rows.end - rows.first >= rows.data.shape[0] - 1:
            # Full: keep what the next windows can still use (bounded when audio never comes).
            self._clock_pictures()
            times = rows.view(rows.first, rows.end)[:, k.PIC_PTS]
            drop = int(np.searchsorted(times, self._video_end_s - self._keep_s))
            rows.drop_before(rows.first + drop)
        row: np.ndarray = rows.reserve(1)[0]
        return row

    def _clock_pictures(self) -> None:
        """Give the pictures not seen yet to the video timestamp clock."""
        rows = self._pictures
        clock = self.timestamps.video
        new = rows.view(self._clocked, rows.end)
        for pts_s, duration_s in new[:, [k.PIC_PTS, k.PIC_DURATION]].tolist():
            clock.add(pts_s, duration_s)
        self._clocked = rows.end

    def audio(self, samples: np.ndarray, pts_s: float, sample_rate: int) -> None:
        """One block of the measured stream: (channels, n) float32 starting at ``pts_s``."""
        n = samples.shape[1]
        if n == 0:
            return
        self.timestamps.audio.add(pts_s, n / sample_rate)
        if sample_rate != self._rate:
            self._audio_reset()
            self._rate = sample_rate
            self._frame = max(1, round(FRAME_S * sample_rate))
            self._low = 1.0 - math.exp(-2 * math.pi * k.LOW_SPLIT_HZ / sample_rate)
            self._high = 1.0 - math.exp(-2 * math.pi * k.HIGH_SPLIT_HZ / sample_rate)
        if self._audio_t0 is None or self._audio_next_s is None:
            self._audio_t0 = pts_s
        else:
            gap = pts_s - self._audio_next_s
            if gap < -self._frame / sample_rate or gap > self._max_offset:
                # Overlap or a long gap: the envelope's grid cannot continue.
                self._audio_reset()
                self._audio_t0 = pts_s
            elif gap * sample_rate >= 1.0:
                # A short gap plays as silence: keep the grid, with zeros where it was.
                self._append_audio(np.zeros((1, round(gap * sample_rate)), np.float32))
        self._append_audio(samples)
        self._audio_next_s = pts_s + n / sample_rate
        if self._next_hop_s is None or self.audio_end_s >= self._next_hop_s + self._max_offset:
            self._advance()

    def _append_audio(self, samples: np.ndarray) -> None:
        n = samples.shape[1]
        envelope, mono = self._envelope, self._mono
        if self._beeps_wanted and envelope.end - self._beeps_to >= 1.0 / FRAME_S:
            self._find_beeps()  # while the mono samples around them are still held
        for rows, keep in ((envelope, self._keep_s / FRAME_S), (mono, 3.0 * self._rate)):
            if rows.end - rows.first > 2 * keep:
                rows.drop_before(rows.end - int(keep))
        frames = envelope.reserve(n // self._frame + 1)
        written = k.audio_onsets(
            samples,
            self._frame,
            self._low,
            self._high,
            self._audio_state,
            frames[:, 0],
            frames[:, 1],
            mono.reserve(n)[:, 0],
        )
        envelope.commit(written)
        mono.commit(n)

    @property
    def audio_end_s(self) -> float:
        """Media time up to which the audio envelope is complete."""
        if self._audio_t0 is None:
            return -math.inf
        return self._audio_t0 + self._envelope.end * self._frame / self._rate

    def finish(self) -> None:
        """The input ended: read what the last windows hold."""
        self._advance(final=True)

    # -- readings ----------------------------------------------------------------------------

    def _advance(self, final: bool = False) -> None:
        if self._video_start_s is None or self._audio_t0 is None:
            return
        if self._next_hop_s is None:
            first = max(self._video_start_s, self._audio_t0) + self._window / 2
            self._next_hop_s = math.ceil(first / self.settings.hop_s) * self.settings.hop_s
        # A window reads the envelope up to max_offset (and the smoothing) past its end.
        audio_needed = 0.0 if final else self._max_offset + SMOOTH_S + FRAME_S
        while (
            self._video_end_s >= self._next_hop_s
            and self.audio_end_s >= self._next_hop_s + audio_needed
        ):
            self._read(self._next_hop_s)
            self._next_hop_s += self.settings.hop_s

    def _read(self, end_s: float) -> None:
        assert self._video_start_s is not None and self._audio_t0 is not None
        rows = self._pictures
        start_s = max(end_s - self._window, self._video_start_s, self._audio_t0)
        self._clock_pictures()
        method = self.settings.method
        t_s = (start_s + end_s) / 2
        estimate: SyncEstimate
        if method in ("auto", "test_signal"):
            estimate = self._test_signal(t_s, end_s)
            if method == "auto" and estimate.confidence == 0.0:
                estimate = self._content(t_s, start_s, end_s)
        elif method == "content":
            estimate = self._content(t_s, start_s, end_s)
        else:
            estimate = SyncEstimate(t_s, self.timestamps.offset_ms, 1.0, "timestamps", 0)
        if estimate.confidence >= self.settings.min_confidence and estimate.confidence > 0.0:
            self.in_force = estimate
        self.readings.append(
            SyncReading(
                t_s,
                estimate,
                self.in_force,
                self.timestamps.offset_ms,
                self.timestamps.clock_drift_ppm,
            )
        )
        # Pictures older than every window still to come are no longer needed.
        keep = end_s - self._window - 4 * self._max_offset
        pictures = rows.view(rows.first, rows.end)
        rows.drop_before(rows.first + int(np.searchsorted(pictures[:, k.PIC_PTS], keep)))

    def _content(self, t_s: float, start_s: float, end_s: float) -> SyncEstimate:
        """Cross-correlate the window's video events with the audio onset envelope."""
        rows = self._pictures
        pictures = rows.view(rows.first, rows.end)
        times = pictures[:, k.PIC_PTS]
        first = int(np.searchsorted(times, start_s))
        last = int(np.searchsorted(times, end_s))
        if last - first < 3:
            return SyncEstimate(t_s, math.nan, 0.0, "content", 0)
        lo = max(first - 3, 0)
        events = k.video_events(pictures[lo:last, k.PIC_CHANGE])[first - lo :]
        times = times[first:last]
        duration = max(float(np.median(pictures[first:last, k.PIC_DURATION])), FRAME_S)

        assert self._audio_t0 is not None
        frame_s = self._frame / self._rate
        a0 = int((start_s - self._max_offset - SMOOTH_S - self._audio_t0) / frame_s)
        a1 = int((end_s + self._max_offset + SMOOTH_S - self._audio_t0) / frame_s) + 1
        onsets = self._envelope.view(a0, a1)[:, 0]
        a0 = max(a0, self._envelope.first)
        if onsets.size < 8:
            return SyncEstimate(t_s, math.nan, 0.0, "content", 0)
        smoothed = np.convolve(onsets, self._smooth, mode="same")
        # Envelope value j describes the frame starting at a0 + j: dated at its middle.
        grid_t0 = self._audio_t0 + (a0 + 0.5) * frame_s
        scores = self._scores
        k.lag_correlation(
            times, events, grid_t0, frame_s, smoothed, self._lags, len(times) // 2, scores
        )
        count = min(
            int(np.count_nonzero(events >= VIDEO_EVENT_CV)),
            k.audio_event_count(onsets, frame_s, AUDIO_EVENT_DB),
        )
        if count < self.settings.min_events:  # nothing to measure: no guess either
            return SyncEstimate(t_s, math.nan, 0.0, "content", count)
        offset_s, confidence = k.peak_of(scores, self._lags, PEAK_EXCLUSION_FRAMES * duration)
        return SyncEstimate(t_s, offset_s * 1000.0, confidence, "content", count)

    # -- test signal ------------------------------------------------------------------------

    def _test_signal(self, t_s: float, end_s: float) -> SyncEstimate:
        self._find_flashes(end_s)
        self._find_beeps()
        assert self._audio_t0 is not None
        # Beeps are known up to here (one found in a frame may begin two frames earlier).
        beeps_to_s = self._audio_t0 + (self._beeps_to - 2) * self._frame / self._rate
        waiting = []
        for flash in self._flashes:
            if flash + self._max_offset > beeps_to_s:
                waiting.append(flash)
                continue
            near = [b for b in self._beeps if abs(flash - b) <= self._max_offset]
            if near:
                beep = min(near, key=lambda b: abs(flash - b))
                self.pairs.append((flash, (flash - beep) * 1000.0))
        self._flashes = waiting
        self._beeps = [b for b in self._beeps if b > end_s - self._window - self._max_offset]
        recent = [offset for flash, offset in self.pairs if flash > end_s - self._window]
        if len(self.pairs) < self.settings.test_signal_events or len(recent) == 0:
            return SyncEstimate(t_s, math.nan, 0.0, "test_signal", len(recent))
        flashes = [flash for flash, _ in self.pairs]
        offsets = [offset for _, offset in self.pairs]
        spread = max(offsets) - min(offsets)
        confident = spread <= self.settings.test_signal_max_span_ms
        return SyncEstimate(
            sum(flashes) / len(flashes),
            sum(offsets) / len(offsets),
            1.0 if confident else 0.0,
            "test_signal",
            len(offsets),
            spread,
        )

    def _find_flashes(self, end_s: float) -> None:
        rows = self._pictures
        start = max(self._flashes_to - 1, rows.first)
        pictures = rows.view(start, rows.end)
        pictures = pictures[pictures[:, k.PIC_PTS] < end_s]
        if len(pictures) < 2:
            return
        mean = pictures[:, k.PIC_MEAN]
        flash = (mean[:-1] <= FLASH_DARK_CV) & (mean[1:] - mean[:-1] >= FLASH_RISE_CV)
        for i in np.flatnonzero(flash):
            self._flashes.append(float(pictures[i + 1, k.PIC_PTS]))
        self._flashes_to = start + len(pictures)

    def _find_beeps(self) -> None:
        """Beep onsets among the envelope frames not scanned yet, timed to the sample."""
        assert self._audio_t0 is not None
        envelope = self._envelope
        frame_s = self._frame / self._rate
        # A beep needs its plateau decoded after it before it can be timed.
        margin = int((BEEP_PLATEAU_S + BEEP_POWER_S) / frame_s) + 2
        start = max(self._beeps_to, envelope.first + 2)
        stop = envelope.end - margin
        if stop <= start:
            return
        levels = envelope.view(start - 2, stop)[:, 1]
        rise = levels[2:] - np.minimum(levels[:-2], levels[1:-1])
        for j in np.flatnonzero((rise >= BEEP_RISE_DB) & (levels[2:] >= BEEP_MIN_DBFS)):
            coarse = self._audio_t0 + (start + j) * frame_s
            if self._beeps and coarse - self._beeps[-1] < BEEP_GAP_S:
                continue
            onset = self._beep_onset(coarse)
            if onset is not None:
                self._beeps.append(onset)
        self._beeps_to = stop

    def _beep_onset(self, coarse_s: float) -> float | None:
        """The time the beep found in the frame starting at ``coarse_s`` begins, to the sample."""
        assert self._audio_t0 is not None
        rate = self._rate
        half = max(1, round(BEEP_POWER_S * rate / 2))
        s0 = round((coarse_s - 2 * FRAME_S - self._audio_t0) * rate) - half
        s1 = round((coarse_s + FRAME_S + BEEP_PLATEAU_S - self._audio_t0) * rate) + half
        x = self._mono.view(s0, s1)[:, 0]
        onset = k.burst_onset(x, half)
        if onset is None:
            return None
        return self._audio_t0 + (max(s0, self._mono.first) + onset) / rate
