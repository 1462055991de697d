"""RTP as plants send it: the fixed header, and loss, duplicates and reordering on its sequence.

MPEG-TS over RTP (RFC 3550, payload per RFC 2250; SMPTE ST 2022-2) numbers every datagram with
a 16-bit sequence number. :class:`RtpSequence` follows RFC 3550 §6.4.1 and Appendix A.1: the
number is extended with a count of wrap-arounds, a jump of more than ``MAX_DROPOUT`` ahead or
``MAX_MISORDER`` behind is a new sequence (a sender restarting), confirmed by a second packet
in sequence (``MIN_SEQUENTIAL``), and a new SSRC starts afresh. Unlike A.1's
"expected − received", which nets duplicates against losses, every number is accounted for:

- lost: a number not received by the time the sequence is ``MAX_MISORDER`` further on (or one
  judging interval later), so that a packet merely late is never called lost;
- reordered: a number that arrived after a later one (it was missing, then came);
- duplicates: a number received twice.

Nothing here reorders or repairs: the reader passes payloads on as they arrive. SMPTE ST 2022-1
FEC packets (on ports +2/+4) are not read, and ST 2022-7 (the same stream on two paths, merged
by sequence number) is not merged: see the README.
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass
from typing import Any

MAX_DROPOUT = 3000
"""RFC 3550 A.1: a jump ahead of more than this is a new sequence, not loss."""
MAX_MISORDER = 100
"""RFC 3550 A.1: a number this far behind the highest is still a late packet."""
MIN_SEQUENTIAL = 2
"""RFC 3550 A.1: packets in sequence that confirm a new sequence (after a jump)."""
SEQ_MOD = 1 << 16


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The fields of an RTP fixed header (RFC 3550 §5.1) that the counting needs."""

    sequence: int
    ssrc: int
    payload_type: int
    payload_offset: int
    payload_end: int


def parse_rtp(datagram: bytes | bytearray | memoryview) -> RtpHeader | None:
    """The header of an RTP version 2 packet, or None when it is not one (RFC 3550 §5.1)."""
    if len(datagram) < 12 or datagram[0] >> 6 != 2:
        return None
    first = datagram[0]
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if len(datagram) < offset + 4:
            return None
        (words,) = struct.unpack_from("!H", datagram, offset + 2)
        offset += 4 + 4 * words
    end = len(datagram)
    if first & 0x20:  # padding: the last byte counts the padding bytes
        end -= datagram[-1]
    if offset > end:
        return None
    sequence, _, ssrc = struct.unpack_from("!HII", datagram, 2)
    return RtpHeader(sequence, ssrc, datagram[1] & 0x7F, offset, end)


@dataclass(frozen=True, slots=True)
class RtpCounters:
    """Totals since the input started, for metrics and alarm details."""

    received: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    restarts: int = 0  # new sequences: an SSRC change or a confirmed jump

    def since(self, earlier: RtpCounters) -> RtpCounters:
        return RtpCounters(
            self.received - earlier.received,
            self.lost - earlier.lost,
            self.duplicates - earlier.duplicates,
            self.reordered - earlier.reordered,
            self.restarts - earlier.restarts,
        )

    def as_detail(self) -> dict[str, Any]:
        return {
            "lost": self.lost,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "received": self.received,
        }


class RtpSequence:
    """Accounts for every sequence number of one RTP stream. Not thread-safe (one reader)."""

    def __init__(self) -> None:
        self.received = 0
        self.lost = 0
        self.duplicates = 0
        self.reordered = 0
        self.restarts = 0
        self._ssrc: int | None = None
        self._highest = -1  # extended sequence number of the highest packet so far
        self._missing: set[int] = set()
        self._pending: collections.deque[tuple[int, int]] = collections.deque()  # (ext, epoch)
        self._epoch = 0  # judging intervals so far
        self._probation_next: int | None = None  # the number that would confirm a jump
        self._probation = 0

    @property
    def counters(self) -> RtpCounters:
        return RtpCounters(self.received, self.lost, self.duplicates, self.reordered, self.restarts)

    def packet(self, sequence: int, ssrc: int) -> None:
        """Account for one received packet."""
        self.received += 1
        if ssrc != self._ssrc or self._highest < 0:
            if self._ssrc is not None:
                self.restarts += 1
            self._ssrc = ssrc
            self._restart(sequence)
            return
        delta = (sequence - self._highest) % SEQ_MOD
        if delta == 0:
            self.duplicates += 1
        elif delta < MAX_DROPOUT:
            self._probation_next = None
            ext = self._highest + delta
            for missing in range(self._highest + 1, ext):
                self._missing.add(missing)
                self._pending.append((missing, self._epoch))
            self._highest = ext
            self._settle(ext - MAX_MISORDER, self._epoch - 1)
        elif delta >= SEQ_MOD - MAX_MISORDER:
            ext = self._highest - (SEQ_MOD - delta)
            if ext in self._missing:
                self._missing.discard(ext)
                self.reordered += 1
            else:
                self.duplicates += 1
        else:
            # A jump: a sender restarted its numbering, or a stray packet. A new sequence
            # once MIN_SEQUENTIAL packets follow on from the jump.
            if sequence == self._probation_next:
                self._probation += 1
            else:
                self._probation = 1
            self._probation_next = (sequence + 1) % SEQ_MOD
            if self._probation >= MIN_SEQUENTIAL:
                self.restarts += 1
                self._restart(sequence)

    def judge(self) -> None:
        """End a judging interval: numbers missing since before the last one are lost."""
        self._settle(self._highest - MAX_MISORDER, self._epoch - 1)
        self._epoch += 1

    def _restart(self, sequence: int) -> None:
        self._settle(self._highest + 1, self._epoch)  # whatever was missing stays lost
        # Extended numbers continue upward across a restart, so old entries stay below.
        self._highest = max(self._highest + MAX_DROPOUT + MAX_MISORDER + 1, 0)
        self._highest += (sequence - self._highest) % SEQ_MOD
        self._probation_next = None
        self._probation = 0

    def _settle(self, below: int, epoch: int) -> None:
        """Numbers still missing that are below ``below`` or pending since ``epoch`` are lost."""
        pending = self._pending
        while pending and (pending[0][0] < below or pending[0][1] <= epoch):
            ext, _ = pending.popleft()
            if ext in self._missing:
                self._missing.discard(ext)
                self.lost += 1
