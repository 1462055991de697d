"""MPEG-TS over UDP and RTP, unicast and multicast: a socket reader feeding a BytePipe.

``udp://HOST:PORT`` listens on HOST (a local address, or a multicast group to join) and PORT;
``rtp://HOST:PORT`` is the same with the RTP header (RFC 3550) stripped from each datagram and
its sequence numbers accounted for (``monitor.ingest.rtp``: loss, duplicates, reordering;
the ``rtp_loss`` alarm). Options in the query, named as FFmpeg's udp protocol names them:

- ``localaddr``: the interface to join a group on, by address (FFmpeg's meaning) or by name
  (``localaddr=eth1``, which FFmpeg does not take); default: the one the routing table picks.
- ``sources``: source-specific multicast (IGMPv3 SSM, RFC 4607): comma-separated IPv4
  addresses, each joined with ``IP_ADD_SOURCE_MEMBERSHIP``; datagrams from any other source
  are dropped (and counted) even where the kernel delivers them.
- ``block``: sources never to receive from (``IP_BLOCK_SOURCE``, and dropped on receipt).
- ``buffer_size``: the socket receive buffer in bytes, default 4 MiB.
- ``batch_ms``: how long the reader lets datagrams gather between two hand-overs to the
  decoder, default 40 (one frame at 25 fps), 0 to 1000. Larger batches cost less CPU (the
  decoder works through more pictures with its caches warm: per 360p channel 31.8 ms/s at
  40, 30.0 at 100, 27.5 at 200) and add that much to the way of a picture to the checks.

A multicast socket is bound to its group address, not to the wildcard, and has
``IP_MULTICAST_ALL`` off: on Linux a wildcard-bound socket receives every group joined on the
host for its port (by any socket, with the default ``IP_MULTICAST_ALL=1``), so two channels on
``239.1.1.1:5000`` and ``239.1.1.2:5000`` would feed each other's packets into one decoder.
Every wait for the socket is bounded by a timeout, so stop() ends the reader within a fraction of a
second.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from monitor.errors import InputError
from monitor.ingest.pipe import BytePipe
from monitor.ingest.reports import Report, TransportCondition
from monitor.ingest.rtp import RtpCounters, RtpSequence, parse_rtp

POLL_S = 0.2
MAX_DATAGRAM = 65536
BATCH_BYTES = 256 << 10
"""At most this much is taken from the socket per wake-up."""
COALESCE_S = 0.04
"""The reader's default pause between batches, one frame interval at 25 fps: the most it adds to a
picture's way to the decoder. Taking a datagram at a time cost a wake-up of the reader, the
decoder and TR 101 290 per datagram (76 a second at 0.8 Mbit/s, 285 at 3 Mbit/s): measured
side by side (benchmarks/ab_daemon.py), the reader went from 6.1 to 2.8 ms/s per 360p
channel and from 8.5 to 2.8 at 720p, the worker in all by 8-15 %."""
JUDGE_EVERY_S = 1.0
"""RTP loss is judged over intervals this long (as SRT's statistics are)."""

# Linux <linux/in.h> values the socket module does not name.
IP_MULTICAST_ALL = 49
IP_ADD_SOURCE_MEMBERSHIP = 39
IP_BLOCK_SOURCE = 38
SIOCGIFADDR = 0x8915
OPTIONS = ("localaddr", "sources", "block", "buffer_size", "batch_ms")
FFMPEG_ONLY_OPTIONS = frozenset(
    {"fifo_size", "overrun_nonfatal", "pkt_size", "reuse", "reuse_socket", "timeout", "ttl"}
    | {"localport", "local_port", "connect", "bitrate", "burst_bits", "broadcast"}
)
"""FFmpeg udp options that mean nothing to this reader (its own buffering, a receiver): URLs
copied from an FFmpeg command line work; a misspelt option is an error."""


@dataclass(frozen=True)
class UdpOptions:
    host: str
    port: int
    rtp: bool = False
    localaddr: str = "0.0.0.0"
    """The interface address to join on (resolved from a name by ``from_url``)."""
    buffer_bytes: int = 4 << 20
    sources: tuple[str, ...] = ()
    block: tuple[str, ...] = ()
    batch_s: float = COALESCE_S

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
        if ipaddress.ip_address(host).version != 4:
            raise InputError(f"{url}: IPv6 is not supported (IPv4 unicast or multicast only)")
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - set(OPTIONS) - FFMPEG_ONLY_OPTIONS)
        if unknown:
            raise InputError(f"{url}: unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
        try:
            buffer_bytes = int(query.get("buffer_size", [4 << 20])[0])
        except ValueError:
            raise InputError(f"{url}: buffer_size must be a number of bytes") from None
        try:
            batch_s = float(query.get("batch_ms", [COALESCE_S * 1000])[0]) / 1000
        except ValueError:
            batch_s = -1.0
        if not 0 <= batch_s <= 1:
            raise InputError(f"{url}: batch_ms must be a number of milliseconds from 0 to 1000")
        localaddr = interface_address(url, query.get("localaddr", ["0.0.0.0"])[0])
        sources = addresses(url, "sources", query)
        block = addresses(url, "block", query)
        rtp = parts.scheme == "rtp"
        return cls(host, port, rtp, localaddr, buffer_bytes, sources, block, batch_s)


def addresses(url: str, option: str, query: dict[str, list[str]]) -> tuple[str, ...]:
    """The IPv4 addresses of a comma-separated option (it may also be given several times)."""
    out: list[str] = []
    for value in query.get(option, []):
        for item in value.split(","):
            item = item.strip()
            try:
                address = ipaddress.ip_address(item)
            except ValueError:
                raise InputError(f"{url}: {option}: {item!r} is not an IPv4 address") from None
            if address.version != 4 or address.is_multicast:
                raise InputError(f"{url}: {option}: {item} is not a unicast IPv4 address")
            out.append(str(address))
    return tuple(out)


def interface_address(url: str, value: str) -> str:
    """``localaddr`` as an IPv4 address: given as one, or the address of a named interface."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        if address.version != 4:
            raise InputError(f"{url}: localaddr: {value} is not an IPv4 address")
        return value
    if not value or len(value) > 15:
        raise InputError(f"{url}: localaddr: {value!r} is neither an address nor an interface")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("256s", value.encode())
        try:
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
        except OSError as exc:
            reason = "no such interface" if exc.errno == 19 else "it has no IPv4 address"
            raise InputError(f"{url}: localaddr: interface {value!r}: {reason}") from None
    return socket.inet_ntoa(answer[20:24])


def rtp_payload(datagram: bytes) -> bytes | None:
    """The payload of an RTP packet (RFC 3550 §5.1), or None when it is not RTP version 2."""
    header = parse_rtp(datagram)
    return None if header is None else datagram[header.payload_offset : header.payload_end]


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


MSG_TRUNC = 0x20
SOCKADDR_IN = 16
SLOT_MIN = 2048


def _recvmmsg() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).recvmmsg
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.POINTER(_Mmsghdr),
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_void_p,
    ]
    function.restype = ctypes.c_int
    return function


_RECVMMSG = _recvmmsg()


class Datagrams:
    """Every datagram queued on a non-blocking socket, many per system call (Linux
    ``recvmmsg``; Python's socket module has no such call, so it is bound with ctypes).

    Each datagram lands in a slot of ``slot`` bytes of one buffer; the slot size follows the
    largest datagram seen (MPEG-TS over UDP is 1316 bytes, RTP 1328), so a larger one arriving
    later is cut short once (counted in ``truncated``) and the slots grow for the next call.
    Where ``recvmmsg`` is missing, one ``recvfrom_into`` per datagram does the same job."""

    def __init__(self, sock: socket.socket, capacity: int) -> None:
        self.sock = sock
        self.capacity = capacity
        self.truncated = 0
        self._slot = 0
        self._setup(SLOT_MIN)

    def _setup(self, slot: int) -> None:
        self._slot = slot
        self._count = max(1, self.capacity // slot)
        spare = MAX_DATAGRAM if _RECVMMSG is None else 0
        self._buffer = bytearray(slot * self._count + spare)
        self._view = memoryview(self._buffer)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._buffer))
        self._names = (ctypes.c_char * (SOCKADDR_IN * self._count))()
        names = ctypes.addressof(self._names)
        self._iovecs = (_Iovec * self._count)()
        self._msgs = (_Mmsghdr * self._count)()
        for i in range(self._count):
            self._iovecs[i].iov_base = base + i * slot
            self._iovecs[i].iov_len = slot
            header = self._msgs[i].msg_hdr
            header.msg_name = names + i * SOCKADDR_IN
            header.msg_iov = ctypes.pointer(self._iovecs[i])
            header.msg_iovlen = 1

    def receive(self) -> list[tuple[memoryview, bytes]]:
        """The queued datagrams (a view of each, valid until the next call) with each sender's
        packed IPv4 address; [] when none is queued."""
        if _RECVMMSG is None:
            return self._one_by_one()
        msgs = self._msgs
        for i in range(self._count):
            msgs[i].msg_hdr.msg_namelen = SOCKADDR_IN
        got = _RECVMMSG(self.sock.fileno(), msgs, self._count, socket.MSG_DONTWAIT, None)
        if got < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return []
            raise OSError(code, os.strerror(code))
        names = bytes(self._names)
        slot, view = self._slot, self._view
        out = []
        cut = False
        for i in range(got):
            message = msgs[i]
            if message.msg_hdr.msg_flags & MSG_TRUNC:
                self.truncated += 1
                cut = True
                continue
            start = i * slot
            out.append((view[start : start + message.msg_len], names[i * 16 + 4 : i * 16 + 8]))
        if cut:  # a datagram larger than the slots: larger slots from the next call on
            out = [(memoryview(bytes(data)), sender) for data, sender in out]  # keep them
            self._setup(min(MAX_DATAGRAM, slot * 4))
        return out

    def _one_by_one(self) -> list[tuple[memoryview, bytes]]:
        out: list[tuple[memoryview, bytes]] = []
        view = self._view
        used = 0
        while used < self.capacity:
            try:
                n, (host, _) = self.sock.recvfrom_into(view[used:], MAX_DATAGRAM)
            except BlockingIOError:
                break
            out.append((view[used : used + n], socket.inet_aton(host)))
            used += n
        return out


class UdpReader:
    """Receives datagrams on a thread and writes their MPEG-TS payload into a pipe.

    ``report`` receives the ``rtp_loss`` condition of an RTP input (judged every
    JUDGE_EVERY_S); ``gauges()`` gives the counters for the metrics.
    """

    def __init__(
        self, options: UdpOptions, pipe: BytePipe, name: str, report: Report | None = None
    ) -> None:
        self.options = options
        self.pipe = pipe
        self.name = name
        self.report = report
        self.datagrams = 0
        self.bytes_in = 0
        self.last_receive_s = time.monotonic()  # arrival of the last datagram
        self.tap: Callable[[bytes], None] | None = None  # sees every TS payload (TR 101 290)
        self.not_rtp = 0
        self.filtered = 0  # datagrams from a source not asked for (sources, block)
        self.sequence = RtpSequence()
        self._judged = RtpCounters()
        self._loss_active = False
        self._accept = frozenset(options.sources)
        self._refuse = frozenset(options.block)
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
                # Bound to the group: only datagrams sent to it reach this socket. Without
                # IP_MULTICAST_ALL=0, groups joined by other sockets would reach it as well.
                sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
                sock.bind((o.host, o.port))
                group, interface = socket.inet_aton(o.host), socket.inet_aton(o.localaddr)
                for source in o.sources:  # struct ip_mreq_source: group, interface, source
                    mreq = group + interface + socket.inet_aton(source)
                    sock.setsockopt(socket.IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, mreq)
                if not o.sources:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group + interface)
                for source in o.block:
                    mreq = group + interface + socket.inet_aton(source)
                    sock.setsockopt(socket.IPPROTO_IP, IP_BLOCK_SOURCE, mreq)
            else:
                sock.bind((o.host, o.port))
            sock.setblocking(False)  # _run waits in poll(), bounded by POLL_S
        except OSError as exc:
            sock.close()
            raise InputError(f"{self.name}: cannot listen: {exc.strerror or exc}") from None
        return sock

    def start(self) -> UdpReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        """Wait for a datagram, then take every one queued in the kernel in one go.

        Each wake-up costs a pipe write, a wake-up of the decoder and a TR 101 290 call, so
        after a batch the reader sleeps ``batch_ms`` and lets the socket buffer gather the next
        (up to BATCH_BYTES): one wake-up per frame interval instead of one per datagram.
        """
        rtp = self.options.rtp
        screen = bool(self._accept or self._refuse)
        next_judge_s = time.monotonic() + JUDGE_EVERY_S
        datagrams = Datagrams(self._sock, BATCH_BYTES)
        self._datagrams = datagrams
        accept = {socket.inet_aton(a) for a in self._accept}
        refuse = {socket.inet_aton(a) for a in self._refuse}
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        try:
            while not self._stop.is_set():
                if rtp and time.monotonic() >= next_judge_s:
                    next_judge_s = time.monotonic() + JUDGE_EVERY_S
                    self._judge()
                if not poller.poll(POLL_S * 1000):
                    continue
                chunks: list[bytes] = []
                used = 0
                while used < BATCH_BYTES:
                    received = datagrams.receive()
                    if not received:
                        break
                    payloads: list[memoryview] = []
                    for data, sender in received:
                        if screen and ((accept and sender not in accept) or sender in refuse):
                            self.filtered += 1
                            continue
                        self.datagrams += 1
                        if rtp:
                            header = parse_rtp(data)
                            if header is None:
                                self.not_rtp += 1
                                continue
                            self.sequence.packet(header.sequence, header.ssrc)
                            data = data[header.payload_offset : header.payload_end]
                        payloads.append(data)
                        used += len(data)
                    chunks.append(b"".join(payloads))  # the views last until the next receive
                if not used:
                    continue
                self.last_receive_s = time.monotonic()
                self.bytes_in += used
                batch = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self.pipe.write(batch)
                if self.tap is not None:
                    self.tap(batch)
                if self.options.batch_s and used < BATCH_BYTES:  # a full batch: more waiting
                    self._stop.wait(self.options.batch_s)
        except OSError:
            pass  # the socket was closed under us: stop() is on its way
        finally:
            self._sock.close()

    def _judge(self) -> None:
        """One interval of RTP accounting: ``rtp_loss`` while numbers go missing."""
        self.sequence.judge()
        total = self.sequence.counters
        interval = total.since(self._judged)
        self._judged = total
        active = interval.lost > 0
        if self.report is None or not (active or self._loss_active):
            return
        self._loss_active = active
        detail = {
            **interval.as_detail(),
            "lost_total": total.lost,
            "duplicates_total": total.duplicates,
            "reordered_total": total.reordered,
            "interval_s": JUDGE_EVERY_S,
        }
        self.report(TransportCondition("rtp_loss", active, time.monotonic(), None, detail))

    def gauges(self) -> tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]:
        """Counters since the input started, as (metric name, extra labels, value)."""
        out: list[tuple[str, tuple[tuple[str, str], ...], float]] = [
            ("udp_datagrams_filtered_total", (), float(self.filtered)),
        ]
        if self.options.rtp:
            c = self.sequence.counters
            out += [
                ("rtp_packets_received_total", (), float(c.received)),
                ("rtp_packets_lost_total", (), float(c.lost)),
                ("rtp_packets_duplicate_total", (), float(c.duplicates)),
                ("rtp_packets_reordered_total", (), float(c.reordered)),
                ("rtp_sequence_restarts_total", (), float(c.restarts)),
                ("rtp_datagrams_not_rtp_total", (), float(self.not_rtp)),
            ]
        return tuple(out)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * POLL_S + 1.0)
