"""What loudness metering costs per second of audio: streamqc's meter against pyloudnorm and
FFmpeg's ebur128 filter, in the same run, on 48 kHz stereo and 5.1.

Each round runs every variant once on the same 20 s of programme-like audio (band-limited
noise under a syllabic envelope with pauses, different in every channel), rotating their order:

  streamqc meter   ``LoudnessMeter.update`` on ~200 ms blocks (as the pipeline feeds it):
                   M, S, I, LRA, true peak (4x), clipping runs, every 100 ms
  streamqc check   the same through ``LoudnessCheck``: plus the three alarm trackers
  pyloudnorm       ``Meter(filter_class="DeMan").integrated_loudness`` on the whole signal:
                   integrated loudness only, file-based (no M/S, no true peak); at most five
                   channels, so 5.1 is given without its LFE
  ebur128          FFmpeg's filter through ``av.filter.Graph`` (``peak=true``: M, S, I, LRA and
                   true peak at 192 kHz), fed 1024-sample frames built beforehand, as a decoder
                   hands them over
  AAC decode       demux + decode of the same audio as AAC in MPEG-TS (128 kbit/s per stereo
                   pair): the floor any monitor of a broadcast feed pays before measuring

Costs are CPU seconds (``time.process_time``) per media second. With benchmarks disabled (the
project default) one round on 1 s of audio runs as a smoke test and nothing is reported.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Callable
from fractions import Fraction

import av
import av.error
import numpy as np
import pytest

from benchmarks.runners import interleaved
from detectors.loudness import LoudnessMeter, LoudnessSettings
from monitor.alarms.engine import AlarmTracker, Subject
from monitor.checks.base import CheckContext
from monitor.checks.loudness import LoudnessCheck
from monitor.config import default_channel
from monitor.decode.media_source import AudioChunk

RATE = 48_000
MEDIA_S = 20.0
QUICK_S = 1.0
ROUNDS = 5
BLOCK = RATE // 5  # the pipeline's ~200 ms audio blocks
FRAME = 1024  # an AAC frame
LAYOUTS = {"stereo": ("FL", "FR"), "5.1": ("FL", "FR", "FC", "LFE", "BL", "BR")}
SECTION = "Loudness metering, CPU ms per media second of 48 kHz audio (1 core)"


def programme(channels: int, seconds: float, seed: int = 7) -> np.ndarray:
    """Speech-like noise at about -20 LUFS per channel pair, float32 planar."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    spectrum = np.fft.rfft(rng.standard_normal((channels, n)))
    hz = np.fft.rfftfreq(n, 1.0 / RATE)
    noise = np.fft.irfft(spectrum / (1.0 + (hz / 3000.0) ** 4), n)
    t = np.arange(n) / RATE
    envelope = np.abs(np.sin(2 * np.pi * 2.2 * t)) * (np.sin(2 * np.pi * 0.23 * t) > -0.7)
    x = noise * envelope
    return (0.08 * x / np.sqrt(np.mean(x**2))).astype(np.float32)


