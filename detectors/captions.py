"""Closed captions carried in the video: ATSC A/53 Part 4 ``cc_data`` → CEA-608 and CTA-708.

FFmpeg's H.264, HEVC and MPEG-2 decoders hand the ``cc_data()`` triplets of each picture over
as frame side data (``AV_FRAME_DATA_A53_CC``): 3 bytes each, ``marker:5 | cc_valid:1 |
cc_type:2`` then two data bytes (ATSC A/53 Part 4 6.2.3, CTA-708-E 4.4). ``cc_type`` 0 and 1
are the two CEA-608 fields (CC1/CC2 on field 1, CC3/CC4 on field 2), 2 and 3 the DTVCC
(CTA-708) packet bytes.

The CEA-608 decoding here is written by hand (no maintained Python library decodes 608): odd
parity, control codes sent twice, preamble address codes, the three caption styles (pop-on
into non-displayed memory swapped by EOC, roll-up on a base row, paint-on straight to the
screen), the basic character set with its 608 substitutions, the special characters and the
extended Western European set (CEA-608-E 6.4, Annex A and B). It keeps what a monitor needs:
the text on screen and the last caption line, not positions or styles. XDS (field 2 packets,
CEA-608-E 9) is skipped.

For CTA-708 only the presence of data per service is decoded: DTVCC packets are assembled
from their start (cc_type 3) and continuation (cc_type 2) triplets and their service blocks
(CTA-708-E 6.2) tell which services carry something.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

CaptionExpect = Literal["always", "schedule"]

SERVICE_608 = ("cc1", "cc2", "cc3", "cc4")
_SERVICE_708 = re.compile(r"708:([1-9]|[1-5][0-9]|6[0-3])")
COLUMNS = 32
"""Characters per caption row (CEA-608-E 5)."""
ROWS = 15


def parse_service(name: str) -> tuple[int, int]:
    """``'cc1'`` → (608, 1); ``'708:1'`` → (708, 1). ValueError on anything else."""
    lowered = name.lower()
    if lowered in SERVICE_608:
        return 608, SERVICE_608.index(lowered) + 1
    match = _SERVICE_708.fullmatch(lowered)
    if match:
        return 708, int(match[1])
    raise ValueError(f"services: {name!r} is not a caption service (cc1-cc4 or 708:1-708:63)")


@dataclass(frozen=True)
class CaptionSettings:
    """Which caption services a channel must carry, and when (CEA-608 CC1-CC4, CTA-708
    services 1-63)."""

    expect: CaptionExpect = "always"
    """always, or during the ``schedule`` windows only."""
    schedule: tuple[str, ...] = ()
    """Time-of-day windows 'HH:MM-HH:MM' (local time) of ``expect: schedule``."""
    services: tuple[str, ...] = ("cc1",)
    """Services to watch: cc1..cc4 (CEA-608), "708:1".."708:63" (CTA-708)."""

    def __post_init__(self) -> None:
        if not self.services:
            raise ValueError("services: name at least one caption service (e.g. cc1)")
        for name in self.services:
            parse_service(name)
        if len({parse_service(name) for name in self.services}) != len(self.services):
            raise ValueError("services: a service is named twice")
        if self.expect == "schedule" and not self.schedule:
            raise ValueError("schedule: expect: schedule needs at least one window")


def _odd_parity_table() -> bytes:
    return bytes(1 if bin(b).count("1") % 2 else 0 for b in range(256))


_ODD = _odd_parity_table()

# Basic North American set: ASCII except these (CEA-608-E Annex A, table 50).
_BASIC = {
    0x2A: "á",
    0x5C: "é",
    0x5E: "í",
    0x5F: "ó",
    0x60: "ú",
    0x7B: "ç",
    0x7C: "÷",
    0x7D: "Ñ",
    0x7E: "ñ",
    0x7F: "█",
}
_BASIC_CHARS = tuple(_BASIC.get(c, chr(c)) for c in range(0x80))
# Special characters, 0x11/0x19 0x30-0x3F (CEA-608-E Annex A, table 49).
_SPECIAL = "®°½¿™¢£♪à\u00a0èâêîôû"
# Extended Western European characters, 0x12/0x1A and 0x13/0x1B 0x20-0x3F (CEA-608-E
# Annex A, tables 5 and 6): each replaces the basic character sent before it.
_EXTENDED_12 = "ÁÉÓÚÜü‘¡*’—©℠•“”ÀÂÇÈÊËëÎÏïÔÙùÛ«»"
_EXTENDED_13 = "ÃãÍÌìÒòÕõ{}\\^_|~ÄäÖöß¥¤¦ÅåØø┌┐└┘"
# Preamble address code rows by (byte 1 & 0x07, byte 2 bit 5) (CEA-608-E table 53).
_PAC_ROW = {
    (1, 0): 1,
    (1, 1): 2,
    (2, 0): 3,
    (2, 1): 4,
    (3, 0): 12,
    (3, 1): 13,
    (4, 0): 14,
    (4, 1): 15,
    (5, 0): 5,
    (5, 1): 6,
    (6, 0): 7,
    (6, 1): 8,
    (7, 0): 9,
    (7, 1): 10,
    (0, 0): 11,
}

Style = Literal["pop-on", "roll-up", "paint-on"]


class Cea608Channel:
    """The caption memories of one CEA-608 data channel (CC1..CC4), CEA-608-E 7 and 8."""

    def __init__(self) -> None:
        self.style: Style | None = None
        self.displayed: dict[int, list[str]] = {}
        self.hidden: dict[int, list[str]] = {}
        self.row = ROWS
        self.col = 0
        self.roll_rows = 2
        self.last_line = ""
        """The newest caption line put on screen (roll-up: the line as it is typed)."""
        self.characters = 0
        """Characters received, since the decoder started."""
        self.captions = 0
        """Captions put on screen (pop-on swaps, roll-up lines, paint-on rows)."""

    @property
    def _memory(self) -> dict[int, list[str]]:
        return self.hidden if self.style == "pop-on" else self.displayed

    def text(self) -> str:
        """What is on screen, rows top to bottom, trailing blanks removed."""
        rows = (("".join(self.displayed[r])).rstrip() for r in sorted(self.displayed))
        return "\n".join(row for row in rows if row)

    def write(self, char: str) -> None:
        memory = self._memory
        line = memory.get(self.row)
        if line is None:
            line = memory[self.row] = [" "] * COLUMNS
        line[min(self.col, COLUMNS - 1)] = char
        self.col = min(self.col + 1, COLUMNS)
        self.characters += 1
        if self.style != "pop-on":
            self._shown(self.row)

    def backspace(self) -> None:
        if self.col > 0:
            self.col -= 1
            line = self._memory.get(self.row)
            if line is not None:
                line[self.col] = " "

    def replace_previous(self, char: str) -> None:
        """An extended character: it overwrites the basic one sent before it as a fallback."""
        self.backspace()
        self.write(char)
        self.characters -= 1  # the fallback was counted

    def command(self, code: int) -> None:
        """A miscellaneous control code, byte 2 (CEA-608-E table 51)."""
        if code == 0x20:  # RCL: resume caption loading (pop-on)
            self.style = "pop-on"
        elif code == 0x21:  # BS
            self.backspace()
        elif code == 0x24:  # DER: delete to end of row
            line = self._memory.get(self.row)
            if line is not None:
                line[self.col :] = [" "] * (COLUMNS - self.col)
        elif code in (0x25, 0x26, 0x27):  # RU2, RU3, RU4
            if self.style != "roll-up":
                self.displayed.clear()
                self.hidden.clear()
            self.style = "roll-up"
            self.roll_rows = code - 0x23
            self.row = ROWS
            self.col = 0
        elif code == 0x29:  # RDC: resume direct captioning (paint-on)
            self.style = "paint-on"
        elif code == 0x2C:  # EDM: erase displayed memory
            self.displayed.clear()
        elif code == 0x2D:  # CR: roll the rows up one
            if self.style == "roll-up":
                top = self.row - self.roll_rows + 1
                rows = {r - 1: line for r, line in self.displayed.items() if r > top}
                self.displayed = rows
                self.col = 0
        elif code == 0x2E:  # ENM: erase non-displayed memory
            self.hidden.clear()
        elif code == 0x2F:  # EOC: end of caption, swap the memories (pop-on)
            self.displayed, self.hidden = self.hidden, self.displayed
            self.style = "pop-on"
            shown = [r for r, line in self.displayed.items() if "".join(line).strip()]
            if shown:
                self._shown(max(shown))

    def preamble(self, b1: int, b2: int) -> None:
        """A preamble address code: row, and an indent in steps of 4 columns."""
        row = _PAC_ROW.get((b1 & 0x07, (b2 >> 5) & 1), ROWS)
        if self.style == "roll-up":
            # Roll-up keeps its window: a PAC moves the base row, with the rows above it.
            if row != self.row:
                shift = row - self.row
                self.displayed = {r + shift: line for r, line in self.displayed.items()}
            self.row = row
        else:
            self.row = row
        self.col = 4 * ((b2 & 0x0E) >> 1) if b2 & 0x10 else 0

    def _shown(self, row: int) -> None:
        line = "".join(self.displayed.get(row, ())).strip()
        if line:
            if line != self.last_line and not line.startswith(self.last_line):
                self.captions += 1
            self.last_line = line


@dataclass(slots=True)
class CaptionFrame:
    """What one picture's ``cc_data`` carried."""

    fields: int = 0
    """Bit 0: valid CEA-608 field 1 data; bit 1: field 2; bit 2: DTVCC (CTA-708) data."""
    text_608: int = 0
    """Bit n: characters for CC(n+1) in this picture."""
    services_708: int = 0
    """Bit n: CTA-708 service n had a non-empty service block completed in this picture."""


