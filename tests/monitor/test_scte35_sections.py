"""Decoding SCTE-35 sections: threefive behind the checks that keep bad input data."""

from __future__ import annotations

from detectors.ad_breaks import BreakState, Splice
from monitor.decode.scte35 import BadSection, decode_section, splice_seconds
from tests.scte35clips import crc32_mpeg2, splice_insert, time_signal


def test_splice_insert_decodes_with_its_fields() -> None:
    splice = decode_section(splice_insert(42, 900000, out=True, duration_s=30.0))
    assert splice == Splice(
        "splice_insert", event_id=42, direction="out", pts_ticks=900000, duration_s=30.0
    )


def test_time_signal_break_start_carries_segmentation_type_and_upid() -> None:
    splice = decode_section(time_signal(0x34, 180000, 60.0))
    assert isinstance(splice, Splice)
    assert (splice.command, splice.direction, splice.segmentation_type) == (
        "time_signal", "out", 0x34,
    )  # fmt: skip
    assert (splice.event_id, splice.pts_ticks, splice.duration_s) == (0x63, 180000, 60.0)
    assert splice.upid is not None and "SIGNAL01" in splice.upid
    end = decode_section(time_signal(0x35, 180000 + 60 * 90000, None))
    assert isinstance(end, Splice) and end.direction == "in"


def test_damaged_sections_are_reasons_never_exceptions() -> None:
    good = splice_insert(1, 0, out=True)
    flipped = bytearray(good)
    flipped[-1] ^= 1
    cut = good[:20]
    resealed = cut[:1] + bytes((0x30, len(cut) + 1)) + cut[3:]
    resealed += crc32_mpeg2(resealed).to_bytes(4, "big")
    for junk in (b"", b"\xfc", bytes(200), bytes(flipped), cut, resealed, b"\xfc" + bytes(30)):
        assert isinstance(decode_section(junk), BadSection), junk.hex()


def test_splice_times_land_on_the_picture_timeline_across_a_pts_wrap() -> None:
    wrap = 1 << 33
    clock = (wrap - 90000, 100.0)  # a picture one second before the PTS wraps
    late = Splice("splice_insert", pts_ticks=2 * 90000, direction="out")
    assert splice_seconds(late, clock, 99.0) == 103.0
    assert splice_seconds(Splice("splice_insert", direction="out"), clock, 99.5) == 99.5


def test_break_state_cancel_and_replace() -> None:
    state = BreakState()
    state.cue(Splice("splice_insert", event_id=1, direction="out", duration_s=10.0), 5.0, 1.0)
    state.cue(Splice("splice_insert", event_id=1, cancel=True), 0.0, 2.0)
    assert state.advance(6.0) == [] and not state.in_break
    state.cue(Splice("splice_insert", event_id=2, direction="out", duration_s=4.0), 7.0, 6.5)
    state.cue(Splice("splice_insert", event_id=3, direction="out"), 8.0, 7.5)
    reasons = [(c.at_s, c.in_break, c.reason) for c in state.advance(9.0)]
    assert reasons == [(7.0, True, "cue_out"), (8.0, False, "replaced"), (8.0, True, "cue_out")]
    assert state.ends_at_s is None and state.overrun_since_s(100.0, 5.0) is None
    assert state.near_splice(8.5, 1.0) and not state.near_splice(9.5, 1.0)
