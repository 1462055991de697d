"""What the graphics and corrupted-picture checks cost against decoding the same pictures.

Each pass decodes the benchmark clip (video only, one decoder thread) and hands every picture
to a ``GraphicsCheck`` configured as a news channel would be: a logo (0.16 x 0.20 of the
picture) and a lower third (0.88 x 0.16) recognised from artwork, a clock (0.20 x 0.09)
declared ``changing``, and ``picture_corrupt``. The check analyses 5 pictures a second.
Thread CPU time (``time.thread_time``) splits each pass into the decode (demux +
``packet.decode``), the whole check (every picture, the skipped ones included: the real
total) and, inside it, each detector's ``update``: the picture-motion lattice, presence per
graphic, the stuck-region check, the macroblock scan. Decode and check share the VM's fast and
slow phases, so their ratio holds on a busy machine; every figure is the median over passes.

The artwork matches nothing on this clip (it has no graphics), which changes nothing of the
cost: every look reads the region and scores every shift. Taken in place, right after each
decode, with caches cold for our code: these are real costs.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from benchmarks.clips import broadcast_clip, clip_path
from detectors.corruption import CorruptionSettings
from detectors.graphics import GraphicSettings
from monitor.alarms.engine import AlarmRule, AlarmTracker, Subject
from monitor.checks.base import CheckContext
from monitor.checks.graphics import ANALYSIS_INTERVAL_S, GraphicsCheck
from monitor.config import ChannelConfig, DetectorConfig
from monitor.decode.media_source import Picture, luma_view

CLIP_S = 12.0
QUICK_CLIP_S = 1.0
PASSES = {1080: 3, 360: 6}
SECTION = "Graphics checks (presence, stuck, picture_corrupt): cost vs decode of the same pictures"
clock = time.thread_time
DECODE = "decode"
CHECK = "check"


def artwork(folder: Path) -> tuple[str, str]:
    """A logo (white, keyed) and a lower third (opaque), as PNGs."""
    logo = np.zeros((300, 400, 4), np.uint8)
    logo[..., :3] = 255
    cv2.circle(logo, (200, 150), 110, (255, 255, 255, 170), 18)
    cv2.putText(logo, "N", (150, 200), cv2.FONT_HERSHEY_SIMPLEX, 5, (255, 255, 255, 170), 20)
    third = np.full((90, 880), 60, np.uint8)
    cv2.putText(third, "BREAKING NEWS", (30, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.8, 230, 4)
    paths = (str(folder / "logo.png"), str(folder / "third.png"))
    cv2.imwrite(paths[0], logo)
    cv2.imwrite(paths[1], third)
    return paths


def news_channel(folder: Path) -> ChannelConfig:
    logo, third = artwork(folder)
    rule = AlarmRule()
    graphics = (
        GraphicSettings("logo", (0.80, 0.04, 0.16, 0.20), reference=logo),
        GraphicSettings("lower-third", (0.06, 0.76, 0.88, 0.16), reference=third, expect="never"),
        GraphicSettings("clock", (0.04, 0.05, 0.20, 0.09), changing=True),
    )
    return ChannelConfig(
        name="news",
        graphics=tuple(DetectorConfig(rule, g) for g in graphics),
        picture_corrupt=DetectorConfig(rule, CorruptionSettings()),
    )


def make_check(channel: ChannelConfig) -> GraphicsCheck:
    subject = Subject(channel.name, "primary")

    def tracker(alarm: str, rule: AlarmRule, merge: Any = None) -> AlarmTracker:
        return AlarmTracker(alarm, rule, subject, lambda event: None, merge)

    context = CheckContext(channel, subject, tracker)
    return GraphicsCheck(context, list(channel.graphics), channel.picture_corrupt)


def timed(seconds: defaultdict[str, float], label: str, fn: Callable[..., Any]) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        t0 = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[label] += clock() - t0

    return call


def one_pass(path: Path, channel: ChannelConfig) -> tuple[dict[str, float], int]:
    """CPU seconds of the decode, the whole check and each detector; pictures analysed."""
    check = make_check(channel)
    seconds: defaultdict[str, float] = defaultdict(float)
    assert check.motion is not None and check.corruption is not None
    check.motion.update = timed(seconds, "picture motion (lattice)", check.motion.update)
    for graphic in check.graphics:
        name = graphic.settings.name
        kind = "stuck (changing region)" if graphic.frozen else "presence"
        label = f"{kind}: {name} {graphic.settings.roi[2]:g} x {graphic.settings.roi[3]:g}"
        graphic.detector.update = timed(seconds, label, graphic.detector.update)
    check.corruption.update = timed(seconds, "picture_corrupt (macroblock scan)",
                                    check.corruption.update)  # fmt: skip
    analysed = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "NONE"
        interval_s = 1 / float(stream.average_rate or 25)
        t0 = clock()
        for packet in container.demux(stream):
            frames = packet.decode()
            seconds[DECODE] += clock() - t0
            for frame in frames:
                picture = Picture(
                    luma_view(frame), float(frame.time), interval_s, 8, False, False, frame
                )
                due = check._due_s
                t1 = clock()
                check.picture(picture)
                seconds[CHECK] += clock() - t1
                analysed += picture.pts_s >= due
            t0 = clock()
    return dict(seconds), analysed


@pytest.mark.parametrize("height", [1080, 360])
def test_graphics_checks_cost_against_decode(benchmark, report, tmp_path, height: int) -> None:
    spec = broadcast_clip(height, QUICK_CLIP_S if benchmark.disabled else CLIP_S)
    path = clip_path(spec)
    path.read_bytes()  # into the page cache
    channel = news_channel(tmp_path)
    one_pass(clip_path(broadcast_clip(360, QUICK_CLIP_S)), channel)  # Numba's cache loaded
    runs: list[tuple[dict[str, float], int]] = []

    benchmark.group = "graphics checks: wall time of one decode pass"
    benchmark.pedantic(
        lambda: runs.append(one_pass(path, channel)),
        rounds=1 if benchmark.disabled else PASSES[height],
        iterations=1,
        warmup_rounds=0,
    )
    seconds, analysed = runs[-1]
    assert analysed >= spec.duration_s / ANALYSIS_INTERVAL_S - 1
    assert set(seconds) >= {DECODE, CHECK} and len(seconds) == 7
    if benchmark.disabled:
        return

    media_s = spec.duration_s
    decode_ms = statistics.median(r[DECODE] for r, _ in runs) / media_s * 1e3
    share = {
        label: statistics.median(r[label] / r[DECODE] for r, _ in runs)
        for label in seconds
        if label != DECODE
    }
    components = [label for label in share if label != CHECK]
    glue = statistics.median(
        (r[CHECK] - sum(r[label] for label in components)) / r[DECODE] for r, _ in runs
    )
    benchmark.extra_info.update(
        clip=spec.name,
        media_s=media_s,
        passes=len(runs),
        pictures_analysed=analysed,
        decode_ms_per_media_s=decode_ms,
        share_of_decode=share,
        cpu_s_per_pass=[r for r, _ in runs],
    )
    per_look = analysed / media_s

    def line(label: str, ratio: float) -> str:
        ms = ratio * decode_ms
        return (
            f"  {label:44s} {ms:6.2f} ms/s = {ms / per_look * 1e3:5.0f} µs per analysed picture"
            f" = {ratio * 100:5.2f} % of decode"
        )

    report.add(
        SECTION,
        f"{spec.width}x{spec.height}p{spec.fps} {spec.video_kbps} kbit/s, {media_s:g} s,"
        f" {analysed} pictures analysed ({per_look:g}/s), medians of {len(runs)} passes:",
        f"  decode (demux + decode, 1 thread)            {decode_ms:6.1f} ms/s",
        *(line(label, share[label]) for label in components),
        line("check glue: skipping, verdicts, trackers", glue),
        line("whole check (every picture)", share[CHECK]),
    )
