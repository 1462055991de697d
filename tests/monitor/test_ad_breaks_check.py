"""SCTE-35 end to end: generated MPEG-TS with cues at known times, the channel's YAML,
``analyze`` and the pipeline's break state.

The clip's cues (threefive-encoded splice_insert sections on a 0x86 PID written by
``tests.scte35clips``):

- break 1, event 1: out at 5 s for 4 s, back at 9 s (a clean break);
- break 2, event 2: out at 12 s for 3 s, back only at 20 s: overrun from 15 s;
- break 3, event 3: out at 23 s for 2 s with auto_return: back by itself at 25 s;
- a damaged section (its CRC broken) at 26 s: reported, nothing else.

The cues arrive 1.5-2 s before their splice points (the pre-roll), so ``scte35_missing``
(max_interval 5 s) holds from the cue of 10.5 s to the one of 18.5 s, and from the last
cue (21.5 s) to the end of the clip. Every transition and alarm start must be within 0.5 s.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest

from monitor.alarms.engine import AlarmEvent
from monitor.checks.base import InfoEvent
from monitor.config import load_config
from monitor.decode.media_source import (
    AudioChunk,
    MediaSource,
    Picture,
    SpliceSection,
    StreamInfo,
)
from monitor.pipeline.analyze import analyze
from monitor.pipeline.channel import ChannelPipeline
from tests.captionclips import write_clip
from tests.graphicsclips import GraphicsClip, Span, clip_file
from tests.scte35clips import (
    Placed,
    add_cues,
    crc32_mpeg2,
    splice_insert,
    time_signal,
    video_origin_ticks,
)

TOLERANCE_S = 0.5
DURATION_S = 30.0


def cues(origin: int) -> list[Placed]:
    def at(seconds: float) -> int:
        return origin + round(seconds * 90000)

    # FFmpeg drops a section whose CRC fails: the damaged one passes its CRC but its
    # splice_insert is cut short (splice_command_length 20 with 3 bytes of command left).
    good = splice_insert(9, at(27.0), out=True, duration_s=1.0)
    body = good[3:14] + b"\xf0\x14\x05" + good[17:20]
    head = bytes((0xFC, 0x30 | (len(body) + 4) >> 8, (len(body) + 4) & 0xFF))
    damaged = head + body
    damaged += crc32_mpeg2(damaged).to_bytes(4, "big")
    return [
        Placed(3.0, splice_insert(1, at(5.0), out=True, duration_s=4.0)),
        Placed(7.5, splice_insert(1, at(9.0), out=False)),
        Placed(10.5, splice_insert(2, at(12.0), out=True, duration_s=3.0)),
        Placed(18.5, splice_insert(2, at(20.0), out=False)),
        Placed(21.5, splice_insert(3, at(23.0), out=True, duration_s=2.0, auto_return=True)),
        Placed(26.0, bytes(damaged)),
    ]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_clip(tmp_path_factory.mktemp("scte35") / "cues.ts", DURATION_S, lambda i, t: None)
    return add_cues(path, cues(video_origin_ticks(path)))


HEAD = """\
version: 1
site: test
channels:
  - name: news
    inputs:
      primary: {url: "udp://127.0.0.1:5000"}
    detectors:
      audio_missing: {enabled: false}   # the clips have no audio
      black: {enabled: false}
      freeze: {enabled: false}
