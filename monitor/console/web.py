"""The console's HTTP side (aiohttp): pages, the JSON API under ``/api/``, the live WebSocket.

Every endpoint checks the session and the role on the server (``rules.may``); every
state-changing request must carry the session's CSRF token in ``X-CSRF-Token`` and, when the
browser sends one, an ``Origin`` of this very console. Broker credentials never leave this
process: browsers get JSON and JPEGs. Bad requests are answered with a one-line
``{"error": ...}`` and the right status, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import WSMsgType, web

from failover.protocol import OperatorRequest, operator_topic
from monitor.console.auth import LoginLimiter, Session, Sessions, Users, csrf_ok
from monitor.console.channel_book import ChannelBook
from monitor.console.mqtt_feed import FeedUnavailable, MqttFeed, subscriptions
from monitor.console.rules import (
    Ack,
    Action,
    PayloadError,
    Shelf,
    failover_request,
    iso,
    may,
    shelf_until,
    worst_first,
)
from monitor.console.settings import ConsoleSettings
from monitor.console.store import SEVERITIES, AlarmQuery, Store
from monitor.daemon.sdnotify import Notifier
from monitor.logs import get_logger
from monitor.util.mqtt_connection import BrokerSettings

STATIC = Path(str(resources.files("monitor.console") / "static"))
COOKIE = "streamqc_session"
BATCH_EVERY_S = 0.25
"""Live updates are coalesced into one WebSocket message per quarter second."""
HOUSEKEEPING_EVERY_S = 5.0
PRUNE_EVERY_S = 3600.0
SEND_TIMEOUT_S = 5.0
"""A browser that cannot take a batch in this long is disconnected (it reconnects and gets
a fresh snapshot) instead of holding every other browser back."""
MAX_BODY = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SESSION_KEY = "streamqc.session"


def session_of(request: web.Request) -> Session:
    """The session the guard middleware checked for this request."""
    session: Session = request[SESSION_KEY]
    return session


def now() -> float:
    return time.time()


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


class Console:
    """The running console: settings, store, broker feed, channel book, sessions, browsers."""

    def __init__(
        self,
        settings: ConsoleSettings,
        broker: BrokerSettings,
        users: Users,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.notifier = notifier or Notifier(None)
        self.log = get_logger(component="console")
        self.store = Store(settings.database)
        filters, patterns = subscriptions(settings.prefixes)
        self.book = ChannelBook(patterns, self.store, self.log.warning)
        self.book.load(now())
        self.feed = MqttFeed(broker, filters, self._on_message, self.log.info)
        self.users = users
        self.sessions = Sessions()
        self.limiter = LoginLimiter()
        self.hashing = asyncio.Semaphore(2)
        self.sockets: set[web.WebSocketResponse] = set()
        self.watching: dict[web.WebSocketResponse, str] = {}
        """Session token of each open live connection: a mosaic left open all night keeps its
        session (an operator at the wall screen must not find it logged out)."""
        self.secure_cookies = settings.tls is not None
        self.stopping = asyncio.Event()

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.book.receive(topic, payload, now())

    # --- the app ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.headers, self.guard], client_max_size=MAX_BODY)
        r = app.router
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/", self.page("index.html"))
        r.add_get("/alarms", self.page("alarms.html"))
        r.add_get("/channel/{site}/{channel}", self.page("channel.html"))
        r.add_static("/static", STATIC)
        r.add_get("/favicon.ico", self.favicon)
        r.add_get("/api/health", self.health)
        r.add_get("/api/session", self.session)
        r.add_get("/api/channels", self.channels)
        r.add_get("/api/channels/{site}/{channel}", self.channel)
        r.add_get("/api/channels/{site}/{channel}/thumbnail", self.thumbnail)
        r.add_post("/api/channels/{site}/{channel}/failover", self.failover)
        r.add_post("/api/channels/{site}/{channel}/shelve", self.shelve)
        r.add_post("/api/channels/{site}/{channel}/unshelve", self.unshelve)
        r.add_get("/api/alarms", self.alarms)
        r.add_get("/api/alarms/{id}", self.alarm)
        r.add_get("/api/alarms/{id}/picture", self.alarm_picture)
        r.add_post("/api/alarms/{id}/ack", self.ack)
        r.add_get("/api/actions", self.actions)
        r.add_get("/api/live", self.live)
        return app

    @web.middleware
    async def headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        h = response.headers
        h.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("X-Frame-Options", "DENY")
        if self.secure_cookies:
            h.setdefault("Strict-Transport-Security", "max-age=31536000")
        if isinstance(response, web.HTTPException) and response.status >= 400:
            raise response
        return response

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Session, CSRF and origin checks for everything but the login page and assets."""
        path = request.path
        if path in ("/login", "/api/health", "/favicon.ico") or path.startswith("/static/"):
            if request.method == "POST" and not self._same_origin(request):
                return error(403, "cross-origin request refused")
            return await handler(request)
        session = self.sessions.get(request.cookies.get(COOKIE), now())
        if session is None:
            if path.startswith("/api/"):
                return error(401, "not logged in: POST /login with username and password")
            target = f"/login?next={quote(request.path_qs)}" if path != "/" else "/login"
            return web.Response(status=303, headers={"Location": target})
        changes = request.method not in ("GET", "HEAD", "OPTIONS")
        if (changes or path == "/api/live") and not self._same_origin(request):
            return error(403, "cross-origin request refused")
        if changes and not csrf_ok(session, request.headers.get("X-CSRF-Token")):
            return error(403, "missing or wrong X-CSRF-Token (GET /api/session gives it)")
        request[SESSION_KEY] = session
        return await handler(request)

    def _same_origin(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None or origin == "null" and request.path == "/login":
            return True  # not a browser, or a browser that does not say (SameSite still holds)
        return urlsplit(origin).netloc == request.host

    def _may(self, request: web.Request, action: Action) -> Session:
        session = session_of(request)
        if not may(session.role, action):
            self.log.warning("action refused", user=session.user, role=session.role, action=action,
                             path=request.path)  # fmt: skip
            raise web.HTTPForbidden(
                text=json.dumps({"error": f"{session.role}s may not {action}: operators only"}),
                content_type="application/json",
            )
        return session

    # --- pages and login ----------------------------------------------------------------------

    def page(self, name: str) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

        return serve

    async def favicon(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        return self._login_html(200, "")

    def _login_html(self, status: int, message: str, **headers: str) -> web.Response:
        html = (STATIC / "login.html").read_text(encoding="utf-8")
        if message:
            html = html.replace(
                '<p id="error" hidden></p>', f'<p id="error" role="alert">{message}</p>'
            )
        return web.Response(
            text=html, status=status, content_type="text/html", headers=headers or None
        )

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        client = request.remote or "?"
        keys = (f"user:{name}", f"ip:{client}")
        wait_s = self.limiter.retry_after_s(keys, now())
        if wait_s > 0:
            self.log.warning("login rate limited", user=name, client=client)
            return self._login_html(429, f"Too many failed logins: try again in {wait_s:.0f} s.",
                                    **{"Retry-After": str(int(wait_s) + 1)})  # fmt: skip
        async with self.hashing:  # scrypt takes 128 MiB a check: two at a time at most
            user = await asyncio.get_running_loop().run_in_executor(
                None, self.users.verify, name, password
            )
        if user is None:
            self.limiter.failed(keys, now())
            self.log.warning("login failed", user=name, client=client)
            return self._login_html(401, "Wrong user name or password.")
        self.limiter.succeeded((f"user:{name}",))
        session = self.sessions.create(user, now())
        self.log.info("login", user=user.name, role=user.role, client=client)
        target = request.query.get("next", "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        response = web.Response(status=303, headers={"Location": target})
        response.set_cookie(COOKIE, session.token, httponly=True, samesite="Strict",
                            secure=self.secure_cookies, path="/")  # fmt: skip
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = session_of(request)
        self.sessions.end(session.token)
        self.log.info("logout", user=session.user)
        response = web.json_response({"logged_out": session.user})
        response.del_cookie(COOKIE, path="/")
        return response

    # --- read API -----------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.StreamResponse:
        connected = self.feed.connected.is_set()
        body = {
            "status": "ok" if connected else "broker unreachable",
            "mqtt_connected": connected,
            "sites": len(self.book.state.daemons),
            "channels": sum(1 for r in self.book.state.channels.values() if r.status),
            "browsers": len(self.sockets),
            "messages": self.book.messages,
        }
        return web.json_response(body, status=200 if connected else 503)

    async def session(self, request: web.Request) -> web.StreamResponse:
        s = session_of(request)
        return web.json_response({"user": s.user, "role": s.role, "csrf_token": s.csrf_token})

    async def channels(self, request: web.Request) -> web.StreamResponse:
        self._may(request, "view")
        tiles = self.book.state.tiles(now())
        q = request.query
        if q.get("site"):
            tiles = [t for t in tiles if t["site"] == q["site"]]
        if q.get("state"):
            tiles = [t for t in tiles if t["state"] == q["state"]]
        if q.get("sort") == "worst":
            tiles.sort(key=worst_first)
        return web.json_response({"channels": tiles, "flood": self.book.state.flood(now())})

    def _known(self, request: web.Request) -> tuple[str, str]:
        site, channel = request.match_info["site"], request.match_info["channel"]
        record = self.book.state.channels.get((site, channel))
        if record is None or record.status is None:
            message = json.dumps({"error": f"no channel {channel} at site {site}"})
            raise web.HTTPNotFound(text=message, content_type="application/json")
        return site, channel

    async def channel(self, request: web.Request) -> web.StreamResponse:
        self._may(request, "view")
        site, channel = self._known(request)
        t = now()
        tile = self.book.channel_json(site, channel, t)
        assert tile is not None
        timeline = self.store.alarms(
            AlarmQuery(site=site, channel=channel, since_s=t - 86_400.0, limit=5000)
        )
        return web.json_response(
            tile | {"now_s": t, "audit": self.store.audit(site, channel), "timeline": timeline}
        )

    async def thumbnail(self, request: web.Request) -> web.StreamResponse:
        self._may(request, "view")
        key = (request.match_info["site"], request.match_info["channel"])
        jpeg = self.book.thumbnails.get(key)
        if jpeg is None:
            return error(404, f"no thumbnail yet for {key[1]} at site {key[0]}")
        # The page asks with ?v=<thumbnail_seq>: each URL is one picture, cacheable for a while.
        cache = "private, max-age=600" if "v" in request.query else "no-store"
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": cache})

    async def alarms(self, request: web.Request) -> web.StreamResponse:
        self._may(request, "view")
        try:
            query = alarm_query(request.query)
        except PayloadError as exc:
            return error(400, str(exc))
        rows = self.store.alarms(query)
        shelves = self.book.state.shelves
        for row in rows:
            row["shelved"] = row["active"] and (row["site"], row["channel"]) in shelves
        if query.active:  # shelved channels' alarms are recorded, not shown as active
            include = request.query.get("shelved") == "1"
            rows = [row for row in rows if include or not row["shelved"]]
        return web.json_response({"alarms": rows, "flood": self.book.state.flood(now())})

    async def alarm(self, request: web.Request) -> web.StreamResponse:
        self._may(request, "view")
        row = self.store.alarm(request.match_info["id"])
        if row is None:
            return error(404, f"no alarm {request.match_info['id']}")
        return web.json_response(row)

    async def alarm_picture(self, request: web.Request) -> web.StreamResponse:
        self._may(request, "view")
        jpeg = self.store.picture(request.match_info["id"])
        if jpeg is None:
            return error(404, f"no picture for alarm {request.match_info['id']}")
        return web.Response(
            body=jpeg,
            content_type="image/jpeg",
            headers={"Cache-Control": "private, max-age=86400"},
        )

    async def actions(self, request: web.Request) -> web.StreamResponse:
        self._may(request, "view")
        return web.json_response({"actions": self.store.actions()})

    # --- actions ------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json() if request.can_read_body else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": "body: not JSON"}), content_type="application/json"
            ) from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text=json.dumps({"error": "body: must be a JSON object"}),
                                     content_type="application/json")  # fmt: skip
        return body

    def _act(self, session: Session, action: str, target: str, **detail: Any) -> None:
        self.store.log_action(session.user, action, target, detail, now())
        self.log.info("operator action", user=session.user, action=action, target=target, **detail)

    async def ack(self, request: web.Request) -> web.StreamResponse:
        session = self._may(request, "ack")
        alarm_id = request.match_info["id"]
        row = self.store.alarm(alarm_id)
        if row is None:
            return error(404, f"no alarm {alarm_id}")
        stands = self.book.state.acknowledge(Ack(alarm_id, session.user, now()))
        if stands.user == session.user:
            self.store.ack(stands)
        self._act(
            session, "ack", f"{row['site']}/{row['channel']}", alarm=row["alarm"], id=alarm_id
        )
        self.book.touch((row["site"], row["channel"]), alarms=True)
        return web.json_response(
            {"id": alarm_id, "acked_by": stands.user, "acked_at": iso(stands.at_s)}
        )

    async def shelve(self, request: web.Request) -> web.StreamResponse:
        session = self._may(request, "shelve")
        site, channel = self._known(request)
        body = await self._body(request)
        t = now()
        try:
            until_s = shelf_until(t, body.get("duration_s"))
        except PayloadError as exc:
            return error(400, str(exc))
        reason = str(body.get("reason") or "maintenance")[:200]
        shelf = Shelf(site, channel, session.user, until_s, reason, t)
        self.book.state.shelve(shelf)
        self.store.shelve(shelf)
        self._act(session, "shelve", f"{site}/{channel}", until=iso(until_s), reason=reason)
        self.book.touch((site, channel), alarms=True)
        return web.json_response({"shelved": shelf.to_json()})

    async def unshelve(self, request: web.Request) -> web.StreamResponse:
        session = self._may(request, "shelve")
        site, channel = self._known(request)
        self.book.state.unshelve(site, channel)
        self.store.unshelve(site, channel)
        self._act(session, "unshelve", f"{site}/{channel}")
        self.book.touch((site, channel), alarms=True)
        return web.json_response({"shelved": None})

    async def failover(self, request: web.Request) -> web.StreamResponse:
        session = self._may(request, "failover")
        site, channel = self._known(request)
        body = await self._body(request)
        record = self.book.state.channels[(site, channel)]
        pending = record.request.get("request_id") if record.request else None
        try:
            action, request_id, to = failover_request(
                body, pending if isinstance(pending, str) else None
            )
        except PayloadError as exc:
            return error(
                409 if "no failover request" in str(exc) or "has changed" in str(exc) else 400,
                str(exc),
            )
        message = OperatorRequest(action, session.user, request_id=request_id, to=to)  # type: ignore[arg-type]
        topic = operator_topic(self.book.prefixes[site], channel)
        try:
            await self.feed.publish(topic, message.to_json())
        except FeedUnavailable as exc:
            return error(503, str(exc))
        self._act(session, f"failover {action}", f"{site}/{channel}", to=to, request_id=request_id)
        return web.json_response(
            {"published": json.loads(message.to_json()), "topic": topic}, status=202
        )

    # --- live updates -------------------------------------------------------------------------

    async def live(self, request: web.Request) -> web.StreamResponse:
        self._may(request, "view")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
        await ws.prepare(request)
        await ws.send_str(self.book.encode_snapshot(now(), self.feed.connected.is_set()))
        self.sockets.add(ws)
        self.watching[ws] = session_of(request).token
        try:
            async for message in ws:  # the browser sends nothing we act on
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            self.sockets.discard(ws)
            self.watching.pop(ws, None)
        return ws

    async def push_batches(self) -> None:
        while True:
            await asyncio.sleep(BATCH_EVERY_S)
            batch = self.book.take_batch()
            if not batch or not self.sockets:
                continue
            text = self.book.encode_batch(batch, now())
            await asyncio.gather(*(self._send(ws, text) for ws in list(self.sockets)))

    async def _send(self, ws: web.WebSocketResponse, text: str) -> None:
        try:
            await asyncio.wait_for(ws.send_str(text), SEND_TIMEOUT_S)
        except (TimeoutError, ConnectionError, RuntimeError):
            self.sockets.discard(ws)
            with contextlib.suppress(Exception):
                await ws.close()

    async def housekeeping(self) -> None:
        last_prune_s = 0.0
        while True:
            t = now()
            for key in self.book.state.expire_shelves(t):
                self.book.touch(key, alarms=True)
            for ws, token in list(self.watching.items()):
                if self.sessions.get(token, t) is None:  # logged out elsewhere
                    await ws.close()
            if t - last_prune_s >= PRUNE_EVERY_S:
                last_prune_s = t
                pruned = self.store.prune(t - self.settings.history_s)
                if pruned:
                    self.log.info("history pruned", alarms=pruned)
            await asyncio.sleep(HOUSEKEEPING_EVERY_S)

    # --- running ------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Listen, follow the broker and push updates until ``stop()``."""
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        context = None
        if self.settings.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(self.settings.tls.cert, self.settings.tls.key)
        site = web.TCPSite(runner, self.settings.listen_host, self.settings.listen_port,
                           ssl_context=context, shutdown_timeout=2.0)  # fmt: skip
        await site.start()
        scheme = "https" if context else "http"
        self.log.info(
            "console listening",
            url=f"{scheme}://{self.settings.listen_host}:{self.settings.listen_port}/",
            prefixes=list(self.settings.prefixes),
            state_dir=str(self.settings.state_dir),
        )
        tasks = [
            asyncio.create_task(self.feed.run(), name="mqtt"),
            asyncio.create_task(self.push_batches(), name="batches"),
            asyncio.create_task(self.housekeeping(), name="housekeeping"),
            asyncio.create_task(self.watchdog(), name="watchdog"),
        ]
        # Ready once listening, not once the broker answers: a broker down at boot must not
        # get the console killed at the start timeout (it reconnects, and says so in /api/health).
        self.notifier.ready(
            f"listening on {scheme}://{self.settings.listen_host}:{self.settings.listen_port}/"
        )
        try:
            await self.stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for ws in list(self.sockets):
                with contextlib.suppress(Exception):
                    await ws.close()
            self.notifier.stopping()
            await runner.cleanup()
            self.store.close()
            self.log.info("console stopped")

    def stop(self) -> None:
        self.stopping.set()

    async def watchdog(self) -> None:
        """systemd's WatchdogSec=: ping from the event loop, so a hung loop gets restarted."""
        interval_s = self.notifier.watchdog_interval_s
        if interval_s is None:
            return
        while True:
            self.notifier.watchdog()
            self.notifier.status(
                f"{sum(1 for r in self.book.state.channels.values() if r.status)} channels, "
                f"{len(self.sockets)} browsers, MQTT "
                + ("connected" if self.feed.connected.is_set() else "reconnecting")
            )
            await asyncio.sleep(interval_s / 2)


def alarm_query(q: Any) -> AlarmQuery:
    """``GET /api/alarms`` parameters, checked: PayloadError naming the bad one."""

    def number(name: str) -> float | None:
        if not q.get(name):
            return None
        try:
            return float(q[name])
        except ValueError:
            raise PayloadError(
                f"{name}: must be seconds since the epoch, got {q[name][:30]!r}"
            ) from None

    active = q.get("active")
    if active not in (None, "", "0", "1"):
        raise PayloadError(f"active: must be 1 or 0, got {active[:30]!r}")
    severity = q.get("severity") or None
    if severity is not None and severity not in SEVERITIES:
        raise PayloadError(f"severity: must be one of {', '.join(SEVERITIES)}")
    limit = q.get("limit") or "500"
    if not limit.isdigit() or not 1 <= int(limit) <= 5000:
        raise PayloadError("limit: must be 1 to 5000")
    return AlarmQuery(
        site=q.get("site") or None,
        channel=q.get("channel") or None,
        alarm=q.get("alarm") or None,
        severity=severity,
        since_s=number("since"),
        until_s=number("until"),
        active=None if active in (None, "") else active == "1",
        limit=int(limit),
    )


async def run_console(settings: ConsoleSettings, broker: BrokerSettings, users: Users) -> int:
    """Serve until SIGTERM / SIGINT."""
    notifier = Notifier.from_env()
    console = Console(settings, broker, users, notifier)
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, console.stop)
    try:
        await console.serve()
    finally:
        notifier.close()
    return 0
