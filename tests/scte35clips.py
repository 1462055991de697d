"""MPEG-TS clips with SCTE-35 cues at known times, made at test time.

PyAV's MPEG-TS muxer has no SCTE-35 stream, so the cues are put in by hand: every PMT gets an
elementary stream of stream_type 0x86 (ANSI/SCTE 35 9.9.1) and the program its 'CUEI'
registration descriptor, and each cue (encoded by threefive) is one splice_info_section in
the packets of that PID, put right after the first video packet of its arrival time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import threefive

PACKET = 188
SCTE35_PID = 0x1F0
_POLY = 0x04C11DB7


def crc32_mpeg2(data: bytes) -> int:
    """The MPEG-2 CRC_32 (ISO/IEC 13818-1 Annex B) of ``data``."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ _POLY) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def splice_insert(
    event_id: int,
    pts_ticks: int | None,
    *,
    out: bool,
    duration_s: float | None = None,
    auto_return: bool = False,
    cancel: bool = False,
) -> bytes:
    """A splice_insert section (ANSI/SCTE 35 9.7.3); ``pts_ticks`` None: splice immediate."""
    cue = threefive.Cue()
    command = threefive.SpliceInsert()
    command.splice_event_id = event_id
    command.splice_event_cancel_indicator = cancel
    command.out_of_network_indicator = out
    command.program_splice_flag = True
    command.duration_flag = duration_s is not None
    command.break_duration = duration_s
    command.break_auto_return = auto_return
    command.splice_immediate_flag = pts_ticks is None
    command.time_specified_flag = pts_ticks is not None
    command.pts_time = None if pts_ticks is None else pts_ticks / 90000
    command.event_id_compliance_flag = True
    command.unique_program_id = 1
    command.avail_num = 0
    command.avails_expected = 0
    cue.command = command
    cue.encode()
    return bytes(cue.bytes())


def time_signal(seg_type: int, pts_ticks: int, duration_s: float | None) -> bytes:
    """A time_signal with one segmentation_descriptor (ANSI/SCTE 35 9.7.4, 10.3.3), event
    0x63, UPID type 0x09 (ADI) 'SIGNAL01'."""
    cue = threefive.Cue()
    command = threefive.TimeSignal()
    command.time_specified_flag = True
    command.pts_time = pts_ticks / 90000
    cue.command = command
    descriptor = threefive.SegmentationDescriptor()
    descriptor.segmentation_event_id = "0x00000063"
    descriptor.segmentation_event_cancel_indicator = False
    descriptor.segmentation_event_id_compliance_indicator = True
    descriptor.program_segmentation_flag = True
    descriptor.segmentation_duration_flag = duration_s is not None
    descriptor.delivery_not_restricted_flag = True
    descriptor.segmentation_duration = duration_s
    descriptor.segmentation_upid_type = 0x09
    descriptor.segmentation_upid_length = 8
    descriptor.segmentation_upid = "SIGNAL01"
    descriptor.segmentation_type_id = seg_type
    descriptor.segment_num = 0
    descriptor.segments_expected = 0
    cue.descriptors = [descriptor]
    cue.encode()
    return bytes(cue.bytes())


@dataclass(frozen=True)
class Placed:
    """A section put into the clip's SCTE-35 PID when the video reaches ``arrival_s``."""

    arrival_s: float
    section: bytes


def section_of(packet: bytes) -> tuple[int, bytes] | None:
    """(offset, section) of the PSI section starting in ``packet`` (None without PUSI)."""
    if not packet[1] & 0x40:
        return None
    at = 4
    if packet[3] & 0x20:
        at += 1 + packet[4]
    at += 1 + packet[at]
    length = ((packet[at + 1] & 0x0F) << 8) | packet[at + 2]
    return at, packet[at : at + 3 + length]


def _with_cue_stream(packet: bytes) -> bytes:
    """The PMT packet with the SCTE-35 stream and the CUEI registration added."""
    found = section_of(packet)
    assert found is not None
    _, section = found
    info_len = ((section[10] & 0x0F) << 8) | section[11]
    program_info = section[12 : 12 + info_len] + b"\x05\x04CUEI"
    streams = section[12 + info_len : -4]
    streams += bytes((0x86, 0xE0 | SCTE35_PID >> 8, SCTE35_PID & 0xFF, 0xF0, 0x00))
    body = section[3:10] + bytes((0xF0 | len(program_info) >> 8, len(program_info) & 0xFF))
    body += program_info + streams
    length = len(body) + 4
    head = bytes((section[0], 0xB0 | length >> 8, length & 0xFF))
    new = head + body
    new += crc32_mpeg2(new).to_bytes(4, "big")
    payload = b"\x00" + new
    return (packet[:4] + payload).ljust(PACKET, b"\xff")


def _packets(section: bytes, counter: list[int]) -> list[bytes]:
    payload = b"\x00" + section
    out = []
    first = True
    while payload:
        chunk, payload = payload[:184], payload[184:]
        head = bytes(
            (
                0x47,
                (0x40 if first else 0) | SCTE35_PID >> 8,
                SCTE35_PID & 0xFF,
                0x10 | counter[0],
            )
        )
        counter[0] = (counter[0] + 1) % 16
        out.append((head + chunk).ljust(PACKET, b"\xff"))
        first = False
    return out


def video_origin_ticks(path: Path) -> int:
    """The clip's first video PTS (90 kHz): media time 0 of ``MediaSource``."""
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            if packet.pts is not None:
                return int(packet.pts)
    raise ValueError(f"{path}: no video")


def _pes_pts(p: bytes) -> int:
    """A PES header's 33-bit PTS from its 5 bytes (ISO/IEC 13818-1 2.4.3.7)."""
    return ((p[0] >> 1) & 7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1


def add_cues(path: Path, cues: Sequence[Placed], pmt_pid: int = 0x1000) -> Path:
    """Rewrite the MPEG-TS ``path`` in place with ``cues`` on a new SCTE-35 PID."""
    data = path.read_bytes()
    origin = video_origin_ticks(path)
    pending = sorted(cues, key=lambda placed: placed.arrival_s)
    counter = [0]
    out = bytearray()
    for i in range(0, len(data) - PACKET + 1, PACKET):
        packet = data[i : i + PACKET]
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        if pid == pmt_pid:
            packet = _with_cue_stream(packet)
        out += packet
        if pending and pid != pmt_pid and packet[1] & 0x40 and packet[3] & 0x10:
            at = 4 + (1 + packet[4] if packet[3] & 0x20 else 0)
            pes = packet[at:]
            if pes[:3] == b"\x00\x00\x01" and pes[7] & 0x80:
                pts = _pes_pts(pes[9:14])
                while pending and (pts - origin) / 90000 >= pending[0].arrival_s:
                    for cue_packet in _packets(pending.pop(0).section, counter):
                        out += cue_packet
    path.write_bytes(bytes(out))
    return path