class CaptionDecoder:
    """Decodes the ``cc_data`` of successive pictures (one video stream, presentation order).

    ``update`` returns what the picture carried; the four 608 channels keep their screens, and
    the counters (``parity_errors``, ``pictures_with_data``) run since the decoder started.
    Damaged bytes are counted and dropped, never raised.
    """

    def __init__(self) -> None:
        self.channels = [Cea608Channel() for _ in range(4)]
        self._current = [0, 2]  # per field: the data channel the last control code selected
        self._last_control: list[tuple[int, int] | None] = [None, None]
        self._xds = [False, False]
        self._dtvcc = bytearray()
        self._dtvcc_size = 0
        self.parity_errors = 0
        self.malformed = 0
        self.pictures_with_data = 0

    def update(self, cc_data: bytes) -> CaptionFrame:
        frame = CaptionFrame()
        n = len(cc_data) - len(cc_data) % 3
        if n != len(cc_data):
            self.malformed += 1
        for i in range(0, n, 3):
            header = cc_data[i]
            if not header & 0x04:  # cc_valid
                continue
            cc_type = header & 0x03
            b1, b2 = cc_data[i + 1], cc_data[i + 2]
            if cc_type < 2:
                frame.fields |= 1 << cc_type
                self._pair(cc_type, b1, b2, frame)
            else:
                frame.fields |= 4
                self._dtvcc_bytes(cc_type == 3, b1, b2, frame)
        if frame.fields:
            self.pictures_with_data += 1
        return frame

    # ----------------------------------------------------------------------- CEA-608

    def _pair(self, f: int, b1: int, b2: int, frame: CaptionFrame) -> None:
        if not (_ODD[b1] and _ODD[b2]):
            # A damaged pair is dropped whole (FFmpeg and Shaka drop on byte 2; dropping on
            # either keeps a damaged control code from being taken as text).
            self.parity_errors += 1
            self._last_control[f] = None
            return
        b1 &= 0x7F
        b2 &= 0x7F
        if b1 == 0 and b2 == 0:  # padding
            return
        if 0x01 <= b1 <= 0x0F:  # XDS packet start/continue (field 2), CEA-608-E 9
            self._xds[f] = b1 != 0x0F
            self._last_control[f] = None
            return
        if 0x10 <= b1 <= 0x1F:
            self._xds[f] = False
            if self._last_control[f] == (b1, b2):
                # Control codes are sent twice for robustness: the repeat is ignored.
                self._last_control[f] = None
                return
            self._last_control[f] = (b1, b2)
            self._control(f, b1, b2, frame)
            return
        self._last_control[f] = None
        if self._xds[f]:
            return
        ch_index = self._current[f]
        channel = self.channels[ch_index]
        channel.write(_BASIC_CHARS[b1])
        if b2 >= 0x20:
            channel.write(_BASIC_CHARS[b2])
        frame.text_608 |= 1 << ch_index

    def _control(self, f: int, b1: int, b2: int, frame: CaptionFrame) -> None:
        ch_index = 2 * f + ((b1 >> 3) & 1)
        self._current[f] = ch_index
        channel = self.channels[ch_index]
        low = b1 & 0x07
        if 0x40 <= b2 <= 0x7F:
            channel.preamble(b1, b2)
        elif low in (4, 5) and 0x20 <= b2 <= 0x2F:
            channel.command(b2)
        elif low == 7 and 0x21 <= b2 <= 0x23:  # tab offsets TO1-TO3
            channel.col = min(channel.col + b2 - 0x20, COLUMNS - 1)
        elif low == 1 and 0x30 <= b2 <= 0x3F:
            channel.write(_SPECIAL[b2 - 0x30])
            frame.text_608 |= 1 << ch_index
        elif low == 1 and 0x20 <= b2 <= 0x2F:  # mid-row code: shows as a space
            channel.write(" ")
        elif low in (2, 3) and 0x20 <= b2 <= 0x3F:
            table = _EXTENDED_12 if low == 2 else _EXTENDED_13
            channel.replace_previous(table[b2 - 0x20])
            frame.text_608 |= 1 << ch_index

    # ----------------------------------------------------------------------- CTA-708

    def _dtvcc_bytes(self, start: bool, b1: int, b2: int, frame: CaptionFrame) -> None:
        if start:
            if self._dtvcc:
                self._dtvcc_packet(frame)  # a short packet: read what it has
            code = b1 & 0x3F
            # packet_size_code: 0 means 128 bytes (CTA-708-E 5.2)
            self._dtvcc_size = 128 if code == 0 else 2 * code
            self._dtvcc = bytearray((b1, b2))
        elif self._dtvcc:
            self._dtvcc += bytes((b1, b2))
        else:
            return  # a continuation without its start: dropped
        if len(self._dtvcc) >= self._dtvcc_size:
            self._dtvcc_packet(frame)

    def _dtvcc_packet(self, frame: CaptionFrame) -> None:
        packet = bytes(self._dtvcc[: self._dtvcc_size])
        self._dtvcc = bytearray()
        i = 1
        while i < len(packet):
            service, size = packet[i] >> 5, packet[i] & 0x1F
            i += 1
            if service == 0:  # null block: the rest of the packet is padding
                return
            if service == 7:  # extended service number (CTA-708-E 6.2.2)
                if i >= len(packet):
                    self.malformed += 1
                    return
                service = packet[i] & 0x3F
                i += 1
            block = packet[i : i + size]
            if len(block) < size:
                self.malformed += 1
                return
            i += size
            # Only padding (NUL, 0x00) and ETX (0x03) is no content.
            if any(b not in (0x00, 0x03) for b in block):
                frame.services_708 |= 1 << service


