"""ETSI TR 101 290 (V1.4.1) transport checks on raw MPEG-TS bytes, as they arrive.

A reader thread hands every received chunk (any size, not aligned to 188 bytes) to
:meth:`Tr101290Analyzer.feed` with its arrival time, and calls :meth:`Tr101290Analyzer.check`
every ~100 ms so that "not seen for N s" rules fire while no bytes arrive. Faults are reported
as :class:`TransportCondition` observations (raised, then cleared), one per alarm and PID.

The per-packet work (sync, TEI, CC, PCR, PES PTS, per-PID arrival times and counters) is one
Numba pass over the chunk, :func:`scan_packets`, which returns rows for the rare things Python
handles: PSI packets (PAT/PMT sections are parsed here, a few per second), errors and sync
changes. Rules follow TR 101 290 tables 5.0a/5.0b and TSDuck's analyzer (CC rules of its
``ContinuityAnalyzer``: payload-bearing packets only, one duplicate allowed,
discontinuity_indicator resets, null PID ignored). PAT, PMT, PID and PTS intervals are measured
on arrival time (TSDuck does the same). PCR rules are judged on the PCR values, the stream's
own clock: 2.3a PCR_repetition_error ("time interval between two consecutive PCR values more
than 100 ms", TR 101 290 V1.4.1 §5.2.2) and 2.3b PCR_discontinuity. Measured on arrival time
instead, the jitter of a sender starting up (``ffmpeg -re``) or of a network burst raised
2.3a on streams whose PCRs are 40-80 ms apart. Arrival time only serves a PCR PID that stops
carrying PCRs altogether (``pcr_missing_after_s``). Time in which no byte at all arrives is
input loss, not a table or PCR fault: the arrival timers stand still over it.

Not implemented: 2.4 PCR accuracy (needs a CBR stream and a precise clock), 2.6 CAT, priority 3.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from monitor.ingest.reports import Report, TransportCondition

__all__ = [
    "Tr101290Analyzer",
    "Tr101290Counters",
    "Tr101290Settings",
    "scan_packets",
]

PACKET = 188
SYNC = 0x47
N_PIDS = 8192
NULL_PID = 0x1FFF
PCR_WRAP = (1 << 33) * 300  # 27 MHz ticks
_SPREAD_MAX_S = 0.1
"""Packets of one chunk get arrival times spread over at most this long before ``now_s``: a
burst after a stall must not be smeared back over the stall, which would hide its PCR gaps."""


@dataclass(frozen=True)
class Tr101290Settings:
    """Limits of the timing rules (TR 101 290 V1.4.1 numbers) and how long errors stay raised."""

    pat_interval_max_s: float = 0.5  # 1.3
    pmt_interval_max_s: float = 0.5  # 1.5
    pid_missing_after_s: float = 5.0  # 1.6, video and audio PIDs named in a PMT
    pcr_interval_max_s: float = 0.1  # 2.3a (0.04 for legacy strict DVB, TR V1.2.1)
    pcr_missing_after_s: float = 1.0
    """A PCR PID whose bytes keep arriving with no PCR for this long (arrival time) is in 2.3a
    without waiting for the next PCR to measure the interval on; far above the 0.1 s limit, so
    that arrival jitter never fires it."""
    pcr_discontinuity_max_s: float = 0.1  # 2.3b
    pts_interval_max_s: float = 0.7  # 2.5
    error_hold_s: float = 1.0
    """A transient error (sync, CC, TEI, PCR, PTS, CRC) keeps its condition raised this long."""


# --------------------------------------------------------------------------- kernel layout

# Kernel state, int64[N_ST].
ST_SYNC = 0  # 1 while in sync
ST_LOST = 1  # 1 after sync loss was reported, until sync is regained
ST_BAD_RUN = 2  # consecutive bad sync bytes
ST_SEARCHED = 3  # bytes skipped by the current sync search
ST_SYNC_BYTE_ERRORS = 4  # 1.2 Sync_byte_error, total
ST_SYNC_LOSSES = 5  # 1.1 total
ST_BYTES_DISCARDED = 6  # bytes skipped while searching for sync
N_ST = 7

# Per-PID int64 columns.
I_PACKETS = 0
I_CC_LAST = 1  # -1: no packet yet
I_CC_DUP = 2  # duplicates of the last packet so far
I_DISC = 3  # a discontinuity_indicator was seen since the last PCR
I_PCR_SEEN = 4
I_PCR = 5  # last PCR, 27 MHz ticks
I_CC_ERRORS = 6
I_TEI = 7
I_PCR_REPETITION = 8
I_PCR_DISCONTINUITY = 9
I_PTS_ERRORS = 10
I_GAPS = 11  # 1.6: a watched PID came back after more than its limit
N_I = 12

# Per-PID float64 columns (arrival times, seconds on the caller's clock; NaN: not yet).
F_LAST_SEEN = 0
F_PCR_T = 1
F_PTS_T = 2
F_GAP_MAX = 3  # 1.6 limit for watched PIDs
F_PCR_JITTER = 4  # largest |arrival interval - PCR interval| of consecutive PCRs, s; NaN: none
F_PCR_ARRIVAL = 5  # arrival of the last PCR, not moved over stalls (F_PCR_T is): for the jitter
N_F = 6

# Per-PID flags (uint8).
FLAG_PSI = 1  # hand every packet to Python (PAT, PMT)
FLAG_GAP = 2  # watch arrival gaps (1.6)
FLAG_PTS = 4  # watch PTS intervals (2.5)

# Limits, float64.
LIM_PCR_INTERVAL_S = 0
LIM_PCR_JUMP_TICKS = 1
LIM_PTS_INTERVAL_S = 2
N_LIM = 3

# Event rows: (kind, pid, byte offset of the packet in the buffer, value); times in ev_t.
EV_SYNC_LOST = 1
EV_SYNC_REGAINED = 2
EV_PSI = 3
EV_CC = 4  # value: packets missing, or 0 for a packet repeated more than twice
EV_TEI = 5
EV_PCR_INTERVAL = 6  # value: PCR value interval since the previous PCR, µs (stream time)
EV_PCR_JUMP = 7  # value: PCR difference, µs (signed)
EV_PTS = 8  # value: interval since the previous PTS, µs
EV_GAP = 9  # value: gap, µs
EVENTS_PER_PACKET_MAX = 8


@njit(cache=True, nogil=True)
def scan_packets(
    buf: np.ndarray,
    pos: int,
    n_tail: int,
    t0: float,
    t1: float,
    st: np.ndarray,
    flags: np.ndarray,
    pid_i: np.ndarray,
    pid_f: np.ndarray,
    lim: np.ndarray,
    ev: np.ndarray,
    ev_t: np.ndarray,
) -> tuple[int, int]:  # pragma: no cover - jitted
    """Check the packets of ``buf`` (uint8) from byte ``pos``; return (events, next pos).

    The first ``n_tail`` bytes were carried over from the previous chunk; the others arrived
    between ``t0`` and ``t1`` and get arrival times spread linearly over that span. Updates
    ``st``, ``pid_i`` and ``pid_f`` in place, writes event rows into ``ev`` (int64[n, 4]) and
    their times into ``ev_t``, and stops early when ``ev`` is nearly full; the caller calls
    again from the returned position. Stops at the first packet not wholly in ``buf`` (or, out
    of sync, where 5 sync bytes can no longer be checked). Allocates nothing.
    """
    n = buf.shape[0]
    n_new = max(n - n_tail, 1)
    dt = (t1 - t0) / n_new
    k_max = ev.shape[0] - EVENTS_PER_PACKET_MAX
    pcr_interval_max = lim[LIM_PCR_INTERVAL_S]
    pcr_jump_max = lim[LIM_PCR_JUMP_TICKS]
    pts_interval_max = lim[LIM_PTS_INTERVAL_S]
    k = 0
    while k < k_max:
        if st[ST_SYNC] == 0:
            # Acquire on 5 consecutive sync bytes 188 apart (ISO/IEC 13818-1 G.1).
            if pos + 4 * PACKET >= n:
                break
            if (
                buf[pos] == SYNC
                and buf[pos + PACKET] == SYNC
                and buf[pos + 2 * PACKET] == SYNC
                and buf[pos + 3 * PACKET] == SYNC
                and buf[pos + 4 * PACKET] == SYNC
            ):
                st[ST_SYNC] = 1
                st[ST_BAD_RUN] = 0
                st[ST_SEARCHED] = 0
                if st[ST_LOST]:
                    st[ST_LOST] = 0
                    ev[k, 0] = EV_SYNC_REGAINED
                    ev[k, 1] = -1
                    ev[k, 2] = pos
                    ev[k, 3] = 0
                    ev_t[k] = t0 + dt * min(max(pos + PACKET - n_tail, 0), n_new)
                    k += 1
                continue
            pos += 1
            st[ST_SEARCHED] += 1
            st[ST_BYTES_DISCARDED] += 1
            if st[ST_LOST] == 0 and st[ST_SEARCHED] >= 2 * PACKET:
                # Never in sync (garbage from the start): as lost as losing it.
                st[ST_LOST] = 1
                st[ST_SYNC_LOSSES] += 1
                ev[k, 0] = EV_SYNC_LOST
                ev[k, 1] = -1
                ev[k, 2] = pos
                ev[k, 3] = 0
                ev_t[k] = t0 + dt * min(max(pos - n_tail, 0), n_new)
                k += 1
            continue

        if pos + PACKET > n:
            break
        t = t0 + dt * min(max(pos + PACKET - n_tail, 0), n_new)
        if buf[pos] != SYNC:
            # The header of a packet without its sync byte is not trusted: skipped.
            st[ST_SYNC_BYTE_ERRORS] += 1
            st[ST_BAD_RUN] += 1
            if st[ST_BAD_RUN] >= 2:
                st[ST_SYNC] = 0
                st[ST_LOST] = 1
                st[ST_SEARCHED] = 0
                st[ST_SYNC_LOSSES] += 1
                ev[k, 0] = EV_SYNC_LOST
                ev[k, 1] = -1
                ev[k, 2] = pos
                ev[k, 3] = 0
                ev_t[k] = t
                k += 1
                pos += 1
            else:
                pos += PACKET
            continue
        st[ST_BAD_RUN] = 0

        b1 = np.int64(buf[pos + 1])
        b3 = np.int64(buf[pos + 3])
        pid = ((b1 & 0x1F) << 8) | np.int64(buf[pos + 2])
        afc = (b3 >> 4) & 3
        cc = b3 & 15
        fl = flags[pid]
        pid_i[pid, I_PACKETS] += 1

        if fl & FLAG_GAP:
            gap = t - pid_f[pid, F_LAST_SEEN]
            if gap > pid_f[pid, F_GAP_MAX]:
                pid_i[pid, I_GAPS] += 1
                ev[k, 0] = EV_GAP
                ev[k, 1] = pid
                ev[k, 2] = pos
                ev[k, 3] = np.int64(gap * 1e6)
                ev_t[k] = t
                k += 1
        pid_f[pid, F_LAST_SEEN] = t

        if b1 & 0x80:
            pid_i[pid, I_TEI] += 1
            ev[k, 0] = EV_TEI
            ev[k, 1] = pid
            ev[k, 2] = pos
            ev[k, 3] = 0
            ev_t[k] = t
            k += 1

        payload = pos + 4
        disc = False
        has_pcr = False
        if afc & 2:
            af_len = int(buf[pos + 4])
            if af_len > 183:  # malformed adaptation field: nothing more to trust
                pos += PACKET
                continue
            payload = pos + 5 + af_len
            if af_len > 0:
                af_flags = int(buf[pos + 5])
                disc = (af_flags & 0x80) != 0
                has_pcr = (af_flags & 0x10) != 0 and af_len >= 7
        if disc:
            pid_i[pid, I_DISC] = 1

        # 1.4 Continuity_count_error (TSDuck ContinuityAnalyzer rules).
        if pid != NULL_PID:
            last = pid_i[pid, I_CC_LAST]
            if last < 0 or disc:
                pid_i[pid, I_CC_LAST] = cc
                pid_i[pid, I_CC_DUP] = 0
            elif afc & 1:
                if cc == last:
                    pid_i[pid, I_CC_DUP] += 1
                    if pid_i[pid, I_CC_DUP] > 1:
                        pid_i[pid, I_CC_ERRORS] += 1
                        ev[k, 0] = EV_CC
                        ev[k, 1] = pid
                        ev[k, 2] = pos
                        ev[k, 3] = 0
                        ev_t[k] = t
                        k += 1
                else:
                    if cc != ((last + 1) & 15):
                        pid_i[pid, I_CC_ERRORS] += 1
                        ev[k, 0] = EV_CC
                        ev[k, 1] = pid
                        ev[k, 2] = pos
                        ev[k, 3] = (cc - last - 1) & 15
                        ev_t[k] = t
                        k += 1
                    pid_i[pid, I_CC_DUP] = 0
                    pid_i[pid, I_CC_LAST] = cc

        # 2.3a PCR_repetition and 2.3b PCR_discontinuity, both on PCR values.
        if has_pcr:
            p = pos + 6
            base = (
                (np.int64(buf[p]) << 25)
                | (np.int64(buf[p + 1]) << 17)
                | (np.int64(buf[p + 2]) << 9)
                | (np.int64(buf[p + 3]) << 1)
                | (np.int64(buf[p + 4]) >> 7)
            )
            pcr = base * 300 + (((np.int64(buf[p + 4]) & 1) << 8) | np.int64(buf[p + 5]))
            if pid_i[pid, I_PCR_SEEN] and not pid_i[pid, I_DISC]:
                jump = (pcr - pid_i[pid, I_PCR]) % PCR_WRAP
                if jump >= PCR_WRAP // 2:
                    jump -= PCR_WRAP
                # 2.3a on the stream's own clock: arrival jitter (a sender starting up, a
                # network burst) never makes PCRs that the stream spaces < 100 ms late. The
                # arrival interval only tells a sparse PCR (the wall clock went by too) from
                # a jump of the clock (2.3b alone).
                step_s = jump / 27e6
                jitter = abs(t - pid_f[pid, F_PCR_ARRIVAL] - step_s)
                if not jitter <= pid_f[pid, F_PCR_JITTER]:  # also when NaN (none yet)
                    pid_f[pid, F_PCR_JITTER] = jitter
                if step_s > pcr_interval_max and t - pid_f[pid, F_PCR_T] > step_s / 2:
                    pid_i[pid, I_PCR_REPETITION] += 1
                    ev[k, 0] = EV_PCR_INTERVAL
                    ev[k, 1] = pid
                    ev[k, 2] = pos
                    ev[k, 3] = jump // 27
                    ev_t[k] = t
                    k += 1
                if jump < 0 or jump > pcr_jump_max:
                    pid_i[pid, I_PCR_DISCONTINUITY] += 1
                    ev[k, 0] = EV_PCR_JUMP
                    ev[k, 1] = pid
                    ev[k, 2] = pos
                    ev[k, 3] = jump // 27
                    ev_t[k] = t
                    k += 1
            pid_i[pid, I_PCR_SEEN] = 1
            pid_i[pid, I_PCR] = pcr
            pid_i[pid, I_DISC] = 0
            pid_f[pid, F_PCR_T] = t
            pid_f[pid, F_PCR_ARRIVAL] = t

        # 2.5 PTS_error: PES headers that start in this packet, unscrambled only.
        if (
            fl & FLAG_PTS
            and b1 & 0x40
            and afc & 1
            and (b3 >> 6) == 0
            and payload + 14 <= pos + PACKET
            and buf[payload] == 0
            and buf[payload + 1] == 0
            and buf[payload + 2] == 1
            and buf[payload + 7] & 0x80
        ):
            interval = t - pid_f[pid, F_PTS_T]
            if interval > pts_interval_max:
                pid_i[pid, I_PTS_ERRORS] += 1
                ev[k, 0] = EV_PTS
                ev[k, 1] = pid
                ev[k, 2] = pos
                ev[k, 3] = np.int64(interval * 1e6)
                ev_t[k] = t
                k += 1
            pid_f[pid, F_PTS_T] = t

        if fl & FLAG_PSI and afc & 1:
            ev[k, 0] = EV_PSI
            ev[k, 1] = pid
            ev[k, 2] = pos
            ev[k, 3] = payload - pos
            ev_t[k] = t
            k += 1
        pos += PACKET
    return k, pos


# --------------------------------------------------------------------------- PSI


_BIT_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def crc32_mpeg2_ok(section: bytes) -> bool:
    """True when ``section`` (with its CRC_32) passes the MPEG-2 CRC (ISO/IEC 13818-1 B).

    The MPEG-2 CRC is zlib's CRC-32 without the bit reflection: on bit-reversed bytes, zlib's
    register is the reversed MPEG-2 register, and a valid section leaves that at 0.
    """
    return zlib.crc32(section.translate(_BIT_REVERSED)) == 0xFFFFFFFF


_VIDEO_TYPES = frozenset({0x01, 0x02, 0x10, 0x1B, 0x20, 0x24, 0x33, 0x42, 0xD1, 0xEA})
_AUDIO_TYPES = frozenset({0x03, 0x04, 0x0F, 0x11, 0x1C, 0x2D, 0x81, 0x82, 0x87})
_AUDIO_DESCRIPTORS = frozenset({0x6A, 0x7A, 0x7B, 0x7C})  # AC-3, E-AC-3, DTS, AAC (DVB)


def _es_kind(stream_type: int, descriptors: bytes) -> str | None:
    """'video', 'audio' or None for an ES the 1.6 rule ignores.

    TR 101 290 1.6 excludes data and audio whose ISO 639 descriptor has audio_type > 0
    (clean effects, hearing impaired, visual impaired commentary).
    """
    tags: dict[int, bytes] = {}
    i = 0
    while i + 2 <= len(descriptors):
        tag, length = descriptors[i], descriptors[i + 1]
        tags.setdefault(tag, descriptors[i + 2 : i + 2 + length])
        i += 2 + length
    if stream_type in _VIDEO_TYPES:
        return "video"
    if stream_type in _AUDIO_TYPES or (stream_type == 0x06 and _AUDIO_DESCRIPTORS & tags.keys()):
        lang = tags.get(0x0A, b"")
        if len(lang) >= 4 and lang[3] > 0:
            return None
        return "audio"
    return None


class _SectionAssembler:
    """Sections of one PSI PID from its packets' payloads (pointer_field on PUSI)."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf: bytearray | None = None

    def push(self, payload: bytes, pusi: bool) -> list[bytes]:
        out: list[bytes] = []
        if pusi:
            if not payload:
                self.buf = None
                return out
            pointer = payload[0]
            rest = payload[1:]
            if self.buf is not None and pointer <= len(rest):
                self.buf += rest[:pointer]
                self._take(out)
            self.buf = bytearray(rest[pointer:]) if pointer < len(rest) else None
        elif self.buf is not None:
            self.buf += payload
        else:
            return out
        self._take(out)
        return out

    def _take(self, out: list[bytes]) -> None:
        buf = self.buf
        while buf is not None and len(buf) >= 3:
            if buf[0] == 0xFF:  # stuffing to the end of the packet
                buf = None
                break
            total = 3 + (((buf[1] & 0x0F) << 8) | buf[2])
            if total > 4096:
                buf = None
                break
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        self.buf = buf


