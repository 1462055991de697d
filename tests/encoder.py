"""A real encoder for the agent's tests: MPEG-TS from one UDP port, re-muxed to another.

    python -m tests.encoder --input udp://127.0.0.1:A --output udp://127.0.0.1:C

It reads with PyAV (FFmpeg's UDP protocol and MPEG-TS demuxer) and re-muxes every audio and
video packet, timestamps kept continuous across a looping source, into a new MPEG-TS (its own
PAT/PMT/PCR) sent in 1316-byte datagrams: what ``ffmpeg -i udp://... -c copy -f mpegts`` does.
The output is paced by the input, which a real-time sender paces on its PCRs. An input that
sends nothing for ``--timeout`` seconds, at start or later, ends it with one line on stderr and
exit status 1 (as FFmpeg with ``-timeout``). ``--started-log FILE`` appends ``PID INPUT`` at
start, so a test can count the encoder's starts.
"""

from __future__ import annotations

import argparse
import os
import sys

import av


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.encoder")
    parser.add_argument("--input", required=True, help="udp://HOST:PORT to listen on")
    parser.add_argument("--output", required=True, help="udp://HOST:PORT to send to")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds without input")
    parser.add_argument("--started-log", help="append 'PID INPUT' to this file at start")
    args = parser.parse_args(argv)
    if args.started_log:
        with open(args.started_log, "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {args.input}\n")
    timeout_us = str(int(args.timeout * 1e6))
    try:
        source = av.open(
            args.input,
            format="mpegts",
            options={"timeout": timeout_us, "overrun_nonfatal": "1", "fifo_size": "100000"},
            timeout=args.timeout,
        )
    except av.ExitError:  # PyAV's own timeout interrupted FFmpeg
        print(f"encoder: no input from {args.input} in {args.timeout:g} s", file=sys.stderr)
        return 1
    except (av.FFmpegError, OSError) as error:
        print(f"encoder: cannot read {args.input}: {error}", file=sys.stderr)
        return 1
    streams = [s for s in source.streams if s.type in ("video", "audio")]
    if not streams:
        print(f"encoder: {args.input} has no audio or video", file=sys.stderr)
        return 1
    sink = av.open(f"{args.output}?pkt_size=1316", "w", format="mpegts")
    outputs = {s.index: sink.add_stream_from_template(s) for s in streams}
    shift = {index: 0 for index in outputs}  # per stream: added to keep timestamps increasing
    last = {index: -(2**62) for index in outputs}
    try:
        for packet in source.demux(streams):
            if packet.dts is None or packet.pts is None:
                continue
            index = packet.stream.index
            dts = packet.dts + shift[index]
            if dts <= last[index]:  # the source looped (or jumped back): continue from here
                step = last[index] + max(packet.duration or 1, 1) - dts
                shift[index] += step
                dts += step
            packet.pts += shift[index]
            packet.dts = dts
            last[index] = dts
            packet.stream = outputs[index]
            sink.mux(packet)
    except (av.FFmpegError, OSError) as error:
        print(f"encoder: input {args.input} stopped: {error}", file=sys.stderr)
        return 1
    finally:
        sink.close()
        source.close()
    print(f"encoder: input {args.input} ended", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
