"""The av_sync check end to end: H.264 + AAC MPEG-TS made with PyAV, sounds shifted from
their pictures by a known offset, through ``monitor.pipeline.analyze.analyze`` and the CLI.

The AAC encoder's priming packet is kept, as FFmpeg muxes a real feed (the muxer then shifts
every stream by the 1024 priming samples); the offsets are measured on the timestamps as
decoded and come out right without any correction. MPEG-1 Layer II (481 samples of codec
delay) is checked the same way. Run with ``-s`` for the accuracy tables.
"""

from __future__ import annotations

import dataclasses
import hashlib
import textwrap
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import monitor.checks.avsync
from detectors.avsync import AvSyncSettings, SyncReading
from monitor.alarms.engine import AlarmEvent
from monitor.config import (
    AlarmRule,
    ChannelConfig,
    DetectorConfig,
    default_channel,
    load_config,
)
from monitor.decode.media_source import MediaSource
from monitor.errors import ConfigError
from monitor.pipeline.analyze import analyze
from monitor.pipeline.channel import ChannelPipeline


@dataclass(frozen=True)
class SyncClip:
    """A clip whose sounds are ``offset_ms + drift_ms_per_s * t`` earlier than their pictures."""

    offset_ms: float = 0.0
    drift_ms_per_s: float = 0.0
    duration_s: float = 16.0
    picture: str = "events"  # events | lineup | static
    sound: str = "events"  # events | lineup | silence
    audio_codec: str = "aac"
    fps: int = 25
    seed: int = 0

    def offset_at(self, t_s: float) -> float:
        return self.offset_ms + self.drift_ms_per_s * t_s

    def event_frames(self) -> list[int]:
        """Irregular events (cuts, flashes, a box starting or stopping); a line-up every 2 s."""
        if self.picture == "lineup":
            return list(range(self.fps, round((self.duration_s - 1) * self.fps), 2 * self.fps))
        rng = np.random.default_rng(self.seed)
        frames, t = [], 0.6
        while (t := t + rng.uniform(0.35, 1.3)) < self.duration_s - 0.6:
            frames.append(round(t * self.fps))
        return frames


WIDTH, HEIGHT, RATE = 192, 108, 48_000


