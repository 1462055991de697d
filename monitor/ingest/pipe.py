"""BytePipe: the bounded, thread-safe hand-over from a network reader to PyAV.

PyAV reads a file-like object from its demux thread, calling ``read(n)``; a reader thread (UDP,
SRT, HLS) calls ``write``. ``read`` blocks until bytes arrive, the pipe is closed (then it
returns b'', which PyAV takes as the end of the input), or ``read_timeout_s`` passes (then it
also ends the input: a silent source must not hang the decoder, and the caller reconnects).
Closing the pipe from any thread is how a watchdog unblocks a decoder waiting for bytes.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable


class BytePipe:
    """A FIFO of byte chunks between one writer thread and one reader (PyAV)."""

    def __init__(self, *, max_bytes: int = 32 << 20, read_timeout_s: float = 5.0) -> None:
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._closed = False
        self._cond = threading.Condition()
        self.bytes_in = 0
        self.bytes_dropped = 0  # overflow: the decoder fell behind by more than max_bytes
        self.timed_out = False
        self.last_write_s = time.monotonic()
        self.before_wait: Callable[[], None] | None = None
        """Called on the reader's thread when a read finds the pipe empty, before it waits:
        a decoder hands over what it decoded before it sleeps."""

    def write(self, data: bytes) -> None:
        """Append bytes; never blocks. On overflow the oldest bytes are dropped and counted."""
        if not data:
            return
        with self._cond:
            if self._closed:
                return
            self._chunks.append(bytes(data))
            self._size += len(data)
            self.bytes_in += len(data)
            self.last_write_s = time.monotonic()
            while self._size > self.max_bytes and len(self._chunks) > 1:
                dropped = self._chunks.popleft()
                self._size -= len(dropped)
                self.bytes_dropped += len(dropped)
            self._cond.notify()

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes (all buffered bytes when n < 0); b'' at close or after the timeout."""
        if not self._chunks and self.before_wait is not None:
            self.before_wait()
        deadline = time.monotonic() + self.read_timeout_s
        with self._cond:
            while not self._chunks:
                if self._closed:
                    return b""
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.timed_out = True
                    return b""
                self._cond.wait(remaining)
            if n is None or n < 0:
                n = self._size
            out = bytearray()
            while self._chunks and len(out) < n:
                chunk = self._chunks.popleft()
                take = n - len(out)
                if len(chunk) > take:
                    self._chunks.appendleft(chunk[take:])
                    chunk = chunk[:take]
                out += chunk
            self._size -= len(out)
            return bytes(out)

    def close(self) -> None:
        """End the input: a blocked read returns b'' at once; later writes are ignored."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def buffered_bytes(self) -> int:
        """Bytes written and not yet read: how far a writer is ahead of the decoder."""
        return self._size
