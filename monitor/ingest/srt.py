"""SRT input: libsrt through ctypes, received on a thread and written into a BytePipe.

PyAV's FFmpeg has no ``srt://`` protocol, so we terminate SRT ourselves with the system libsrt
(Debian ``libsrt1.5-openssl``, 1.5.x ABI) and hand the MPEG-TS bytes to PyAV through a
:class:`~monitor.ingest.pipe.BytePipe`. Once a second the reader reads libsrt's statistics
(``srt_bstats``, ``SRT_TRACEBSTATS``; docs/API/statistics.md) and reports ``srt_loss``,
``srt_decrypt`` and ``srt_rtt`` as transport conditions.

URL: ``srt://HOST:PORT?mode=caller|listener&latency=120&passphrase=...&pbkeylen=16
&streamid=...&rcvtimeo=250&conntimeo=3000&peeridletimeo=5000``. Every time is in
**milliseconds**, libsrt's unit (``SRTO_LATENCY``) -- unlike FFmpeg's srt URLs, whose
``latency`` is in microseconds. ``mode`` defaults to caller; a listener binds HOST (0.0.0.0 for
every interface). IPv4 only. The passphrase never appears in a message or repr.

Nothing blocks without a bound: the connect and the accept are non-blocking and polled with
``srt_epoll_uwait`` every 0.2 s, and a connected socket receives with ``SRTO_RCVTIMEO``, so
``stop()`` ends the reader within a second.
"""

from __future__ import annotations

import atexit
import ctypes
import math
import re
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from monitor.errors import InputError
from monitor.ingest.pipe import BytePipe
from monitor.ingest.reports import Report, TransportCondition
from monitor.util.backoff import Backoff

LIBSRT = "libsrt.so.1.5"
HAND_OVER_S = 0.04
"""Received messages are handed to the decoder and TR 101 290 at most this late (one frame at
25 fps): a wake-up per batch, not per message (see monitor.ingest.udp.COALESCE_S)."""

# srt.h 1.5.1: SRT_SOCKOPT
SRTO_RCVSYN = 2
SRTO_RCVTIMEO = 14
SRTO_LATENCY = 23
SRTO_PASSPHRASE = 26
SRTO_PBKEYLEN = 27
SRTO_CONNTIMEO = 36
SRTO_STREAMID = 46
SRTO_TRANSTYPE = 50
SRTO_PEERIDLETIMEO = 55
SRTT_LIVE = 0

# srt.h: SRT_ERRNO (1000 * major + minor)
SRT_EASYNCRCV = 6002
SRT_ETIMEOUT = 6003
_NO_DATA_YET = (SRT_EASYNCRCV, SRT_ETIMEOUT)

# srt.h: SRT_EPOLL_OPT, SRT_REJECT_REASON, SRT_SOCKSTATUS
SRT_EPOLL_IN = 0x1
SRT_EPOLL_OUT = 0x4
SRT_EPOLL_ERR = 0x8
SRT_REJ_BADSECRET = 10
SRT_REJ_UNSECURE = 11
SRTS_CONNECTED = 5
_REJECTED_BY_CRYPTO = {
    SRT_REJ_BADSECRET: "passphrase mismatch (SRT_REJ_BADSECRET)",
    SRT_REJ_UNSECURE: "encryption mismatch: only one side has a passphrase (SRT_REJ_UNSECURE)",
}

LIVE_MAX_PAYLOAD = 1456  # SRT_LIVE_MAX_PLSIZE; MPEG-TS messages are 1316 bytes (7 packets)
POLL_MS = 200  # how long one epoll wait (connect, accept) may block
STATS_INTERVAL_S = 1.0
RTT_LATENCY_FACTOR = 3  # latency below 3 x RTT leaves no time for retransmission (standards §7.3)
BACKOFF_S = (0.5, 5.0)  # first and longest wait between connection attempts

_LOG_CRIT = 2  # syslog level: keep libsrt's own stderr logging to fatal problems

_PASSPHRASE_IN_URL = re.compile(r"(?i)(passphrase=)[^&#]*")


def mask_url(url: str) -> str:
    """The URL with its passphrase value replaced by ``***``: the only form we ever show."""
    return _PASSPHRASE_IN_URL.sub(r"\1***", url)


