"""Tests proving monitor/demo/synth.py makes what it claims, with FFmpeg (tests/oracle.py) as judge.

Measured edge accuracy (320x180@25, 48 kHz stereo AAC): black and freeze edges are
frame-exact (0 ms); silence / mute edges land 0.5-4.5 ms *inside* the injected span
(AAC MDCT smear of the tone), so silence is checked with a 512-sample (10.7 ms)
tolerance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from monitor.demo.synth import (
    AAC_FRAME,
    LOGO_REGION,
    MOVING_REGION,
    MediaSpec,
    Span,
    frame_indices,
    make_garbage,
    make_ts,
    region_pixels,
    truncate,
)
from tests.oracle import ffmpeg_black, ffmpeg_freeze, ffmpeg_silence

FPS = 25
FRAME_S = 1 / FPS
SILENCE_TOL_S = 512 / 48000

FAULTS = MediaSpec(
    duration_s=14.0,
    black=(Span(4.0, 6.5),),
    freeze=(Span(7.3, 10.1),),  # forced IDR at 7.32 s, a regular one at 9.32 s
    dark=(Span(11.0, 13.5),),
    silence=(Span(1.0, 3.5), Span(10.2, 12.6)),
    mute_channel=((Span(5.0, 8.0), 1),),
)
LOGO_TICKER = MediaSpec(
    duration_s=10.0,
    black_with_logo=(Span(1.0, 3.5),),
    static_with_moving_region=(Span(4.0, 8.5),),  # forced IDR at 4.0 s, a regular one at 6.0 s
)
CLEAN = MediaSpec(duration_s=8.0)
SPECS: dict[str, MediaSpec] = {
    "faults": FAULTS,
    "logo_ticker": LOGO_TICKER,
    "clean": CLEAN,
    "surround": MediaSpec(duration_s=4.0, channels=6, mute_channel=((Span(1.0, 3.0), 4),)),
    "mono": MediaSpec(duration_s=3.0, channels=1),
    # Faults running to the end of the file (oracle closes them at the last frame's end).
    "video_only": MediaSpec(duration_s=3.0, audio=False, black=(Span(1.0, 3.0),)),
    "audio_only": MediaSpec(duration_s=3.0, video=False, silence=(Span(1.5, 3.0),)),
}


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Generate (once per session) and return the path of a named clip from SPECS."""
    root = tmp_path_factory.mktemp("mediagen")
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = make_ts(root / f"{name}.ts", SPECS[name])
        return cache[name]

    return get


def frame_edges(span: Span, fps: int = FPS) -> tuple[float, float]:
    """Time of the first frame in the span and of the first frame after it."""
    r = frame_indices(span, fps)
    return r.start / fps, r.stop / fps


def decode_luma(path: Path) -> dict[int, tuple[np.ndarray, bool]]:
    """Frame index (from pts relative to container.start_time) -> (float luma, key_frame)."""
    out: dict[int, tuple[np.ndarray, bool]] = {}
    with av.open(str(path)) as c:
        start = c.start_time / av.time_base
        stream = c.streams.video[0]
        for f in c.decode(stream):
            i = round((f.time - start) * FPS)
            out[i] = (f.to_ndarray()[: stream.height].astype(np.float32), f.key_frame)
    return out


def decode_audio(path: Path) -> tuple[float, np.ndarray]:
    """(time of first sample relative to container.start_time, samples (channels, n))."""
    with av.open(str(path)) as c:
        start = c.start_time / av.time_base
        frames = list(c.decode(audio=0))
    return frames[0].time - start, np.concatenate([f.to_ndarray() for f in frames], axis=1)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def assert_spans(found, expected, tol: float) -> None:
    assert len(found) == len(expected), (found, expected)
    for (a, b), (ea, eb) in zip(found, expected, strict=True):
        assert abs(a - ea) <= tol and abs(b - eb) <= tol, (found, expected)


# --------------------------------------------------------------------------- timeline


