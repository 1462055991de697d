"""The ladder comparator of a live session: renditions matched on source PTS, alarms per rung.

Pictures reach the comparator as a live session hands them over: each rendition in bursts of
one segment, the renditions' segments some time apart, each rendition on its own session
timeline (its decoder joined at its own moment), after its own pipeline measured them.
"""

from __future__ import annotations

import contextlib
import heapq
import math
from dataclasses import replace
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from monitor.config import AlarmRule, ChannelConfig, load_config
from monitor.decode.media_source import MediaSource, Picture
from monitor.errors import ConfigError
from monitor.pipeline.channel import ChannelPipeline
from tests.ladderclips import FAULTY, Ladder, ladder_files

FPS = 25
SIZES = {"640x360": (640, 360), "384x216": (384, 216), "256x144": (256, 144)}
A, B, C = SIZES
LOGO = (slice(20, 70), slice(600, 700))  # rows, columns of the master picture


def compared(config: ChannelConfig) -> ChannelConfig:
    """``config`` with rendition_mismatch on (it is off by default), at its default hold-offs."""
    rule = replace(config.rendition_mismatch.rule, enabled=True)
    return replace(config, rendition_mismatch=replace(config.rendition_mismatch, rule=rule))


def channel(**rules: AlarmRule) -> ChannelConfig:
    """Rendition mismatch on; no audio in these pictures: only the picture alarms."""
    base = compared(ChannelConfig(name="ladder"))
    off = AlarmRule(enabled=False)
    config = replace(
        base,
        audio_missing=replace(base.audio_missing, rule=off),
        video_missing=replace(base.video_missing, rule=off),
        silence=replace(base.silence, rule=off),
    )
    for name, rule in rules.items():
        config = replace(config, **{name: replace(getattr(config, name), rule=rule)})
    return config