# ---------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class SrtOptions:
    """A parsed ``srt://`` URL. Times in milliseconds (libsrt's unit, not FFmpeg's µs)."""

    host: str
    port: int
    mode: Literal["caller", "listener"] = "caller"
    latency_ms: int = 120  # SRTO_LATENCY: receiver and peer latency (SRT takes the larger side)
    passphrase: str = ""  # 10..80 characters, or empty for no encryption
    pbkeylen: int = 0  # 0 (default: 16), 16, 24 or 32 bytes of AES key
    streamid: str = ""  # set by a caller, read by a listener (<= 512 characters)
    rcvtimeo_ms: int = 250  # how often a silent receive returns control (stop, statistics)
    conntimeo_ms: int = 3000  # SRTO_CONNTIMEO: a caller gives up after this long
    peeridletimeo_ms: int = 5000  # SRTO_PEERIDLETIMEO, and no data this long ends a connection

    @property
    def url(self) -> str:
        """The options as a URL, passphrase masked."""
        query = [f"mode={self.mode}", f"latency={self.latency_ms}"]
        if self.passphrase:
            query.append("passphrase=***")
        if self.pbkeylen:
            query.append(f"pbkeylen={self.pbkeylen}")
        if self.streamid:
            query.append(f"streamid={self.streamid}")
        return f"srt://{self.host}:{self.port}?{'&'.join(query)}"

    def __repr__(self) -> str:
        return f"SrtOptions({self.url!r})"

    __str__ = __repr__

    @classmethod
    def from_url(cls, url: str) -> SrtOptions:
        """Parse and validate; every problem is one InputError line naming the (masked) URL."""
        shown = mask_url(url)

        def bad(why: str) -> InputError:
            return InputError(f"{shown}: {why}")

        # No fragments: a streamid such as "#!::r=feed" is commonly written unencoded.
        parts = urlsplit(url, allow_fragments=False)
        if parts.scheme != "srt":
            raise bad("not an srt:// URL")
        try:
            port = parts.port
        except ValueError:
            raise bad("port must be a number between 1 and 65535") from None
        if not port:
            raise bad("a port is needed, e.g. srt://127.0.0.1:9000")
        query: dict[str, list[str]] = {}
        for item in filter(None, parts.query.split("&")):
            name, _, value = item.partition("=")
            query.setdefault(unquote(name), []).append(unquote(value))  # "+" stays "+"
        known = {
            "mode",
            "latency",
            "passphrase",
            "pbkeylen",
            "streamid",
            "rcvtimeo",
            "conntimeo",
            "peeridletimeo",
        }
        unknown = sorted(set(query) - known)
        if unknown:
            raise bad(f"unknown option {unknown[0]!r} (known: {', '.join(sorted(known))})")

        def one(name: str, default: str) -> str:
            values = query.get(name, [default])
            if len(values) > 1:
                raise bad(f"{name} is given {len(values)} times")
            return values[0]

        def number(name: str, default: int, low: int, high: int, unit: str = "ms") -> int:
            text = one(name, str(default))
            try:
                value = int(text)
            except ValueError:
                raise bad(f"{name} must be a whole number of {unit}, got {text!r}") from None
            if not low <= value <= high:
                raise bad(f"{name} must be between {low} and {high} {unit}, got {value}")
            return value

        mode = one("mode", "caller")
        if mode not in ("caller", "listener"):
            raise bad(f"mode must be caller or listener, got {mode!r}")
        host = parts.hostname or ""
        if not host:
            if mode == "caller":
                raise bad("a caller needs a host to connect to, e.g. srt://192.0.2.1:9000")
            host = "0.0.0.0"
        text = one("latency", "120")
        try:
            latency_ms = int(text)
        except ValueError:
            raise bad(f"latency must be a whole number of ms, got {text!r}") from None
        if not 0 <= latency_ms <= 60_000:
            raise bad(
                f"latency must be between 0 and 60000 ms, got {latency_ms}"
                " (srt:// latency is in milliseconds here; FFmpeg URLs use microseconds)"
            )
        passphrase = one("passphrase", "")
        if passphrase and not 10 <= len(passphrase) <= 80:
            raise bad(f"passphrase must be 10 to 80 characters, got {len(passphrase)}")
        pbkeylen = number("pbkeylen", 0, 0, 32, "bytes")
        if pbkeylen not in (0, 16, 24, 32):
            raise bad(f"pbkeylen must be 0, 16, 24 or 32, got {pbkeylen}")
        streamid = one("streamid", "")
        if len(streamid) > 512:
            raise bad(f"streamid must be at most 512 characters, got {len(streamid)}")
        return cls(
            host=host,
            port=port,
            mode=mode,  # type: ignore[arg-type]
            latency_ms=latency_ms,
            passphrase=passphrase,
            pbkeylen=pbkeylen,
            streamid=streamid,
            rcvtimeo_ms=number("rcvtimeo", 250, 20, 1000),
            conntimeo_ms=number("conntimeo", 3000, 100, 60_000),
            peeridletimeo_ms=number("peeridletimeo", 5000, 100, 600_000),
        )


