"""H.264 clips with closed captions, made at test time.

The captions are written by hand as ATSC A/53 Part 4 ``cc_data`` in an SEI
(user_data_registered_itu_t_t35, country 0xB5, provider 0x0031, 'GA94') put before the first
slice of each access unit: CEA-608 pairs with odd parity on field 1 and 2, and CTA-708 DTVCC
packets. FFmpeg's H.264 decoder then hands them back as ``A53_CC`` side data, as it does for
a broadcast encoder's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FPS = 30
WIDTH, HEIGHT = 320, 180

Pair = tuple[int, int]
"""A CEA-608 byte pair without parity."""

RCL, EOC, EDM, ENM, CR, RU2, RDC = 0x20, 0x2F, 0x2C, 0x2E, 0x2D, 0x25, 0x29
PAD = (0x00, 0x00)


def odd(b: int) -> int:
    """The byte with its CEA-608 odd parity bit."""
    return b | 0x80 if bin(b).count("1") % 2 == 0 else b


def control(code: int, channel: int = 1) -> list[Pair]:
    """A miscellaneous control code of CC``channel``, sent twice as the FCC asks."""
    b1 = 0x14 if channel in (1, 3) else 0x1C
    return [(b1, code), (b1, code)]


def pac(row: int = 15, channel: int = 1) -> list[Pair]:
    """A preamble address code: ``row`` (1-15), column 0, white, sent twice."""
    table = {1: (1, 0), 2: (1, 1), 3: (2, 0), 4: (2, 1), 5: (5, 0), 6: (5, 1), 7: (6, 0)}
    table |= {8: (6, 1), 9: (7, 0), 10: (7, 1), 11: (0, 0), 12: (3, 0), 13: (3, 1)}
    table |= {14: (4, 0), 15: (4, 1)}
    low, high = table[row]
    b1 = 0x10 | low | (0 if channel in (1, 3) else 0x08)
    b2 = 0x40 | (0x20 if high else 0)
    return [(b1, b2), (b1, b2)]


def text(chars: str) -> list[Pair]:
    """Basic-set characters, two to a pair."""
    codes = [ord(c) for c in chars]
    if len(codes) % 2:
        codes.append(0)
    return [(codes[i], codes[i + 1]) for i in range(0, len(codes), 2)]


def pop_on(line: str, channel: int = 1) -> list[Pair]:
    return [
        *control(RCL, channel),
        *control(ENM, channel),
        *pac(15, channel),
        *text(line),
        *control(EOC, channel),
    ]


def roll_up(line: str, channel: int = 1) -> list[Pair]:
    return [*control(RU2, channel), *control(CR, channel), *pac(15, channel), *text(line)]


def paint_on(line: str, channel: int = 1) -> list[Pair]:
    return [*control(RDC, channel), *pac(14, channel), *text(line)]


def triplet_608(field: int, pair: Pair) -> bytes:
    """A valid cc_data triplet of a 608 field (1 or 2)."""
    return bytes((0xFC | (field - 1), odd(pair[0]), odd(pair[1])))


def dtvcc_packet(service: int, payload: bytes, sequence: int = 0) -> list[bytes]:
    """A CTA-708 DTVCC packet (one service block, or a null block with ``service`` 0) as
    cc_data triplets: start (cc_type 3), then continuations (cc_type 2)."""
    block = bytes((service << 5 | len(payload),)) + payload if service else b"\x00"
    if len(block) % 2 == 0:  # the packet (header + blocks) is a whole number of pairs
        block += b"\x00"
    body = bytes(((sequence & 3) << 6 | (len(block) + 1) // 2,)) + block
    out = [bytes((0xFF, body[0], body[1]))]
    out += [bytes((0xFE, body[i], body[i + 1])) for i in range(2, len(body), 2)]
    return out


def _escape(payload: bytes) -> bytes:
    """H.264 emulation prevention: a 0x03 after two zeros before a byte <= 3."""
    out = bytearray()
    zeros = 0
    for b in payload:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def cc_sei(triplets: Sequence[bytes]) -> bytes:
    """An Annex B SEI NAL unit carrying ``cc_data()`` (ATSC A/53 Part 4 6.2.3)."""
    count = len(triplets)
    body = b"\xb5\x00\x31GA94\x03" + bytes((0x40 | count, 0xFF)) + b"".join(triplets) + b"\xff"
    payload = bytes((4, len(body))) + body + b"\x80"
    return b"\x00\x00\x00\x01\x06" + _escape(payload)


def with_sei(access_unit: bytes, sei: bytes) -> bytes:
    """The access unit with ``sei`` put before its first slice."""
    i = 0
    while True:
        j = access_unit.find(b"\x00\x00\x01", i)
        if j < 0 or j + 3 >= len(access_unit):
            return access_unit + sei
        if access_unit[j + 3] & 0x1F in (1, 5):
            start = j - 1 if j > 0 and access_unit[j - 1] == 0 else j
            return access_unit[:start] + sei + access_unit[start:]
        i = j + 3


Triplets = Callable[[int, float], Sequence[bytes] | None]
"""Picture index, media time → the picture's cc_data triplets (None: no SEI at all)."""


def write_clip(path: Path, duration_s: float, triplets: Triplets) -> Path:
    """An MPEG-TS of H.264 pictures (a moving gradient) carrying ``triplets``' captions."""
    out = av.open(str(path), "w", format="mpegts")
    stream = out.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.codec_context.options = {"preset": "ultrafast", "g": str(FPS)}
    ramp = np.tile(np.arange(WIDTH, dtype=np.uint8), (HEIGHT, 1))

    def mux(packets: list[av.Packet]) -> None:
        for packet in packets:
            if packet.pts is None:
                continue
            index = int(packet.pts)
            found = triplets(index, index / FPS)
            if found is not None:
                data = with_sei(bytes(packet), cc_sei(found))
                rewritten = av.Packet(data)
                rewritten.pts, rewritten.dts = packet.pts, packet.dts
                rewritten.time_base = packet.time_base
                rewritten.is_keyframe = packet.is_keyframe
                rewritten.stream = stream
                packet = rewritten
            out.mux(packet)

    for i in range(round(duration_s * FPS)):
        y = ((ramp.astype(np.int32) + i * 4) % 256).astype(np.uint8)
        chroma = np.full((HEIGHT // 2, WIDTH), 128, np.uint8)
        frame = av.VideoFrame.from_ndarray(np.vstack([y, chroma]), format="yuv420p")
        frame.pts = i
        frame.time_base = Fraction(1, FPS)
        mux(stream.encode(frame))
    mux(stream.encode(None))
    out.close()
    return path