def aac_ts(x: np.ndarray, layout: str) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mpegts") as container:
        stream = container.add_stream("aac", rate=RATE, layout=layout)
        stream.bit_rate = 64_000 * x.shape[0]
        for i in range(0, x.shape[1], FRAME):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[:, i : i + FRAME]), format="fltp", layout=layout
            )
            frame.sample_rate, frame.pts, frame.time_base = RATE, i, Fraction(1, RATE)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def variants(x: np.ndarray, layout: str) -> dict[str, tuple[str, Callable[[], object]]]:
    names = LAYOUTS[layout]
    blocks = [np.ascontiguousarray(x[:, i : i + BLOCK]) for i in range(0, x.shape[1], BLOCK)]
    frames = []
    for i in range(0, x.shape[1], FRAME):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(x[:, i : i + FRAME]), format="fltp", layout=layout
        )
        frame.sample_rate, frame.pts, frame.time_base = RATE, i, Fraction(1, RATE)
        frames.append(frame)
    encoded = aac_ts(x, layout)
    import pyloudnorm  # the test extra's; imported here, where needed (it loads scipy)

    without_lfe = np.delete(x, names.index("LFE"), axis=0) if "LFE" in names else x
    loudnorm_input = np.ascontiguousarray(without_lfe.T, dtype=np.float64)

    def meter() -> object:
        m = LoudnessMeter(LoudnessSettings(), RATE, x.shape[0], names)
        for k, block in enumerate(blocks):
            m.update(block, k * BLOCK / RATE)
        return m

    def check() -> object:
        channel = default_channel()
        subject = Subject(channel.name, "primary")

        def tracker(alarm, rule, merge=None):  # type: ignore[no-untyped-def]
            return AlarmTracker(alarm, rule, subject, lambda event: None, merge)

        c = LoudnessCheck(CheckContext(channel, subject, tracker))
        for k, block in enumerate(blocks):
            c.audio(AudioChunk(0, block, k * BLOCK / RATE, RATE))
        return c

    def loudnorm() -> object:
        return pyloudnorm.Meter(RATE, filter_class="DeMan").integrated_loudness(loudnorm_input)

    def ebur128() -> object:
        graph = av.filter.Graph()
        source = graph.add_abuffer(
            format="fltp", sample_rate=RATE, layout=layout, time_base=Fraction(1, RATE)
        )
        sink = graph.add("abuffersink")
        graph.link_nodes(source, graph.add("ebur128", "peak=true"), sink).configure()
        for frame in frames:
            graph.push(frame)
            _drain(graph)
        graph.push(None)
        _drain(graph)
        return graph

    def decode() -> object:
        with av.open(io.BytesIO(encoded), format="mpegts") as container:
            for packet in container.demux(container.streams.audio[0]):
                for _frame in packet.decode():
                    pass
        return container

    return {
        "meter": ("streamqc LoudnessMeter (M, S, I, LRA, true peak, clipping)", meter),
        "check": ("streamqc LoudnessCheck (the meter + 3 alarm trackers)", check),
        "pyloudnorm": (f"pyloudnorm DeMan, integrated only ({without_lfe.shape[0]} ch)", loudnorm),
        "ebur128": ("FFmpeg ebur128 via PyAV (peak=true)", ebur128),
        "decode": (f"AAC decode ({64 * x.shape[0]} kbit/s), for scale", decode),
    }


def _drain(graph: av.filter.Graph) -> None:
    while True:
        try:
            graph.pull()
        except (BlockingIOError, av.error.EOFError):
            return


@pytest.mark.parametrize("layout", ["stereo", "5.1"])
def test_loudness_metering_cost(benchmark, report, layout: str) -> None:
    media_s = QUICK_S if benchmark.disabled else MEDIA_S
    x = programme(len(LAYOUTS[layout]), media_s)
    runs = variants(x, layout)
    names = list(runs)
    for name in names:  # loads Numba's cached kernels and FFmpeg's filters outside the timing
        runs[name][1]()
    benchmark.group = f"loudness metering {layout}: wall time of one round of all variants"
    cpu = interleaved(benchmark, {name: run for name, (_, run) in runs.items()}, ROUNDS)
    if benchmark.disabled:
        return

    ms = {n: statistics.median(t) / media_s * 1e3 for n, t in cpu.items()}
    ms_min = {n: min(t) / media_s * 1e3 for n, t in cpu.items()}
    benchmark.extra_info.update(
        layout=layout,
        media_s=media_s,
        rounds=len(cpu["meter"]),
        cpu_ms_per_media_s_median=ms,
        cpu_ms_per_media_s_min=ms_min,
        cpu_s_per_run=cpu,
    )
    lines = [
        f"{'variant':<62} {'median':>7} {'min':>7} {'x meter':>8} {'x decode':>9}",
        *(
            f"{runs[n][0]:<62} {ms[n]:7.2f} {ms_min[n]:7.2f} {ms[n] / ms['meter']:8.2f}"
            f" {ms[n] / ms['decode']:9.2f}"
            for n in names
        ),
        f"streamqc check: {ms['check'] / 10:.2f} % of one core per {layout} stream (target < 2 %);"
        f" pyloudnorm / meter {ms['pyloudnorm'] / ms['meter']:.1f}x,"
        f" ebur128 / meter {ms['ebur128'] / ms['meter']:.1f}x",
    ]
    report.add(f"{SECTION}: {layout}, {media_s:g} s, {len(cpu['meter'])} rounds", *lines)
