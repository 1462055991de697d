"""The probe tier: ``pictures: all | reference | keyframes`` on any input.

A keyframe-tier input decodes a picture a GOP; black and freeze are found within a GOP of the
fault, audio and presence stay exact, and a channel that writes a check its input's tier
cannot run is refused when the configuration is loaded.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from monitor.checks.registry import at_pictures, picture_needs, unrunnable
from monitor.config import ChannelConfig, InputConfig, load_config
from monitor.decode.media_source import StreamInfo
from monitor.demo.synth import MediaSpec, Span
from monitor.pipeline.channel import ChannelPipeline
from tests.daemon import BLACK, Channel, Clips, Daemon, events
from tests.monitor.test_analyze import AUDIO_EDGE_S, close
from tests.mqttbroker import Mosquitto, Subscriber

GOP_S = 2.0
# A live encoder's plain 2 s GOP with B pictures: no keyframe where the freeze begins (its
# keyframes re-encode the still), at an everyday quality, faults starting and ending mid-GOP.
PROBE = MediaSpec(
    duration_s=24.0,
    black=(Span(2.3, 5.3),),
    freeze=(Span(7.3, 11.3),),
    silence=(Span(13.3, 16.3),),
    gop=50,
    crf=28,
    keyframe_at_freeze=False,
    bframes=2,
)


def config_file(tmp_path: Path, pictures: str, detectors: str = "", defaults: str = "") -> str:
    path = tmp_path / "probe.yaml"
    text = textwrap.dedent(
        f"""\
        version: 1
        site: test
        channels:
          - name: news
            inputs:
              primary: {{url: "udp://127.0.0.1:5000", pictures: {pictures}}}
        """
    )
    if detectors:
        text += "    detectors:\n" + textwrap.indent(textwrap.dedent(detectors), "      ")
    if defaults:
        text += "defaults:\n  detectors:\n" + textwrap.indent(textwrap.dedent(defaults), "    ")
    path.write_text(text)
    return str(path)


def pictures_decoded(stderr: str) -> int:
    match = re.search(r"(\d+) pictures", stderr)
    assert match, stderr
    return int(match[1])


def within_a_gop_after(got: float, injected: float) -> bool:
    return injected - 0.04 <= got <= injected + GOP_S + 1e-6


def test_keyframe_tier_finds_black_and_freeze_within_a_gop_and_silence_exactly(
    media, streamqc, tmp_path
):
    path = media(PROBE)
    run = streamqc("analyze", str(path), "--config", config_file(tmp_path, "keyframes"))
    assert run.code == 0, run.stderr
    # One picture a GOP was decoded (12 of 600), and nothing but the faults was found: sparse
    # pictures are neither missing video nor a reason for audio to look missing.
    assert pictures_decoded(run.stderr) == 12
    found = run.alarms()
    assert [a for a, _, _ in found] == ["black", "freeze", "silence"], run.events
    (_, b0, b1), (_, f0, f1), (_, s0, s1) = found
    assert within_a_gop_after(b0, 2.3) and within_a_gop_after(b1, 5.3), (b0, b1)
    assert within_a_gop_after(f0, 7.3) and within_a_gop_after(f1, 11.3), (f0, f1)
    assert close(s0, 13.3, AUDIO_EDGE_S) and close(s1, 16.3, AUDIO_EDGE_S), (s0, s1)


def test_reference_tier_skips_the_b_pictures_and_keeps_black_and_freeze_within_a_few(
    media, streamqc, tmp_path
):
    path = media(PROBE)
    every = streamqc("analyze", str(path))
    run = streamqc("analyze", str(path), "--config", config_file(tmp_path, "reference"))
    assert run.code == 0, run.stderr
    assert pictures_decoded(run.stderr) < pictures_decoded(every.stderr) / 2  # I and P only
    full = {a: (start, end) for a, start, end in every.alarms()}
    found = {a: (start, end) for a, start, end in run.alarms()}
    assert sorted(found) == sorted(full) == ["black", "freeze", "silence"], run.events
    for alarm in ("black", "freeze"):  # an anchor is at most 3 pictures away
        assert close(found[alarm][0], full[alarm][0], 0.12), (alarm, found, full)
        assert close(found[alarm][1], full[alarm][1], 0.12), (alarm, found, full)
    assert close(found["black"][0], 2.3, 0.12) and close(found["black"][1], 5.3, 0.12)


REFUSED = [
    ("keyframes", "av_sync: {preset: ebu_r37}\n", "av_sync", "all"),
    ("reference", "av_sync: {preset: ebu_r37}\n", "av_sync", "all"),
    ("keyframes", "captions: {services: [cc1]}\n", "captions", "all"),
    ("reference", "captions: {services: [cc1]}\n", "captions", "all"),
    ("keyframes", "picture_corrupt: {enabled: true}\n", "picture_corrupt", "all or reference"),
    (
        "keyframes",
        "graphics: [{name: logo, roi: [0.8, 0.05, 0.15, 0.1], learn: 30s}]\n",
        "graphics",
        "all or reference",
    ),
]


@pytest.mark.parametrize(("pictures", "detectors", "key", "needs"), REFUSED)
def test_a_check_the_tier_cannot_run_is_refused_in_one_line_naming_the_input(
    streamqc, tmp_path, pictures, detectors, key, needs
):
    config = config_file(tmp_path, pictures, detectors)
    run = streamqc("check-config", config)
    assert run.code == 2
    [line] = run.stderr.strip().splitlines()
    assert line == (
        f"streamqc: error: {config}:6: channels[0].inputs.primary.pictures: {pictures} cannot "
        f"run {key} of channel news (it needs pictures: {needs})"
    )
    # analyze of a file with that channel's input refuses it the same way.
    analyze = streamqc("analyze", "nothing.ts", "--config", config)
    assert analyze.code == 2 and analyze.stderr == run.stderr


@pytest.mark.parametrize(
    ("pictures", "detectors"),
    [
        ("reference", "graphics: [{name: logo, roi: [0.8, 0.05, 0.15, 0.1], learn: 30s}]\n"),
        ("reference", "picture_corrupt: {enabled: true}\n"),
        ("all", "av_sync: {preset: ebu_r37}\ncaptions: {services: [cc1]}\n"),
        (
            "keyframes",
            "black: {raise_after: 4s}\nfreeze: {raise_after: 4s}\nloudness: {}\n"
            "rendition_mismatch: {}\nscte35: {}\nsubtitles: {}\n",
        ),
        ("keyframes", "av_sync: {enabled: false}\n"),
    ],
)
def test_checks_the_tier_can_run_are_accepted(streamqc, tmp_path, pictures, detectors):
    run = streamqc("check-config", config_file(tmp_path, pictures, detectors))
    assert run.code == 0, run.stderr


def test_a_check_from_defaults_is_off_where_the_tier_cannot_run_it(tmp_path):
    # A fleet's defaults turn A/V sync and captions on; the probe channel does not write them.
    path = config_file(
        tmp_path, "keyframes", defaults="av_sync: {preset: ebu_r37}\ncaptions: {services: [cc1]}\n"
    )
    [channel] = load_config(path).channels
    assert channel.av_sync.rule.enabled and channel.captions.rule.enabled
    assert set(unrunnable(channel, "keyframes")) == {"av_sync", "captions"}
    probe = at_pictures(channel, "keyframes")
    assert not probe.av_sync.rule.enabled and not probe.captions.rule.enabled
    assert probe.black == channel.black and probe.silence == channel.silence
    assert at_pictures(channel, "all") is channel


def test_the_requirements_come_from_the_checks_themselves():
    assert picture_needs() == {
        "av_sync": "all",
        "captions": "all",
        "graphics": "reference",
        "picture_corrupt": "reference",
    }
    assert unrunnable(ChannelConfig("plain"), "keyframes") == {}  # the defaults run anywhere


@pytest.mark.parametrize(
    ("pictures", "ladder", "largest", "smaller"),
    [
        ("all", "reference", "all", "reference"),
        ("keyframes", "reference", "keyframes", "keyframes"),
        ("reference", "all", "reference", "reference"),
        ("reference", "keyframes", "reference", "keyframes"),
    ],
)
def test_a_ladders_smaller_rungs_never_decode_more_than_the_input(
    pictures, ladder, largest, smaller
):
    source = InputConfig("http://origin/live.m3u8", pictures=pictures, ladder_pictures=ladder)
    assert source.rung_pictures(largest=True) == largest
    assert source.rung_pictures(largest=False) == smaller


def test_an_old_config_without_pictures_decodes_everything(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(
        "version: 1\nsite: test\nchannels:\n  - name: news\n    inputs:\n"
        '      primary: {url: "udp://127.0.0.1:5000", ladder_pictures: keyframes}\n'
    )
    [channel] = load_config(path).channels
    primary = channel.inputs["primary"]
    assert primary.pictures == "all" and primary.ladder_pictures == "keyframes"


def test_a_keyframe_tier_channel_in_the_daemon_alarms_and_publishes_its_keyframes(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    sub = Subscriber(mosquitto.port, "streamqc/#")
    daemon = Daemon(
        tmp_path, [Channel("probe", clips.black, pictures="keyframes")], broker_url=mosquitto.url
    )
    daemons.append(daemon.start())
    cleared = sub.wait_for(
        lambda m: m.topic.endswith("probe/alarms") and b'"cleared"' in m.payload, 45
    )
    # Black, and nothing else: a picture every 2 s is neither missing video nor late audio.
    raised = [e for e in events(sub.received(), "probe") if e["state"] == "raised"]
    assert [e["alarm"] for e in raised] == ["black"], raised
    end = json.loads(cleared.payload)
    assert abs(end["end"] - end["start"] - BLACK.duration_s) <= GOP_S

    # Thumbnails come from the keyframes: the onset one is black, the periodic one a JPEG.
    onset = sub.wait_for(lambda m: m.topic == raised[0]["detail"]["thumbnail"], 5).payload
    picture = cv2.imdecode(np.frombuffer(onset, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert picture is not None and picture.mean() < 30
    periodic = sub.wait_for(lambda m: m.topic == daemon.topic("probe", "thumbnail"), 10)
    assert periodic.payload[:2] == b"\xff\xd8"

    # One picture a GOP is decoded (the clip's GOP is 2 s), not 25 a second.
    daemon.wait_rate("streamqc_pictures_total", 0.3, 0.8, window_s=6.0, channel="probe")
    sub.close()


def test_a_six_second_gop_is_not_missing_video_while_the_next_keyframe_comes(
    media, streamqc, tmp_path
):
    # An OTT encoder's GOP as long as its HLS segments: nothing shows for 6 s at a time.
    path = media(MediaSpec(duration_s=30.0, gop=150, bframes=2, crf=28, black=(Span(12.5, 20.5),)))
    run = streamqc("analyze", str(path), "--config", config_file(tmp_path, "keyframes"))
    assert run.code == 0, run.stderr
    [(alarm, start, end)] = run.alarms()
    assert alarm == "black" and 12.5 <= start <= 12.5 + 6.0 and 20.5 <= end <= 20.5 + 6.0


@pytest.mark.parametrize(
    ("pictures", "built"),
    [
        ("all", {"AvSyncCheck", "CaptionsCheck", "GraphicsCheck", "BlackFreezeCheck"}),
        ("reference", {"GraphicsCheck", "BlackFreezeCheck"}),
        ("keyframes", {"BlackFreezeCheck"}),
    ],
)
def test_a_rendition_builds_only_the_checks_its_pictures_can_feed(tmp_path, pictures, built):
    # A ladder's smaller rung decodes fewer pictures than the channel's checks were written
    # for: A/V sync would time events at pictures 2 s apart, captions would read a third.
    path = config_file(
        tmp_path,
        "all",
        "av_sync: {preset: ebu_r37}\ncaptions: {services: [cc1]}\n"
        "picture_corrupt: {enabled: true}\n",
    )
    [channel] = load_config(path).channels
    stereo = StreamInfo("audio", 0, "aac", "stereo", channel_names=("FL", "FR"))
    pipeline = ChannelPipeline(
        channel, "primary", lambda event: None, audio_streams=[stereo], pictures=pictures
    )
    names = {type(check).__name__ for check in pipeline.checks}
    wanted = {"AvSyncCheck", "CaptionsCheck", "GraphicsCheck", "BlackFreezeCheck"}
    assert names & wanted == built
    assert {"SilenceCheck", "PresenceCheck"} <= names
