"""The CEA-608 decoder and the caption presence logic, against FFmpeg's own caption decoder.

The clips carry cc_data written by ``tests.captionclips``; FFmpeg's ``cc_dec`` (reached
through PyAV, fed the same side data) is the oracle for the 608 text.
"""

from __future__ import annotations

import re
from pathlib import Path

import av
import pytest

from detectors.captions import CaptionDecoder, CaptionSettings, ServicePresence, parse_service
from tests.captionclips import (
    EDM,
    PAD,
    control,
    dtvcc_packet,
    paint_on,
    pop_on,
    roll_up,
    triplet_608,
    write_clip,
)


def feed(decoder: CaptionDecoder, pairs: list[tuple[int, int]], field: int = 1) -> None:
    for pair in pairs:
        decoder.update(triplet_608(field, pair))


def test_pop_on_caption_shows_at_end_of_caption_only() -> None:
    decoder = CaptionDecoder()
    pairs = pop_on("HELLO WORLD")
    feed(decoder, pairs[:-2])
    assert decoder.channels[0].text() == ""  # still in non-displayed memory
    feed(decoder, pairs[-2:])
    assert decoder.channels[0].text() == "HELLO WORLD"
    assert decoder.channels[0].last_line == "HELLO WORLD"
    feed(decoder, control(EDM))
    assert decoder.channels[0].text() == ""
    assert decoder.channels[0].last_line == "HELLO WORLD"  # the last caption stays known


def test_roll_up_scrolls_lines_and_keeps_two_rows() -> None:
    decoder = CaptionDecoder()
    for line in ("ONE", "TWO", "THREE"):
        feed(decoder, roll_up(line))
    assert decoder.channels[0].text() == "TWO\nTHREE"
    assert decoder.channels[0].last_line == "THREE"


def test_paint_on_writes_straight_to_the_screen() -> None:
    decoder = CaptionDecoder()
    feed(decoder, paint_on("PAINT"))
    assert decoder.channels[0].text() == "PAINT"


def test_specials_and_608_substitutions_decode() -> None:
    decoder = CaptionDecoder()
    # 0x11 0x37: music note; '*' (0x2A) is a-acute in 608; 0x12 0x20 replaces with A-acute.
    pairs = [*paint_on("A"), (0x11, 0x37), (0x11, 0x37), (0x2A, 0x41), (0x12, 0x20)]
    feed(decoder, pairs)
    assert decoder.channels[0].text() == "A♪áÁ"


def test_cc2_and_cc3_are_their_own_channels() -> None:
    decoder = CaptionDecoder()
    feed(decoder, pop_on("SECOND", channel=2))
    feed(decoder, pop_on("THIRD", channel=3), field=2)
    assert [c.last_line for c in decoder.channels] == ["", "SECOND", "THIRD", ""]


def test_bad_parity_pairs_are_counted_and_dropped() -> None:
    decoder = CaptionDecoder()
    feed(decoder, paint_on("OK"))
    frame = decoder.update(bytes((0xFC, 0x41, 0x41)))  # 'A' has even parity without bit 7
    assert decoder.parity_errors == 1 and frame.text_608 == 0
    assert decoder.channels[0].text() == "OK"


def test_damaged_cc_data_is_data_not_a_crash() -> None:
    decoder = CaptionDecoder()
    for junk in (b"\xfc", b"\xff\xff", bytes(range(256)), b"\xff\x3f" + b"\xfe\xff\xff" * 70):
        decoder.update(junk)
    assert decoder.malformed >= 1


def test_padding_is_data_without_text() -> None:
    frame = CaptionDecoder().update(triplet_608(1, PAD))
    assert frame.fields == 1 and frame.text_608 == 0


def test_708_service_blocks_are_told_apart() -> None:
    decoder = CaptionDecoder()
    frame = decoder.update(b"".join(dtvcc_packet(1, b"HI")))
    assert frame.fields == 4 and frame.services_708 == 1 << 1
    frame = decoder.update(b"".join(dtvcc_packet(0, b"")))
    assert frame.fields == 4 and frame.services_708 == 0


def test_service_names() -> None:
    assert parse_service("CC3") == (608, 3)
    assert parse_service("708:63") == (708, 63)
    for bad in ("cc5", "708:0", "708:64", "608"):
        with pytest.raises(ValueError):
            parse_service(bad)
    with pytest.raises(ValueError, match="twice"):
        CaptionSettings(services=("cc1", "CC1"))


def test_presence_tells_missing_from_empty() -> None:
    presence = ServicePresence(empty_gap_s=2.0)
    verdicts = {}
    for i in range(300):
        t = i / 30
        data = not 3.0 <= t < 5.0
        txt = data and t < 6.0
        verdicts[i] = presence.observe(t, data, txt, expected=True)
    assert verdicts[89].missing_since_s is None
    assert verdicts[90 + 15].missing_since_s == pytest.approx(3.0)
    assert all(v.empty_since_s is None for i, v in verdicts.items() if i < 180 + 59)
    assert verdicts[299].empty_since_s == pytest.approx(6.0)
    assert presence.observe(10.0, False, False, expected=False).missing_since_s is None


def _ffmpeg_lines(path: Path) -> list[str]:
    """Every caption FFmpeg's cc_dec shows for the clip's side data, in order."""
    decoder = av.CodecContext.create("cc_dec", "r")
    decoder.options = {"real_time": "1"}
    lines: list[str] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            data = frame.side_data.get("A53_CC")
            if data is None:
                continue
            packet = av.Packet(bytes(data))
            packet.pts, packet.time_base = frame.pts, frame.time_base
            for subtitle in decoder.decode(packet):
                # PyAV 18 yields the subtitles themselves, older ones a set of them.
                rects = subtitle if hasattr(subtitle, "__iter__") else [subtitle]
                for rect in rects:
                    ass = rect.ass.decode() if isinstance(rect.ass, bytes) else str(rect.ass)
                    shown = re.sub(r"\{[^}]*\}", "", ass.split(",", 8)[-1]).split("\\N")
                    lines.extend(line.strip() for line in shown if line.strip())
    return lines


def test_pop_on_text_matches_ffmpeg_cc_dec(tmp_path: Path) -> None:
    captions = ["HELLO WORLD", "CAPTIONS 2 U", "THE END"]
    pairs: list[tuple[int, int]] = []
    for caption in captions:
        pairs += pop_on(caption) + [PAD] * 20
    clip = write_clip(
        tmp_path / "popon.ts",
        len(pairs) / 30 + 0.5,
        lambda i, t: [triplet_608(1, pairs[i] if i < len(pairs) else PAD)],
    )
    ours: list[str] = []
    decoder = CaptionDecoder()
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            data = frame.side_data.get("A53_CC")
            decoder.update(bytes(data) if data is not None else b"")
            line = decoder.channels[0].last_line
            if line and (not ours or ours[-1] != line):
                ours.append(line)
    assert ours == captions
    assert _ffmpeg_lines(clip) == captions