@pytest.mark.parametrize("name", ["faults", "video_only", "audio_only"])
def test_timeline_starts_at_container_start(clip, name: str) -> None:
    spec = SPECS[name]
    with av.open(str(clip(name))) as c:
        assert c.start_time == round(spec.start_offset_s * av.time_base)
        for s in c.streams:
            assert s.start_time * s.time_base * av.time_base == c.start_time
        assert len(c.streams.video) == int(spec.video)
        assert len(c.streams.audio) == int(spec.audio)
        start = c.start_time / av.time_base
        if spec.video:
            times = [f.time - start for f in c.decode(video=0)]
            assert len(times) == spec.n_frames
            assert np.allclose(times, np.arange(spec.n_frames) / spec.fps, atol=1e-4)
    if spec.audio:
        t0, samples = decode_audio(clip(name))
        assert t0 == pytest.approx(0.0, abs=1e-5)
        assert samples.shape == (spec.channels, spec.n_samples)


def test_black_decodes_at_injected_time(clip) -> None:
    """The spec's contract: black injected at 4.0 s is black at 4.0 s after container.start."""
    frames = decode_luma(clip("faults"))
    first_black = min(i for i, (y, _) in frames.items() if y.mean() < 17)
    assert abs(first_black * FRAME_S - 4.0) <= FRAME_S
    assert first_black == 100  # in fact frame-exact
    assert frames[100][0].max() <= 17 and frames[99][0].mean() > 60


# --------------------------------------------------------------------------- video faults


def test_black_and_dark_found_by_blackdetect(clip) -> None:
    found = ffmpeg_black(clip("faults"))
    expected = [frame_edges(FAULTS.black[0]), frame_edges(FAULTS.dark[0])]
    assert_spans(found, expected, FRAME_S)
    assert_spans(found, expected, 1e-6)  # measured: frame-exact


def test_freeze_found_by_freezedetect(clip) -> None:
    found = ffmpeg_freeze(clip("faults"))
    # FFmpeg also calls the (static) black span frozen; the moving dark scene is not.
    expected = [frame_edges(FAULTS.black[0]), frame_edges(FAULTS.freeze[0])]
    assert_spans(found, expected, FRAME_S)
    assert_spans(found, expected, 1e-6)


def test_freeze_is_a_true_freeze_across_keyframes(clip) -> None:
    frames = decode_luma(clip("faults"))
    r = frame_indices(FAULTS.freeze[0], FPS)
    keys_inside = [i for i in r if frames[i][1] and i != r.start]
    assert keys_inside, "the freeze span must contain a keyframe for this test to mean much"
    for i in range(r.start + 1, r.stop):
        assert mad(frames[i][0], frames[i - 1][0]) < 0.25, i
    assert mad(frames[r.start][0], frames[r.start - 1][0]) > 1
    assert mad(frames[r.stop][0], frames[r.stop - 1][0]) > 1


def test_normal_video_is_textured_bright_and_moving(clip) -> None:
    frames = decode_luma(clip("clean"))
    assert len(frames) == CLEAN.n_frames
    for i in range(1, CLEAN.n_frames):
        y = frames[i][0]
        assert (y > 37).mean() > 0.99
        assert 100 < y.mean() < 140 and y.std() > 15
        assert mad(y, frames[i - 1][0]) > 2.5, i


def test_dark_scene_is_textured_and_moving(clip) -> None:
    frames = decode_luma(clip("faults"))
    r = frame_indices(FAULTS.dark[0], FPS)
    for i in range(r.start, r.stop):
        y = frames[i][0]
        assert y.max() < 37, i
        assert y.std() > 3, i
        if i > r.start:
            assert mad(y, frames[i - 1][0]) > 1.0, i


