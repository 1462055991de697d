"""FFmpeg's own detectors as a test oracle, run in-process through PyAV's libavfilter.

Each function decodes the first video (or audio) stream of a file, pushes every
frame through ``buffer -> <detector> -> buffersink`` (``abuffer``/``abuffersink``
for audio) and collects the per-frame metadata the detector attaches.  PyAV 18
exposes that metadata as the plain ``dict[str, str]`` :attr:`av.Frame.metadata`
of the frames pulled from the sink.

All intervals are ``(start_s, end_s)`` in seconds relative to
``container.start_time`` (the media timeline of :mod:`monitor.demo.synth`): frames are
re-stamped as ``pts - start_time`` before entering the graph, so the detector's
own timestamps are already relative.  Intervals shorter than ``d`` are dropped.

Spans still open at end of file are closed at the *end* of the last frame
(its pts + duration).  FFmpeg's own log does the same for ``silencedetect``, but
``blackdetect`` logs the last frame's *start* and ``freezedetect`` logs no end at
all; none of them can attach metadata after the last frame.

Checked against FFmpeg's log output (``av.logging.Capture``): identical times.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

__all__ = ["ffmpeg_black", "ffmpeg_freeze", "ffmpeg_silence"]

Interval = tuple[float, float]


def _offset(container: av.container.InputContainer, time_base: Fraction) -> int:
    """``container.start_time`` expressed in ``time_base`` ticks."""
    start = container.start_time or 0
    return round(Fraction(start, av.time_base) / time_base)


def _run(
    path: str | Path, kind: str, filter_name: str, args: str
) -> Iterator[tuple[float, dict[str, str], float]]:
    """Yield ``(t_s, metadata, frame_end_s)`` for every frame leaving the filter."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base
        graph = av.filter.Graph()
        if kind == "video":
            src = graph.add_buffer(template=stream, time_base=tb)
            sink = graph.add("buffersink")
        else:
            src = graph.add_abuffer(template=stream, time_base=tb)
            sink = graph.add("abuffersink")
        graph.link_nodes(src, graph.add(filter_name, args), sink).configure()
        off = _offset(container, tb)
        durations: dict[int, int] = {}

        def drain() -> Iterator[tuple[float, dict[str, str], float]]:
            while True:
                try:
                    out = graph.pull()
                except (BlockingIOError, av.error.EOFError):
                    return
                t = float(out.pts * tb)
                dur = durations.get(out.pts, 0)
                yield t, out.metadata, float((out.pts + dur) * tb)

        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            frame.pts -= off
            if kind == "video":
                dur = frame.duration or round(1 / (stream.average_rate or 25) / tb)
            else:
                dur = round(Fraction(frame.samples, frame.sample_rate) / tb)
            durations[frame.pts] = dur
            graph.push(frame)
            yield from drain()
        graph.push(None)
        yield from drain()


def _pairs(events: list[tuple[str, float]], last_end: float | None, d: float) -> list[Interval]:
    """Turn ordered ("start"/"end", t) events into intervals of at least ``d`` seconds."""
    spans: list[Interval] = []
    start: float | None = None
    for what, t in events:
        if what == "start" and start is None:
            start = t
        elif what == "end" and start is not None:
            spans.append((start, t))
            start = None
    if start is not None and last_end is not None:
        spans.append((start, last_end))
    return [(a, b) for a, b in spans if b - a >= d - 1e-9]


def ffmpeg_black(
    path: str | Path, *, d: float = 2.0, pic_th: float = 0.98, pix_th: float = 0.10
) -> list[Interval]:
    """Black intervals per FFmpeg ``blackdetect``.

    A pixel is black if luma <= 16 + pix_th * (235 - 16) (37 at the defaults, limited
    range); a frame is black if the black-pixel ratio >= ``pic_th``.
    ``lavfi.black_start`` is set on the first black frame and ``lavfi.black_end`` on
    the first non-black one (both regardless of ``d``); intervals shorter than ``d``
    are dropped here, as FFmpeg drops them from its log.
    """
    events: list[tuple[str, float]] = []
    last_end = None
    for t, meta, end in _run(
        path, "video", "blackdetect", f"d={d}:pic_th={pic_th}:pix_th={pix_th}"
    ):
        if "lavfi.black_start" in meta:
            events.append(("start", t))
        if "lavfi.black_end" in meta:
            events.append(("end", t))
        last_end = end
    return _pairs(events, last_end, d)


def ffmpeg_freeze(path: str | Path, *, n: float = 0.001, d: float = 2.0) -> list[Interval]:
    """Frozen intervals per FFmpeg ``freezedetect``.

    A frame is "frozen" if its mean absolute difference to a reference frame (the
    first frame of the candidate freeze), over all planes and normalised by
    2**bitdepth, is <= ``n``.  ``lavfi.freezedetect.freeze_start`` is attached to the
    frame where the freeze has lasted ``d`` seconds, but its *value* is the pts of
    the reference frame, so that value (snapped to the nearest decoded frame) is
    used as the start.  ``freeze_end`` is the pts of the first non-frozen frame.
    Note that black (or any other static) pictures count as frozen too.
    """
    events: list[tuple[str, float]] = []
    times: list[float] = []
    last_end = None
    for t, meta, end in _run(path, "video", "freezedetect", f"n={n}:d={d}"):
        times.append(t)
        if "lavfi.freezedetect.freeze_start" in meta:
            value = float(meta["lavfi.freezedetect.freeze_start"])
            events.append(("start", min(times, key=lambda x: abs(x - value))))
        if "lavfi.freezedetect.freeze_end" in meta:
            events.append(("end", t))
        last_end = end
    return _pairs(events, last_end, d)


def ffmpeg_silence(
    path: str | Path, *, n_db: float = -60.0, d: float = 2.0, mono: bool = False
) -> list[Interval] | list[tuple[int, float, float]]:
    """Silent intervals per FFmpeg ``silencedetect``.

    A sample is silent if ``|x| < 10 ** (n_db / 20)``; a silence needs ``d`` seconds
    of consecutive silent samples.  With ``mono=False`` (FFmpeg's default) a sample
    instant is silent only if *all* channels are, and the result is a list of
    ``(start_s, end_s)``.  With ``mono=True`` every channel is checked separately
    and the result is a list of ``(channel, start_s, end_s)`` with a 0-based channel
    (FFmpeg's metadata keys carry a 1-based ``.N`` suffix, e.g.
    ``lavfi.silence_start.2`` is channel 1), sorted by channel then start.
    Times come from the metadata values (FFmpeg prints them with ``%.6g``, i.e.
    0.1 ms resolution below 100 s), which are sample-accurate: ``silence_start`` is
    the first silent sample, ``silence_end`` the first non-silent one.
    """
    args = f"n={n_db}dB:d={d}:mono={int(mono)}"
    events: dict[int, list[tuple[str, float]]] = {}
    last_end = None
    for _t, meta, end in _run(path, "audio", "silencedetect", args):
        for key, value in meta.items():
            if not key.startswith(("lavfi.silence_start", "lavfi.silence_end")):
                continue
            base, _, suffix = key.partition(".silence_")[2].partition(".")
            channel = int(suffix) - 1 if suffix else 0
            what = "start" if base == "start" else "end"
            events.setdefault(channel, []).append((what, float(value)))
        last_end = end
    per_channel = {
        ch: _pairs(sorted(ev, key=lambda e: (e[1], e[0] == "start")), last_end, d)
        for ch, ev in events.items()
    }
    if not mono:
        return per_channel.get(0, [])
    return [(ch, a, b) for ch in sorted(per_channel) for a, b in per_channel[ch]]
