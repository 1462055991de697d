"""A real UDP/RTP MPEG-TS sender for tests: paces a TS file at real time, on loopback."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

TS_PER_DATAGRAM = 7
DATAGRAM = 188 * TS_PER_DATAGRAM
NULL_PACKET = bytes([0x47, 0x1F, 0xFF, 0x10]) + bytes(184)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UdpSender:
    """Sends ``path`` to host:port in 1316-byte datagrams at the file's average rate.

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
    ) -> None:
        self.data = path.read_bytes()
        self.rate = len(self.data) / duration_s  # bytes per second
        self.address = (host, port)
        self.rtp = rtp
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if host.startswith("239."):
            self.sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1")
            )
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.sent = 0
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
        offset = 0
        start = time.monotonic()
        sent_bytes = 0
        while not self._stop.is_set():
            if not self._flowing.is_set():
                self._flowing.wait(0.1)
                start = time.monotonic() - sent_bytes / self.rate  # resume without a burst
                continue
            due = start + sent_bytes / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, 0.05))
                continue
            if self._nulls:
                chunk = NULL_PACKET * TS_PER_DATAGRAM
            else:
                chunk = self.data[offset : offset + DATAGRAM]
                offset = (offset + DATAGRAM) % len(self.data)
                if len(chunk) < DATAGRAM:
                    continue
            if self.rtp:
                header = struct.pack(
                    "!BBHII", 0x80, 33, seq & 0xFFFF, int(sent_bytes) & 0xFFFFFFFF, 0x5EED
                )
                chunk = header + chunk
                seq += 1
            self.sock.sendto(chunk, self.address)
            sent_bytes += DATAGRAM
            self.sent += 1
