"""Throughput of the TR 101 290 analyzer: MB of transport stream analysed per CPU second.

The stream is a synthetic 640x360 H.264/AAC clip (the packet mix is what counts here, not the
picture), repeated to ~35 MB, fed with arrival times that advance 1 ms per chunk. Chunks of
1316 bytes (7 packets, one UDP datagram) measure the per-call cost; 64 KB chunks measure the
kernel. A 6 Mbit/s feed is 0.75 MB/s.
"""

from __future__ import annotations

import pytest

from monitor.demo.synth import MediaSpec, make_ts
from monitor.ingest.tr101290 import Tr101290Analyzer, Tr101290Settings

SECTION = "TR 101 290 analyzer throughput (pytest-benchmark median, 1 core)"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    spec = MediaSpec(duration_s=4.0, width=640, height=360)
    return make_ts(tmp_path_factory.mktemp("tr101290") / "clip.ts", spec).read_bytes()


@pytest.mark.parametrize("chunk", [1316, 65536], ids=["udp_1316", "64k"])
def test_feed_throughput(benchmark, report, clip: bytes, chunk: int) -> None:
    stream = clip if benchmark.disabled else clip * 60
    pieces = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]

    def analyse() -> None:
        analyzer = Tr101290Analyzer(Tr101290Settings(), lambda c: None)
        for k, piece in enumerate(pieces):
            analyzer.feed(piece, k * 0.001)

    analyse()  # loads the cached Numba code
    benchmark.group = "Tr101290Analyzer.feed"
    benchmark.pedantic(analyse, rounds=5, iterations=1)
    if not benchmark.disabled and benchmark.stats is not None:
        t = benchmark.stats.stats.median
        mb_s = len(stream) / t / 1e6
        benchmark.extra_info.update(mb_per_s=mb_s, us_per_call=t / len(pieces) * 1e6)
        report.add(
            SECTION,
            f"feed() in {chunk}-byte chunks: {mb_s:7.0f} MB/s"
            f" ({t / len(pieces) * 1e6:.1f} µs/call; a 6 Mbit/s feed costs"
            f" {0.75 / mb_s * 100:.2f} % of a core)",
        )
