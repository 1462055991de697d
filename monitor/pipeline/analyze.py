"""One pass over a file or URL: ``streamqc analyze``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from monitor.alarms.engine import AlarmEvent, Emit
from monitor.checks.base import InfoEvent, Inform, ignore_info
from monitor.checks.registry import at_pictures
from monitor.config import ChannelConfig, InputConfig
from monitor.decode.media_source import AudioChunk, DecodeReport, MediaSource, StreamInfo
from monitor.errors import InputError
from monitor.pipeline.channel import ChannelPipeline


@dataclass
class AnalysisSummary:
    source: str
    streams: list[StreamInfo]
    media_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    pictures: int = 0
    events: list[AlarmEvent] = field(default_factory=list)
    info: list[InfoEvent] = field(default_factory=list)
    """Informational events (SCTE-35 cues)."""
    report: DecodeReport = field(default_factory=DecodeReport)
    stopped_at_duration: bool = False


def analyze(
    url: str,
    channel: ChannelConfig,
    emit: Emit,
    *,
    input_name: str = "primary",
    duration_s: float | None = None,
    threads: int = 1,
    source: InputConfig | None = None,
    inform: Inform = ignore_info,
) -> AnalysisSummary:
    """Run the channel's detectors over ``url`` until it ends (or ``duration_s`` of media).

    Every alarm event goes to ``emit`` as it happens, every informational event (an SCTE-35
    cue) to ``inform``; the summary collects them too.
    Raises InputError when the source cannot be used at all.
    """
    opts = source or InputConfig(url=url)
    # The checks this input's picture tier cannot run are off (those the channel wrote
    # itself were refused with the configuration).
    channel = at_pictures(channel, opts.pictures)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with MediaSource(
        url,
        open_timeout_s=opts.open_timeout_s,
        read_timeout_s=opts.read_timeout_s,
        threads=threads,
        pictures=opts.pictures,
        splice_sections=channel.scte35.rule.enabled,
        captions=channel.captions.rule.enabled,
        subtitles=channel.subtitles.rule.enabled,
    ) as media:
        summary = AnalysisSummary(media.name, media.stream_infos(), report=media.report)

        def emit_and_keep(event: AlarmEvent) -> None:
            summary.events.append(event)
            emit(event)

        def inform_and_keep(event: InfoEvent) -> None:
            summary.info.append(event)
            inform(event)

        pipeline = ChannelPipeline(
            channel,
            input_name,
            emit_and_keep,
            audio_streams=[s for s in summary.streams if s.kind == "audio"],
            inform=inform_and_keep,
            pictures=opts.pictures,
        )
        if media.video_stream is None:
            media.report.warnings.append("no video stream: picture checks are off")
        if not media.audio_streams:
            media.report.warnings.append("no audio stream: audio checks are off")
        audio_chunks = 0
        for item in media:
            if duration_s is not None and item.pts_s >= duration_s:
                summary.stopped_at_duration = True
                break
            if type(item) is AudioChunk:
                audio_chunks += 1
            pipeline.process(item)
        if pipeline.picture_count == 0 and audio_chunks == 0 and not summary.stopped_at_duration:
            r = media.report
            raise InputError(
                f"no decodable audio or video in {media.name}: nothing decoded "
                f"({damage(r) or 'no frame'})"
            )
        pipeline.finish()
        summary.pictures = pipeline.picture_count
        summary.media_s = pipeline.media_end_s
    summary.wall_s = time.perf_counter() - wall0
    summary.cpu_s = time.process_time() - cpu0
    return summary


def damage(report: DecodeReport) -> str:
    """The damage counts of a decode, for a one-line message ('' when there was none)."""
    counts = [
        (report.corrupt_packets, "corrupt packets"),
        (report.decode_errors, "undecodable packets"),
        (report.demux_errors, "demuxer errors skipped"),
    ]
    return ", ".join(f"{n} {what}" for n, what in counts if n)
