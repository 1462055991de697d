"""How the agent puts another input on air: restart the encoder, call its API, or run a script.

Every action has the same small shape (``Action``): ``start`` once when the agent starts,
``switch`` for each command, ``close`` when it stops. A switch returns when the encoder is on
the new input, or raises ``ActionError`` with one line saying why, in words for the NOC (it
becomes the ``detail`` of the ``failed`` ack).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from failover.agent.settings import (
    ActionSettings,
    HttpSettings,
    ProcessSettings,
    ScriptSettings,
    fill,
)

TAIL_BYTES = 4096
"""How much of a child's stderr is kept for the failure detail."""
STABLE_S = 30.0
"""An encoder that ran this long before dying is restarted quickly again (a new failure)."""


class ActionError(Exception):
    """The switch did not happen; the message is one line for the NOC."""


class Log(Protocol):
    """What the actions and the agent log through (a structlog logger fits)."""

    def info(self, event: str, **fields: Any) -> Any: ...

    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...


class Action(Protocol):
    """Puts one channel's inputs on air."""

    @property
    def running(self) -> bool | None:
        """Whether the encoder process runs (None: not an encoder the agent runs itself)."""

    async def start(self, input_name: str, input_url: str) -> None:
        """The agent starts with ``input_name`` on air (a process action starts its encoder)."""

    async def switch(self, to_input_name: str, input_url: str) -> None:
        """Put ``to_input_name`` on air; raise ActionError (one line) if that failed."""

    async def close(self) -> None:
        """The agent stops (a process action stops its encoder)."""


class Delays(Protocol):
    """The waits between an encoder's restarts (the command line gives the daemon's backoff,
    ``monitor.util.backoff.Backoff``)."""

    def next_s(self) -> float:
        """One more failure: the wait before the next try."""
        ...

    def reset(self) -> None:
        """It ran long enough: the next failure waits the shortest again."""


MakeDelays = Callable[[float], Delays]
"""The waits between restarts, given the longest (``restart_backoff_max_s``)."""


def make_action(
    settings: ActionSettings,
    channel: str,
    log: Log,
    on_change: Callable[[], None],
    delays: MakeDelays,
) -> Action:
    """The action the settings describe; ``on_change`` is called when ``running`` changes."""
    if isinstance(settings, ProcessSettings):
        restarts = delays(settings.restart_backoff_max_s)
        return ProcessAction(settings, channel, log, on_change, restarts=restarts)
    if isinstance(settings, HttpSettings):
        return HttpAction(settings, channel)
    return ScriptAction(settings, channel)


# --- Children: process groups, stderr tails ----------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the agent dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Tail:
    """Keeps reading a child's stderr (so it never blocks on a full pipe); keeps the end."""

    def __init__(self, stream: asyncio.StreamReader | None) -> None:
        self._data = b""
        self._task = asyncio.create_task(self._read(stream)) if stream is not None else None

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._data = (self._data + chunk)[-TAIL_BYTES:]

    async def finish(self, timeout_s: float = 1.0) -> str:
        """The last lines once the pipe closes (or after ``timeout_s``: a grandchild holds it)."""
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=timeout_s)
            self._task.cancel()
        return self.text()

    def text(self) -> str:
        """The last two non-empty lines (``\\r`` counts: FFmpeg's progress), as one line."""
        lines = self._data.decode(errors="replace").replace("\r", "\n").splitlines()
        words = [" ".join(line.split()) for line in lines if line.strip()][-2:]
        text = " / ".join(words)
        return text if len(text) <= 300 else "..." + text[-297:]


