"""A network namespace of the test's own, for multicast on loopback without the host's interfaces.

``NetNamespace`` makes one with ``ip netns add``: its ``lo`` up with multicast on, routes for
239.0.0.0/8 (administratively scoped) and 232.0.0.0/8 (source-specific) to it, and the
addresses ``SOURCES`` on it, so that senders can send from distinct sources. ``entered()``
moves the calling thread into it (``setns(2)``): every socket it opens, every thread it
starts and every process it spawns (the broker, the daemon) is then inside, until the block
ends. Where namespaces cannot be made (not root, no ``ip``), ``made_for_a_test`` skips the test
with the reason.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CLONE_NEWNET = 0x40000000
SOURCES = ("10.0.0.9", "10.0.0.10")


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


class NetNamespace:
    def __init__(self, name: str) -> None:
        self.name = name
        self._libc = ctypes.CDLL(None, use_errno=True)

    def create(self) -> None:
        ip("netns", "del", self.name)  # left over by a test run that was killed
        made = ip("netns", "add", self.name)
        if made.returncode != 0:
            raise OSError(made.stderr.strip() or "ip netns add failed")
        for args in (
            ("link", "set", "lo", "up"),
            ("link", "set", "lo", "multicast", "on"),
            ("route", "add", "239.0.0.0/8", "dev", "lo"),
            ("route", "add", "232.0.0.0/8", "dev", "lo"),
            *(("addr", "add", f"{source}/32", "dev", "lo") for source in SOURCES),
        ):
            done = ip("-n", self.name, *args)
            if done.returncode != 0:
                self.delete()
                raise OSError(f"ip -n {self.name} {' '.join(args)}: {done.stderr.strip()}")
        try:  # setns(2) needs CAP_SYS_ADMIN, which ip netns add alone does not prove
            with self.entered():
                pass
        except OSError:
            self.delete()
            raise

    def delete(self) -> None:
        ip("netns", "del", self.name)

    def _setns(self, fd: int) -> None:
        if self._libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns: {os.strerror(errno)}")

    @contextmanager
    def entered(self) -> Iterator[None]:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            self._setns(there)
            try:
                yield
            finally:
                self._setns(home)
        finally:
            os.close(there)
            os.close(home)


def made_for_a_test() -> Iterator[NetNamespace]:
    """For a fixture: a namespace made and deleted around a test, or pytest.skip with why."""
    if shutil.which("ip") is None:
        pytest.skip("multicast tests need iproute2's ip (Debian iproute2)")
    namespace = NetNamespace(f"streamqc-test-{os.getpid()}")
    try:
        namespace.create()
    except OSError as exc:
        pytest.skip(f"cannot make a network namespace for the multicast tests: {exc}")
    try:
        yield namespace
    finally:
        namespace.delete()