# --------------------------------------------------------------------------- conditions


class _Condition:
    """One alarm for one subject: raised by transient errors (held) or by an ongoing fault."""

    __slots__ = (
        "alarm",
        "subject",
        "report",
        "active_set",
        "active",
        "ongoing",
        "until_s",
        "ended_s",
        "detail",
    )

    def __init__(
        self, alarm: str, subject: str | None, report: Report, active_set: set[_Condition]
    ) -> None:
        self.alarm = alarm
        self.subject = subject
        self.report = report
        self.active_set = active_set  # the analyzer's raised conditions, kept up to date here
        self.active = False
        self.ongoing = False
        self.until_s = -math.inf
        self.ended_s = -math.inf
        self.detail: dict[str, Any] = {}

    def _emit(self, active: bool, at_s: float) -> None:
        detail = dict(self.detail)
        if self.subject is not None:
            detail["pid"] = int(self.subject)
        if active:
            self.active_set.add(self)
        else:
            self.active_set.discard(self)
        self.report(TransportCondition(self.alarm, active, at_s, self.subject, detail))

    def settle(self, now_s: float) -> None:
        if self.active and not self.ongoing and now_s >= self.until_s:
            self.active = False
            self._emit(False, max(self.until_s, self.ended_s))
            self.detail = {}

    def error(self, at_s: float, hold_s: float, n: int = 1, **detail: Any) -> None:
        """A transient error at ``at_s``: raised now, cleared ``hold_s`` after the last one."""
        self.settle(at_s)
        self.until_s = max(self.until_s, at_s + hold_s)
        self.detail["count"] = self.detail.get("count", 0) + n
        for key, value in detail.items():
            self.detail.setdefault(key, value)
        if not self.active:
            self.active = True
            self._emit(True, at_s)

    def begin(self, at_s: float, **detail: Any) -> None:
        """An ongoing fault from ``at_s`` (something overdue) until :meth:`end`."""
        if self.ongoing:
            return
        self.settle(at_s)
        self.ongoing = True
        self.detail["count"] = self.detail.get("count", 0) + 1
        self.detail.update(detail)
        if not self.active:
            self.active = True
            self._emit(True, at_s)

    def end(self, at_s: float, **detail: Any) -> None:
        if not self.ongoing:
            return
        self.ongoing = False
        self.ended_s = at_s
        self.detail.update(detail)
        self.settle(at_s)

    def drop(self, at_s: float) -> None:
        """The subject is gone (no longer referenced): clear whatever is raised."""
        self.ongoing = False
        self.until_s = min(self.until_s, at_s)
        self.ended_s = at_s
        self.settle(at_s)


