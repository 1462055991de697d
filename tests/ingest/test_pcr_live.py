"""PCR rules on a live feed from a real FFmpeg sender (``ffmpeg -re -c copy`` to UDP).

TR 101 290 2.3a is judged on the PCR values the stream carries: the arrival jitter of a sender
starting up is no transport fault, a PID whose PCRs are really more than 100 ms apart is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.demo.synth import MediaSpec
from tests.ingest.udppeer import free_udp_port

CLIP = MediaSpec(duration_s=8.0)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg")


def analyze_while_ffmpeg_sends(clip: Path, *mux_options: str) -> tuple[list[dict], str]:
    """`streamqc analyze udp://…` for 5 s while `ffmpeg -re -c copy` plays ``clip`` to it."""
    port = free_udp_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "analyze", f"udp://127.0.0.1:{port}"]
        + ["--duration", "5s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # the receiver binds its socket at start-up
    sender = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-i", str(clip), "-c", "copy", "-f", "mpegts"]
        + [*mux_options, f"udp://127.0.0.1:{port}?pkt_size=1316"],
        stdin=subprocess.DEVNULL,
    )
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        sender.kill()
        sender.wait(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_ffmpeg_re_start_raises_no_transport_alarm(media):
    events, err = analyze_while_ffmpeg_sends(media(CLIP))
    assert " 0 pictures" not in err and "pictures" in err, err
    assert not [e for e in events if e["alarm"].startswith("tr101290")], events


def test_pcrs_300_ms_apart_in_the_stream_raise_pcr_repetition(media):
    # FFmpeg's muxer puts the PCRs of this clip 280-320 ms apart (stream time).
    events, err = analyze_while_ffmpeg_sends(media(CLIP), "-pcr_period", "300")
    raised = [e for e in events if e["alarm"] == "tr101290_pcr" and e["state"] == "raised"]
    assert raised, events
    assert raised[0]["detail"]["kind"] == "repetition"
    assert raised[0]["detail"]["pid"] == 256
    intervals = [e["detail"].get("interval_ms") for e in events if e["alarm"] == "tr101290_pcr"]
    assert any(i is not None and 250 <= i <= 330 for i in intervals), events