def test_black_with_logo(clip) -> None:
    path = clip("logo_ticker")
    span = LOGO_TICKER.black_with_logo[0]
    # The logo covers ~1.4 % of the picture: black for pic_th=0.98, not for 0.99.
    assert_spans(ffmpeg_black(path), [frame_edges(span)], 1e-6)
    assert ffmpeg_black(path, pic_th=0.99) == []
    frames = decode_luma(path)
    x0, y0, x1, y1 = region_pixels(LOGO_REGION, LOGO_TICKER.width, LOGO_TICKER.height)
    assert 0.01 <= (x1 - x0) * (y1 - y0) / (LOGO_TICKER.width * LOGO_TICKER.height) <= 0.02
    for i in frame_indices(span, FPS):
        y = frames[i][0]
        assert y[y0:y1, x0:x1].mean() > 120
        mask = np.ones(y.shape, bool)
        mask[max(0, y0 - 4) : y1 + 4, max(0, x0 - 4) : x1 + 4] = False
        assert y[mask].max() <= 18


def test_static_with_moving_region(clip) -> None:
    path = clip("logo_ticker")
    span = LOGO_TICKER.static_with_moving_region[0]
    frames = decode_luma(path)
    x0, y0, x1, y1 = region_pixels(MOVING_REGION, LOGO_TICKER.width, LOGO_TICKER.height)
    outside = np.ones((LOGO_TICKER.height, LOGO_TICKER.width), bool)
    outside[y0:y1, x0:x1] = False
    r = frame_indices(span, FPS)
    assert any(frames[i][1] for i in range(r.start + 1, r.stop))
    for i in range(r.start + 1, r.stop):
        diff = np.abs(frames[i][0] - frames[i - 1][0])
        assert diff[outside].mean() < 0.25, i
        assert diff[~outside].mean() > 10, i
    # The ticker is big enough that FFmpeg's whole-frame freezedetect does NOT fire.
    assert ffmpeg_freeze(path) == [frame_edges(LOGO_TICKER.black_with_logo[0])]


# --------------------------------------------------------------------------- audio faults


def test_silence_found_by_silencedetect(clip) -> None:
    found = ffmpeg_silence(clip("faults"))
    expected = [(s.start_s, s.end_s) for s in FAULTS.silence]
    assert_spans(found, expected, SILENCE_TOL_S)
    assert_spans(found, expected, AAC_FRAME / 48000)  # the brief's +/- 1 AAC frame


def test_mute_channel_found_only_per_channel(clip) -> None:
    path = clip("faults")
    mute, ch = FAULTS.mute_channel[0]
    silences = [(s.start_s, s.end_s) for s in FAULTS.silence]
    found = ffmpeg_silence(path, mono=True)
    for c in range(FAULTS.channels):
        spans = [(a, b) for k, a, b in found if k == c]
        expected = sorted(silences + ([(mute.start_s, mute.end_s)] if c == ch else []))
        assert_spans(spans, expected, SILENCE_TOL_S)
    # Default (all channels) mode ignores a single muted channel.
    assert_spans(ffmpeg_silence(path), silences, SILENCE_TOL_S)


def test_silence_decodes_to_exact_zero(clip) -> None:
    _, x = decode_audio(clip("faults"))
    for span in FAULTS.silence:
        inner = x[
            :, round(span.start_s * 48000) + AAC_FRAME : round(span.end_s * 48000) - AAC_FRAME
        ]
        assert not inner.any()
    mute, ch = FAULTS.mute_channel[0]
    a, b = round(mute.start_s * 48000) + AAC_FRAME, round(mute.end_s * 48000) - AAC_FRAME
    assert not x[ch, a:b].any()
    assert np.sqrt((x[0, a:b] ** 2).mean()) > 0.05


def test_clean_clip_has_no_faults(clip) -> None:
    path = clip("clean")
    assert ffmpeg_black(path, d=0.1) == []
    assert ffmpeg_freeze(path, d=0.1) == []
    assert ffmpeg_silence(path, d=0.1) == []
    assert ffmpeg_silence(path, d=0.1, mono=True) == []


