"""5.1 as plants carry it: dialogue loss is raised by name, a silent LFE is not an alarm.

The service is made at test time like an SD contribution feed: MPEG-2 video 720x576, AC-3
5.1 whose LFE is silent throughout (as in most programmes), and an MP2 stereo second
language. The centre channel (the dialogue) is muted 15-21 s.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

RATE = 48_000
DURATION_S = 25.0
FC, LFE = 2, 3


def sd_service(path: Path) -> Path:
    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("mpeg2video", rate=25)
        video.width, video.height, video.pix_fmt = 720, 576, "yuv420p"
        video.bit_rate = 4_000_000
        surround = out.add_stream("ac3", rate=RATE, layout="5.1")
        surround.bit_rate = 384_000
        second = out.add_stream("mp2", rate=RATE, layout="stereo")
        second.bit_rate = 192_000
        rng = np.random.default_rng(7)
        n = int(DURATION_S * RATE)
        t = np.arange(n) / RATE
        bed = np.stack([0.2 * np.sin(2 * np.pi * (220 + 110 * ch) * t) for ch in range(6)])
        bed = (bed + rng.normal(0, 1e-3, bed.shape)).astype(np.float32)
        bed[LFE] = 0.0
        bed[FC, int(15 * RATE) : int(21 * RATE)] = 0.0
        stereo = (0.2 * np.sin(2 * np.pi * 330 * np.stack([t, t]))).astype(np.float32)
        audio = [(surround, bed, 1536, "5.1"), (second, stereo, 1152, "stereo")]
        sent = [0, 0]  # samples encoded so far, per audio stream
        for i in range(int(DURATION_S * 25)):
            y = np.full((576, 720), 60 + (i * 3) % 120, np.uint8)
            y[:, (i * 8) % 720 :][:, :40] = 235  # a moving bar: not frozen
            yuv = np.concatenate([y.ravel(), np.full(720 * 576 // 2, 128, np.uint8)])
            frame = av.VideoFrame.from_ndarray(yuv.reshape(864, 720), format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(video.encode(frame))
            due = min(n, (i + 1) * RATE // 25)  # interleaved as a multiplexer would
            for k, (stream, signal, size, layout) in enumerate(audio):
                while sent[k] + size <= due:
                    chunk = np.ascontiguousarray(signal[:, sent[k] : sent[k] + size])
                    aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                    aframe.sample_rate, aframe.pts = RATE, sent[k]
                    aframe.time_base = Fraction(1, RATE)
                    out.mux(stream.encode(aframe))
                    sent[k] += size
        for stream in (video, surround, second):
            out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sd_service(tmp_path_factory.mktemp("surround") / "sd-5.1.ts")


def test_centre_mute_raises_its_own_silence_naming_fc_and_the_silent_lfe_nothing(
    service: Path, streamqc
) -> None:
    run = streamqc("analyze", str(service))
    assert run.code == 0, run.stderr
    silence = [e for e in run.events if e["alarm"] == "silence"]
    assert [(e["state"], e["detail"]["channel_names"]) for e in silence] == [
        ("raised", ["FC"]),
        ("cleared", ["FC"]),
    ], silence
    raised, cleared = silence
    assert raised["detail"]["stream"] == 0 and raised["detail"]["audio_channel"] == FC
    assert raised["start"] == pytest.approx(15.0, abs=0.1)
    assert cleared["end"] == pytest.approx(21.0, abs=0.1)
    assert [e for e in run.events if e["alarm"] != "silence"] == []
