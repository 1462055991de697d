"""Damaged and non-media input to `streamqc analyze`: data to report, never a crash.

The damage is made at test time on a 720p25 H.264/AAC transport stream with faults at known
times: ~3,000 bytes inverted at random in its first 3 MB (what a satellite or a lossy UDP
path does), then also cut short, or spliced mid-packet with another stream. The faults in the
intact part must still be found, on time.

Seed 5 is the reproduction of the crash first seen: its corruption makes FFmpeg's demuxer add
a stream mid-file, and PyAV 18's demux() then ended the analysis with IndexError (exit 70).
Seed 4 moved a PTS 26 s ahead, which shifted every later alarm by as much.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from monitor.demo.synth import MediaSpec, Span

HD = MediaSpec(
    duration_s=20.0,
    width=1280,
    height=720,
    black=(Span(14.0, 16.5),),
    silence=(Span(15.0, 17.5),),
)
"""720p25: the first 3 MB (where the damage goes) are about the first 10 s."""
SMALL = MediaSpec(duration_s=12.0, black=(Span(8.0, 10.0),))
DAMAGED_BYTES = 3_000_000


def invert_bytes(data: bytes, seed: int, n: int = 3000, within: int = DAMAGED_BYTES) -> bytes:
    out = np.frombuffer(data, np.uint8).copy()
    hits = np.random.default_rng(seed).integers(0, min(within, len(out)), n)
    out[hits] ^= 0xFF
    return out.tobytes()


def media_s(run) -> float:
    """How far the analysis went, from the summary line."""
    found = re.search(r"([0-9.]+) s of media", run.stderr)
    assert found, run.stderr
    return float(found[1])


def near(value: float, target: float, tolerance: float = 0.1) -> bool:
    return abs(value - target) <= tolerance


def assert_damage_reported(run) -> None:
    assert run.code == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "warning" in line]
    assert any("damaged" in line for line in warnings), run.stderr
    assert "internal error" not in run.stderr


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_inverted_bytes_in_the_first_3_mb_are_analysed_to_the_end(media, streamqc, tmp_path, seed):
    damaged = tmp_path / f"flipped-{seed}.ts"
    damaged.write_bytes(invert_bytes(media(HD).read_bytes(), seed))
    run = streamqc("analyze", str(damaged))
    assert_damage_reported(run)
    assert media_s(run) >= 19.96  # to the end: the last picture is at 19.96 s
    (black,) = run.alarms("black")
    assert near(black[1], 14.0) and near(black[2], 16.52)
    (silence,) = run.alarms("silence")
    assert near(silence[1], 15.0) and near(silence[2], 17.5)


def test_a_truncated_damaged_file_is_analysed_as_far_as_it_goes(media, streamqc, tmp_path):
    data = invert_bytes(media(HD).read_bytes(), 11)
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: int(len(data) * 0.85) + 77])  # mid-packet, after the black
    run = streamqc("analyze", str(cut))
    assert_damage_reported(run)
    assert "truncated" in run.stderr
    (black,) = run.alarms("black")
    assert near(black[1], 14.0) and near(black[2], 16.52)


def test_two_streams_spliced_mid_packet_are_analysed_to_the_end(media, streamqc, tmp_path):
    first = invert_bytes(media(HD).read_bytes(), 21)
    second = media(SMALL).read_bytes()
    spliced = tmp_path / "spliced.ts"
    # the damaged HD clip up to the middle of a packet at ~17 s, then the SD clip mid-packet
    spliced.write_bytes(first[: int(len(first) * 0.9) + 100] + second[1000 + 55 :])
    run = streamqc("analyze", str(spliced))
    assert_damage_reported(run)
    alarms = run.alarms("black")
    assert near(alarms[0][1], 14.0) and near(alarms[0][2], 16.52)
    assert len(alarms) == 2, alarms  # and the SD clip's black, wherever the splice put it


def test_a_png_is_no_decodable_audio_or_video(streamqc, tmp_path):
    import av

    png = tmp_path / "logo.png"
    frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
    with av.open(str(png), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "rgb24"
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    run = streamqc("analyze", str(png))
    assert run.code == 1 and run.events == []
    assert run.stderr.strip().count("\n") == 0
    assert f"no decodable audio or video in {png}" in run.stderr


def test_a_text_file_is_no_decodable_audio_or_video(streamqc, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("channel list\nnews-hd 239.1.1.1:5000\n" * 20)
    run = streamqc("analyze", str(text))
    assert run.code == 1 and run.events == []
    assert run.stderr.strip().count("\n") == 0
    assert f"no decodable audio or video in {text}" in run.stderr


def test_a_damaged_live_feed_is_decoded_through_its_damage(media, tmp_path):
    import json
    import subprocess
    import sys
    import time

    from tests.ingest.udppeer import UdpSender, free_udp_port

    clip = MediaSpec(duration_s=10.0, width=640, height=360, black=(Span(6.0, 8.0),))
    clean = media(clip)
    port = free_udp_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "analyze", f"udp://127.0.0.1:{port}"]
        + ["--duration", "9.5s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # the receiver binds its socket at start-up
    sender = UdpSender(clean, port, clip.duration_s)  # paced on the clean stream's PCRs
    sender.data = invert_bytes(sender.data, 5, n=1500, within=len(sender.data) // 2)
    sender.start()
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        sender.stop()
    assert proc.returncode == 0 and "Traceback" not in err, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    black = [e for e in events if e["alarm"] == "black" and e["state"] == "cleared"]
    assert len(black) == 1, events
    assert black[0]["end"] - black[0]["start"] == pytest.approx(2.0, abs=0.1)
    assert "damaged" in err  # the live summary says what the decoder skipped
