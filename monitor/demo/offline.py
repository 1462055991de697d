"""`streamqc demo --offline`: make a clip with faults at known times, analyse it, compare.

Everything runs on this machine with nothing to set up: the clip is generated with PyAV and
analysed as `streamqc analyze` would, so a new user sees in seconds what streamqc reports and
how close to the truth it is (`streamqc demo` shows the daemon on live feeds instead).
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from monitor.alarms.engine import AlarmEvent
from monitor.config import default_channel
from monitor.demo.synth import MediaSpec, Span, make_ts
from monitor.pipeline.analyze import analyze


@dataclass(frozen=True)
class Injected:
    alarm: str | None  # the alarm it must raise; None: it must raise nothing
    span: Span
    what: str
    channels: tuple[int, ...] | None = None


FAULTS = (
    Injected("black", Span(4.0, 7.0), "black picture"),
    Injected("freeze", Span(10.0, 14.0), "frozen picture"),
    Injected("silence", Span(17.0, 20.0), "silence on both channels", (0, 1)),
    Injected("silence", Span(22.0, 25.0), "right channel muted", (1,)),
    Injected(None, Span(26.0, 29.0), "dark night scene (FFmpeg blackdetect calls it black)"),
)

SPEC = MediaSpec(
    duration_s=30.0,
    width=640,
    height=360,
    black=(FAULTS[0].span,),
    freeze=(FAULTS[1].span,),
    silence=(FAULTS[2].span,),
    mute_channel=((FAULTS[3].span, 1),),
    dark=(FAULTS[4].span,),
    crf=20,
)


def run_demo(keep: Path | None = None) -> int:
    """Returns 0 when every fault was found, and nothing else; 1 otherwise."""
    err = sys.stderr
    with tempfile.TemporaryDirectory(prefix="streamqc-demo-") as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        clip = make_ts(folder / "demo.ts", SPEC)
        print(f"streamqc demo: made {clip} (30 s, 640x360 H.264, stereo AAC) with:", file=err)
        for f in FAULTS:
            expect = f"expect {f.alarm}" if f.alarm else "expect no alarm"
            print(f"  {f.span.start_s:5.2f}-{f.span.end_s:5.2f} s  {f.what:<55} {expect}", file=err)
        print(f"streamqc demo: streamqc analyze {clip}", file=err)

        events: list[AlarmEvent] = []

        def emit(event: AlarmEvent) -> None:
            events.append(event)
            print(event.to_json(), flush=True)

        summary = analyze(str(clip), default_channel("demo"), emit)
    cleared = [e for e in events if e.state == "cleared"]
    print(
        f"streamqc demo: analysed {summary.media_s:.1f} s of media in {summary.wall_s:.2f} s "
        f"({summary.media_s / max(summary.wall_s, 1e-9):.0f}x real time); found:",
        file=err,
    )
    unmatched = list(cleared)
    ok = True
    for f in FAULTS:
        match = next((e for e in unmatched if overlaps(e, f)), None)
        if f.alarm is None:
            verdict = "no alarm: right" if match is None else f"WRONG: {match.alarm} raised"
            ok &= match is None
        elif match is None or match.alarm != f.alarm:
            verdict = "MISSED"
            ok = False
        else:
            unmatched.remove(match)
            assert match.end is not None
            off_ms = max(abs(match.start - f.span.start_s), abs(match.end - f.span.end_s)) * 1000
            channels = match.detail.get("channels")
            extra = f", channels {channels}" if channels is not None else ""
            span = f"{match.start:.3f}-{match.end:.3f} s"
            verdict = f"{match.alarm} {span}{extra} (edges within {off_ms:.0f} ms)"
        print(f"  {f.what:<55} {verdict}", file=err)
    for e in unmatched:
        ok = False
        print(f"  UNEXPECTED {e.alarm} {e.start:.3f}-{e.end} s", file=err)
    print(f"streamqc demo: {'every fault found, no false alarm' if ok else 'MISMATCH'}", file=err)
    if keep:
        print(f"streamqc demo: the clip stays in {clip}", file=err)
    return 0 if ok else 1


def overlaps(event: AlarmEvent, fault: Injected) -> bool:
    end = event.end if event.end is not None else event.start
    return event.start < fault.span.end_s and end > fault.span.start_s
