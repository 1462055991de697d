"""A real SRT peer for tests: srt-live-transmit sending an MPEG-TS file paced in real time."""

from __future__ import annotations

import contextlib
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
