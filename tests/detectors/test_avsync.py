"""A/V sync on synthetic pictures and sound: the offset's sign and size, holding, line-up
pairs to the sample, timestamps, presets. Media here is numpy arrays, exact to the sample;
tests/monitor/test_avsync_check.py measures the same on H.264/AAC through the decoder."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.avsync import AvSyncDetector, AvSyncSettings, SyncReading
from detectors.regions import Region

RATE = 48_000
FPS = 25
H, W = 36, 64


def schedule(seed: int, duration_s: float, gaps: tuple[float, float] = (0.35, 1.3)) -> list[int]:
    """Frames of events at irregular times (a cut, a flash or motion starting/stopping)."""
    rng = np.random.default_rng(seed)
    frames, t = [], 0.6
    while (t := t + rng.uniform(*gaps)) < duration_s - 0.6:
        frames.append(round(t * FPS))
    return frames


def pictures(events: list[int], duration_s: float, seed: int = 0) -> list[np.ndarray]:
    """Textured scenes: a cut, a decaying flash or a box starting/stopping at each event."""
    rng = np.random.default_rng(seed + 1)
    scene = rng.integers(40, 200, (H, W)).astype(np.float64)
    flash, moving, x = 0.0, False, 4
    out = []
    kinds = dict(zip(events, rng.integers(0, 3, len(events)), strict=True))
    for i in range(round(duration_s * FPS)):
        kind = kinds.get(i)
        if kind == 0:
            scene = rng.integers(40, 200, (H, W)).astype(np.float64)
        elif kind == 1:
            flash = 60.0
        elif kind == 2:
            moving = not moving
        x = (x + 2) % (W - 10) if moving else x
        y = scene + flash
        y[10:20, x : x + 10] = 235.0
        flash = flash / 2 if flash > 8 else 0.0
        out.append(np.clip(y, 16, 235).astype(np.uint8))
    return out


def sound(
    events: list[int], duration_s: float, offset_ms: float, seed: int = 0, drift: float = 0.0
) -> np.ndarray:
    """Stereo noise floor with a burst at each event, moved earlier by offset + drift * t."""
    rng = np.random.default_rng(seed + 2)
    n = round(duration_s * RATE)
    x = rng.normal(0.0, 0.003, n)
    for frame in events:
        t = frame / FPS
        start = round((t - (offset_ms + drift * t) / 1000.0) * RATE)
        length = round(0.06 * RATE)
        if start >= 0 and start + length <= n:
            decay = np.exp(-np.arange(length) / (0.02 * RATE))
            x[start : start + length] += 0.3 * rng.normal(0.0, 1.0, length) * decay
    return np.stack([x, x]).astype(np.float32)


def feed(
    detector: AvSyncDetector,
    frames: list[np.ndarray],
    audio: np.ndarray,
    *,
    block: int = 9600,
    audio_pts=lambda t: t,
    bit_depth: int = 8,
) -> list[SyncReading]:
    """Pictures and audio blocks interleaved as a demuxer delivers them; then the end."""
    readings: list[SyncReading] = []
    sent = 0
    for i, y in enumerate(frames):
        detector.picture(y, i / FPS, 1 / FPS, bit_depth)
        while sent < min((i + 1) * RATE // FPS, audio.shape[1]):
            part = np.ascontiguousarray(audio[:, sent : sent + block])
            detector.audio(part, audio_pts(sent / RATE), RATE)
            sent += part.shape[1]
        readings += detector.take()
    detector.finish()
    return readings + detector.take()


def confident(readings: list[SyncReading], settings: AvSyncSettings) -> list[SyncReading]:
    return [r for r in readings if r.measured.confidence >= settings.min_confidence]


# --- Settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset, lead, lag",
    [("ebu_r37", 40, 60), ("atsc_is191", 15, 45), ("bt1359", 90, 185)],
)
def test_presets_are_the_standards_windows(preset, lead, lag):
    settings = AvSyncSettings(preset=preset)
    assert settings.limits_ms == (lead, lag)
    assert not settings.outside(lead) and settings.outside(lead + 0.1)
    assert not settings.outside(-lag) and settings.outside(-lag - 0.1)


def test_a_side_of_a_preset_can_be_overridden_and_custom_needs_both():
    assert AvSyncSettings(max_audio_lead_ms=20).limits_ms == (20, 60)
    assert AvSyncSettings(preset="bt1359", max_audio_lag_ms=100).limits_ms == (90, 100)
    custom = AvSyncSettings(preset="custom", max_audio_lead_ms=5, max_audio_lag_ms=15)
    assert custom.limits_ms == (5, 15)
    with pytest.raises(ValueError, match="preset custom needs both"):
        AvSyncSettings(preset="custom", max_audio_lead_ms=5)


def test_windows_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="hop"):
        AvSyncSettings(window_s=4.0, hop_s=5.0)
    with pytest.raises(ValueError, match="max_offset_ms"):
        AvSyncSettings(window_s=4.0, max_offset_ms=2500)


# --- Content --------------------------------------------------------------------------------


@pytest.mark.parametrize("offset_ms", [-300.0, -45.0, 0.0, 17.0, 120.0, 300.0])
def test_content_offset_has_the_sign_and_size_of_the_shift(offset_ms):
    """Sounds earlier than their pictures read positive (audio leads), later negative."""
    events = schedule(1, 30.0)
    settings = AvSyncSettings(method="content")
    readings = feed(
        AvSyncDetector(settings), pictures(events, 30.0), sound(events, 30.0, offset_ms)
    )
    trusted = confident(readings, settings)
    errors = [r.measured.offset_ms - offset_ms for r in trusted]
    assert len(trusted) >= 0.8 * len(readings) and len(trusted) >= 20, len(trusted)
    assert max(abs(e) for e in errors) <= 10.0, errors
    assert all(r.measured.method == "content" for r in trusted)


def test_readings_do_not_depend_on_the_audio_block_size():
    events = schedule(2, 16.0)
    frames, audio = pictures(events, 16.0), sound(events, 16.0, 80.0)
    runs = [
        [(r.t_s, r.measured.offset_ms, r.measured.confidence) for r in readings]
        for readings in (
            feed(AvSyncDetector(AvSyncSettings()), frames, audio, block=block)
            for block in (480, 1024, 9600)
        )
    ]
    assert runs[0] and runs[0] == runs[1] == runs[2]


@pytest.mark.parametrize("what", ["silence", "static picture", "steady tone"])
def test_no_offset_is_trusted_without_events_on_both_sides(what):
    events = schedule(3, 20.0)
    frames, audio = pictures(events, 20.0), sound(events, 20.0, 100.0)
    if what == "silence":
        audio[:] = 0.0
    elif what == "static picture":
        frames = [frames[0]] * len(frames)
    else:
        t = np.arange(audio.shape[1]) / RATE
        audio[:] = (0.2 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    settings = AvSyncSettings()
    readings = feed(AvSyncDetector(settings), frames, audio)
    assert readings and all(r.in_force is None for r in readings)
    assert all(r.measured.confidence < settings.min_confidence for r in readings)
    assert all(math.isnan(r.measured.offset_ms) for r in readings)  # no guess either


def test_sound_unrelated_to_the_picture_is_not_trusted():
    settings = AvSyncSettings(method="content")
    for seed in range(4):
        video, audio = schedule(seed, 30.0), schedule(seed + 50, 30.0)
        readings = feed(AvSyncDetector(settings), pictures(video, 30.0), sound(audio, 30.0, 0))
        best = max(r.measured.confidence for r in readings)
        assert best < settings.min_confidence, (seed, best)


def test_evenly_spaced_events_are_ambiguous_and_not_trusted():
    """A beat every 400 ms fits lags 400 ms apart equally well: no guess."""
    events = list(range(15, 20 * FPS - 15, 10))
    settings = AvSyncSettings(method="content")
    readings = feed(AvSyncDetector(settings), pictures(events, 20.0), sound(events, 20.0, 100.0))
    assert all(r.measured.confidence < settings.min_confidence for r in readings)


def test_the_last_trusted_offset_is_held_through_silence_and_a_still():
    events = schedule(4, 20.0)
    frames = pictures(events, 20.0) + [np.full((H, W), 90, np.uint8)] * (15 * FPS)
    audio = np.concatenate((sound(events, 20.0, 120.0), np.zeros((2, 15 * RATE))), axis=1)
    settings = AvSyncSettings()
    readings = feed(AvSyncDetector(settings), frames, audio.astype(np.float32))
    late = [r for r in readings if r.t_s > 27.0]
    assert late and all(r.held for r in late)
    assert all(r.measured.confidence == 0.0 for r in late)
    assert all(abs(r.in_force.offset_ms - 120.0) <= 10.0 for r in late)  # type: ignore[union-attr]


def test_drift_is_followed_within_a_frame():
    events = schedule(5, 40.0)
    settings = AvSyncSettings(method="content")
    audio = sound(events, 40.0, -20.0, drift=2.0)
    readings = confident(feed(AvSyncDetector(settings), pictures(events, 40.0), audio), settings)
    errors = [r.measured.offset_ms - (-20.0 + 2.0 * r.t_s) for r in readings]
    assert len(readings) >= 25 and max(abs(e) for e in errors) <= 20.0, errors


def test_a_region_of_interest_limits_the_events_to_it():
    events = schedule(6, 20.0)
    frames, audio = pictures(events, 20.0), sound(events, 20.0, 60.0)
    still = np.full((H, 16), 100, np.uint8)
    frames = [np.hstack((still, y[:, 16:])) for y in frames]  # nothing happens on the left
    left = AvSyncSettings(roi=Region(0.0, 0.0, 0.25, 1.0))
    assert not confident(feed(AvSyncDetector(left), frames, audio), left)
    right = AvSyncSettings(roi=Region(0.25, 0.0, 0.75, 1.0))
    trusted = confident(feed(AvSyncDetector(right), frames, audio), right)
    assert trusted and all(abs(r.measured.offset_ms - 60.0) <= 10.0 for r in trusted)


def test_ten_bit_pictures_read_as_eight_bit_ones():
    events = schedule(7, 16.0)
    frames, audio = pictures(events, 16.0), sound(events, 16.0, -70.0)
    eight = feed(AvSyncDetector(AvSyncSettings()), frames, audio)
    ten = feed(
        AvSyncDetector(AvSyncSettings()),
        [y.astype(np.uint16) * 4 for y in frames],
        audio,
        bit_depth=10,
    )
    assert [r.measured.offset_ms for r in eight] == pytest.approx(
        [r.measured.offset_ms for r in ten], nan_ok=True
    )


def test_reset_starts_afresh_and_keeps_the_offset_in_force():
    events = schedule(8, 16.0)
    detector = AvSyncDetector(AvSyncSettings())
    feed(detector, pictures(events, 16.0), sound(events, 16.0, 90.0))
    kept = detector.in_force
    assert kept is not None and abs(kept.offset_ms - 90.0) <= 10.0
    detector.reset()
    assert detector.in_force is kept and detector.take() == []
    assert detector.timestamps.audio.origin_s is None


def test_a_feed_without_audio_holds_a_bounded_history():
    detector = AvSyncDetector(AvSyncSettings())
    y = np.zeros((8, 8), np.uint8)
    for i in range(10 * 60 * FPS):
        detector.picture(y, i / FPS, 1 / FPS, 8)
    held = detector._pictures.end - detector._pictures.first
    assert detector.take() == [] and held < 40 * FPS, held


# --- Test signal ----------------------------------------------------------------------------


def lineup(duration_s: float, offset_ms: float | list[float]) -> tuple[list, np.ndarray]:
    """Black with a two-picture white flash every 2 s; a 1 kHz beep moved by offset_ms."""
    flashes = list(range(FPS, round((duration_s - 1) * FPS), 2 * FPS))
    offsets = offset_ms if isinstance(offset_ms, list) else [offset_ms] * len(flashes)
    frames = [np.full((H, W), 235 if i in flashes or i - 1 in flashes else 16, np.uint8)
              for i in range(round(duration_s * FPS))]  # fmt: skip
    audio = np.random.default_rng(9).normal(0.0, 1e-4, round(duration_s * RATE))
    for frame, offset in zip(flashes, offsets, strict=False):
        start = round((frame / FPS - offset / 1000.0) * RATE)
        n = round(0.1 * RATE)
        audio[start : start + n] += 0.25 * np.sin(2 * np.pi * 1000.0 * np.arange(n) / RATE)
    return frames, np.stack([audio, audio]).astype(np.float32)


@pytest.mark.parametrize("offset_ms", [-487.3, -20.0, 0.0, 33.33, 137.29, 499.0])
def test_line_up_flash_and_beep_are_timed_to_the_sample(offset_ms):
    frames, audio = lineup(16.0, offset_ms)
    readings = feed(AvSyncDetector(AvSyncSettings()), frames, audio)
    lineups = [r.measured for r in readings if r.measured.method == "test_signal"]
    injected_ms = round(offset_ms / 1000 * RATE) / RATE * 1000  # on the sample grid
    sample_ms = 1000 / RATE
    assert len(lineups) >= 3
    for m in lineups:
        assert m.confidence == 1.0 and m.events == 5
        # The beep's sine starts at phase 0, a zero sample: it reads a sample or so late.
        assert abs(m.offset_ms - injected_ms) <= 2 * sample_ms, m
        assert m.spread_ms is not None and m.spread_ms <= sample_ms


def test_scattered_flash_beep_pairs_are_not_a_line_up():
    scattered = list(np.random.default_rng(10).uniform(-150, 150, 8))
    frames, audio = lineup(18.0, scattered)
    settings = AvSyncSettings(method="test_signal")
    readings = feed(AvSyncDetector(settings), frames, audio)
    assert readings and all(r.in_force is None for r in readings)
    spreads = [r.measured.spread_ms for r in readings if r.measured.spread_ms is not None]
    assert spreads and min(spreads) > settings.test_signal_max_span_ms


# --- Timestamps -----------------------------------------------------------------------------


def test_an_audio_timestamp_jump_is_an_offset_change():
    """Audio stamps jumping 80 ms ahead of continuous samples: the audio now lags by 80 ms."""
    events = schedule(11, 24.0)
    frames, audio = pictures(events, 24.0), sound(events, 24.0, 0.0)
    settings = AvSyncSettings(method="timestamps")
    detector = AvSyncDetector(settings)
    readings = feed(detector, frames, audio, audio_pts=lambda t: t + (0.08 if t >= 12 else 0))
    assert detector.timestamps.audio.jumps == 1 and detector.timestamps.video.jumps == 0
    after = [r for r in readings if r.t_s > 12.0]
    assert all(r.timestamp_offset_ms == pytest.approx(-80.0, abs=0.01) for r in after)
    assert after[-1].in_force is not None and settings.outside(after[-1].in_force.offset_ms)
    before = [r for r in readings if r.t_s < 5.0]
    assert all(abs(r.timestamp_offset_ms) < 0.01 for r in before)


def test_audio_timestamps_running_fast_are_a_clock_drift_in_ppm():
    events = schedule(12, 30.0)
    frames, audio = pictures(events, 30.0), sound(events, 30.0, 0.0)
    readings = feed(
        AvSyncDetector(AvSyncSettings()), frames, audio, audio_pts=lambda t: t * (1 + 100e-6)
    )
    assert readings[0].clock_drift_ppm is None  # not before 10 s of each stream
    assert readings[-1].clock_drift_ppm == pytest.approx(-100.0, abs=1.0)
    assert readings[-1].timestamp_offset_ms == pytest.approx(-100e-6 * 30.0 * 1000, abs=0.3)
