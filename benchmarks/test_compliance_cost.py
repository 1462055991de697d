"""What the captions and SCTE-35 checks cost against decoding the same pictures (1080p25).

The benchmark clip's H.264 is remuxed with an A/53 cc_data SEI in every access unit (a CC1
roll-up pair, a field 2 pair and a 708 service block: 2 + 3 triplets, as a caption inserter
sends them) and a SCTE-35 PID with a cue every 2 s. Each pass decodes it (video only, one
decoder thread) and measures, in thread CPU time: the decode (demux + ``packet.decode``),
taking the caption side data off each frame (what ``MediaSource`` adds per picture), the
captions check (608/708 decoding, presence per service, trackers; it judges its pictures in
batches of 0.2 s, so a batch's work falls on the picture that completes it) with the
ad-break check's break state on the same picture (one timed region: a timer call costs
~0.5 µs here), and the sections (threefive, cue events). Goal: captions and SCTE-35
together under 1 % of the decode. Taken in place, right after each decode, caches cold for
our code (the same Python measured on its own, warm, costs several times less). Medians
over passes.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from pathlib import Path

import av

from benchmarks.clips import broadcast_clip, clip_path
from detectors.ad_breaks import AdBreakSettings, BreakState
from detectors.captions import CaptionSettings
from monitor.alarms.engine import AlarmRule, Subject, Trackers
from monitor.checks.ad_breaks import AdBreaksCheck
from monitor.checks.base import CheckContext
from monitor.checks.captions import CaptionsCheck
from monitor.config import ChannelConfig, DetectorConfig
from monitor.decode.media_source import A53_CC, Picture, SpliceSection, luma_view
from tests.captionclips import cc_sei, dtvcc_packet, roll_up, triplet_608, with_sei
from tests.scte35clips import Placed, add_cues, splice_insert, video_origin_ticks

CLIP_S = 12.0
QUICK_CLIP_S = 1.0
PASSES = 3
SECTION = "Captions and SCTE-35: cost vs decode of the same pictures"
clock = time.thread_time
CAPTIONS = "cc_data off the frame (MediaSource)"
CHECKS = "captions check + break state, per picture"
SECTIONS = "SCTE-35 sections (threefive, cue events)"
PAIRS = [pair for n in range(500) for pair in roll_up(f"THE QUICK BROWN FOX {n}")]


def captioned(source: Path, folder: Path, duration_s: float) -> Path:
    """``source``'s video with cc_data in every access unit and a cue every 2 s."""
    path = folder / f"captioned-{source.name}"
    with av.open(str(source)) as src, av.open(str(path), "w", format="mpegts") as out:
        video = src.streams.video[0]
        stream = out.add_stream_from_template(video)
        for i, packet in enumerate(src.demux(video)):
            if packet.dts is None:
                continue
            triplets = [triplet_608(1, PAIRS[i % len(PAIRS)]), triplet_608(2, (0, 0))]
            triplets += dtvcc_packet(1, b"QUICK", i)
            rewritten = av.Packet(with_sei(bytes(packet), cc_sei(triplets)))
            rewritten.pts, rewritten.dts = packet.pts, packet.dts
            rewritten.time_base = packet.time_base
            rewritten.is_keyframe = packet.is_keyframe
            rewritten.stream = stream
            out.mux(rewritten)
    origin = video_origin_ticks(path)
    cues = [
        Placed(t, splice_insert(n, origin + round((t + 1) * 90000), out=n % 2 == 0, duration_s=2.0))
        for n, t in enumerate(x * 2.0 for x in range(max(int(duration_s / 2), 1)))
    ]
    return add_cues(path, cues)