"""
SCTE35 = "scte35: {max_interval: 5s, tolerance: 2s}\n"


def config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "news.yaml"
    path.write_text(HEAD + textwrap.indent(extra, "      "))
    return path


def run(clip: Path, tmp_path: Path, extra: str) -> tuple[list[AlarmEvent], list[InfoEvent]]:
    events: list[AlarmEvent] = []
    summary = analyze(str(clip), load_config(config(tmp_path, extra)).channel(None), events.append)
    return events, summary.info


def test_pyav_exposes_the_cue_stream_ffmpeg_reads(clip: Path) -> None:
    with av.open(str(clip)) as container:
        assert [s.name for s in container.streams.data] == ["scte_35"]


def test_break_state_follows_the_cues(clip: Path, tmp_path: Path) -> None:
    channel = load_config(config(tmp_path, SCTE35)).channel(None)
    pipeline = ChannelPipeline(channel, "primary", lambda event: None, audio_streams=[])
    assert pipeline.breaks is not None
    changes: list[tuple[float, bool]] = []
    ends: list[float | None] = []
    with MediaSource(str(clip), splice_sections=True) as media:
        for item in media:
            pipeline.process(item)
            state = pipeline.breaks.in_break
            if not changes or changes[-1][1] != state:
                changes.append((item.pts_s, state))
                ends.append(pipeline.breaks.ends_at_s)
    pipeline.finish()
    expected = [(0.0, False), (5.0, True), (9.0, False), (12.0, True), (20.0, False)]
    expected += [(23.0, True), (25.0, False)]
    assert [state for _, state in changes] == [state for _, state in expected]
    for (t, _), (want, _) in zip(changes, expected, strict=True):
        assert abs(t - want) <= TOLERANCE_S, (changes, expected)
    assert ends[1] == pytest.approx(9.0, abs=0.05)  # planned end: splice + break_duration


def test_every_cue_is_an_event_and_the_damaged_one_is_reported(clip: Path, tmp_path: Path) -> None:
    _, info = run(clip, tmp_path, SCTE35)
    payloads = [event.to_dict() for event in info]
    assert all(p["type"] == "scte35" and p["version"] == 1 for p in payloads)
    cues_seen = [(p["event_id"], p["splice_type"]) for p in payloads if "error" not in p]
    assert cues_seen == [(1, "out"), (1, "in"), (2, "out"), (2, "in"), (3, "out")]
    first = payloads[0]
    assert first["command"] == "splice_insert" and first["duration"] == 4.0
    assert abs(first["at"] - 5.0) <= TOLERANCE_S
    errors = [p for p in payloads if "error" in p]
    assert len(errors) == 1 and "splice_command_length" in errors[0]["error"], errors


def test_overrun_and_missing_cues_are_found_nothing_else(clip: Path, tmp_path: Path) -> None:
    events, _ = run(clip, tmp_path, SCTE35)
    raised = [(e.alarm, e.start) for e in events if e.state == "raised"]
    expected = [("ad_break_overrun", 15.0), ("scte35_missing", 10.5), ("scte35_missing", 21.5)]
    assert len(raised) == len(expected), raised
    for alarm, start in expected:
        assert any(a == alarm and abs(s - start) <= TOLERANCE_S for a, s in raised), raised
    overrun = next(e for e in events if e.alarm == "ad_break_overrun" and e.state == "cleared")
    assert abs((overrun.end or 0) - 20.0) <= TOLERANCE_S
    assert overrun.detail["event_id"] == 2


def test_a_channel_without_scte35_reads_no_cues(clip: Path, tmp_path: Path) -> None:
    events, info = run(clip, tmp_path, "")
    assert info == []
    assert not [e for e in events if "scte35" in e.alarm or "break" in e.alarm]


LOGO = """\
graphics:
  - name: logo
    roi: [0.80, 0.04, 0.16, 0.20]
    learn: 3s
    raise_after: 1s
    DURING
"""


@pytest.fixture(scope="module")
def logo_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A logo off air from 6 to 10 s, during an ad break from 6 to 10 s."""
    spec = GraphicsClip(width=320, height=180, duration_s=14.0, logo_off=(Span(6.0, 10.0),))
    path = tmp_path_factory.mktemp("logo") / "logo.ts"
    shutil.copy(clip_file(spec), path)
    origin = video_origin_ticks(path)
    return add_cues(
        path,
        [
            Placed(4.5, splice_insert(5, origin + 6 * 90000, out=True, duration_s=4.0)),
            Placed(8.5, splice_insert(5, origin + 10 * 90000, out=False)),
        ],
    )


@pytest.mark.parametrize(
    ("scte35", "during", "alarms"),
    [
        ("", "", {"graphic_missing"}),  # no SCTE-35: a logo off in the break is missing
        (SCTE35, "", set()),  # default any: not judged in the break
        (SCTE35, "during_breaks: absent", set()),  # it must be off: it is
        (SCTE35, "during_breaks: present", {"graphic_missing"}),
    ],
)
def test_logo_follows_the_breaks(
    logo_clip: Path, tmp_path: Path, scte35: str, during: str, alarms: set[str]
) -> None:
    events, _ = run(logo_clip, tmp_path, scte35 + LOGO.replace("DURING", during))
    raised = [e for e in events if e.state == "raised" and e.alarm.startswith("graphic_")]
    assert {e.alarm for e in raised} == alarms
    for event in raised:
        assert abs(event.start - 6.0) <= 1.0


def test_black_at_a_splice_point_is_tolerated_elsewhere_not(tmp_path: Path) -> None:
    """Black from 4.6 to 5.4 s around a cue-out at 5 s is the splice (splice_tolerance 1 s);
    black from 8 to 9 s is a fault either way."""
    rng = np.random.default_rng(1)
    scene = rng.integers(40, 200, (72, 128), dtype=np.uint8)
    black = np.full((72, 128), 16, np.uint8)
    origin = 1_000_000
    cue = SpliceSection(
        splice_insert(1, origin + 5 * 90000, out=True, duration_s=30.0),
        3.0,
        (origin + 3 * 90000, 3.0),
    )

    def starts(extra: str) -> list[float]:
        path = tmp_path / "black.yaml"
        head = HEAD.replace("      black: {enabled: false}\n", "")
        body = "black: {raise_after: 0.5s, clear_after: 0.2s}\n" + extra
        path.write_text(head + textwrap.indent(body, "      "))
        channel = load_config(path).channel(None)
        events: list[AlarmEvent] = []
        pipeline = ChannelPipeline(channel, "primary", events.append, audio_streams=[])
        for i in range(250):
            t = i / 25
            if i == 75:
                pipeline.process(cue)
            dark = 4.6 <= t < 5.4 or 8.0 <= t < 9.0
            luma = black if dark else np.roll(scene, i, axis=1)
            pipeline.process(Picture(luma, t, 0.04, 8, False, keyframe=i % 25 == 0))
        pipeline.finish()
        return [e.start for e in events if e.alarm == "black" and e.state == "raised"]

    assert starts("") == pytest.approx([4.6, 8.0])
    assert starts("scte35: {splice_tolerance: 1s}\n") == pytest.approx([8.0])


