"""Per-call cost of the detectors on real decoded pictures and AAC-sized audio chunks.

Pictures: 10 consecutive decoded luma planes of the benchmark clip, held as the zero-copy
views the pipeline hands over (line padding, read-only), fed in rotation with rising
timestamps, so every call compares against a different previous picture (about 20 MB at
1080p: mostly L3, not L1/L2). Audio: 48 kHz stereo float32 planar in 1024-sample chunks, as
the AAC decoder delivers it, with continuous timestamps across calls.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from benchmarks.clips import broadcast_clip, clip_path, decoded_lumas
from detectors.black import BlackSettings
from detectors.freeze import FreezeSettings
from detectors.picture import PictureAnalyzer, auto_row_step
from detectors.silence import SilenceDetector, SilenceSettings

SECTION = "Detector cost per call (pytest-benchmark median, 1 core)"
PICTURES = 10
FRAME_S = 0.04
SAMPLE_RATE = 48_000
CHUNK = 1024
AUDIO_S = 8  # 375 chunks of 1024 samples are exactly 8 s at 48 kHz


@functools.cache
def lumas(height: int) -> tuple[np.ndarray, ...]:
    # One second of clip is enough: 10 pictures after skipping the first 5.
    return tuple(decoded_lumas(clip_path(broadcast_clip(height, 1.0)), PICTURES))


def median_s(benchmark) -> float | None:
    return None if benchmark.disabled or benchmark.stats is None else benchmark.stats.stats.median


@pytest.mark.parametrize("row_step", [None, 1], ids=["auto_rows", "all_rows"])
@pytest.mark.parametrize("height", [1080, 360])
def test_picture_analyzer_update(benchmark, report, height: int, row_step: int | None) -> None:
    """Black + freeze (one fused Numba pass) per picture."""
    pictures = itertools.cycle(lumas(height))
    clock = itertools.count()
    analyzer = PictureAnalyzer(BlackSettings(), FreezeSettings(), row_step=row_step)

    def one_picture() -> None:
        analyzer.update(next(pictures), next(clock) * FRAME_S)

    for _ in range(3 * PICTURES):  # loads the cached Numba code; fills the caches
        one_picture()
    benchmark.group = f"PictureAnalyzer.update {height}p"
    benchmark(one_picture)

    t = median_s(benchmark)
    if t is not None:
        y = lumas(height)[0]
        step = row_step or auto_row_step(y.shape[0])
        benchmark.extra_info.update(us_per_picture=t * 1e6, row_step=step, shape=list(y.shape))
        report.add(
            SECTION,
            f"PictureAnalyzer.update (black+freeze) {y.shape[1]}x{y.shape[0]}, row_step={step}"
            f"{' (auto)' if row_step is None else ''}: {t * 1e6:7.1f} µs/picture"
            f" = {t * 1e3 * 25:5.2f} ms per media second at 25 fps",
        )


def audio_chunks(seconds: int) -> list[np.ndarray]:
    """Tone at -20 dBFS plus noise: never silent, so every chunk ends in one observation."""
    rng = np.random.default_rng(3)
    t = np.arange(seconds * SAMPLE_RATE) / SAMPLE_RATE
    x = np.stack([0.14 * np.sin(2 * np.pi * hz * t) for hz in (440.0, 660.0)])
    x += rng.normal(0.0, 0.003, x.shape)
    x = x.astype(np.float32)
    return [np.ascontiguousarray(x[:, i : i + CHUNK]) for i in range(0, x.shape[1], CHUNK)]


def test_silence_detector_update(benchmark, report) -> None:
    """Per-channel silence on 8 s of 48 kHz stereo, fed in 1024-sample chunks."""
    chunks = audio_chunks(AUDIO_S)
    assert len(chunks) * CHUNK == AUDIO_S * SAMPLE_RATE
    detector = SilenceDetector(SilenceSettings(), SAMPLE_RATE, 2)
    clock = itertools.count()

    def eight_seconds() -> None:
        start_s = next(clock) * AUDIO_S
        for k, chunk in enumerate(chunks):
            detector.update(chunk, start_s + k * CHUNK / SAMPLE_RATE)

    eight_seconds()  # loads the cached Numba code
    benchmark.group = "SilenceDetector.update"
    benchmark(eight_seconds)

    t = median_s(benchmark)
    if t is not None:
        per_s = t / AUDIO_S
        per_chunk = t / len(chunks)
        benchmark.extra_info.update(us_per_media_s=per_s * 1e6, us_per_chunk=per_chunk * 1e6)
        report.add(
            SECTION,
            f"SilenceDetector.update 48 kHz stereo, 1024-sample chunks: {per_s * 1e6:7.1f} µs per"
            f" media second ({per_chunk * 1e6:.1f} µs/chunk)",
        )
