"""`streamqc analyze` end to end: generated media with faults at known times, the real CLI."""

from __future__ import annotations

import shutil
import textwrap

import pytest

from monitor.demo.synth import LOGO_REGION, MOVING_REGION, MediaSpec, Span, make_garbage, truncate
from tests import oracle

FRAME_S = 0.04
# Decoded AAC smears the edges of an injected silence by up to one AAC frame (1024 samples);
# the detector itself is exact to one 10 ms block on the decoded signal.
AUDIO_EDGE_S = 1024 / 48000 + 0.010

FAULTS = MediaSpec(
    duration_s=24.0,
    black=(Span(2.0, 5.0),),
    freeze=(Span(7.0, 10.0),),
    silence=(Span(11.0, 14.0),),
    mute_channel=((Span(15.0, 18.0), 1),),
    dark=(Span(19.0, 21.5),),
)


def close(got: float, want: float, tol: float) -> bool:
    return abs(got - want) <= tol + 1e-6


def region(r) -> dict:
    x, y, w, h = r
    return {"x": x, "y": y, "w": w, "h": h}


def write_config(tmp_path, detectors: str) -> str:
    path = tmp_path / "channel.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            site: test
            channels:
              - name: ch1
                inputs:
                  primary: {url: "udp://127.0.0.1:5000"}
                detectors:
            """
        )
        + textwrap.indent(textwrap.dedent(detectors), "      ")
    )
    return str(path)


def test_every_injected_fault_is_found_with_correct_times_and_nothing_else(media, streamqc):
    run = streamqc("analyze", str(media(FAULTS)))
    assert run.code == 0, run.stderr
    found = run.alarms()
    assert [a for a, _, _ in found] == ["black", "freeze", "silence", "silence"], found
    (_, b0, b1), (_, f0, f1), (_, s0, s1), (_, m0, m1) = found
    assert close(b0, 2.0, FRAME_S) and close(b1, 5.0, FRAME_S)
    assert close(f0, 7.0, FRAME_S) and close(f1, 10.0, FRAME_S)
    assert close(s0, 11.0, AUDIO_EDGE_S) and close(s1, 14.0, AUDIO_EDGE_S)
    assert close(m0, 15.0, AUDIO_EDGE_S) and close(m1, 18.0, AUDIO_EDGE_S)
    silences = [e for e in run.events if e["alarm"] == "silence" and e["state"] == "raised"]
    assert silences[0]["detail"]["channels"] == [0, 1]
    assert silences[1]["detail"]["channels"] == [1]
    assert silences[1]["detail"]["channel_count"] == 2
    assert all(e["channel"] == "default" and e["input"] == "primary" for e in run.events)


def test_dark_scene_that_ffmpeg_calls_black_raises_nothing(media, streamqc):
    spec = MediaSpec(duration_s=8.0, dark=(Span(1.0, 7.0),))
    path = media(spec)
    # FFmpeg's pixel-ratio rule alone reads the dark scene as black...
    assert any(a <= 1.0 + FRAME_S and b >= 7.0 - FRAME_S for a, b in oracle.ffmpeg_black(path))
    # ...while streamqc sees its texture and motion.
    run = streamqc("analyze", str(path))
    assert run.code == 0 and run.alarms() == []


def test_black_freeze_and_silence_agree_with_ffmpegs_own_detectors(media, streamqc):
    path = media(FAULTS)
    run = streamqc("analyze", str(path))
    ours_black = [(a, b) for _, a, b in run.alarms("black")]
    ffmpeg_black = [s for s in oracle.ffmpeg_black(path) if s[0] < 18.0]  # before the dark span
    assert len(ours_black) == len(ffmpeg_black) == 1
    assert all(close(x, y, FRAME_S) for x, y in zip(ours_black[0], ffmpeg_black[0], strict=True))

    # FFmpeg also calls the black span frozen; streamqc reports a black picture as black only.
    ffmpeg_freeze = [s for s in oracle.ffmpeg_freeze(path) if s[0] > 6.0 and s[1] < 18.0]
    ours_freeze = [(a, b) for _, a, b in run.alarms("freeze")]
    assert len(ffmpeg_freeze) == len(ours_freeze) == 1
    assert all(close(x, y, FRAME_S) for x, y in zip(ours_freeze[0], ffmpeg_freeze[0], strict=True))

    # silencedetect's default needs every channel silent: only the first silence.
    ffmpeg_silence = oracle.ffmpeg_silence(path)
    ours_all = [(a, b) for _, a, b in run.alarms("silence")][:1]
    assert len(ffmpeg_silence) == 1
    assert all(close(x, y, 0.011) for x, y in zip(ours_all[0], ffmpeg_silence[0], strict=True))


def test_moving_region_inside_an_ignore_region_does_not_hide_a_freeze(media, streamqc, tmp_path):
    path = media(MediaSpec(duration_s=10.0, static_with_moving_region=(Span(2.0, 7.0),)))
    assert streamqc("analyze", str(path)).alarms() == []
    config = write_config(
        tmp_path, f"freeze: {{ignore: [{region(MOVING_REGION)}]}}\n".replace("'", "")
    )
    found = streamqc("analyze", str(path), "--config", config).alarms()
    assert len(found) == 1 and found[0][0] == "freeze"
    assert close(found[0][1], 2.0, FRAME_S) and close(found[0][2], 7.0, FRAME_S)


def test_logo_over_black_is_still_black_with_its_region_ignored(media, streamqc, tmp_path):
    path = media(MediaSpec(duration_s=8.0, black_with_logo=(Span(2.0, 6.0),)))
    strict = write_config(tmp_path, "black: {picture_ratio: 0.995}\n")
    assert streamqc("analyze", str(path), "--config", strict).alarms("black") == []
    ignoring = write_config(
        tmp_path,
        f"black: {{picture_ratio: 0.995, ignore: [{region(LOGO_REGION)}]}}\n".replace("'", ""),
    )
    found = streamqc("analyze", str(path), "--config", ignoring).alarms("black")
    assert len(found) == 1
    assert close(found[0][1], 2.0, FRAME_S) and close(found[0][2], 6.0, FRAME_S)


def test_one_dead_channel_of_five_one_is_named(media, streamqc):
    path = media(MediaSpec(duration_s=8.0, channels=6, mute_channel=((Span(2.0, 6.0), 2),)))
    run = streamqc("analyze", str(path))
    raised = [e for e in run.events if e["state"] == "raised"]
    assert [e["alarm"] for e in raised] == ["silence"]
    assert raised[0]["detail"]["channels"] == [2]
    assert raised[0]["detail"]["audio_channel"] == 2
    assert raised[0]["detail"]["channel_count"] == 6
    assert raised[0]["detail"]["channel_names"] == ["FC"]


def test_a_silent_lfe_raises_nothing_unless_it_is_judged(media, streamqc, tmp_path):
    path = media(MediaSpec(duration_s=8.0, channels=6, mute_channel=((Span(2.0, 6.0), 3),)))
    assert streamqc("analyze", str(path)).events == []
    config = tmp_path / "lfe.yaml"
    config.write_text(
        "version: 1\nsite: t\nchannels:\n  - name: c\n    inputs: {primary: {url: x}}\n"
        "    detectors: {silence: {ignore_channels: []}}\n"
    )
    run = streamqc("analyze", str(path), "--config", str(config))
    raised = [e for e in run.events if e["state"] == "raised"]
    assert [(e["alarm"], e["detail"]["channel_names"]) for e in raised] == [("silence", ["LFE"])]


def test_a_channel_falling_silent_while_another_is_raises_its_own_alarm(media, streamqc):
    spans = ((Span(2.0, 9.0), 0), (Span(4.0, 7.0), 2))  # FL, then the centre (dialogue) too
    path = media(MediaSpec(duration_s=10.0, channels=6, mute_channel=spans))
    run = streamqc("analyze", str(path))
    edges = [
        (e["state"], e["detail"]["channel_names"], round(e["end"] if e["end"] else e["start"], 1))
        for e in run.events
    ]
    assert edges == [
        ("raised", ["FL"], 2.0),
        ("raised", ["FC"], 4.0),
        ("cleared", ["FC"], 7.0),
        ("cleared", ["FL"], 9.0),
    ]


def test_stream_without_audio_is_analysed_with_a_warning_and_audio_missing(media, streamqc):
    run = streamqc(
        "analyze", str(media(MediaSpec(duration_s=8.0, audio=False, black=(Span(3, 6),))))
    )
    assert run.code == 0
    assert "warning: no audio stream" in run.stderr
    found = run.alarms()
    assert ("black", 3.0, 6.0) in [(a, round(s, 2), round(e, 2)) for a, s, e in found]
    missing = [e for e in run.events if e["alarm"] == "audio_missing" and e["state"] == "raised"]
    assert len(missing) == 1 and missing[0]["start"] == 0.0 and missing[0]["severity"] == "critical"


def test_audio_only_stream_raises_video_missing(media, streamqc):
    run = streamqc("analyze", str(media(MediaSpec(duration_s=6.0, video=False))))
    assert run.code == 0 and "warning: no video stream" in run.stderr
    assert [a for a, _, _ in run.alarms()] == ["video_missing"]


def test_truncated_file_is_analysed_as_far_as_it_goes_with_a_warning(media, streamqc, tmp_path):
    cut = truncate(media(FAULTS), tmp_path / "cut.ts", 0.5)
    run = streamqc("analyze", str(cut))
    assert run.code == 0
    assert "warning" in run.stderr and "truncated" in run.stderr
    found = run.alarms()
    assert found[0][0] == "black" and close(found[0][1], 2.0, FRAME_S)
    assert all(e["start"] < 13.0 for e in run.events)


def test_duration_stops_the_analysis_early(media, streamqc):
    run = streamqc("analyze", str(media(FAULTS)), "--duration", "6s")
    assert run.code == 0
    assert [a for a, _, _ in run.alarms()] == ["black"]
    assert "6.0" in run.stderr or "5.9" in run.stderr


def test_missing_file_is_one_clear_line(streamqc, tmp_path):
    run = streamqc("analyze", str(tmp_path / "nope.ts"))
    assert run.code == 1 and run.events == []
    assert run.stderr.strip().count("\n") == 0
    assert "nope.ts: no such file" in run.stderr


def test_garbage_bytes_are_not_media(streamqc, tmp_path):
    run = streamqc("analyze", str(make_garbage(tmp_path / "garbage.ts")))
    assert run.code == 1 and run.stderr.strip().count("\n") == 0
    assert "no decodable audio or video in" in run.stderr
    assert "garbage.ts: not a media file" in run.stderr


def test_source_without_video_or_audio_is_unusable(streamqc, tmp_path):
    subtitles = tmp_path / "captions.srt"
    subtitles.write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
    run = streamqc("analyze", str(subtitles))
    assert run.code == 1 and run.stderr.strip().count("\n") == 0
    assert "captions.srt: no video and no audio stream" in run.stderr
    assert "no decodable audio or video in" in run.stderr


def test_directory_is_not_media(streamqc, tmp_path):
    run = streamqc("analyze", str(tmp_path))
    assert run.code == 1 and "is a directory" in run.stderr


def test_unreachable_url_is_one_clear_line(streamqc):
    run = streamqc("analyze", "http://127.0.0.1:9/live.ts")
    assert run.code == 1 and run.stderr.strip().count("\n") == 0
    assert "http://127.0.0.1:9/live.ts: cannot open" in run.stderr


def test_bad_config_names_file_line_and_key(streamqc, media, tmp_path):
    config = write_config(tmp_path, "black: {picture_ratio: 5}\n")
    run = streamqc("analyze", str(media(FAULTS)), "--config", config)
    assert run.code == 2 and run.events == []
    assert run.stderr.strip().count("\n") == 0
    assert "channel.yaml:" in run.stderr and "picture_ratio" in run.stderr and "5" in run.stderr


def test_check_config_accepts_the_examples_and_rejects_a_bad_file(streamqc, tmp_path):
    for example in ("configs/example.yaml", "configs/demo.yaml"):
        run = streamqc("check-config", example)
        assert run.code == 0, run.stderr
        assert f"{example}: OK" in run.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nsite: x\nchannels: []\n")
    run = streamqc("check-config", str(bad))
    assert run.code == 2 and "bad.yaml:3" in run.stderr and run.stdout == ""


def test_the_streamqc_command_is_installed():
    assert shutil.which("streamqc") is not None


@pytest.mark.parametrize("duration", ["0", "-1s", "soon"])
def test_bad_duration_is_a_usage_error(streamqc, media, duration):
    run = streamqc("analyze", str(media(FAULTS)), "--duration", duration)
    if duration == "0":
        assert run.code == 0 and run.events == []
    else:
        assert run.code == 2 and "--duration" in run.stderr


@pytest.mark.parametrize("crf", [23, 28])
def test_freeze_survives_keyframes_that_re_encode_the_still(media, streamqc, crf):
    # At everyday quality a keyframe inside a still decodes measurably differently from it
    # (FFmpeg's freezedetect then starts this freeze at 5.0 s instead of 3.0 s).
    path = media(MediaSpec(duration_s=12.0, freeze=(Span(3.0, 9.0),), crf=crf, gop=25))
    found = streamqc("analyze", str(path)).alarms()
    assert len(found) == 1 and found[0][0] == "freeze"
    assert close(found[0][1], 3.0, FRAME_S) and close(found[0][2], 9.0, FRAME_S)


def test_offline_demo_finds_every_injected_fault_and_nothing_else(streamqc, tmp_path):
    run = streamqc("demo", "--offline", "--keep", str(tmp_path))
    assert run.code == 0, run.stderr
    assert "every fault found, no false alarm" in run.stderr
    assert (tmp_path / "demo.ts").exists()
    assert sorted({e["alarm"] for e in run.events}) == ["black", "freeze", "silence"]