# --------------------------------------------------------------------------- analyzer


@dataclass(frozen=True)
class Tr101290Counters:
    """Error counts since the analyzer started, for metrics.

    ``per_pid`` maps every PID seen to its counts (``packets``, ``cc``, ``transport_error``,
    ``pcr_repetition``, ``pcr_discontinuity``, ``pts``, ``pid_missing``, ``pat``, ``pmt``,
    ``crc``); ``totals`` sums them and adds ``sync_byte_error``, ``sync_loss`` and
    ``bytes_discarded`` (bytes skipped while out of sync).
    """

    totals: Mapping[str, int]
    per_pid: Mapping[int, Mapping[str, int]]


_KERNEL_COUNTERS = (
    ("packets", I_PACKETS),
    ("cc", I_CC_ERRORS),
    ("transport_error", I_TEI),
    ("pcr_repetition", I_PCR_REPETITION),
    ("pcr_discontinuity", I_PCR_DISCONTINUITY),
    ("pts", I_PTS_ERRORS),
    ("pid_missing", I_GAPS),
)


class Tr101290Analyzer:
    """TR 101 290 priority 1 and 2 checks on one transport stream, fed as bytes arrive.

    Implemented: 1.1 TS_sync_loss (lost on 2 bad sync bytes, regained on 5 good), 1.2
    sync_byte_error (counted), 1.3 PAT (as 1.3.a: valid table_id 0 sections, other table_id
    on PID 0, scrambled PID 0), 1.4 CC, 1.5 PMT (per PMT PID named in the PAT, scrambled), 1.6
    PID (video/audio PIDs named in a PMT), 2.1 transport_error, 2.2 CRC (PAT/PMT only), 2.3a/b
    PCR, 2.5 PTS. Not thread-safe: one reader thread feeds it and calls check().
    """

    EVENT_ROWS = 4096

    def __init__(self, settings: Tr101290Settings, report: Report) -> None:
        self.settings = settings
        self._report = report
        self._st = np.zeros(N_ST, np.int64)
        self._flags = np.zeros(N_PIDS, np.uint8)
        self._pid_i = np.zeros((N_PIDS, N_I), np.int64)
        self._pid_i[:, I_CC_LAST] = -1
        self._pid_f = np.full((N_PIDS, N_F), np.nan)
        self._lim = np.zeros(N_LIM, np.float64)
        self._lim[LIM_PCR_INTERVAL_S] = settings.pcr_interval_max_s
        self._lim[LIM_PCR_JUMP_TICKS] = settings.pcr_discontinuity_max_s * 27e6
        self._lim[LIM_PTS_INTERVAL_S] = settings.pts_interval_max_s
        self._ev = np.zeros((self.EVENT_ROWS, 4), np.int64)
        self._ev_t = np.zeros(self.EVENT_ROWS, np.float64)
        self._tail = b""
        self._last_s: float | None = None
        self._conditions: dict[tuple[str, str | None], _Condition] = {}
        self._active: set[_Condition] = set()
        self._next_settle_s = math.inf  # no held error expires before this
        self._psi_counts: dict[int, dict[str, int]] = {}
        # PSI state.
        self._flags[0] = FLAG_PSI
        self._assemblers: dict[int, _SectionAssembler] = {0: _SectionAssembler()}
        self._last_pat_s = math.nan
        self._pat: dict[int, int] = {}  # program_number -> PMT PID
        self._pmt_last_s: dict[int, float] = {}  # PMT PID -> last table_id 2 section
        self._pmts: dict[int, tuple[int, tuple[tuple[int, str], ...]]] = {}  # PMT PID -> content
        self._es: dict[int, str] = {}  # watched ES PID -> 'video' | 'audio'
        self._pcr_pids: set[int] = set()
        self._pcr_overdue: set[int] = set()  # PCR PIDs raised by the pcr_missing_after_s timer

    # ----------------------------------------------------------------------- public

    def feed(self, data: bytes, now_s: float) -> None:
        """Analyse the bytes of one chunk that arrived at ``now_s`` (``time.monotonic()``)."""
        if not data:
            self.check(now_s)
            return
        buf = self._tail + bytes(data) if self._tail else bytes(data)
        arr = np.frombuffer(buf, np.uint8)
        if self._last_s is None:
            self._start(now_s)
            t0 = now_s
        else:
            t0 = min(now_s, max(self._last_s, now_s - _SPREAD_MAX_S))
            if t0 > self._last_s:
                self._pause_timers(t0 - self._last_s)
        pos = 0
        full = self.EVENT_ROWS - EVENTS_PER_PACKET_MAX
        while True:
            n_ev, pos = scan_packets(
                arr,
                pos,
                len(self._tail),
                t0,
                now_s,
                self._st,
                self._flags,
                self._pid_i,
                self._pid_f,
                self._lim,
                self._ev,
                self._ev_t,
            )
            if n_ev:
                self._handle(buf, n_ev)
            if n_ev < full:
                break
        self._tail = buf[pos:]
        self.check(now_s)

    def check(self, now_s: float) -> None:
        """Evaluate the "not seen for N s" rules and expire held errors as of ``now_s``."""
        if self._last_s is None:
            self._start(now_s)
        self._last_s = now_s if self._last_s is None else max(self._last_s, now_s)
        s = self.settings
        if now_s - self._last_pat_s > s.pat_interval_max_s:
            self._cond("tr101290_pat", None).begin(
                self._last_pat_s + s.pat_interval_max_s,
                limit_ms=_ms(s.pat_interval_max_s),
            )
        for pid, last_s in self._pmt_last_s.items():
            if now_s - last_s > s.pmt_interval_max_s:
                self._cond("tr101290_pmt", pid).begin(
                    last_s + s.pmt_interval_max_s, limit_ms=_ms(s.pmt_interval_max_s)
                )
        for pid in self._es:
            last_s = float(self._pid_f[pid, F_LAST_SEEN])
            if now_s - last_s > s.pid_missing_after_s:
                self._cond("tr101290_pid_missing", pid).begin(
                    last_s + s.pid_missing_after_s, limit_ms=_ms(s.pid_missing_after_s)
                )
            last_s = float(self._pid_f[pid, F_PTS_T])
            if now_s - last_s > s.pts_interval_max_s:
                self._cond("tr101290_pts", pid).begin(
                    last_s + s.pts_interval_max_s, limit_ms=_ms(s.pts_interval_max_s)
                )
        for pid in self._pcr_pids:
            last_s = float(self._pid_f[pid, F_PCR_T])
            if now_s - last_s > s.pcr_missing_after_s:
                self._pcr_overdue.add(pid)
                self._cond("tr101290_pcr", pid).begin(
                    last_s + s.pcr_interval_max_s,
                    kind="repetition",
                    limit_ms=_ms(s.pcr_interval_max_s),
                )
            elif pid in self._pcr_overdue:  # PCRs are back, whatever their values say
                self._pcr_overdue.discard(pid)
                self._cond("tr101290_pcr", pid).end(now_s)
        self._settle(now_s)

    def take_pcr_jitter_ms(self) -> dict[int, float]:
        """Per PCR PID, the largest difference between the arrival interval and the PCR
        interval of two consecutive PCRs since the last call, in ms: how much the path (or the
        sender) moves packets against the stream's clock. Reported, never alarmed on: a sender
        starting up shows tens of ms here. Arrival times within one chunk are interpolated, so
        it includes up to a chunk's spread. A metrics reader may call this from another thread
        (a maximum taken while the reader writes one is lost, no more)."""
        column = self._pid_f[:, F_PCR_JITTER]
        out = {pid: round(float(column[pid]) * 1000, 3) for pid in sorted(self._pcr_pids)}
        column[:] = np.nan
        return {pid: ms for pid, ms in out.items() if not math.isnan(ms)}

    @property
    def in_sync(self) -> bool:
        return bool(self._st[ST_SYNC])

    @property
    def counters(self) -> Tr101290Counters:
        """A snapshot of the error counts (cheap enough for a metrics scrape)."""
        seen = np.flatnonzero(self._pid_i[:, I_PACKETS])
        per_pid: dict[int, dict[str, int]] = {}
        for pid in seen.tolist():
            row = self._pid_i[pid]
            per_pid[pid] = {name: int(row[col]) for name, col in _KERNEL_COUNTERS}
            for name in ("pat", "pmt", "crc"):
                per_pid[pid][name] = 0
        for pid, counts in self._psi_counts.items():
            per_pid.setdefault(pid, {name: 0 for name, _ in _KERNEL_COUNTERS}).update(counts)
        totals: dict[str, int] = {
            name: int(self._pid_i[:, col].sum()) for name, col in _KERNEL_COUNTERS
        }
        for name in ("pat", "pmt", "crc"):
            totals[name] = sum(c.get(name, 0) for c in self._psi_counts.values())
        totals["sync_byte_error"] = int(self._st[ST_SYNC_BYTE_ERRORS])
        totals["sync_loss"] = int(self._st[ST_SYNC_LOSSES])
        totals["bytes_discarded"] = int(self._st[ST_BYTES_DISCARDED])
        return Tr101290Counters(totals, per_pid)

    # ----------------------------------------------------------------------- internals

    def _pause_timers(self, stall_s: float) -> None:
        """Nothing arrived for ``stall_s``: the arrival timers (PAT, PMT, PID, PTS, PCR) stand
        still, so that the first chunk after a stall does not find every table overdue."""
        self._last_pat_s += stall_s
        for pid in self._pmt_last_s:
            self._pmt_last_s[pid] += stall_s
        self._pid_f[:, [F_LAST_SEEN, F_PCR_T, F_PTS_T]] += stall_s

    def _start(self, now_s: float) -> None:
        self._last_s = now_s
        self._last_pat_s = now_s  # the PAT is due 0.5 s after the first bytes

    def _cond(self, alarm: str, pid: int | None) -> _Condition:
        key = (alarm, None if pid is None else str(pid))
        cond = self._conditions.get(key)
        if cond is None:
            cond = self._conditions[key] = _Condition(alarm, key[1], self._report, self._active)
        return cond

    def _settle(self, now_s: float) -> None:
        """Clear the held errors that expired by ``now_s``; note when the next one does."""
        for cond in list(self._active):
            cond.settle(now_s)
        self._next_settle_s = min(
            (c.until_s for c in self._active if not c.ongoing), default=math.inf
        )

    def _count(self, pid: int, name: str) -> None:
        counts = self._psi_counts.setdefault(pid, {})
        counts[name] = counts.get(name, 0) + 1

    def _handle(self, buf: bytes, n_ev: int) -> None:
        hold = self.settings.error_hold_s
        rows = self._ev[:n_ev].tolist()
        times = self._ev_t[:n_ev].tolist()
        for (kind, pid, pos, value), t in zip(rows, times, strict=True):
            if t >= self._next_settle_s:  # report in time order, whatever the chunks
                self._settle(t)
            # Any error below is held until t + hold at the latest: settle no later than that.
            self._next_settle_s = min(self._next_settle_s, t + hold)
            if kind == EV_PSI:
                self._psi_packet(buf[pos : pos + PACKET], pid, value, t)
            elif kind == EV_CC:
                self._cond("tr101290_cc", pid).error(t, hold, missing=value)
                assembler = self._assemblers.get(pid)
                if assembler is not None:  # a section across the gap would fail its CRC
                    assembler.buf = None
            elif kind == EV_TEI:
                self._cond("tr101290_transport_error", pid).error(t, hold)
            elif kind == EV_PCR_INTERVAL:
                cond = self._cond("tr101290_pcr", pid)
                n = 0 if cond.ongoing else 1  # check() already counted this gap
                # Raised from when the stream's clock says the PCR was due, held from now on.
                due_s = min(t - value / 1e6 + self.settings.pcr_interval_max_s, t)
                held_s = t - due_s + hold
                cond.error(due_s, held_s, n, kind="repetition", interval_ms=value / 1000)
                cond.end(t, interval_ms=value / 1000)
            elif kind == EV_PCR_JUMP:
                self._cond("tr101290_pcr", pid).error(
                    t, hold, kind="discontinuity", jump_ms=value / 1000
                )
            elif kind == EV_PTS:
                cond = self._cond("tr101290_pts", pid)
                cond.begin(t - value / 1e6 + self.settings.pts_interval_max_s)
                cond.end(t, interval_ms=value / 1000)
            elif kind == EV_GAP:
                cond = self._cond("tr101290_pid_missing", pid)
                cond.begin(t - value / 1e6 + self.settings.pid_missing_after_s)
                cond.end(t, interval_ms=value / 1000)
            elif kind == EV_SYNC_LOST:
                self._cond("tr101290_sync_loss", None).begin(t)
            elif kind == EV_SYNC_REGAINED:
                cond = self._cond("tr101290_sync_loss", None)
                cond.error(t, hold)  # held from the regain on; error() first, or end() clears
                cond.end(t)

    def _psi_packet(self, packet: bytes, pid: int, payload_at: int, t: float) -> None:
        hold = self.settings.error_hold_s
        scrambled = packet[3] >> 6
        alarm = "tr101290_pat" if pid == 0 else "tr101290_pmt"
        if scrambled:
            self._count(pid, alarm[10:])
            self._cond(alarm, None if pid == 0 else pid).error(t, hold, scrambled=True)
            return
        assembler = self._assemblers.setdefault(pid, _SectionAssembler())
        for section in assembler.push(packet[payload_at:], bool(packet[1] & 0x40)):
            if len(section) < 12 or not section[1] & 0x80:
                continue
            if not crc32_mpeg2_ok(section):
                self._count(pid, "crc")
                self._cond("tr101290_crc", pid).error(t, hold, table_id=section[0])
                continue
            if pid == 0:
                self._pat_section(section, t)
            elif section[0] == 0x02:
                self._pmt_section(pid, section, t)

    def _pat_section(self, section: bytes, t: float) -> None:
        s = self.settings
        cond = self._cond("tr101290_pat", None)
        if section[0] != 0x00:  # 1.3: only the PAT may be carried on PID 0
            self._count(0, "pat")
            cond.error(t, s.error_hold_s, table_id=section[0])
            return
        gap_s = t - self._last_pat_s
        if gap_s > s.pat_interval_max_s:
            self._count(0, "pat")
            cond.begin(self._last_pat_s + s.pat_interval_max_s, limit_ms=_ms(s.pat_interval_max_s))
        cond.end(t, interval_ms=_ms(gap_s))
        self._last_pat_s = t
        if section[6] != 0:  # multi-section PATs: keep the first section's programs only
            return
        pat: dict[int, int] = {}
        body = section[8:-4]
        for i in range(0, len(body) - 3, 4):
            program = (body[i] << 8) | body[i + 1]
            if program != 0:  # 0 names the NIT PID
                pat[program] = ((body[i + 2] & 0x1F) << 8) | body[i + 3]
        if pat != self._pat:
            self._pat = pat
            self._rewire(t)

    def _pmt_section(self, pid: int, section: bytes, t: float) -> None:
        s = self.settings
        last_s = self._pmt_last_s.get(pid)
        if last_s is None:  # no longer named in the PAT
            return
        cond = self._cond("tr101290_pmt", pid)
        gap_s = t - last_s
        if gap_s > s.pmt_interval_max_s:
            self._count(pid, "pmt")
            cond.begin(last_s + s.pmt_interval_max_s, limit_ms=_ms(s.pmt_interval_max_s))
        cond.end(t, interval_ms=_ms(gap_s))
        self._pmt_last_s[pid] = t
        pcr_pid = ((section[8] & 0x1F) << 8) | section[9]
        i = 12 + (((section[10] & 0x0F) << 8) | section[11])
        end = len(section) - 4
        streams: list[tuple[int, str]] = []
        while i + 5 <= end:
            stream_type = section[i]
            es_pid = ((section[i + 1] & 0x1F) << 8) | section[i + 2]
            es_info = ((section[i + 3] & 0x0F) << 8) | section[i + 4]
            kind = _es_kind(stream_type, section[i + 5 : i + 5 + es_info])
            if kind is not None:
                streams.append((es_pid, kind))
            i += 5 + es_info
        content = (pcr_pid, tuple(streams))
        if self._pmts.get(pid) != content:
            self._pmts[pid] = content
            self._rewire(t)

    def _rewire(self, t: float) -> None:
        """Watch what the current PAT and PMTs name; stop watching what they no longer name."""
        pmt_pids = {p for p in self._pat.values() if p != NULL_PID}
        for pid in list(self._pmt_last_s):
            if pid not in pmt_pids:
                del self._pmt_last_s[pid]
                self._pmts.pop(pid, None)
                self._assemblers.pop(pid, None)
                self._flags[pid] &= ~np.uint8(FLAG_PSI)
                self._cond("tr101290_pmt", pid).drop(t)
        for pid in pmt_pids:
            if pid not in self._pmt_last_s:
                self._pmt_last_s[pid] = t
                self._flags[pid] |= FLAG_PSI
        es: dict[int, str] = {}
        pcr_pids: set[int] = set()
        for pcr_pid, streams in self._pmts.values():
            if pcr_pid != NULL_PID:
                pcr_pids.add(pcr_pid)
            es.update(streams)
        for pid in set(self._es) - es.keys():
            self._flags[pid] &= ~np.uint8(FLAG_GAP | FLAG_PTS)
            self._cond("tr101290_pid_missing", pid).drop(t)
            self._cond("tr101290_pts", pid).drop(t)
        for pid in es.keys() - self._es.keys():
            self._flags[pid] |= FLAG_GAP | FLAG_PTS
            self._pid_f[pid, F_GAP_MAX] = self.settings.pid_missing_after_s
            # Timers start when the PMT names the PID, not at its first packet.
            for col, limit_s in (
                (F_LAST_SEEN, self.settings.pid_missing_after_s),
                (F_PTS_T, self.settings.pts_interval_max_s),
            ):
                if not t - self._pid_f[pid, col] <= limit_s:  # also when NaN (never seen)
                    self._pid_f[pid, col] = t
        for pid in self._pcr_pids - pcr_pids:
            self._cond("tr101290_pcr", pid).drop(t)
        for pid in pcr_pids - self._pcr_pids:
            if not t - self._pid_f[pid, F_PCR_T] <= self.settings.pcr_interval_max_s:
                self._pid_f[pid, F_PCR_T] = t
        self._es = es
        self._pcr_pids = pcr_pids


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
