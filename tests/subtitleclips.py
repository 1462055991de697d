"""MPEG-TS clips with DVB subtitle and teletext PIDs that stop at known times.

No muxer of PyAV's writes these streams, so they are put in by hand: every PMT gets one
elementary stream per language (stream_type 0x06, private PES) with its teletext descriptor
(0x56, EN 300 468 6.2.43) or subtitling descriptor (0x59, 6.2.41), and PES packets
(stream_id 0xBD) follow the video's: teletext with every picture (EN 300 472: data_identifier
0x10, stuffing data units, the PES header padded to 0x24 bytes), DVB subtitles at their own
interval (EN 300 743: data_identifier 0x20, the end-of-data marker only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.scte35clips import PACKET, crc32_mpeg2, section_of, video_origin_ticks


@dataclass(frozen=True)
class SubtitlePid:
    pid: int
    language: str
    teletext: bool
    """Teletext (a PES with every picture) or DVB bitmap subtitles (every ``interval_s``)."""
    sends: Callable[[float], bool]
    """Media time → whether the PID carries its packet then."""
    interval_s: float = 0.2

    def descriptor(self) -> bytes:
        if self.teletext:  # type 2: teletext subtitle page, magazine 8 page 0x88
            return b"\x56\x05" + self.language.encode() + bytes(((2 << 3) | 0, 0x88))
        # subtitling_type 0x10 (normal, no aspect ratio), composition page 1, ancillary 1
        return b"\x59\x08" + self.language.encode() + b"\x10\x00\x01\x00\x01"


def _pts(pts: int) -> bytes:
    return bytes(
        (
            0x21 | ((pts >> 29) & 0x0E),
            (pts >> 22) & 0xFF,
            0x01 | ((pts >> 14) & 0xFE),
            (pts >> 7) & 0xFF,
            0x01 | ((pts << 1) & 0xFE),
        )
    )


def _pes_packet(pid: int, counter: int, pts: int, teletext: bool) -> bytes:
    if teletext:
        payload = b"\x10" + (b"\xff\x2c" + b"\xff" * 44) * 3
        header = b"\x80\x80\x24" + _pts(pts) + b"\xff" * 31
    else:
        payload = b"\x20\x00\xff"
        header = b"\x80\x80\x05" + _pts(pts)
    pes = b"\x00\x00\x01\xbd" + (len(header) + len(payload)).to_bytes(2, "big") + header + payload
    head = bytes((0x47, 0x40 | pid >> 8, pid & 0xFF))
    if len(pes) == 184:
        return head + bytes((0x10 | counter,)) + pes
    stuffing = 183 - len(pes)  # adaptation field: its length byte, flags, then 0xFF
    adaptation = bytes((stuffing, 0x00)) + b"\xff" * (stuffing - 1) if stuffing else b"\x00"
    return head + bytes((0x30 | counter,)) + adaptation + pes


def _with_streams(packet: bytes, pids: Sequence[SubtitlePid]) -> bytes:
    found = section_of(packet)
    assert found is not None
    _, section = found
    info_len = ((section[10] & 0x0F) << 8) | section[11]
    body = section[3 : 12 + info_len] + section[12 + info_len : -4]
    for entry in pids:
        descriptor = entry.descriptor()
        body += bytes((0x06, 0xE0 | entry.pid >> 8, entry.pid & 0xFF, 0xF0, len(descriptor)))
        body += descriptor
    length = len(body) + 4
    new = bytes((section[0], 0xB0 | length >> 8, length & 0xFF)) + body
    new += crc32_mpeg2(new).to_bytes(4, "big")
    return (packet[:4] + b"\x00" + new).ljust(PACKET, b"\xff")


def add_subtitles(path: Path, pids: Sequence[SubtitlePid], pmt_pid: int = 0x1000) -> Path:
    """Rewrite the MPEG-TS ``path`` in place with the subtitle PIDs."""
    data = path.read_bytes()
    origin = video_origin_ticks(path)
    counters = {entry.pid: 0 for entry in pids}
    due = {entry.pid: 0.0 for entry in pids}
    out = bytearray()
    for i in range(0, len(data) - PACKET + 1, PACKET):
        packet = data[i : i + PACKET]
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        if pid == pmt_pid:
            packet = _with_streams(packet, pids)
        out += packet
        if pid == pmt_pid or not packet[1] & 0x40 or not packet[3] & 0x10:
            continue
        at = 4 + (1 + packet[4] if packet[3] & 0x20 else 0)
        pes = packet[at:]
        if pes[:3] != b"\x00\x00\x01" or not pes[7] & 0x80 or pes[3] == 0xBD:
            continue
        p = pes[9:14]
        pts = ((p[0] >> 1) & 7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1
        t_s = (pts - origin) / 90000
        for entry in pids:
            if (entry.teletext or t_s >= due[entry.pid]) and entry.sends(t_s):
                out += _pes_packet(entry.pid, counters[entry.pid], pts, entry.teletext)
                counters[entry.pid] = (counters[entry.pid] + 1) % 16
                due[entry.pid] = t_s + entry.interval_s
    path.write_bytes(bytes(out))
    return path