def texture(rng: np.random.Generator) -> np.ndarray:
    blocks = rng.integers(50, 200, (HEIGHT // 6 + 1, WIDTH // 6 + 1)).astype(np.float32)
    return np.kron(blocks, np.ones((6, 6), np.float32))[:HEIGHT, :WIDTH]


def luma_planes(clip: SyncClip):
    rng = np.random.default_rng(clip.seed + 1)
    events = clip.event_frames()
    kinds = dict(zip(events, rng.integers(0, 3, len(events)), strict=True))
    scene, flash, moving, x = texture(rng), 0.0, False, WIDTH // 4
    box = HEIGHT // 6
    for i in range(round(clip.duration_s * clip.fps)):
        if clip.picture == "lineup":
            yield np.full((HEIGHT, WIDTH), 235 if i in kinds or i - 1 in kinds else 16, np.uint8)
            continue
        kind = kinds.get(i) if clip.picture == "events" else None
        if kind == 0:
            scene = texture(rng)
        elif kind == 1:
            flash = 90.0
        elif kind == 2:
            moving = not moving
        x = (x + 3) % (WIDTH - box) if moving else x
        y = scene.copy()
        y[HEIGHT // 3 : HEIGHT // 3 + box, x : x + box] = 230.0
        yield np.clip(y + flash, 16, 235).astype(np.uint8)
        flash = flash / 2 if flash > 10 else 0.0


def sound(clip: SyncClip) -> np.ndarray:
    """Noise at -50 dBFS with a burst (noise or a decaying tone; a 1 kHz beep for a line-up)
    at each event, placed on the sample grid from the picture's time and the offset."""
    rng = np.random.default_rng(clip.seed + 2)
    n = round(clip.duration_s * RATE)
    if clip.sound == "silence":
        return np.zeros((2, n), np.float32)
    x = rng.normal(0.0, 10 ** (-50 / 20), n)
    for frame in clip.event_frames():
        t = frame / clip.fps
        start = round((t - clip.offset_at(t) / 1000.0) * RATE)
        if clip.sound == "lineup":
            length = round(0.12 * RATE)
            burst = 0.25 * np.sin(2 * np.pi * 1000.0 * np.arange(length) / RATE)
        else:
            length = round(rng.uniform(0.04, 0.12) * RATE)
            decay = np.exp(-np.arange(length) / (rng.uniform(0.01, 0.04) * RATE))
            if rng.random() < 0.5:
                burst = 0.3 * rng.normal(0.0, 1.0, length) * decay
            else:
                burst = 0.4 * np.sin(2 * np.pi * rng.uniform(200, 2000) * np.arange(length) / RATE)
                burst *= decay
        if start >= 0 and start + length <= n:
            x[start : start + length] += burst
    return np.stack([x, x]).astype(np.float32)


def make_clip(path: Path, clip: SyncClip) -> Path:
    """Encode with PTS set from frame and sample counts (never wall time); keep AAC priming."""
    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=clip.fps)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.codec_context.time_base = Fraction(1, clip.fps)
        video.options = {"preset": "ultrafast", "crf": "18"}
        audio = out.add_stream(clip.audio_codec, rate=RATE, layout="stereo")
        audio.codec_context.time_base = Fraction(1, RATE)
        signal = sound(clip)
        size = audio.codec_context.frame_size or 1024
        signal = np.pad(signal, ((0, 0), (0, -signal.shape[1] % size)))
        sent = 0
        planes = np.full((HEIGHT * 3 // 2, WIDTH), 128, np.uint8)
        for i, y in enumerate(luma_planes(clip)):
            planes[:HEIGHT] = y
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, clip.fps)
            out.mux(video.encode(frame))
            while sent < min((i + 1) * RATE // clip.fps, signal.shape[1]):
                part = np.ascontiguousarray(signal[:, sent : sent + size])
                block = av.AudioFrame.from_ndarray(part, format="fltp", layout="stereo")
                block.sample_rate, block.pts, block.time_base = RATE, sent, Fraction(1, RATE)
                out.mux(audio.encode(block))
                sent += size
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("avsync")

    def make(clip: SyncClip) -> Path:
        path = folder / f"{hashlib.sha1(repr(clip).encode()).hexdigest()[:12]}.ts"
        return path if path.exists() else make_clip(path, clip)

    return make


@dataclass
class Run:
    readings: list[SyncReading]
    events: list[AlarmEvent]
    first_picture_s: float  # media time of picture 0: the clip's t = 0

    def raised(self) -> list[AlarmEvent]:
        return [e for e in self.events if e.state == "raised"]


@pytest.fixture
def run(clips, monkeypatch):
    """run(clip, **settings): analyze() the clip with av_sync on; its readings and events."""

    def run_clip(clip: SyncClip, rule: AlarmRule | None = None, **settings) -> Run:
        readings: list[SyncReading] = []
        judge = monitor.checks.avsync.AvSyncCheck._judge

        def spy(self, taken):
            readings.extend(taken)
            judge(self, taken)

        monkeypatch.setattr(monitor.checks.avsync.AvSyncCheck, "_judge", spy)
        rule = rule or AlarmRule(raise_after_s=5.0, clear_after_s=5.0)
        channel = dataclasses.replace(
            default_channel(), av_sync=DetectorConfig(rule, AvSyncSettings(**settings))
        )
        events: list[AlarmEvent] = []
        path = clips(clip)
        analyze(str(path), channel, events.append)
        with av.open(str(path)) as container:
            first = next(container.decode(video=0))
            origin = container.start_time / av.time_base
            first_picture_s = float(first.pts * first.time_base) - origin
        return Run(readings, [e for e in events if e.alarm == "av_sync"], first_picture_s)

    return run_clip


def table(title: str, rows: list[str]) -> str:
    text = "\n".join([title, *rows])
    print("\n" + text)
    return text


# --- Accuracy -------------------------------------------------------------------------------

CONTENT_OFFSETS_MS = [-300.0, -150.0, -45.0, 0.0, 25.0, 90.0, 300.0]


def test_content_offsets_within_20ms_with_the_sign_right_and_alarms_outside_r37(run):
    settings = AvSyncSettings()
    rows, failures = [], []
    for offset in CONTENT_OFFSETS_MS:
        result = run(SyncClip(offset_ms=offset), method="content")
        trusted = [r for r in result.readings if r.measured.confidence >= 0.35]
        errors = [r.measured.offset_ms - offset for r in trusted]
        raised = result.raised()
        rows.append(
            f"{offset:+7.1f} ms  {len(trusted):2d}/{len(result.readings):2d} confident"
            f"  error {min(errors):+5.1f} .. {max(errors):+5.1f} ms"
            f"  av_sync {'raised' if raised else '-'}"
        )
        if len(trusted) < 0.8 * len(result.readings) or max(map(abs, errors)) > 20.0:
            failures.append(offset)
        if bool(raised) != settings.outside(offset):
            failures.append(offset)
        for event in raised:
            detail = event.detail
            if abs(detail["offset_ms"] - offset) > 20.0 or detail["method"] != "content":
                failures.append(offset)
            if not (detail["confidence"] >= 0.35 and detail["max_audio_lead_ms"] == 40.0):
                failures.append(offset)
    text = table("content mode (H.264/AAC 192x108p25, 16 s, 10 s window):", rows)
    assert not failures, text


LINEUP_OFFSETS_MS = [-500.0, -250.0, -33.0, 0.0, 20.0, 135.0, 500.0]


def test_line_up_offsets_within_2ms(run):
    rows, failures = [], []
    for offset in LINEUP_OFFSETS_MS:
        clip = SyncClip(offset_ms=offset, picture="lineup", sound="lineup", duration_s=14.0)
        result = run(clip)
        lineups = [r.measured for r in result.readings if r.measured.method == "test_signal"]
        errors = [m.offset_ms - offset for m in lineups]
        spreads = [m.spread_ms or 0.0 for m in lineups]
        rows.append(
            f"{offset:+7.1f} ms  {len(lineups)} readings of 5 pairs"
            f"  error {min(errors):+6.3f} .. {max(errors):+6.3f} ms, spread <= {max(spreads):.3f}"
        )
        if len(lineups) < 3 or max(map(abs, errors)) > 2.0:
            failures.append(offset)
    text = table("test-signal mode (flash + 1 kHz beep every 2 s, AAC):", rows)
    assert not failures, text


def test_mp2_codec_delay_is_carried_by_the_timestamps_too(run):
    clip = SyncClip(
        offset_ms=80.0, picture="lineup", sound="lineup", duration_s=14.0, audio_codec="mp2"
    )
    lineups = [r.measured for r in run(clip).readings if r.measured.method == "test_signal"]
    errors = [m.offset_ms - 80.0 for m in lineups]
    table(
        "test-signal mode, MPEG-1 Layer II:",
        [f"  +80.0 ms  error {min(errors):+6.3f} .. {max(errors):+6.3f} ms"],
    )
    assert len(lineups) >= 3 and max(map(abs, errors)) <= 2.0, errors


def test_slow_drift_is_followed_and_raises_when_it_leaves_the_window(run):
    """2 ms per second from -10 ms: the audio leads by more than R37's 40 ms from 25 s on."""
    clip = SyncClip(offset_ms=-10.0, drift_ms_per_s=2.0, duration_s=40.0)
    result = run(clip, method="content")
    trusted = [r for r in result.readings if r.measured.confidence >= 0.35]
    truth = [clip.offset_at(r.t_s - result.first_picture_s) for r in trusted]
    errors = [r.measured.offset_ms - want for r, want in zip(trusted, truth, strict=True)]
    raised = result.raised()
    text = table(
        "drift 2 ms/s from -10 ms (content mode, readings dated at their window's middle):",
        [
            f"  {len(trusted)} confident readings, error {min(errors):+.1f} .. {max(errors):+.1f}"
            f" ms; av_sync from {[round(e.start, 2) for e in raised]} s (+40 ms crossed at 25 s)"
        ],
    )
    assert len(trusted) >= 25 and max(map(abs, errors)) <= 20.0, text
    assert len(raised) == 1 and 20.0 <= raised[0].start <= 30.0, text
    assert 40.0 < raised[0].detail["offset_ms"] < 80.0, raised[0].detail


@pytest.mark.parametrize("what", ["silence", "static picture"])
def test_no_alarm_and_no_guess_on_silence_or_a_static_picture(run, what):
    clip = SyncClip(
        offset_ms=200.0,
        sound="silence" if what == "silence" else "events",
        picture="static" if what == "static picture" else "events",
    )
    result = run(clip)
    assert result.readings and result.events == []
    assert all(r.in_force is None and r.measured.confidence == 0.0 for r in result.readings)


def test_in_sync_material_raises_nothing_even_under_the_tightest_preset(run):
    result = run(SyncClip(offset_ms=0.0, duration_s=30.0, seed=3), preset="atsc_is191")
    assert result.events == []
    assert all(abs(r.in_force.offset_ms) <= 15.0 for r in result.readings if r.in_force)


# --- Configuration and the CLI --------------------------------------------------------------


def channel_yaml(tmp_path: Path, block: str) -> Path:
    path = tmp_path / "sync.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            site: test
            channels:
              - name: news
                inputs:
                  primary: {url: "udp://239.1.1.1:5000"}
                detectors:
            """
        )
        + f"      av_sync: {block}\n"
    )
    return path


def test_av_sync_is_off_unless_a_channel_turns_it_on(tmp_path):
    assert default_channel().av_sync.rule.enabled is False
    config = load_config(channel_yaml(tmp_path, "{enabled: true, preset: bt1359, raise_after: 5s}"))
    news: ChannelConfig = config.channel("news")
    assert news.av_sync.rule.enabled and news.av_sync.rule.raise_after_s == 5.0
    assert news.av_sync.settings.limits_ms == (90.0, 185.0)


@pytest.mark.parametrize(
    "block, message",
    [
        (
            "{preset: custom, max_audio_lead_ms: 20}",
            "sync.yaml:8: channels[0].detectors.av_sync: preset custom needs both"
            " max_audio_lead_ms and max_audio_lag_ms",
        ),
        (
            "{preset: r37}",
            "sync.yaml:8: channels[0].detectors.av_sync.preset: must be one of: ebu_r37,"
            " atsc_is191, bt1359, custom, got 'r37'",
        ),
        (
            "{max_audio_lag_ms: -60}",
            "sync.yaml:8: channels[0].detectors.av_sync.max_audio_lag_ms: must be >= 0, got -60",
        ),
    ],
)
def test_a_bad_av_sync_setting_is_one_line_naming_file_line_and_key(tmp_path, block, message):
    with pytest.raises(ConfigError) as raised:
        load_config(channel_yaml(tmp_path, block))
    assert str(raised.value) == f"{tmp_path}/{message}"


def test_the_cli_prints_the_raised_offset_with_its_confidence(clips, streamqc, tmp_path):
    path = clips(SyncClip(offset_ms=120.0))
    config = channel_yaml(tmp_path, "{enabled: true, preset: ebu_r37, raise_after: 5s}")
    result = streamqc("analyze", str(path), "--config", str(config))
    assert result.code == 0, result.stderr
    (raised,) = [e for e in result.events if e["alarm"] == "av_sync" and e["state"] == "raised"]
    detail = raised["detail"]
    assert abs(detail["offset_ms"] - 120.0) <= 20.0 and detail["confidence"] >= 0.35
    assert detail["method"] in ("content", "test_signal") and detail["preset"] == "ebu_r37"
    assert (detail["max_audio_lead_ms"], detail["max_audio_lag_ms"]) == (40.0, 60.0)


def test_the_pipeline_exports_offset_confidence_and_clock_drift_as_gauges(clips):
    """What the daemon's /metrics shows: the channel pipeline is the one analyze runs."""
    channel = dataclasses.replace(
        default_channel(), av_sync=DetectorConfig(AlarmRule(), AvSyncSettings())
    )
    events: list[AlarmEvent] = []
    with MediaSource(str(clips(SyncClip(offset_ms=120.0)))) as media:
        audio = [s for s in media.stream_infos() if s.kind == "audio"]
        pipeline = ChannelPipeline(channel, "primary", events.append, audio_streams=audio)
        for item in media:
            pipeline.process(item)
    gauges = {name: value for name, _, value in pipeline.gauges()}
    assert abs(gauges["av_sync_offset_seconds"] - 0.120) <= 0.020  # base units: seconds
    assert gauges["av_sync_confidence"] >= 0.35
    assert abs(gauges["av_sync_clock_drift_ppm"]) < 1.0  # both streams stamped by their counts
    assert gauges["av_sync_timestamp_offset_seconds"] == pytest.approx(0.0, abs=0.0001)
    assert gauges["av_sync_timestamp_jumps_total"] == 0  # a count: exported as a counter