# ---------------------------------------------------------------------------------------------
# ctypes binding


class TraceBStats(ctypes.Structure):
    """``struct CBytePerfMon`` (``SRT_TRACEBSTATS``) of srt.h 1.5.x, in declaration order."""

    _fields_ = [
        ("msTimeStamp", ctypes.c_int64),
        ("pktSentTotal", ctypes.c_int64),
        ("pktRecvTotal", ctypes.c_int64),
        ("pktSndLossTotal", ctypes.c_int),
        ("pktRcvLossTotal", ctypes.c_int),
        ("pktRetransTotal", ctypes.c_int),
        ("pktSentACKTotal", ctypes.c_int),
        ("pktRecvACKTotal", ctypes.c_int),
        ("pktSentNAKTotal", ctypes.c_int),
        ("pktRecvNAKTotal", ctypes.c_int),
        ("usSndDurationTotal", ctypes.c_int64),
        ("pktSndDropTotal", ctypes.c_int),
        ("pktRcvDropTotal", ctypes.c_int),
        ("pktRcvUndecryptTotal", ctypes.c_int),
        ("byteSentTotal", ctypes.c_uint64),
        ("byteRecvTotal", ctypes.c_uint64),
        ("byteRcvLossTotal", ctypes.c_uint64),
        ("byteRetransTotal", ctypes.c_uint64),
        ("byteSndDropTotal", ctypes.c_uint64),
        ("byteRcvDropTotal", ctypes.c_uint64),
        ("byteRcvUndecryptTotal", ctypes.c_uint64),
        ("pktSent", ctypes.c_int64),
        ("pktRecv", ctypes.c_int64),
        ("pktSndLoss", ctypes.c_int),
        ("pktRcvLoss", ctypes.c_int),
        ("pktRetrans", ctypes.c_int),
        ("pktRcvRetrans", ctypes.c_int),
        ("pktSentACK", ctypes.c_int),
        ("pktRecvACK", ctypes.c_int),
        ("pktSentNAK", ctypes.c_int),
        ("pktRecvNAK", ctypes.c_int),
        ("mbpsSendRate", ctypes.c_double),
        ("mbpsRecvRate", ctypes.c_double),
        ("usSndDuration", ctypes.c_int64),
        ("pktReorderDistance", ctypes.c_int),
        ("pktRcvAvgBelatedTime", ctypes.c_double),
        ("pktRcvBelated", ctypes.c_int64),
        ("pktSndDrop", ctypes.c_int),
        ("pktRcvDrop", ctypes.c_int),
        ("pktRcvUndecrypt", ctypes.c_int),
        ("byteSent", ctypes.c_uint64),
        ("byteRecv", ctypes.c_uint64),
        ("byteRcvLoss", ctypes.c_uint64),
        ("byteRetrans", ctypes.c_uint64),
        ("byteSndDrop", ctypes.c_uint64),
        ("byteRcvDrop", ctypes.c_uint64),
        ("byteRcvUndecrypt", ctypes.c_uint64),
        ("usPktSndPeriod", ctypes.c_double),
        ("pktFlowWindow", ctypes.c_int),
        ("pktCongestionWindow", ctypes.c_int),
        ("pktFlightSize", ctypes.c_int),
        ("msRTT", ctypes.c_double),
        ("mbpsBandwidth", ctypes.c_double),
        ("byteAvailSndBuf", ctypes.c_int),
        ("byteAvailRcvBuf", ctypes.c_int),
        ("mbpsMaxBW", ctypes.c_double),
        ("byteMSS", ctypes.c_int),
        ("pktSndBuf", ctypes.c_int),
        ("byteSndBuf", ctypes.c_int),
        ("msSndBuf", ctypes.c_int),
        ("msSndTsbPdDelay", ctypes.c_int),
        ("pktRcvBuf", ctypes.c_int),
        ("byteRcvBuf", ctypes.c_int),
        ("msRcvBuf", ctypes.c_int),
        ("msRcvTsbPdDelay", ctypes.c_int),
        ("pktSndFilterExtraTotal", ctypes.c_int),
        ("pktRcvFilterExtraTotal", ctypes.c_int),
        ("pktRcvFilterSupplyTotal", ctypes.c_int),
        ("pktRcvFilterLossTotal", ctypes.c_int),
        ("pktSndFilterExtra", ctypes.c_int),
        ("pktRcvFilterExtra", ctypes.c_int),
        ("pktRcvFilterSupply", ctypes.c_int),
        ("pktRcvFilterLoss", ctypes.c_int),
        ("pktReorderTolerance", ctypes.c_int),
        ("pktSentUniqueTotal", ctypes.c_int64),
        ("pktRecvUniqueTotal", ctypes.c_int64),
        ("byteSentUniqueTotal", ctypes.c_uint64),
        ("byteRecvUniqueTotal", ctypes.c_uint64),
        ("pktSentUnique", ctypes.c_int64),
        ("pktRecvUnique", ctypes.c_int64),
        ("byteSentUnique", ctypes.c_uint64),
        ("byteRecvUnique", ctypes.c_uint64),
        # Room for fields a later 1.5.x appends, so libsrt never writes past our buffer.
        ("_reserved", ctypes.c_byte * 512),
    ]