def _killpg(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _stop_group(process: asyncio.subprocess.Process, timeout_s: float) -> None:
    """SIGTERM to the child's process group, SIGKILL after ``timeout_s``; reap the child."""
    if process.returncode is None:
        _killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            _killpg(process.pid, signal.SIGKILL)
            await process.wait()
    _killpg(process.pid, signal.SIGKILL)  # whatever the leader left behind in its group


async def _spawn(argv: list[str], env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: a stop reaches its children too
            preexec_fn=_die_with_parent,
            env=env,
        )
    except FileNotFoundError:
        raise ActionError(f"cannot run {argv[0]}: no such program") from None
    except PermissionError:
        raise ActionError(f"cannot run {argv[0]}: permission denied") from None
    except OSError as error:
        raise ActionError(f"cannot run {argv[0]}: {error.strerror or error}") from None


def _exited(what: str, status: int, tail: str) -> str:
    how = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
    return f"{what} ended ({how})" + (f": {tail}" if tail else "")


# --- Process ------------------------------------------------------------------------------------


class ProcessAction:
    """The encoder as the agent's child process, restarted with the other input on a switch."""

    def __init__(
        self,
        settings: ProcessSettings,
        channel: str,
        log: Log,
        on_change: Callable[[], None] = lambda: None,
        *,
        restarts: Delays,
    ) -> None:
        self._settings = settings
        self._channel = channel
        self._log = log
        self._on_change = on_change
        self._restarts = restarts
        self._current: tuple[str, str] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._tail: _Tail | None = None
        self._running = False
        self._lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._last_error: str | None = None

    @property
    def running(self) -> bool | None:
        return self._running

    async def start(self, input_name: str, input_url: str) -> None:
        async with self._lock:
            self._current = (input_name, input_url)
            with contextlib.suppress(ActionError):  # the supervisor says why, and retries
                await self._launch(input_name, input_url)
            self._supervisor = asyncio.create_task(
                self._supervise(), name=f"encoder-{self._channel}"
            )

    async def switch(self, to_input_name: str, input_url: str) -> None:
        async with self._lock:
            await self._stop_supervisor()
            previous = self._current
            await self._terminate()
            try:
                await self._launch(to_input_name, input_url)
                self._current = (to_input_name, input_url)
            except ActionError as error:
                # Never worse than before: the input that was on air goes back on air.
                if previous is None:
                    raise
                try:
                    await self._launch(*previous)
                    back = f"; back on {previous[0]}"
                except ActionError:
                    back = f"; {previous[0]} did not start again either, retrying"
                raise ActionError(f"{error}{back}") from None
            finally:
                self._supervisor = asyncio.create_task(
                    self._supervise(), name=f"encoder-{self._channel}"
                )

    async def close(self) -> None:
        async with self._lock:
            await self._stop_supervisor()
            await self._terminate()

    # --- inside -------------------------------------------------------------------------------

    def _set_running(self, running: bool) -> None:
        if running != self._running:
            self._running = running
            self._on_change()

    async def _launch(self, input_name: str, input_url: str) -> None:
        """Start the encoder on the input; return once it has stayed up ``start_check_s``."""
        argv = [
            fill(part, input_name=input_name, input_url=input_url, channel=self._channel)
            for part in self._settings.command
        ]
        self._process = None
        try:
            process = await _spawn(argv)
        except ActionError as error:
            self._last_error = str(error)
            raise
        self._process, self._tail = process, _Tail(process.stderr)
        started = time.monotonic()
        try:
            await asyncio.wait_for(process.wait(), self._settings.start_check_s)
        except TimeoutError:
            self._set_running(True)
            self._log.info(
                "encoder started", channel=self._channel, input=input_name, pid=process.pid
            )
            return
        tail = await self._tail.finish()
        _killpg(process.pid, signal.SIGKILL)
        self._process = None
        after = f"{argv[0]} on {input_name}, after {time.monotonic() - started:.1f} s"
        self._last_error = _exited(f"encoder ({after})", process.returncode or 0, tail)
        raise ActionError(self._last_error)

    async def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            running = process.returncode is None
            await _stop_group(process, self._settings.stop_timeout_s)
            if self._tail is not None:
                await self._tail.finish(0.2)
            if running:
                self._log.info(
                    "encoder stopped",
                    channel=self._channel,
                    pid=process.pid,
                    status=process.returncode,
                )
        self._set_running(False)

    async def _stop_supervisor(self) -> None:
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _supervise(self) -> None:
        """Restart an encoder that died on its own, on the same input, with capped backoff."""
        while True:
            process = self._process
            if process is not None:
                started = time.monotonic()
                status = await process.wait()
                tail = await self._tail.finish() if self._tail is not None else ""
                _killpg(process.pid, signal.SIGKILL)
                self._process = None
                self._set_running(False)
                if time.monotonic() - started >= STABLE_S:
                    self._restarts.reset()
                reason = _exited("encoder", status, tail)
            else:
                reason = self._last_error or "encoder not running"
            delay_s = self._restarts.next_s()
            name = self._current[0] if self._current else None
            self._log.warning(
                "encoder down", channel=self._channel, input=name, reason=reason, retry_in_s=delay_s
            )
            await asyncio.sleep(delay_s)
            async with self._lock:
                if self._current is None:
                    return
                with contextlib.suppress(ActionError):  # said on the next turn
                    await self._launch(*self._current)


# --- HTTP ---------------------------------------------------------------------------------------


class HttpAction:
    """One HTTP request to the encoder's API per switch."""

    running: bool | None = None

    def __init__(self, settings: HttpSettings, channel: str) -> None:
        self._settings = settings
        self._channel = channel

    async def start(self, input_name: str, input_url: str) -> None:
        """Nothing: the encoder keeps the input it has (the agent remembers which)."""

    async def close(self) -> None:
        """Nothing to stop."""

    async def switch(self, to_input_name: str, input_url: str) -> None:
        s = self._settings
        values = {"input_name": to_input_name, "input_url": input_url, "channel": self._channel}
        quoted = {key: quote(value, safe="") for key, value in values.items()}
        url = fill(s.url, **quoted)
        body = fill(s.body, **values) if s.body is not None else None
        headers = {key: fill(value, **values) for key, value in s.headers.items()}
        shown = f"{s.method} {_without_credentials(url)}"
        try:
            async with httpx.AsyncClient(timeout=s.timeout_s) as client:
                response = await client.request(s.method, url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise ActionError(f"{shown}: no answer in {s.timeout_s:g} s") from None
        except httpx.HTTPError as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            raise ActionError(f"{shown}: {reason}") from None
        code = response.status_code
        if s.expect_status and code in s.expect_status:
            return
        if not s.expect_status and 200 <= code < 300:
            return
        text = " ".join(response.text.split())
        text = text if len(text) <= 200 else text[:197] + "..."
        answer = f"{code} {response.reason_phrase}".strip()
        raise ActionError(f"{shown}: HTTP {answer}" + (f": {text}" if text else ""))


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


# --- Script -------------------------------------------------------------------------------------


class ScriptAction:
    """A program run per switch: ``path ARGS...``; exit status 0 means done."""

    running: bool | None = None

    def __init__(self, settings: ScriptSettings, channel: str) -> None:
        self._settings = settings
        self._channel = channel

    async def start(self, input_name: str, input_url: str) -> None:
        """Nothing: the encoder keeps the input it has (the agent remembers which)."""

    async def close(self) -> None:
        """Nothing to stop (a script still running was already waited for)."""

    async def switch(self, to_input_name: str, input_url: str) -> None:
        s = self._settings
        values = {"input_name": to_input_name, "input_url": input_url, "channel": self._channel}
        argv = [s.path, *(fill(arg, **values) for arg in s.args)]
        env = {
            **os.environ,
            "STREAMQC_CHANNEL": self._channel,
            "STREAMQC_INPUT_NAME": to_input_name,
            "STREAMQC_INPUT": input_url,
        }
        process = await _spawn(argv, env)
        tail = _Tail(process.stderr)
        try:
            status = await asyncio.wait_for(process.wait(), s.timeout_s)
        except TimeoutError:
            await _stop_group(process, 1.0)
            text = await tail.finish(0.2)
            raise ActionError(
                f"{s.path} did not finish in {s.timeout_s:g} s (killed)"
                + (f": {text}" if text else "")
            ) from None
        finally:
            if process.returncode is None:  # cancelled: the agent stops
                await _stop_group(process, 1.0)
        text = await tail.finish()
        if status != 0:
            raise ActionError(_exited(s.path, status, text))
