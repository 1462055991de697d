"""The systemd notify protocol (``sd_notify(3)``): readiness, status, watchdog pings, stop/reload.

One datagram of ``KEY=value`` lines to the unix socket named by ``NOTIFY_SOCKET``, so no
dependency is needed. Outside systemd the notifier is disabled and every method is a no-op;
a send that fails is one warning, never an exception: a notify problem must not stop QC.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from monitor.logs import get_logger

log = get_logger()


class Notifier:
    """Tells systemd (``Type=notify``, ``WatchdogSec=``) what the daemon is doing."""

    def __init__(self, address: str | None, watchdog_interval_s: float | None = None) -> None:
        self.address = address
        """Socket path, or an abstract name starting with NUL; None: disabled."""
        self.watchdog_interval_s = watchdog_interval_s if address else None
        """How often to call ``watchdog()``: half of WatchdogSec=; None when there is none."""
        self._socket: socket.socket | None = None
        self._warned = False
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> Notifier:
        """The notifier systemd asked for through NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID."""
        raw = os.environ.get("NOTIFY_SOCKET", "")
        if raw.startswith("@"):  # abstract namespace
            address: str | None = "\0" + raw[1:]
        elif raw.startswith("/"):
            address = raw
        else:
            if raw:  # e.g. vsock: (systemd in a VM), which a daemon on a host does not meet
                log.warning("NOTIFY_SOCKET not supported, systemd notifications off", value=raw)
            address = None
        return cls(address, _watchdog_interval_s())

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str | None = None) -> None:
        """Start-up (or a reload) is complete: systemd considers the service started."""
        self._send("READY=1", status)

    def status(self, text: str) -> None:
        """A one-line status shown by ``systemctl status``."""
        self._send(None, text)

    def watchdog(self) -> None:
        """Still alive: call every ``watchdog_interval_s`` or systemd kills and restarts us."""
        if self.watchdog_interval_s is not None:
            self._send("WATCHDOG=1", None)

    def stopping(self, status: str | None = None) -> None:
        """Shutdown has begun (so systemd does not read the silence as a hang)."""
        self._send("STOPPING=1", status)

    def reloading(self, status: str | None = None) -> None:
        """A reload has begun; call ``ready()`` when it is done.

        MONOTONIC_USEC is what ``Type=notify-reload`` (systemd 253+) requires; older systemd
        and ``Type=notify`` just show the reloading state.
        """
        now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={now_us}", status)

    def _send(self, state: str | None, status: str | None) -> None:
        if self.address is None:
            return
        lines = [state] if state else []
        if status is not None:
            lines.append("STATUS=" + " ".join(status.splitlines()).strip())
        if not lines:
            return
        try:
            with self._lock:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    # Non-blocking: a stuck systemd must not stall the event loop or a ping.
                    self._socket.setblocking(False)
                self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError as error:
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot notify systemd (further failures not logged)",
                    socket=self.address.replace("\0", "@"),
                    error=error.strerror or str(error),
                )

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _watchdog_interval_s() -> float | None:
    """Half of WATCHDOG_USEC (as sd_watchdog_enabled advises), if the watchdog is ours."""
    pid = os.environ.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None  # inherited by a child: the watchdog belongs to another process
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None
