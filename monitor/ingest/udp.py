"""MPEG-TS over UDP and RTP, unicast and multicast: a socket reader feeding a BytePipe.

``udp://HOST:PORT`` listens on HOST (a local address, or a multicast group to join) and PORT;
``rtp://HOST:PORT`` is the same with the RTP header (RFC 3550) stripped from each datagram.
Options in the query: ``localaddr`` (interface address for a multicast join, default any),
``buffer_size`` (socket receive buffer in bytes, default 4 MiB). Every socket call is bounded
by a timeout, so stop() ends the reader within a fraction of a second.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from monitor.errors import InputError
from monitor.ingest.pipe import BytePipe

POLL_S = 0.2
MAX_DATAGRAM = 65536


@dataclass(frozen=True)
class UdpOptions:
    host: str
    port: int
    rtp: bool = False
    localaddr: str = "0.0.0.0"
    buffer_bytes: int = 4 << 20

    @property
    def multicast(self) -> bool:
        return ipaddress.ip_address(self.host).is_multicast

    @classmethod
    def from_url(cls, url: str) -> UdpOptions:
        parts = urlsplit(url)
        if parts.scheme not in ("udp", "rtp"):
            raise InputError(f"{url}: not a udp:// or rtp:// URL")
        host = (parts.hostname or "").lstrip("@") or "0.0.0.0"
        try:
            port = parts.port
            ipaddress.ip_address(host)
        except ValueError as exc:
            raise InputError(f"{url}: {exc}") from None
        if not port:
            raise InputError(f"{url}: a port is needed, e.g. {parts.scheme}://239.1.1.1:5000")
        query = parse_qs(parts.query)
        try:
            buffer_bytes = int(query.get("buffer_size", [4 << 20])[0])
        except ValueError:
            raise InputError(f"{url}: buffer_size must be a number of bytes") from None
        localaddr = query.get("localaddr", ["0.0.0.0"])[0]
        return cls(host, port, parts.scheme == "rtp", localaddr, buffer_bytes)


def rtp_payload(datagram: bytes) -> bytes | None:
    """The payload of an RTP packet (RFC 3550 §5.1), or None when it is not RTP version 2."""
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
    return datagram[offset:end] if offset <= end else None


class UdpReader:
    """Receives datagrams on a thread and writes their MPEG-TS payload into a pipe."""

    def __init__(self, options: UdpOptions, pipe: BytePipe, name: str) -> None:
        self.options = options
        self.pipe = pipe
        self.name = name
        self.datagrams = 0
        self.bytes_in = 0
        self.last_receive_s = time.monotonic()  # arrival of the last datagram
        self.tap: Callable[[bytes], None] | None = None  # sees every TS payload (TR 101 290)
        self.not_rtp = 0
        self._stop = threading.Event()
        self._sock = self._open()
        self._thread = threading.Thread(target=self._run, name=f"udp {name}", daemon=True)

    def _open(self) -> socket.socket:
        o = self.options
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, o.buffer_bytes)
            if o.multicast:
                sock.bind(("", o.port))
                membership = socket.inet_aton(o.host) + socket.inet_aton(o.localaddr)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            else:
                sock.bind((o.host, o.port))
            sock.settimeout(POLL_S)
        except OSError as exc:
            sock.close()
            raise InputError(f"{self.name}: cannot listen: {exc.strerror or exc}") from None
        return sock

    def start(self) -> UdpReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        rtp = self.options.rtp
        try:
            while not self._stop.is_set():
                try:
                    datagram = self._sock.recv(MAX_DATAGRAM)
                except TimeoutError:
                    continue
                except OSError:
                    break
                self.datagrams += 1
                self.last_receive_s = time.monotonic()
                if rtp:
                    payload = rtp_payload(datagram)
                    if payload is None:
                        self.not_rtp += 1
                        continue
                    datagram = payload
                self.bytes_in += len(datagram)
                self.pipe.write(datagram)
                if self.tap is not None:
                    self.tap(datagram)
        finally:
            self._sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * POLL_S + 1.0)