class Scene:
    """A moving master picture (768x432): smooth noise scrolling, a box crossing two cells
    of the signature grid per frame, a logo; scaled to each rendition's size."""

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        noise = rng.normal(0, 30, (432 + 400, 768 + 400)).astype(np.float32)
        self.texture = 120 + cv2.GaussianBlur(noise, (0, 0), 6) * 3

    def master(self, i: int, logo: bool = True, black: bool = False) -> np.ndarray:
        if black:
            return np.full((432, 768), 16, np.float32)
        y = self.texture[(2 * i) % 400 :][:432, (3 * i) % 400 :][:, :768].copy()
        x = (24 * i) % 660
        y[170:260, x : x + 90] = 230
        if logo:
            y[LOGO] = 0.5 * y[LOGO] + 0.5 * 235
        return y

    def luma(self, master: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        small = cv2.resize(master, size, interpolation=cv2.INTER_AREA)
        return np.clip(np.rint(small), 16, 235).astype(np.uint8)


SCENE = Scene()


def picture(luma: np.ndarray, source_s: float, session_s: float) -> Picture:
    frame = av.VideoFrame(16, 16, "gray")  # only its timestamps matter here
    frame.pts = round((10.0 + source_s) * 90_000)
    frame.time_base = Fraction(1, 90_000)
    return Picture(luma, session_s, 1 / FPS, 8, False, False, frame)


def stream(
    seconds: float,
    *,
    joined_s: dict[str, float],
    lag_s: dict[str, float],
    pts_offset_s: dict[str, float] | None = None,
    logo_missing: dict[str, tuple[float, float]] | None = None,
    black: dict[str, tuple[float, float]] | None = None,
    stop_s: dict[str, float] | None = None,
) -> list[tuple[str, Picture]]:
    """Every rendition's pictures in the order a live session receives them: 1 s segments,
    rendition r's segment n arriving at n + lag_s[r]; session time = source time + joined_s."""
    arrivals = []
    for i in range(round(seconds * FPS)):
        t = i / FPS
        masters = {}
        for name, size in SIZES.items():
            if name not in joined_s or t >= (stop_s or {}).get(name, math.inf):
                continue
            a, b = (logo_missing or {}).get(name, (math.inf, math.inf))
            c, d = (black or {}).get(name, (math.inf, math.inf))
            key = (not a <= t < b, c <= t < d)
            if key not in masters:
                masters[key] = SCENE.master(i, logo=key[0], black=key[1])
            source = t + (pts_offset_s or {}).get(name, 0.0)
            pic = picture(SCENE.luma(masters[key], size), source, t + joined_s[name])
            arrivals.append((math.floor(t) + lag_s[name], i, name, pic))
    arrivals.sort(key=lambda a: (a[0], a[1]))
    return [(name, pic) for _, _, name, pic in arrivals]


def run(
    config: ChannelConfig, items: list[tuple[str, Picture]], keyframes: bool = False
) -> tuple[list, Ladder]:
    events: list = []
    comparator = Ladder(config, events.append, keyframes=keyframes)
    pipelines = {}
    for name, pic in items:
        pipeline = pipelines.get(name)
        if pipeline is None:
            pipeline = pipelines[name] = ChannelPipeline(
                config, "primary", events.append, audio_streams=[], rendition=name
            )
        pipeline.process(pic)
        comparator.picture(name, pic, pipeline)
    return [e.to_dict() for e in events], comparator


JOINED = {A: 0.0, B: 0.35, C: 1.1}
LAGS = {A: 0.0, B: 0.7, C: 1.6}
AT_ONCE = AlarmRule(raise_after_s=0.0, clear_after_s=0.0)
"""Any single disagreeing instant raises: for tests that no instant disagrees."""


def test_renditions_arriving_apart_are_compared_picture_for_picture():
    events, comparator = run(
        channel(rendition_mismatch=AT_ONCE), stream(8.0, joined_s=JOINED, lag_s=LAGS)
    )
    assert events == []
    # 5 instants a second; those of the first second passed before a second rendition came.
    assert comparator.comparisons == 7 * 5


def test_a_logo_missing_on_one_rendition_is_raised_on_it_on_its_own_timeline():
    items = stream(10.0, joined_s=JOINED, lag_s=LAGS, logo_missing={C: (4.0, 7.0)})
    events, _ = run(channel(), items)
    assert [(e["alarm"], e["state"], e["rendition"]) for e in events] == [
        ("rendition_mismatch", "raised", C),
        ("rendition_mismatch", "cleared", C),
    ]
    raised, cleared = events
    assert raised["start"] == pytest.approx(4.0 + JOINED[C], abs=1e-6)
    assert cleared["end"] == pytest.approx(7.0 + JOINED[C], abs=1e-6)
    detail = raised["detail"]
    assert detail["rendition"] == C and detail["consensus"] == sorted([A, B])
    x, y, w, h = detail["roi"]
    assert x == pytest.approx(600 / 768, abs=0.03) and x + w == pytest.approx(700 / 768, abs=0.03)
    assert y == pytest.approx(20 / 432, abs=0.05) and y + h == pytest.approx(70 / 432, abs=0.05)
    assert detail["distance"] > 3 * detail["baseline"]


def test_ladders_decoded_sparsely_are_compared_at_their_keyframes_only():
    """Smaller rungs decoded I/P only: the pictures they have in common are the keyframes
    (an ABR ladder aligns them, so players can switch); the rest are never compared."""
    items = stream(10.0, joined_s=JOINED, lag_s=LAGS, logo_missing={C: (4.0, 7.0)})
    gop = FPS  # a keyframe a second
    items = [
        (name, replace(pic, keyframe=round((pic.pts_s - JOINED[name]) * FPS) % gop == 0))
        for name, pic in items
    ]
    events, comparator = run(channel(), items, keyframes=True)

    assert comparator.comparisons == 9  # seconds 1..9: the first passed before a second rung
    assert [(e["alarm"], e["state"], e["rendition"]) for e in events] == [
        ("rendition_mismatch", "raised", C),
        ("rendition_mismatch", "cleared", C),
    ]
    raised, cleared = events
    assert raised["start"] == pytest.approx(4.0 + JOINED[C], abs=1e-6)
    assert cleared["end"] == pytest.approx(7.0 + JOINED[C], abs=1e-6)


@pytest.mark.parametrize(
    ("offset_frames", "disagrees"), [(0.4, False), (-0.45, False), (1.0, True)]
)
def test_timestamps_off_by_less_than_half_a_frame_pick_the_same_picture(offset_frames, disagrees):
    """A box crossing two grid cells per frame: a picture one frame off disagrees."""
    offsets = {B: offset_frames / FPS}
    items = stream(6.0, joined_s=JOINED, lag_s=LAGS, pts_offset_s=offsets)
    events, comparator = run(channel(rendition_mismatch=AT_ONCE), items)
    assert comparator.comparisons == 5 * 5
    if disagrees:
        assert B in {e["rendition"] for e in events}
    else:
        assert events == []


def test_a_black_rendition_is_reported_as_black_not_as_a_mismatch():
    items = stream(9.0, joined_s=JOINED, lag_s=LAGS, black={C: (3.0, 7.0)})
    events, _ = run(channel(), items)
    assert [(e["alarm"], e["state"], e["rendition"]) for e in events] == [
        ("black", "raised", C),
        ("black", "cleared", C),
    ]
    # Without its own black (and freeze) checks, the same rendition is a mismatch.
    off = AlarmRule(enabled=False)
    events, _ = run(channel(black=off, freeze=off), items)
    assert {(e["alarm"], e["rendition"]) for e in events} == {("rendition_mismatch", C)}


def test_a_rendition_that_stops_is_waited_for_no_longer_than_max_skew():
    config = channel()
    config = replace(
        config,
        rendition_mismatch=replace(
            config.rendition_mismatch,
            settings=replace(config.rendition_mismatch.settings, max_skew_s=2.0),
        ),
    )
    items = stream(11.0, joined_s=JOINED, lag_s=LAGS, stop_s={C: 3.0}, logo_missing={B: (6.0, 9.0)})
    events, _ = run(config, items)
    # Two renditions left: they differ, and nothing says which one is right.
    assert [(e["alarm"], e["state"], e["rendition"]) for e in events] == [
        ("rendition_mismatch", "raised", None),
        ("rendition_mismatch", "cleared", None),
    ]
    assert events[0]["detail"]["renditions"] == sorted([A, B])
    assert events[0]["start"] == pytest.approx(6.0 + JOINED[B], abs=1e-6)


def test_audio_renditions_take_no_part():
    pictures = stream(3.0, joined_s=JOINED, lag_s=LAGS, logo_missing={C: (0.0, 3.0)})
    items = [("audio-en" if name == C else name, pic) for name, pic in pictures if name != B]
    events, comparator = run(channel(rendition_mismatch=AT_ONCE), items)
    assert events == [] and comparator.comparisons == 0


def test_a_coded_ladder_replayed_as_live_finds_each_fault_on_its_rung():
    """The faulty test ladder (logo missing on the bottom rung over 9-13 s, the middle rung
    garbled over 15-18 s, a dark scene over 4-7 s), decoded and handed over segment by
    segment as a live session would."""
    joined = dict(zip(ladder_files(FAULTY), (0.0, 0.45, 1.3), strict=True))
    lags = dict(zip(ladder_files(FAULTY), (0.0, 1.4, 0.6), strict=True))
    config = compared(ChannelConfig(name="ladder"))
    events: list = []
    comparator = Ladder(config, events.append)
    pipelines = {}
    picture_0_s: dict[str, float] = {}  # the first audio frame starts 21 ms before picture 0

    def arrivals(name: str, media: MediaSource):
        for i, item in enumerate(media):
            t = item.pts_s - joined[name]
            yield math.floor(t + 1e-6) + lags[name], t, i, name, item

    with contextlib.ExitStack() as stack:
        streams = []
        for name, path in ladder_files(FAULTY).items():
            media = stack.enter_context(MediaSource(str(path), timeline_start_s=joined[name]))
            audio = [s for s in media.stream_infos() if s.kind == "audio"]
            pipelines[name] = ChannelPipeline(
                config, "primary", events.append, audio_streams=audio, rendition=name
            )
            streams.append(arrivals(name, media))
        for _, _, _, name, item in heapq.merge(*streams, key=lambda a: a[:3]):
            pipelines[name].process(item)
            if type(item) is Picture:
                picture_0_s.setdefault(name, item.pts_s)
                comparator.picture(name, item, pipelines[name])
    for pipeline in pipelines.values():
        pipeline.finish()
    comparator.finish(max(p.media_end_s for p in pipelines.values()))

    found = [e.to_dict() for e in events if e.alarm == "rendition_mismatch"]
    spans = {(e["rendition"], round(e["start"] - picture_0_s[e["rendition"]], 3),
              round(e["end"] - picture_0_s[e["rendition"]], 3))
             for e in found if e["state"] == "cleared"}  # fmt: skip
    truth = {(FAULTY.name(r), s.start_s, s.end_s) for r, s in FAULTY.logo_missing + FAULTY.garbled}
    hits = len(spans & truth)
    print(
        f"\nladder replay: {len(truth)} faults, {len(spans)} alarms, precision"
        f" {hits / max(len(spans), 1):.2f}, recall {hits / len(truth):.2f}, spans {sorted(spans)}"
    )
    assert spans == truth
    assert len(found) == 4
    assert [e for e in events if e.alarm != "rendition_mismatch"] == []


def test_a_bad_setting_is_one_line_naming_file_line_and_key(tmp_path):
    path = tmp_path / "ladder.yaml"
    path.write_text(
        "version: 1\n"
        "site: s\n"
        "channels:\n"
        "  - name: c\n"
        "    inputs: {primary: {url: 'https://origin/master.m3u8'}}\n"
        "    detectors:\n"
        "      rendition_mismatch: {enabled: true, max_skew: 10s, threshold_cv: 0}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == (
        f"{path}:7: channels[0].detectors.rendition_mismatch.threshold_cv: must be >= 1, got 0"
    )
