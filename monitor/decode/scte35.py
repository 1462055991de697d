"""SCTE-35 splice_info_sections (ANSI/SCTE 35) decoded by threefive, checked first.

threefive is a well-kept parser, but it is written for well-formed cues: on a damaged one it
prints to stderr and may raise anything. So a section is checked here before it is handed
over (table_id 0xFC, section_length against the bytes, the MPEG-2 CRC_32 of 9.6), and any
exception from the parser becomes a reason: bad input is data to report, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from detectors.ad_breaks import BREAK_ENDS, BREAK_STARTS, Direction, Splice
from monitor.ingest.tr101290 import crc32_mpeg2_ok

TABLE_ID = 0xFC
PTS_WRAP_TICKS = 1 << 33
COMMANDS = {
    0x00: "splice_null",
    0x04: "splice_schedule",
    0x05: "splice_insert",
    0x06: "time_signal",
    0x07: "bandwidth_reservation",
    0xFF: "private_command",
}
"""splice_command_type values (ANSI/SCTE 35 table 7)."""


@dataclass(frozen=True)
class BadSection:
    """A section that could not be decoded, and why."""

    reason: str


def _ticks(seconds: Any) -> int:
    return round(float(seconds) * 90000)


def decode_section(section: bytes) -> Splice | BadSection:
    """The cue in one splice_info_section, or why there is none."""
    if len(section) < 17 or section[0] != TABLE_ID:
        return BadSection("not a splice_info_section (table_id 0xFC)")
    length = 3 + (((section[1] & 0x0F) << 8) | section[2])
    if length > len(section):
        return BadSection(f"section_length {length} beyond the {len(section)} bytes received")
    section = section[:length]
    if not crc32_mpeg2_ok(section):
        return BadSection("CRC_32 mismatch")
    if section[4] & 0x80:
        return BadSection("encrypted_packet: not decoded")
    # The lengths inside must fit too: threefive reads past them into the CRC otherwise.
    command_length = ((section[11] & 0x0F) << 8) | section[12]
    if command_length != 0xFFF:  # 0xFFF: legacy "length not given" (ANSI/SCTE 35 9.6)
        loop_at = 14 + command_length
        if loop_at + 2 > length - 4:
            return BadSection(f"splice_command_length {command_length} beyond the section")
        loop_length = (section[loop_at] << 8) | section[loop_at + 1]
        if loop_at + 2 + loop_length > length - 4:
            return BadSection(f"descriptor_loop_length {loop_length} beyond the section")
    try:
        return _decode(section)
    except Exception as error:  # the parser's own failure on a section that passed the CRC
        return BadSection(f"undecodable: {type(error).__name__}: {error}")


def _decode(section: bytes) -> Splice | BadSection:
    import threefive  # only channels that read SCTE-35 pay for the import

    cue = threefive.Cue(section)
    info = cue.info_section
    command_type = info.splice_command_type
    command = COMMANDS.get(command_type, f"command_{command_type}")
    adjustment = _ticks(info.pts_adjustment or 0)
    cmd = cue.command
    if cmd is None:
        return BadSection(f"splice_command_type {command_type} not understood")

    def splice_time(pts_time: Any) -> int | None:
        if pts_time is None:
            return None
        return (_ticks(pts_time) + adjustment) % PTS_WRAP_TICKS

    if command == "splice_insert":
        immediate = bool(cmd.splice_immediate_flag)
        duration = cmd.break_duration if cmd.duration_flag else None
        return Splice(
            command,
            event_id=cmd.splice_event_id,
            direction="out" if cmd.out_of_network_indicator else "in",
            pts_ticks=None if immediate else splice_time(cmd.pts_time),
            duration_s=float(duration) if duration else None,
            auto_return=bool(cmd.break_auto_return) and duration is not None,
            cancel=bool(cmd.splice_event_cancel_indicator),
        )
    pts = splice_time(getattr(cmd, "pts_time", None)) if command == "time_signal" else None
    for descriptor in cue.descriptors:
        if getattr(descriptor, "tag", None) != 2:  # segmentation_descriptor (10.3.3)
            continue
        seg_type = descriptor.segmentation_type_id
        event = descriptor.segmentation_event_id
        event_id = int(event, 16) if isinstance(event, str) else event
        duration = descriptor.segmentation_duration
        direction: Direction | None = None
        if seg_type in BREAK_STARTS:
            direction = "out"
        elif seg_type in BREAK_ENDS:
            direction = "in"
        upid = descriptor.segmentation_upid
        return Splice(
            command,
            event_id=event_id,
            direction=direction,
            pts_ticks=pts,
            duration_s=float(duration) if duration else None,
            cancel=bool(descriptor.segmentation_event_cancel_indicator),
            segmentation_type=seg_type,
            upid=None if upid in (None, "") else str(upid),
        )
    return Splice(command, pts_ticks=pts)


def splice_seconds(splice: Splice, clock: tuple[int, float] | None, arrival_s: float) -> float:
    """Media time of the splice point: its PTS placed against a picture's (same program
    clock, so the difference holds whatever the timeline's origin), the arrival for an
    immediate splice or when no picture came yet."""
    if splice.pts_ticks is None or clock is None:
        return arrival_s
    ticks, seconds = clock
    delta = (splice.pts_ticks - ticks) % PTS_WRAP_TICKS
    if delta >= PTS_WRAP_TICKS // 2:
        delta -= PTS_WRAP_TICKS
    return seconds + delta / 90000


def cue_detail(splice: Splice, splice_s: float) -> dict[str, Any]:
    """The cue as an informational event's fields."""
    return {
        "command": splice.command,
        "splice_type": splice.direction,
        "event_id": splice.event_id,
        "pts": None if splice.pts_ticks is None else round(splice.pts_ticks / 90000, 6),
        "splice_time": round(splice_s, 3),
        "immediate": splice.pts_ticks is None,
        "duration": splice.duration_s,
        "auto_return": splice.auto_return,
        "cancel": splice.cancel,
        "segmentation_type": splice.segmentation_type,
        "upid": splice.upid,
    }