@pytest.mark.parametrize("name, channels, layout", [("surround", 6, "5.1"), ("mono", 1, "mono")])
def test_channel_counts_and_levels(clip, name: str, channels: int, layout: str) -> None:
    path = clip(name)
    with av.open(str(path)) as c:
        assert c.streams.audio[0].channels == channels
        assert c.streams.audio[0].layout.name == layout
    _, x = decode_audio(path)
    assert x.shape[0] == channels
    body = x[:, AAC_FRAME:]
    muted = {ch: span for span, ch in SPECS[name].mute_channel}
    for ch in range(channels):
        sig = body[ch]
        if ch in muted:
            span = muted[ch]
            sig = np.concatenate(
                [x[ch, AAC_FRAME : round(span.start_s * 48000)], x[ch, round(span.end_s * 48000) :]]
            )
        rms_db = 20 * math.log10(np.sqrt((sig**2).mean()))
        assert -21 < rms_db < -19, (ch, rms_db)


def test_surround_mute_only_on_its_channel(clip) -> None:
    found = ffmpeg_silence(clip("surround"), d=1.0, mono=True)
    span, ch = SPECS["surround"].mute_channel[0]
    assert [k for k, _, _ in found] == [ch]
    assert_spans([(a, b) for _, a, b in found], [(span.start_s, span.end_s)], SILENCE_TOL_S)


def test_spans_open_at_eof_are_closed_at_last_frame_end(clip) -> None:
    assert ffmpeg_black(clip("video_only"), d=1.0) == [pytest.approx((1.0, 3.0), abs=1e-6)]
    assert ffmpeg_freeze(clip("video_only"), d=1.0) == [pytest.approx((1.0, 3.0), abs=1e-6)]
    spec = SPECS["audio_only"]
    end = spec.n_samples / spec.sample_rate  # 3.008 s: the padding is silent too
    found = ffmpeg_silence(clip("audio_only"), d=1.0)
    assert found == [pytest.approx((1.5, end), abs=SILENCE_TOL_S)]


# --------------------------------------------------------------------------- broken files


def test_garbage_is_rejected(tmp_path: Path) -> None:
    path = make_garbage(tmp_path / "garbage.ts")
    assert path.stat().st_size == 100_000
    with pytest.raises(av.error.InvalidDataError):
        av.open(str(path))


@pytest.mark.parametrize("fraction", [0.3, 0.77])
def test_truncated_file_decodes_partially(clip, tmp_path: Path, fraction: float) -> None:
    src = clip("clean")
    dst = truncate(src, tmp_path / "cut.ts", fraction)
    size = dst.stat().st_size
    assert size == pytest.approx(src.stat().st_size * fraction, abs=200) and size % 188
    with av.open(str(dst)) as c:
        n_video = sum(1 for _ in c.decode(video=0))
    assert 0.5 * fraction * CLEAN.n_frames < n_video < CLEAN.n_frames


# --------------------------------------------------------------------------- generator


def test_spec_validation() -> None:
    with pytest.raises(ValueError):
        Span(3.0, 2.0)
    with pytest.raises(ValueError):
        MediaSpec(channels=3)
    with pytest.raises(ValueError):
        MediaSpec(video=False, audio=False)
    with pytest.raises(ValueError):
        MediaSpec(mute_channel=((Span(1, 2), 2),))


def test_frame_and_sample_indices() -> None:
    assert frame_indices(Span(4.0, 6.5), 25) == range(100, 163)
    assert frame_indices(Span(0.1, 0.2), 25) == range(3, 5)


def test_generation_is_fast_and_deterministic(tmp_path: Path) -> None:
    spec = MediaSpec(freeze=(Span(2.0, 4.0),), silence=(Span(5.0, 7.0),))
    t0 = time.perf_counter()
    a = make_ts(tmp_path / "a.ts", spec)
    elapsed = time.perf_counter() - t0
    assert elapsed < 4.0  # typically ~0.4 s for 12 s at 320x180
    b = make_ts(tmp_path / "b.ts", spec)
    assert a.read_bytes() == b.read_bytes()