MISSING_GAP_S = 0.5
"""Pictures without caption data for this long make a gap (a 59.94 fps stream may carry its
608 pairs on every other picture); the gap begins at the first picture without data."""
EMPTY_GAP_S = 10.0
"""Caption data without text for this long (or ``raise_after``, when shorter) makes an empty
span: pop-on captions come a few seconds apart, their text in bursts."""


@dataclass(frozen=True)
class ServiceVerdict:
    """One caption service as of one picture: each field the media time its condition
    began, or None while it does not hold."""

    missing_since_s: float | None
    """No caption data at all for the service (the inserter is bypassed)."""
    empty_since_s: float | None
    """Caption data flowing, but no text in it (the inserter is fed nothing)."""


NOTHING_HOLDS = ServiceVerdict(None, None)


class ServicePresence:
    """Whether one caption service is on air: pure decision logic on media time.

    It never reads a clock and does no I/O; it is told, picture by picture, whether the
    service's carrier had data, whether it carried text, and whether captions are expected.

    ============= ================================ ================================
    state         data in the picture               no data in the picture
    ============= ================================ ================================
    expected      text: empty span ends;            gap begins (missing after
                  no text: empty after the gap      ``MISSING_GAP_S``)
    not expected  nothing holds; the spans restart when captions are expected again
    ============= ================================ ================================
    """

    def __init__(self, empty_gap_s: float = EMPTY_GAP_S) -> None:
        self.empty_gap_s = empty_gap_s
        self._no_data_since_s: float | None = None
        self._no_text_since_s: float | None = None
        self.last_text_s: float | None = None

    def observe(self, t_s: float, data: bool, text: bool, expected: bool) -> ServiceVerdict:
        if not expected:
            self._no_data_since_s = None
            self._no_text_since_s = None
            return ServiceVerdict(None, None)
        if data:
            self._no_data_since_s = None
            if text:
                self.last_text_s = t_s
                self._no_text_since_s = None
            elif self._no_text_since_s is None:
                self._no_text_since_s = t_s
        else:
            if self._no_data_since_s is None:
                self._no_data_since_s = t_s
            # While the data is missing, that is the only fault: the empty span restarts
            # when data comes back.
            self._no_text_since_s = None
        missing = self._no_data_since_s
        if missing is not None and t_s - missing < MISSING_GAP_S:
            missing = None
        empty = self._no_text_since_s
        if empty is not None and t_s - empty < self.empty_gap_s:
            empty = None
        if missing is None and empty is None:
            return NOTHING_HOLDS  # the common case, without an allocation per picture
        return ServiceVerdict(missing, empty)