def checks() -> tuple[CaptionsCheck, AdBreaksCheck]:
    channel = ChannelConfig(
        name="news",
        captions=DetectorConfig(
            AlarmRule(raise_after_s=30.0), CaptionSettings(services=("cc1", "708:1"))
        ),
        scte35=DetectorConfig(AlarmRule(raise_after_s=0.0), AdBreakSettings(max_interval_s=3600.0)),
    )
    trackers = Trackers(Subject("news", "primary"), lambda event: None)
    breaks = BreakState()
    context = CheckContext(channel, trackers.subject, trackers, breaks=breaks)
    return CaptionsCheck(context), AdBreaksCheck(context, breaks)


def one_pass(path: Path) -> tuple[dict[str, float], int, int]:
    captions, ad_breaks = checks()
    seconds: defaultdict[str, float] = defaultdict(float)
    pictures = sections = 0
    clock_ref: tuple[int, float] | None = None
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        video.codec_context.thread_type = "NONE"
        data = [s for s in container.streams.data if s.name == "scte_35"]
        base = float(video.time_base or 0)
        t0 = clock()
        for packet in container.demux(video, *data):
            if packet.stream.type == "data":
                t1 = clock()
                if packet.size:
                    at = clock_ref[1] if clock_ref else 0.0
                    ad_breaks.splice(SpliceSection(bytes(packet), at, clock_ref))
                    sections += 1
                seconds[SECTIONS] += clock() - t1
                t0 = clock()
                continue
            frames = packet.decode()
            seconds["decode"] += clock() - t0
            for frame in frames:
                t1 = clock()
                side = frame.side_data.get(A53_CC)
                cc = bytes(side) if side is not None else b""
                seconds[CAPTIONS] += clock() - t1
                t_s = float(frame.pts) * base
                clock_ref = (frame.pts, t_s)
                picture = Picture(luma_view(frame), t_s, 0.04, 8, False, False, frame, 0.0, cc)
                t1 = clock()
                captions.picture(picture)
                ad_breaks.picture(picture)
                seconds[CHECKS] += clock() - t1
                pictures += 1
            t0 = clock()
    captions.finish(pictures / 25)
    assert captions.decoder.channels[0].captions > 0 and captions.on_air
    return dict(seconds), pictures, sections


def test_captions_and_scte35_cost_against_decode(benchmark, report, tmp_path) -> None:
    spec = broadcast_clip(1080, QUICK_CLIP_S if benchmark.disabled else CLIP_S)
    path = captioned(clip_path(spec), tmp_path, spec.duration_s)
    runs: list[tuple[dict[str, float], int, int]] = []
    benchmark.group = "captions and SCTE-35: wall time of one decode pass"
    benchmark.pedantic(
        lambda: runs.append(one_pass(path)),
        rounds=1 if benchmark.disabled else PASSES,
        iterations=1,
        warmup_rounds=0,
    )
    seconds, pictures, sections = runs[-1]
    assert pictures >= spec.duration_s * 25 - 2 and sections >= 1
    if benchmark.disabled:
        return
    media_s = spec.duration_s
    decode_ms = statistics.median(r["decode"] for r, _, _ in runs) / media_s * 1e3
    labels = [label for label in seconds if label != "decode"]
    share = {
        label: statistics.median(r[label] / r["decode"] for r, _, _ in runs) for label in labels
    }
    total = statistics.median(sum(r[label] for label in labels) / r["decode"] for r, _, _ in runs)
    benchmark.extra_info.update(
        decode_ms_per_media_s=decode_ms, share_of_decode=share, total_share=total
    )
    report.add(
        SECTION,
        f"{spec.width}x{spec.height}p{spec.fps}, {media_s:g} s, {pictures} pictures,"
        f" {sections} SCTE-35 sections, medians of {len(runs)} passes:",
        f"  decode (demux + decode, 1 thread)   {decode_ms:7.1f} ms/s",
        *(
            f"  {label:44s} {share[label] * decode_ms:7.3f} ms/s = {share[label] * 100:6.3f} %"
            " of decode"
            for label in labels
        ),
        f"  {'captions + SCTE-35 together':44s} {total * decode_ms:7.3f} ms/s ="
        f" {total * 100:6.3f} % of decode (goal < 1 %)",
    )