class EpollEvent(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_int)]


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "srt_startup": (ctypes.c_int, []),
    "srt_cleanup": (ctypes.c_int, []),
    "srt_setloglevel": (None, [ctypes.c_int]),
    "srt_create_socket": (ctypes.c_int, []),
    "srt_setsockflag": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]),
    "srt_getsockflag": (
        ctypes.c_int,
        [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)],
    ),
    "srt_bind": (ctypes.c_int, [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]),
    "srt_listen": (ctypes.c_int, [ctypes.c_int, ctypes.c_int]),
    "srt_accept": (
        ctypes.c_int,
        [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)],
    ),
    "srt_connect": (ctypes.c_int, [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]),
    "srt_close": (ctypes.c_int, [ctypes.c_int]),
    "srt_recvmsg": (ctypes.c_int, [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]),
    "srt_getlasterror": (ctypes.c_int, [ctypes.c_void_p]),
    "srt_getlasterror_str": (ctypes.c_char_p, []),
    "srt_getrejectreason": (ctypes.c_int, [ctypes.c_int]),
    "srt_rejectreason_str": (ctypes.c_char_p, [ctypes.c_int]),
    "srt_getsockstate": (ctypes.c_int, [ctypes.c_int]),
    "srt_bstats": (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(TraceBStats), ctypes.c_int]),
    "srt_epoll_create": (ctypes.c_int, []),
    "srt_epoll_add_usock": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]),
    "srt_epoll_uwait": (
        ctypes.c_int,
        [ctypes.c_int, ctypes.POINTER(EpollEvent), ctypes.c_int, ctypes.c_int64],
    ),
    "srt_epoll_release": (ctypes.c_int, [ctypes.c_int]),
}

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()
_readers: weakref.WeakSet[SrtReader] = weakref.WeakSet()


def libsrt() -> ctypes.CDLL:
    """The process's libsrt, loaded and started once (thread-safe); cleaned up at exit.

    ``srt_startup`` must run exactly once per process with a matching ``srt_cleanup`` at exit:
    one per connection crashes the interpreter at exit (perf.md §7(b), gotcha 1).
    """
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        try:
            lib = ctypes.CDLL(LIBSRT)
            for name, (restype, argtypes) in _SIGNATURES.items():
                function = getattr(lib, name)
                function.restype = restype
                function.argtypes = argtypes
        except (OSError, AttributeError) as exc:
            raise InputError(f"libsrt not found: install libsrt1.5-openssl ({exc})") from None
        if lib.srt_startup() < 0:
            raise InputError(f"libsrt: srt_startup failed: {_last_error(lib)[1]}")
        lib.srt_setloglevel(_LOG_CRIT)
        atexit.register(_cleanup, lib)
        _lib = lib
        return lib


def _cleanup(lib: ctypes.CDLL) -> None:
    # Readers are daemon threads: end them before libsrt goes away under their feet.
    for reader in list(_readers):
        reader.stop()
    lib.srt_cleanup()


