"""Live feeds made on this machine: a UDP/RTP MPEG-TS sender that plays a file at real time.

The tests' real UDP peer and ``streamqc demo``'s channels. It paces datagrams on the file's
PCR schedule (as a CBR multiplexer would) and loops the file until stopped.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

TS_PER_DATAGRAM = 7
DATAGRAM = 188 * TS_PER_DATAGRAM
NULL_PACKET = bytes([0x47, 0x1F, 0xFF, 0x10]) + bytes(184)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pcr_times(data: bytes) -> np.ndarray:
    """When each 188-byte packet is due, from the PCRs, interpolated by position (ISO 13818-1).

    A CBR multiplexer sends packets on this schedule; pacing by the average bitrate instead
    makes the PCR gaps of a VBR file look like transport errors.
    """
    packets = np.frombuffer(data[: len(data) // 188 * 188], np.uint8).reshape(-1, 188)
    has_pcr = ((packets[:, 3] & 0x20) != 0) & (packets[:, 4] >= 7) & ((packets[:, 5] & 0x10) != 0)
    rows = np.flatnonzero(has_pcr)
    b = packets[rows, 6:11].astype(np.int64)
    base = (b[:, 0] << 25) | (b[:, 1] << 17) | (b[:, 2] << 9) | (b[:, 3] << 1) | (b[:, 4] >> 7)
    pcr_s = (base - base[0]) / 90000.0
    due_s: np.ndarray = np.interp(np.arange(len(packets)), rows, pcr_s)
    return due_s


class UdpSender:
    """Sends ``path`` to host:port in 1316-byte datagrams on the file's PCR schedule.

    ``pause()`` / ``resume()`` stop and restart the flow (a sender killed and brought back);
    ``nulls()`` switches to null packets only (bytes flow, no media); ``rtp`` wraps each
    datagram in an RTP header. Runs the file in a loop until stop().
    """

    def __init__(
        self,
        path: Path,
        port: int,
        duration_s: float,
        *,
        host: str = "127.0.0.1",
        rtp: bool = False,
        source: str | None = None,
        first_sequence: int = 0,
    ) -> None:
        data = path.read_bytes()
        self.data = data[: len(data) // DATAGRAM * DATAGRAM]
        # due time of each datagram: its last packet's PCR time; the loop restarts one
        # datagram interval after the last
        times = pcr_times(self.data)[TS_PER_DATAGRAM - 1 :: TS_PER_DATAGRAM]
        self.due = times
        self.period_s = float(times[-1] + (times[-1] - times[0]) / max(len(times) - 1, 1))
        self.rate = len(self.data) / duration_s  # bytes per second, for the null packets
        self.address = (host, port)
        self.rtp = rtp
        self.first_sequence = first_sequence
        self.outgoing: Callable[[int, bytes], list[bytes]] | None = None
        """Sees each datagram with its number (0, 1, ...) and returns what to send instead:
        nothing (a loss), it twice, or one held back earlier (reordering)."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if source is not None:  # datagrams leave from this address (an SSM source)
            self.sock.bind((source, 0))
        if ipaddress.ip_address(host).is_multicast:
            self.sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source or "127.0.0.1")
            )
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.sent = 0
        self.started_wall: float | None = None
        self._flowing = threading.Event()
        self._flowing.set()
        self._nulls = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> UdpSender:
        self._thread.start()
        return self

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def nulls(self) -> None:
        self._nulls = True

    def stop(self) -> None:
        self._stop.set()
        self._flowing.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def _run(self) -> None:
        seq = 0
        index = 0  # datagram index into the file, looping
        loops = 0
        start = time.monotonic()
        self.started_wall = time.time()  # the file's first PCR is due now
        paused_s = 0.0
        while not self._stop.is_set():
            if not self._flowing.is_set():
                t0 = time.monotonic()
                self._flowing.wait(0.1)
                paused_s += time.monotonic() - t0  # resume where it was, without a burst
                continue
            if self._nulls:
                due = start + paused_s + self.sent * DATAGRAM / self.rate
            else:
                due = start + paused_s + loops * self.period_s + float(self.due[index])
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, 0.05))
                continue
            if self._nulls:
                chunk = NULL_PACKET * TS_PER_DATAGRAM
            else:
                chunk = self.data[index * DATAGRAM : (index + 1) * DATAGRAM]
                index += 1
                if index == len(self.due):
                    index, loops = 0, loops + 1
            number = seq
            seq += 1
            if self.rtp:
                stamp = int((due - start) * 90000) & 0xFFFFFFFF
                sequence = (self.first_sequence + number) & 0xFFFF
                header = struct.pack("!BBHII", 0x80, 33, sequence, stamp, 0x5EED)
                chunk = header + chunk
            for datagram in self.outgoing(number, chunk) if self.outgoing else [chunk]:
                self.sock.sendto(datagram, self.address)
            self.sent += 1
