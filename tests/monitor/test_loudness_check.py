"""The loudness check end to end: PyAV-written files with loudness, true-peak and clipping faults
at known times, analysed by ``monitor.pipeline.analyze.analyze`` (and once by the real command) with
the check configured in YAML.

Files are audio only (PCM in Matroska, sample-exact, or AAC in MPEG-TS as broadcast), so
``video_missing`` is switched off. Signals are 1000 Hz sines whose peak level in dBFS equals
their loudness in LUFS on a stereo pair (EBU Tech 3341). Alarm times are those of the 100 ms
measurement steps: a reading changes at the end of the step that holds the change.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from monitor.alarms.engine import AlarmEvent, AlarmTracker, Subject
from monitor.checks.base import CheckContext
from monitor.checks.loudness import LoudnessCheck, next_reset
from monitor.config import ChannelConfig, default_channel, load_config
from monitor.decode.media_source import AudioChunk, StreamInfo
from monitor.errors import ConfigError
from monitor.pipeline.analyze import analyze
from monitor.pipeline.channel import ChannelPipeline

RATE = 48_000
STEP_S = 0.1
AAC_EDGE_S = 1024 / RATE  # an AAC frame of smear at a level change


def tone(*parts: tuple[float, float], hz: float = 1000.0) -> np.ndarray:
    """Stereo, phase-continuous sine through (seconds, peak dBFS) parts."""
    gain = np.concatenate([np.full(round(s * RATE), 10.0 ** (db / 20.0)) for s, db in parts])
    return np.tile(gain * np.sin(2.0 * np.pi * hz * np.arange(gain.size) / RATE), (2, 1))


def write_audio(path: Path, tracks: list[tuple[np.ndarray, str]], codec: str = "pcm_s16le"):
    """One audio stream per (samples, language): PCM in Matroska or AAC in MPEG-TS."""
    with av.open(str(path), "w", format="matroska" if codec.startswith("pcm") else "mpegts") as c:
        streams = []
        for _, language in tracks:
            stream = c.add_stream(codec, rate=RATE, layout="stereo")
            stream.metadata["language"] = language
            streams.append(stream)
        length = max(x.shape[1] for x, _ in tracks)
        for i in range(0, length, 1024):
            for stream, (x, _) in zip(streams, tracks, strict=True):
                part = np.ascontiguousarray(x[:, i : i + 1024], dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts, frame.time_base = RATE, i, Fraction(1, RATE)
                c.mux(stream.encode(frame))
        for stream in streams:
            c.mux(stream.encode(None))
    return path


def channel(tmp_path: Path, loudness: str) -> ChannelConfig:
    path = tmp_path / "loudness.yaml"
    path.write_text(
        "version: 1\n"
        "site: test\n"
        "channels:\n"
        "  - name: ch1\n"
        '    inputs: {primary: {url: "udp://127.0.0.1:5000"}}\n'
        "    detectors:\n"
        "      video_missing: {enabled: false}\n"
        f"      loudness: {loudness}\n"
    )
    return load_config(path).channel("ch1")


def run(path: Path, config: ChannelConfig) -> list[AlarmEvent]:
    return analyze(str(path), config, lambda event: None).events


def alarms(events: list[AlarmEvent], name: str) -> list[tuple[AlarmEvent, AlarmEvent]]:
    """(raised, cleared) pairs of one alarm, in order."""
    raised = {e.id: e for e in events if e.alarm == name and e.state == "raised"}
    return [(raised[e.id], e) for e in events if e.alarm == name and e.state == "cleared"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loudness")
    loud_middle = tone((10.0, -23.0), (10.0, -17.0), (10.0, -23.0))
    quiet = tone((20.0, -30.0))
    on_target = tone((20.0, -24.0))
    peaks = tone((12.0, -23.0))
    n = np.arange(round(0.05 * RATE))
    burst = 0.99 * np.sin(2.0 * np.pi * n / 4 + math.pi / 4)  # samples at ±0.70, peak 0.99
    peaks[:, round(4.0 * RATE) : round(4.0 * RATE) + n.size] = burst
    clip = slice(round(8.0 * RATE), round(8.5 * RATE))
    t = np.arange(clip.stop - clip.start) / RATE
    peaks[1, clip] = np.clip(2.0 * np.sin(2.0 * np.pi * 100.0 * t), -1.0, 1.0)
    pauses = tone((12.0, -23.0), (12.0, -math.inf), (12.0, -23.0))
    return {
        "loud_middle": write_audio(folder / "loud_middle.mkv", [(loud_middle, "eng")]),
        "loud_middle_aac": write_audio(folder / "loud.ts", [(loud_middle, "eng")], "aac"),
        "two_languages": write_audio(folder / "two.mkv", [(quiet, "eng"), (on_target, "fra")]),
        "peaks": write_audio(folder / "peaks.mkv", [(peaks, "eng")]),
        "pauses": write_audio(folder / "pauses.mkv", [(pauses, "eng")]),
    }


def close(got: float, want: float, tolerance: float) -> bool:
    return abs(got - want) <= tolerance + 1e-6


@pytest.mark.parametrize(
    ("name", "edge_s"), [("loud_middle", 0.0), ("loud_middle_aac", AAC_EDGE_S)]
)
def test_short_term_loudness_out_of_target_raises_loudness_with_its_reading(
    files, tmp_path, name, edge_s
):
    config = channel(
        tmp_path, "{enabled: true, preset: ebu_r128, measure: short_term, raise_after: 2s}"
    )
    found = alarms(run(files[name], config), "loudness")
    assert len(found) == 1, found
    raised, cleared = found[0]
    # +6 LU from 10 s: the 3 s window passes -22 LUFS 0.26 s in, at the step ending at 10.3 s;
    # back at -23 from 20 s, it falls under -22 2.74 s later, at the step ending at 22.8 s.
    tolerance = STEP_S / 2 + edge_s
    assert close(raised.start, 10.3, tolerance) and close(cleared.end, 22.8, tolerance), (
        raised.start,
        cleared.end,
    )
    detail = cleared.detail
    assert close(detail["short_term_lufs"], -17.0, 0.1), detail  # the farthest reading
    assert (detail["target_lufs"], detail["tolerance_lu"]) == (-23.0, 1.0)
    assert (detail["stream"], detail["language"]) == (0, "eng")
    # At the raise, 2 s after 10.3 s, the window holds 2.3 s of +6 LU: -17.8 LUFS.
    assert close(raised.detail["short_term_lufs"], -17.8, 0.15 + edge_s), raised.detail
    assert raised.severity == "major" and "integrated_lufs" not in detail


def test_integrated_loudness_of_each_language_track_is_judged_on_its_own(files, tmp_path):
    config = channel(tmp_path, "{enabled: true, preset: atsc_a85, integration: programme}")
    found = alarms(run(files["two_languages"], config), "loudness")
    assert len(found) == 1, found  # the French track at -24 LKFS is on target
    raised, cleared = found[0]
    # Judged once 10 s of blocks passed the gate: the 100th block ends at 10.3 s.
    assert close(raised.start, 10.3, 0.05) and close(cleared.end, 20.0, 0.05)
    assert cleared.detail["cleared_by"] == "end_of_input"
    assert (raised.detail["stream"], raised.detail["language"]) == (0, "eng")
    assert close(raised.detail["integrated_lufs"], -30.0, 0.1), raised.detail
    assert (raised.detail["target_lufs"], raised.detail["tolerance_lu"]) == (-24.0, 2.0)


@pytest.mark.parametrize(("streams", "expected"), [("[fra]", []), ("[0]", [0]), ("[eng, 1]", [0])])
def test_streams_selects_the_tracks_by_index_or_language(files, tmp_path, streams, expected):
    config = channel(tmp_path, f"{{enabled: true, preset: atsc_a85, streams: {streams}}}")
    found = alarms(run(files["two_languages"], config), "loudness")
    assert [raised.detail["stream"] for raised, _ in found] == expected


def test_true_peak_and_clipping_raise_at_the_step_that_holds_them(files, tmp_path):
    config = channel(
        tmp_path, "{enabled: true, alarms: [true_peak, audio_clipping], peak_clear_after: 1s}"
    )
    events = run(files["peaks"], config)
    assert alarms(events, "loudness") == []
    peaks = alarms(events, "true_peak")
    clips = alarms(events, "audio_clipping")
    assert [round(r.start, 3) for r, _ in peaks] == [4.0, 8.0], peaks
    # The inter-sample burst: samples at -3.1 dBFS, true peak 0.99 = -0.09 dBTP.
    first = peaks[0][0].detail
    assert close(first["true_peak_dbtp"], -0.09, 0.15) and first["max_dbtp"] == -1.0, first
    assert close(peaks[0][1].end, 4.1, STEP_S + 1e-6)
    assert len(clips) == 1, clips
    raised, cleared = clips[0]
    assert close(raised.start, 8.0, 1e-6) and close(cleared.end, 8.6, STEP_S), cleared
    assert raised.detail["channels"] == [1] and raised.detail["run_samples"] >= 3
    # 2x over full scale at 100 Hz: a third of each half period is flat.
    assert cleared.detail["run_samples"] >= 0.3 * RATE / 200, cleared.detail


def test_silence_raises_silence_not_loudness(files, tmp_path):
    config = channel(tmp_path, "{enabled: true, measure: both, raise_after: 5s}")
    events = run(files["pauses"], config)
    assert alarms(events, "loudness") == []
    silences = alarms(events, "silence")
    assert len(silences) == 1 and close(silences[0][0].start, 12.0, 0.02), silences


def test_the_streamqc_command_reports_loudness_from_the_yaml(files, tmp_path, streamqc):
    channel(tmp_path, "{enabled: true, measure: short_term, raise_after: 2s}")
    run_ = streamqc(
        "analyze", str(files["loud_middle"]), "--config", str(tmp_path / "loudness.yaml")
    )
    assert run_.code == 0, run_.stderr
    found = run_.alarms("loudness")
    assert len(found) == 1 and close(found[0][1], 10.3, 0.05), found
    raised = next(e for e in run_.events if e["alarm"] == "loudness")
    assert close(raised["detail"]["short_term_lufs"], -17.5, 0.5), raised


def test_loudness_is_off_unless_configured_and_enabled_false_turns_it_off(files, tmp_path):
    assert default_channel().loudness.rule.enabled is False
    assert channel(tmp_path, "{preset: ebu_r128}").loudness.rule.enabled is True
    config = channel(tmp_path, "{preset: ebu_r128, enabled: false}")
    assert config.loudness.rule.enabled is False
    events = run(files["peaks"], config)
    assert not {e.alarm for e in events} & {"loudness", "true_peak", "audio_clipping"}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{preset: custom, target_lufs: -24}", "preset custom needs target_lufs and tolerance_lu"),
        ("{integration: daily, reset_at: '6h'}", "reset_at: must be a time of day as 'HH:MM'"),
        ("{preset: r128}", "loudness.preset: must be one of: ebu_r128, atsc_a85, ebu_r128_s1"),
        ("{window: 1s}", "loudness.window: must be >= 3"),
        ("{window: 5s}", "min_measured: must be shorter than the rolling window (5 s), got 10 s"),
        ("{alarms: [loud]}", "loudness.alarms[0]: must be one of: loudness, true_peak"),
    ],
)
def test_configuration_mistakes_are_one_line_naming_the_key(tmp_path, block, message):
    with pytest.raises(ConfigError) as raised:
        channel(tmp_path, block)
    text = str(raised.value)
    assert text.startswith(f"{tmp_path / 'loudness.yaml'}:8: channels[0].detectors.loudness")
    assert message in text and "\n" not in text


def test_presets_and_overrides_resolve_to_limits(tmp_path):
    s1 = channel(tmp_path, "{preset: ebu_r128_s1}").loudness.settings.limits()
    assert (s1.target_lufs, s1.tolerance_lu, s1.short_term_max_lufs) == (-23.0, 0.5, -18.0)
    custom = channel(
        tmp_path, "{preset: custom, target_lufs: -16, tolerance_lu: 1, true_peak_max_dbtp: -1.5}"
    ).loudness.settings.limits()
    assert (custom.target_lufs, custom.tolerance_lu, custom.true_peak_max_dbtp) == (-16, 1, -1.5)
    a85 = channel(tmp_path, "{preset: atsc_a85, tolerance_lu: 1}").loudness.settings.limits()
    assert (a85.target_lufs, a85.tolerance_lu, a85.true_peak_max_dbtp) == (-24.0, 1.0, -2.0)


# --- Live: metrics and the daily reset -------------------------------------------------------


def chunks(x: np.ndarray, start_s: float = 0.0, stream: int = 0):
    step = RATE // 5
    for i in range(0, x.shape[1], step):
        part = np.ascontiguousarray(x[:, i : i + step], dtype=np.float32)
        yield AudioChunk(stream, part, start_s + i / RATE, RATE)


def test_measurements_go_to_the_metrics_per_stream(tmp_path):
    config = channel(tmp_path, "{enabled: true}")
    streams = [StreamInfo("audio", 0, "aac", "", "eng", ("FL", "FR"))]
    pipeline = ChannelPipeline(config, "primary", lambda event: None, audio_streams=streams)
    for chunk in chunks(tone((5.0, -23.0))):
        pipeline.process(chunk)
    gauges = {name: (labels, value) for name, labels, value in pipeline.gauges()}
    assert set(gauges) == {
        "loudness_momentary_lufs",
        "loudness_short_term_lufs",
        "loudness_integrated_lufs",
        "loudness_range_lu",
        "true_peak_dbtp",
    }
    assert all(labels == {"stream": "0"} for labels, _ in gauges.values())
    for name in ("momentary", "short_term", "integrated"):
        assert close(gauges[f"loudness_{name}_lufs"][1], -23.0, 0.1), gauges
    assert close(gauges["true_peak_dbtp"][1], -23.0, 0.1)
    # The true peak is the highest since the last scrape: none since.
    assert dict((n, v) for n, _, v in pipeline.gauges())["true_peak_dbtp"] == -math.inf


def test_next_reset_is_the_next_local_time_of_day():
    from datetime import datetime

    evening = datetime(2026, 3, 10, 22, 30).timestamp()
    assert datetime.fromtimestamp(next_reset(evening, 6 * 60)) == datetime(2026, 3, 11, 6, 0)
    assert datetime.fromtimestamp(next_reset(evening, 23 * 60)) == datetime(2026, 3, 10, 23, 0)


def test_daily_integration_starts_over_when_the_reset_time_passes(tmp_path):
    from datetime import datetime, timedelta

    config = channel(tmp_path, "{enabled: true, integration: daily, reset_at: '00:00'}")
    midnight = datetime(2026, 3, 11)
    subject = Subject("ch1", "primary")

    def integrated(clock_s: float) -> float:
        def tracker(alarm, rule, merge=None):
            return AlarmTracker(alarm, rule, subject, lambda event: None, merge)

        context = CheckContext(config, subject, tracker)
        check = LoudnessCheck(context, clock=lambda: clock_s)
        for chunk in chunks(tone((10.0, -30.0), (10.0, -20.0))):
            check.audio(chunk)
        return dict((n, v) for n, _, v in check.gauges())["loudness_integrated_lufs"]

    # The first audio 10 s before midnight: the day's integration holds the -20 LUFS part (and
    # 3 blocks straddling midnight).
    assert close(integrated((midnight - timedelta(seconds=10)).timestamp()), -20.0, 0.1)
    # An hour earlier, no reset within the 20 s: both halves count.
    assert integrated((midnight - timedelta(hours=1)).timestamp()) < -22.0