def _last_error(lib: ctypes.CDLL) -> tuple[int, str]:
    code = lib.srt_getlasterror(None)
    text = lib.srt_getlasterror_str() or b""
    return code, text.decode(errors="replace")


def _sockaddr_in(host: str, port: int) -> bytes:
    """``struct sockaddr_in`` (Linux layout) for an IPv4 host name or address."""
    address = str(socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0])
    return (
        struct.pack("=H", socket.AF_INET)
        + struct.pack("!H", port)
        + socket.inet_aton(address)
        + bytes(8)
    )


class _Failed(Exception):
    """A connection attempt failed; ``crypto`` names a passphrase problem when that was it."""

    def __init__(self, message: str, crypto: str | None = None) -> None:
        super().__init__(message)
        self.crypto = crypto


# ---------------------------------------------------------------------------------------------
# Statistics -> conditions


SRT_METRICS: dict[str, tuple[str, float]] = {
    "pkt_recv_total": ("srt_packets_received_total", 1.0),
    "pkt_lost_total": ("srt_packets_lost_total", 1.0),
    "pkt_dropped_total": ("srt_packets_dropped_total", 1.0),
    "pkt_retransmitted_total": ("srt_packets_retransmitted_total", 1.0),
    "pkt_undecrypted_total": ("srt_packets_undecrypted_total", 1.0),
    "byte_recv_total": ("srt_received_bytes_total", 1.0),
    "rtt_ms": ("srt_rtt_seconds", 0.001),
    "bandwidth_mbps": ("srt_bandwidth_bits_per_second", 1e6),
    "recv_rate_mbps": ("srt_receive_rate_bits_per_second", 1e6),
    "latency_ms": ("srt_latency_seconds", 0.001),
    "rcv_buf_ms": ("srt_receive_buffer_seconds", 0.001),
}
"""libsrt's statistics as metrics (``streamqc_<name>``): key → (name in base units, scale)."""


def stats_snapshot(perf: TraceBStats, retrans_total: int) -> dict[str, Any]:
    """The counters worth exporting as metrics, with units in their names."""
    return {
        "pkt_recv_total": perf.pktRecvTotal,
        "pkt_lost_total": perf.pktRcvLossTotal,  # gaps seen (then usually retransmitted)
        "pkt_dropped_total": perf.pktRcvDropTotal,  # never delivered: visible artifacts
        "pkt_retransmitted_total": retrans_total,  # retransmitted packets received
        "pkt_undecrypted_total": perf.pktRcvUndecryptTotal,
        "pkt_belated": perf.pktRcvBelated,
        "byte_recv_total": perf.byteRecvTotal,
        "rtt_ms": perf.msRTT,
        "bandwidth_mbps": perf.mbpsBandwidth,
        "recv_rate_mbps": perf.mbpsRecvRate,
        "latency_ms": perf.msRcvTsbPdDelay,
        "rcv_buf_ms": perf.msRcvBuf,
    }


def judge(
    previous: Mapping[str, Any] | None, current: Mapping[str, Any]
) -> dict[str, tuple[bool, dict[str, Any]]]:
    """alarm -> (active, detail) for one statistics interval (previous=None: the first one).

    ``srt_loss``: packets dropped (never delivered) in the interval -- those become visible
    artifacts, unlike losses that retransmission recovered. ``srt_decrypt``: packets that
    could not be decrypted. ``srt_rtt``: RTT x 3 above the effective (negotiated) latency,
    which leaves no time to retransmit (standards §7.3); judged only in intervals that
    received packets after an interval that did too, since the smoothed RTT starts at
    libsrt's 100 ms guess and converges only once data is acknowledged (an idle loopback
    connection showed 100 ms after 1 s, and a first data interval still showed it).
    """
    base = previous or {}

    def grew(key: str) -> int:
        return int(current[key]) - int(base.get(key, 0))

    dropped, lost, retrans = (
        grew("pkt_dropped_total"),
        grew("pkt_lost_total"),
        grew("pkt_retransmitted_total"),
    )
    undecrypted = grew("pkt_undecrypted_total")
    rtt_ms, latency_ms = float(current["rtt_ms"]), float(current["latency_ms"])
    return {
        "srt_loss": (
            dropped > 0,
            {
                "dropped": dropped,
                "lost": lost,
                "retransmitted": retrans,
                "dropped_total": int(current["pkt_dropped_total"]),
            },
        ),
        "srt_decrypt": (undecrypted > 0, {"undecrypted": undecrypted}),
        "srt_rtt": (
            # Judged once data has flowed for a whole interval before this one: the first
            # data interval can still carry libsrt's 100 ms guess (a false alarm in CI).
            grew("pkt_recv_total") > 0
            and int(base.get("pkt_recv_total", 0)) > 0
            and rtt_ms * RTT_LATENCY_FACTOR > latency_ms,
            {"rtt_ms": round(rtt_ms, 3), "latency_ms": latency_ms},
        ),
    }