def test_silence_at_a_splice_point_is_tolerated_elsewhere_not(tmp_path: Path) -> None:
    """Silence from 4.6 to 5.4 s around a cue-out at 5 s is the splice; from 8 to 9 s it is
    a fault either way."""
    rng = np.random.default_rng(2)
    tone = (0.1 * rng.standard_normal((2, 9600))).astype(np.float32)
    quiet = np.zeros((2, 480), np.float32)
    origin = 1_000_000
    cue = SpliceSection(
        splice_insert(1, origin + 5 * 90000, out=True, duration_s=30.0),
        3.0,
        (origin + 3 * 90000, 3.0),
    )
    stereo = StreamInfo("audio", 0, "pcm", "stereo", channel_names=("FL", "FR"))

    def starts(extra: str) -> list[float]:
        path = tmp_path / "silence.yaml"
        body = "silence: {raise_after: 0.5s, clear_after: 0.2s}\n" + extra
        path.write_text(HEAD + textwrap.indent(body, "      "))
        channel = load_config(path).channel(None)
        events: list[AlarmEvent] = []
        pipeline = ChannelPipeline(channel, "primary", events.append, audio_streams=[stereo])
        for i in range(1000):  # 10 ms blocks, 10 s
            t = i / 100
            if i == 300:
                pipeline.process(cue)
            silent = 4.6 <= t < 5.4 or 8.0 <= t < 9.0
            block = quiet if silent else tone[:, (i % 20) * 480 : (i % 20) * 480 + 480]
            pipeline.process(AudioChunk(0, block, t, 48000, ("FL", "FR")))
        pipeline.finish()
        raised = [e for e in events if e.alarm == "silence" and e.state == "raised"]
        return sorted({round(e.start, 2) for e in raised})

    assert starts("") == pytest.approx([4.6, 8.0])
    assert starts("scte35: {splice_tolerance: 1s}\n") == pytest.approx([8.0])


def test_time_signal_segmentation_cues_drive_the_break_too(tmp_path: Path) -> None:
    """A provider placement opportunity (0x34) from 3 s for 4 s, its end (0x35) at 7 s."""
    path = write_clip(tmp_path / "signal.ts", 10.0, lambda i, t: None)
    origin = video_origin_ticks(path)
    add_cues(
        path,
        [
            Placed(1.0, time_signal(0x34, origin + 3 * 90000, 4.0)),
            Placed(5.5, time_signal(0x35, origin + 7 * 90000, None)),
        ],
    )
    channel = load_config(config(tmp_path, SCTE35)).channel(None)
    info: list[InfoEvent] = []
    pipeline = ChannelPipeline(
        channel, "primary", lambda event: None, audio_streams=[], inform=info.append
    )
    assert pipeline.breaks is not None
    changes: list[tuple[float, bool]] = []
    with MediaSource(str(path), splice_sections=True) as media:
        for item in media:
            pipeline.process(item)
            if not changes or changes[-1][1] != pipeline.breaks.in_break:
                changes.append((round(item.pts_s, 2), pipeline.breaks.in_break))
    assert changes == [(0.0, False), (3.0, True), (7.0, False)]
    first = info[0].to_dict()
    assert (first["command"], first["segmentation_type"], first["event_id"]) == (
        "time_signal", 0x34, 0x63,
    )  # fmt: skip
    assert "SIGNAL01" in first["upid"]


def test_analyze_prints_the_cues_with_events_and_only_alarms_without(
    clip: Path, tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    path = config(tmp_path, SCTE35)

    def lines(*extra: str) -> list[dict]:
        done = subprocess.run(
            [sys.executable, "-m", "monitor.cli", "analyze", str(clip), "--config", str(path)]
            + list(extra),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    plain = lines()
    assert plain and all("alarm" in e and "type" not in e for e in plain)
    with_events = lines("--events")
    cues_seen = [
        (e["event_id"], e["splice_type"])
        for e in with_events
        if e.get("type") == "scte35" and "error" not in e
    ]
    assert cues_seen == [(1, "out"), (1, "in"), (2, "out"), (2, "in"), (3, "out")]

    def alarms(events: list[dict]) -> list[tuple]:  # ids and wall clocks differ per run
        return [(e["alarm"], e["state"], e["start"], e.get("end")) for e in events if "alarm" in e]

    assert alarms(with_events) == alarms(plain)
