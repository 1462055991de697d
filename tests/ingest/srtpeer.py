"""A real SRT peer for tests: srt-live-transmit sending an MPEG-TS file paced in real time."""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

SRT_LIVE_TRANSMIT = shutil.which("srt-live-transmit")
TS_MESSAGE = 1316  # 7 TS packets: one SRT live message


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SrtSender:
    """``srt-live-transmit file://con URL`` fed from ``ts`` at the file's own bitrate.

    srt-live-transmit discards what it reads before its connection is up, so the feed waits
    until ``ready()`` is true, then plays the file from its start, looping.
    """

    def __init__(self, ts: Path, url: str, duration_s: float, ready: Callable[[], bool]) -> None:
        assert SRT_LIVE_TRANSMIT, "srt-tools is not installed"
        self.data = ts.read_bytes()
        self.bytes_per_s = len(self.data) / duration_s
        self.url = url
        self.ready = ready
        self.log = ts.parent / f"srt-live-transmit-{free_udp_port()}.log"
        self.sent = 0
        self._stop = threading.Event()
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [SRT_LIVE_TRANSMIT, "-q", "-a", "no", "-c", str(TS_MESSAGE), "file://con", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        assert self.proc.stdin is not None
        while not self.ready():
            if self._stop.wait(0.02):
                return
        start_s = time.monotonic()
        offset = 0
        while not self._stop.is_set():
            due_s = start_s + self.sent / self.bytes_per_s
            delay_s = due_s - time.monotonic()
            if delay_s > 0:
                time.sleep(delay_s)
            chunk = self.data[offset : offset + TS_MESSAGE]
            try:
                self.proc.stdin.write(chunk)
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                return
            self.sent += len(chunk)
            offset = (offset + TS_MESSAGE) % len(self.data)

    def kill(self) -> None:
        """SIGKILL: the peer vanishes without an SRT shutdown message."""
        self._stop.set()
        self.proc.kill()
        self.proc.wait(5)
        self._thread.join(5)

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.kill()  # it may take seconds to honour SIGTERM; a test peer needs no grace
        self.proc.wait(5)
        self._thread.join(5)
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self._log_file.close()

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


class LossyRelay:
    """A UDP relay between an SRT caller and listener that can black out the link.

    ``blackout(s)`` drops every datagram both ways for ``s`` seconds; ``lossy(s, f)`` drops a
    fraction of the listener's datagrams, retransmissions included, so some packets miss
    their play time and libsrt counts them dropped.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.upstream.settimeout(0.1)
        self.client: tuple[str, int] | None = None
        self.dropped = 0
        self._dark_until = 0.0
        self._lossy_until = 0.0
        self._loss = 0.0
        self._random = random.Random(7)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._forward, daemon=True),
            threading.Thread(target=self._backward, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def blackout(self, seconds: float) -> None:
        self._dark_until = time.monotonic() + seconds

    def lossy(self, seconds: float, fraction: float) -> None:
        """Drop this fraction of the listener's datagrams (data and retransmissions alike)."""
        self._loss = fraction
        self._lossy_until = time.monotonic() + seconds

    def _dark(self, backward: bool = False) -> bool:
        now = time.monotonic()
        if now < self._dark_until or (
            backward and now < self._lossy_until and self._random.random() < self._loss
        ):
            self.dropped += 1
            return True
        return False

    def _forward(self) -> None:  # caller -> listener
        while not self._stop.is_set():
            try:
                data, self.client = self.sock.recvfrom(65536)
            except (TimeoutError, OSError):
                continue
            if not self._dark():
                self.upstream.sendto(data, self.target)

    def _backward(self) -> None:  # listener -> caller
        while not self._stop.is_set():
            try:
                data, _ = self.upstream.recvfrom(65536)
            except (TimeoutError, OSError):
                continue
            if self.client is not None and not self._dark(backward=True):
                self.sock.sendto(data, self.client)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.sock.close()
        self.upstream.close()