# ---------------------------------------------------------------------------------------------
# The reader

State = Literal["idle", "connecting", "listening", "connected", "waiting", "stopped"]


class SrtReader:
    """Receives SRT on a daemon thread and writes the payload into ``pipe``.

    With ``reconnect=True`` (the default) a lost or refused connection is retried with
    backoff (0.5 s doubling to 5 s) while the pipe stays open, so the bytes of the next
    connection continue the same input; the decoder sees a discontinuity, and the pipe's own
    read timeout ends the input if the outage outlasts it. With ``reconnect=False`` the reader
    ends at the first lost or failed connection and closes the pipe. ``stop()`` always closes
    the pipe. Conditions go to ``report`` from the reader's thread.
    """

    def __init__(
        self,
        options: SrtOptions,
        pipe: BytePipe,
        report: Report,
        *,
        reconnect: bool = True,
        subject: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.pipe = pipe
        self.bytes_in = 0
        self.last_receive_s = time.monotonic()  # arrival of the last message
        self.tap: Callable[[bytes], None] | None = None  # sees every TS payload (TR 101 290)
        self.report = report
        self.reconnect = reconnect
        self.subject = subject
        self.clock = clock
        self.connections = 0  # connections established so far
        self.peer_streamid: str | None = None  # listener: the streamid the caller sent
        self._state: State = "idle"
        self._error: str | None = None
        self._stats: dict[str, Any] = {}
        self._active: dict[str, bool] = {}
        self._listener = (-1, -1)  # listening socket and its epoll id
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"srt {options.host}:{options.port}", daemon=True
        )
        self._lib = libsrt()

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> SrtReader:
        """Start the thread; a listener binds first, so a busy port is an InputError here."""
        if self.options.mode == "listener":
            try:
                self._listener = self._listen()
            except _Failed as failure:
                raise InputError(f"{self.options.url}: {failure}") from None
        _readers.add(self)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 1.0) -> None:
        """End the reader (within about ``rcvtimeo``), close its sockets and the pipe."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self.pipe.close()

    @property
    def state(self) -> State:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state == "connected"

    @property
    def error(self) -> str | None:
        """Why the last connection failed or ended (None while all is well); no secrets."""
        return self._error

    @property
    def stats(self) -> dict[str, Any]:
        """The last statistics snapshot of the current or last connection (a copy)."""
        return dict(self._stats)

    def gauges(self) -> tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]:
        """The last statistics snapshot for the metrics, in base units."""
        stats = self._stats
        return tuple(
            (name, (), float(stats[key]) * scale)
            for key, (name, scale) in SRT_METRICS.items()
            if isinstance(stats.get(key), int | float)
        )

    # -- thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        listener, eid = self._listener
        backoff = Backoff(*BACKOFF_S, spread=(1.0, 1.0))
        try:
            while not self._stop.is_set():
                try:
                    sock = self._accept(listener, eid) if listener >= 0 else self._connect()
                except _Failed as failure:
                    self._error = f"{self.options.url}: {failure}"
                    if failure.crypto:
                        self._set("srt_decrypt", True, {"reason": failure.crypto})
                    if not self.reconnect:
                        break
                    self._state = "waiting"
                    self._stop.wait(backoff.next_s())
                    continue
                if sock < 0:  # stopped while connecting
                    break
                backoff.reset()
                try:
                    self._receive(sock)
                finally:
                    self._lib.srt_close(sock)
                    self._set("srt_loss", False, {})
                    self._set("srt_rtt", False, {})
                if not self.reconnect:
                    break
                self._state = "waiting"
                self._stop.wait(BACKOFF_S[0])
        except Exception as exc:  # never let the thread die with a traceback
            self._error = f"{self.options.url}: {type(exc).__name__}: {exc}"
        finally:
            if eid >= 0:
                self._lib.srt_epoll_release(eid)
            if listener >= 0:
                self._lib.srt_close(listener)
            self._state = "stopped"
            self.pipe.close()

    def _socket(self) -> int:
        lib, o = self._lib, self.options
        sock = int(lib.srt_create_socket())
        if sock < 0:
            raise _Failed(f"cannot create a socket: {_last_error(lib)[1]}")
        settings: list[tuple[int, int | bytes]] = [
            (SRTO_TRANSTYPE, SRTT_LIVE),
            (SRTO_RCVSYN, 0),  # connect/accept polled through epoll; set to 1 once connected
            (SRTO_LATENCY, o.latency_ms),
            (SRTO_CONNTIMEO, o.conntimeo_ms),
            (SRTO_PEERIDLETIMEO, o.peeridletimeo_ms),
        ]
        if o.passphrase:
            settings.append((SRTO_PASSPHRASE, o.passphrase.encode()))
        if o.pbkeylen:
            settings.append((SRTO_PBKEYLEN, o.pbkeylen))
        if o.streamid and o.mode == "caller":
            settings.append((SRTO_STREAMID, o.streamid.encode()))
        for option, value in settings:
            if not self._setflag(sock, option, value):
                _, why = _last_error(lib)
                lib.srt_close(sock)
                raise _Failed(f"cannot set socket option {option}: {why}")
        return sock

    def _setflag(self, sock: int, option: int, value: int | bytes) -> bool:
        if isinstance(value, bytes):
            return bool(self._lib.srt_setsockflag(sock, option, value, len(value)) == 0)
        c_value = ctypes.c_int(value)
        size = ctypes.sizeof(c_value)
        return bool(self._lib.srt_setsockflag(sock, option, ctypes.byref(c_value), size) == 0)

    def _wait(self, eid: int, sock: int, events: int, deadline_s: float) -> int:
        """Poll ``sock`` until an event, stop() or the deadline; 0 when none arrived."""
        out = (EpollEvent * 2)()
        while not self._stop.is_set() and self.clock() < deadline_s:
            n = self._lib.srt_epoll_uwait(eid, out, 2, POLL_MS)
            for i in range(max(n, 0)):
                if out[i].fd == sock and out[i].events & events:
                    return int(out[i].events)
        return 0

    def _connect(self) -> int:
        """A connected caller socket; -1 when stopped. Raises _Failed on refusal or timeout."""
        lib, o = self._lib, self.options
        self._state = "connecting"
        sock = self._socket()
        eid = lib.srt_epoll_create()
        try:
            events = ctypes.c_int(SRT_EPOLL_OUT | SRT_EPOLL_ERR)
            lib.srt_epoll_add_usock(eid, sock, ctypes.byref(events))
            try:
                address = _sockaddr_in(o.host, o.port)
            except OSError as exc:
                raise _Failed(f"cannot resolve {o.host}: {exc.strerror or exc}") from None
            if lib.srt_connect(sock, address, len(address)) < 0:
                raise _Failed(f"cannot connect: {_last_error(lib)[1]}")
            # libsrt times the handshake out itself after conntimeo; the margin is a backstop.
            deadline_s = self.clock() + o.conntimeo_ms / 1000 + 2.0
            self._wait(eid, sock, SRT_EPOLL_OUT | SRT_EPOLL_ERR, deadline_s)
            if self._stop.is_set():
                lib.srt_close(sock)
                return -1
            if lib.srt_getsockstate(sock) != SRTS_CONNECTED:
                reason = lib.srt_getrejectreason(sock)
                text = (lib.srt_rejectreason_str(reason) or b"").decode(errors="replace")
                raise _Failed(f"cannot connect: {text}", _REJECTED_BY_CRYPTO.get(reason))
        except _Failed:
            lib.srt_close(sock)
            raise
        finally:
            lib.srt_epoll_release(eid)
        return sock

    def _listen(self) -> tuple[int, int]:
        lib, o = self._lib, self.options
        try:
            address = _sockaddr_in(o.host, o.port)
        except OSError as exc:
            raise _Failed(f"cannot resolve {o.host}: {exc.strerror or exc}") from None
        sock = self._socket()
        if lib.srt_bind(sock, address, len(address)) < 0 or lib.srt_listen(sock, 1) < 0:
            _, why = _last_error(lib)
            lib.srt_close(sock)
            raise _Failed(f"cannot listen on {o.host}:{o.port}: {why}")
        self._state = "listening"
        eid = lib.srt_epoll_create()
        events = ctypes.c_int(SRT_EPOLL_IN | SRT_EPOLL_ERR)
        lib.srt_epoll_add_usock(eid, sock, ctypes.byref(events))
        return sock, eid

    def _accept(self, listener: int, eid: int) -> int:
        """The next caller's socket; -1 when stopped."""
        lib = self._lib
        self._state = "listening"
        while not self._stop.is_set():
            if not self._wait(eid, listener, SRT_EPOLL_IN, math.inf):
                continue
            peer = ctypes.create_string_buffer(128)
            size = ctypes.c_int(len(peer))
            sock = int(lib.srt_accept(listener, peer, ctypes.byref(size)))
            if sock >= 0:
                self.peer_streamid = self._streamid(sock)
                return sock
            code, why = _last_error(lib)
            if code not in _NO_DATA_YET:
                raise _Failed(f"accept failed: {why}")
        return -1

    def _streamid(self, sock: int) -> str:
        buffer = ctypes.create_string_buffer(513)
        size = ctypes.c_int(len(buffer))
        if self._lib.srt_getsockflag(sock, SRTO_STREAMID, buffer, ctypes.byref(size)) < 0:
            return ""
        return buffer.raw[: size.value].decode(errors="replace")

    def _receive(self, sock: int) -> None:
        """Copy messages into the pipe until the peer goes away or stop()."""
        lib = self._lib
        self._setflag(sock, SRTO_RCVSYN, 1)
        self._setflag(sock, SRTO_RCVTIMEO, self.options.rcvtimeo_ms)
        self.connections += 1
        self._state = "connected"
        self._error = None
        buffer = ctypes.create_string_buffer(LIVE_MAX_PAYLOAD)
        perf = TraceBStats()
        retrans_total = 0
        previous: dict[str, Any] | None = None
        next_stats_s = self.clock() + STATS_INTERVAL_S
        idle_s = self.options.peeridletimeo_ms / 1000
        last_data_s = self.clock()
        self._set("srt_decrypt", False, {})
        # Messages go to the pipe and TR 101 290 in batches of HAND_OVER_S, as the UDP
        # reader's do: one wake-up of the decoder per batch, not one per 1316-byte message.
        batch = bytearray()
        hand_over_s = time.monotonic() + HAND_OVER_S
        while not self._stop.is_set():
            n = lib.srt_recvmsg(sock, buffer, LIVE_MAX_PAYLOAD)
            if n > 0:
                batch += buffer.raw[:n]
                last_data_s = self.clock()
                self.bytes_in += n
                self.last_receive_s = time.monotonic()
            elif n < 0:
                code, why = _last_error(lib)
                if code not in _NO_DATA_YET:
                    self._hand_over(batch)
                    self._error = f"{self.options.url}: connection lost: {why}"
                    return
            if batch and (n <= 0 or self.last_receive_s >= hand_over_s):
                self._hand_over(batch)
                hand_over_s = time.monotonic() + HAND_OVER_S
            if self.clock() - last_data_s > idle_s:
                # libsrt 1.5.1 noticed a SIGKILLed peer only after ~5.1 s, whatever
                # PEERIDLETIMEO said; a live feed without data is lost for us anyway.
                self._error = f"{self.options.url}: connection lost: no data for {idle_s:g} s"
                return
            if self.clock() >= next_stats_s:
                next_stats_s += STATS_INTERVAL_S
                # bstats fails once the peer is gone (perf.md §7(b) gotcha 2): keep the last.
                if lib.srt_bstats(sock, ctypes.byref(perf), 1) == 0:
                    retrans_total += perf.pktRcvRetrans
                    current = stats_snapshot(perf, retrans_total)
                    current["connections"] = self.connections
                    self._stats = current
                    for alarm, (active, detail) in judge(previous, current).items():
                        self._set(alarm, active, detail)
                    previous = current

    def _hand_over(self, batch: bytearray) -> None:
        if batch:
            data = bytes(batch)
            batch.clear()
            self.pipe.write(data)
            if self.tap is not None:
                self.tap(data)

    def _set(self, alarm: str, active: bool, detail: dict[str, Any]) -> None:
        """Report while active (the detail changes) and once when the condition clears."""
        if not active and not self._active.get(alarm, False):
            return
        self._active[alarm] = active
        self.report(TransportCondition(alarm, active, self.clock(), self.subject, detail))
