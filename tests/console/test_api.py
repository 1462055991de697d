"""The console's JSON API against a real Mosquitto, fed with the daemon's own payload builders
(``monitor.sinks.mqtt_api``, ``AlarmEvent``, ``failover.protocol``): logins, roles, CSRF,
acknowledgements, shelves, failover requests published with the operator's name, history
that survives a restart, and one-line errors for bad requests."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.publish
import pytest

from failover.protocol import ConfirmRequest, EncoderState, OperatorRequest
from monitor.alarms.engine import AlarmEvent, utc_now
from monitor.sinks.mqtt_api import Topics, channel_status, daemon_status, to_json
from tests.console.browser import log_in
from tests.console.consoleproc import PASSWORDS, ConsoleProcess
from tests.mqttbroker import Mosquitto, Subscriber

PREFIX = "streamqc/paris"
TOPICS = Topics(PREFIX)


def publish(broker: Mosquitto, topic: str, payload: bytes, retain: bool = False) -> None:
    paho.mqtt.publish.single(topic, payload, qos=1, retain=retain, port=broker.port)


def black(channel: str = "news", **changes: Any) -> AlarmEvent:
    fields: dict[str, Any] = dict(
        alarm="black", state="raised", start=12.0, end=None, channel=channel, input="primary",
        rendition=None, severity="major", wallclock=utc_now(), id=uuid.uuid4().hex,
        detail={"ratio": 1.0, "mean_luma": 16.0, "roi": [0.1, 0.2, 0.3, 0.4]},
    )  # fmt: skip
    return AlarmEvent(**(fields | changes))


class Site:
    """A daemon's side of the MQTT API, published by hand."""

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.on: dict[str, list[AlarmEvent]] = {"news": [], "sport": []}

    def online(self) -> None:
        status = daemon_status("online", site="paris", host="enc01", pid=1, channels=2)
        publish(self.broker, TOPICS.daemon_status, to_json(status), retain=True)
        for channel in self.on:
            self.status(channel)

    def offline(self) -> None:
        status = daemon_status("offline", site="paris", host="enc01", reason="stopped")
        publish(self.broker, TOPICS.daemon_status, to_json(status), retain=True)

    def status(self, channel: str) -> None:
        inputs = {"primary": self.on[channel], "backup": []}
        status = channel_status(channel, "primary", inputs)
        publish(self.broker, TOPICS.status(channel), to_json(status), retain=True)

    def raise_(self, event: AlarmEvent, picture: bytes | None = None) -> None:
        publish(self.broker, TOPICS.alarms(event.channel), event.to_json().encode())
        if picture is not None:
            publish(self.broker, TOPICS.alarm_thumbnail(event.channel, event.id), picture)
        self.on[event.channel].append(event)
        self.status(event.channel)

    def clear(self, event: AlarmEvent) -> None:
        cleared = dataclasses.replace(
            event, state="cleared", end=16.0, wallclock=utc_now(),
            detail={**event.detail, "duration_s": 4.0},
        )  # fmt: skip
        publish(self.broker, TOPICS.alarms(event.channel), cleared.to_json().encode())
        self.on[event.channel].remove(event)
        self.status(event.channel)


def wait(check: Callable[[], Any], what: str, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen in {timeout_s} s")
        time.sleep(0.05)


@pytest.fixture
def console(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[ConsoleProcess]:
    process = ConsoleProcess(tmp_path / "console", mosquitto.port)
    process.add_users()
    process.start()
    try:
        yield process
    finally:
        process.stop()
        assert "Traceback" not in process.log(), process.log()


def channel(client: Any, name: str) -> dict[str, Any] | None:
    channels = client.get("/api/channels").json()["channels"]
    return next((c for c in channels if c["channel"] == name), None)


def test_a_raised_alarm_is_on_its_tile_and_in_the_list_until_it_clears(
    mosquitto: Mosquitto, console: ConsoleProcess
) -> None:
    site, jane = Site(mosquitto), console.client("jane")
    site.online()
    wait(lambda: channel(jane, "news"), "news tile")
    news = channel(jane, "news")
    assert news is not None and news["site"] == "paris" and news["state"] == "ok"
    assert news["active_input"] == "primary" and news["alarms"] == []
    event = black()
    site.raise_(event, picture=b"\xff\xd8fake-jpeg")
    tile = wait(lambda: (c := channel(jane, "news")) and c["alarms"] and c, "alarm on tile")
    [alarm] = tile["alarms"]
    assert tile["state"] == "degraded"
    assert (alarm["id"], alarm["alarm"], alarm["severity"]) == (event.id, "black", "major")
    assert alarm["start"] == 12.0 and alarm["since"] == event.wallclock
    [active] = jane.get("/api/alarms", active=1).json()["alarms"]
    assert active["id"] == event.id and active["detail"]["roi"] == [0.1, 0.2, 0.3, 0.4]
    detail = jane.get(f"/api/alarms/{event.id}").json()
    assert detail["has_picture"] and detail["cleared_at"] is None
    picture = jane.get(f"/api/alarms/{event.id}/picture")
    assert (
        picture.headers["content-type"] == "image/jpeg" and picture.content == b"\xff\xd8fake-jpeg"
    )

    site.clear(event)
    wait(lambda: (c := channel(jane, "news")) and not c["alarms"], "alarm gone from tile")
    assert jane.get("/api/alarms", active=1).json()["alarms"] == []
    [past] = wait(lambda: jane.get("/api/alarms", active=0).json()["alarms"], "history")
    assert past["id"] == event.id and past["cleared_at"] and past["duration_s"] is not None
    assert past["cleared_detail"]["duration_s"] == 4.0
    # Filters: by channel, alarm, severity and time.
    assert jane.get("/api/alarms", channel="sport").json()["alarms"] == []
    assert len(jane.get("/api/alarms", alarm="black", severity="major").json()["alarms"]) == 1
    assert jane.get("/api/alarms", since=str(time.time() + 60)).json()["alarms"] == []


def test_a_daemon_gone_offline_turns_its_channels_offline(
    mosquitto: Mosquitto, console: ConsoleProcess
) -> None:
    site, vic = Site(mosquitto), console.client("vic")
    site.online()
    wait(lambda: (c := channel(vic, "sport")) and c["state"] == "ok", "sport ok")
    site.offline()
    wait(lambda: (c := channel(vic, "sport")) and c["state"] == "offline", "sport offline")
    assert channel(vic, "sport")["daemon_online"] is False  # type: ignore[index]


def test_acknowledgement_names_the_operator_and_is_shared(
    mosquitto: Mosquitto, console: ConsoleProcess
) -> None:
    site, jane, vic = Site(mosquitto), console.client("jane"), console.client("vic")
    site.online()
    event = black()
    site.raise_(event)
    wait(lambda: jane.get("/api/alarms", active=1).json()["alarms"], "active alarm")
    # A viewer cannot act; nobody acts without the CSRF token.
    assert vic.post(f"/api/alarms/{event.id}/ack").status_code == 403
    refused = jane.post(f"/api/alarms/{event.id}/ack", csrf=False)
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    ok = jane.post(f"/api/alarms/{event.id}/ack")
    assert ok.status_code == 200 and ok.json()["acked_by"] == "jane"
    # The viewer's session sees who acknowledged it.
    [seen] = vic.get("/api/alarms", active=1).json()["alarms"]
    assert seen["acked_by"] == "jane" and seen["acked_at"]
    tile = wait(
        lambda: (c := channel(vic, "news")) and c["alarms"][0]["acked_by"] and c, "ack on tile"
    )
    assert tile["alarms"][0]["acked_by"] == "jane"
    assert jane.post("/api/alarms/nosuchid/ack").status_code == 404
    actions = jane.get("/api/actions").json()["actions"]
    assert actions[0]["user"] == "jane" and actions[0]["action"] == "ack"


def test_a_shelved_channel_records_its_alarms_without_showing_them_active(
    mosquitto: Mosquitto, console: ConsoleProcess
) -> None:
    site, jane = Site(mosquitto), console.client("jane")
    site.online()
    wait(lambda: channel(jane, "news"), "news tile")
    assert jane.post("/api/channels/paris/news/shelve", {"duration_s": 5}).status_code == 400
    shelved = jane.post(
        "/api/channels/paris/news/shelve", {"duration_s": 3600, "reason": "encoder swap"}
    )
    assert shelved.status_code == 200 and shelved.json()["shelved"]["by"] == "jane"
    event = black()
    site.raise_(event)
    wait(lambda: jane.get("/api/alarms", active=1, shelved=1).json()["alarms"], "recorded")
    assert jane.get("/api/alarms", active=1).json()["alarms"] == []
    tile = channel(jane, "news")
    assert tile is not None and tile["shelved"]["reason"] == "encoder swap"
    assert jane.post("/api/channels/paris/news/unshelve").status_code == 200
    [active] = jane.get("/api/alarms", active=1).json()["alarms"]
    assert active["id"] == event.id


def test_failover_actions_publish_the_operator_request_with_the_users_name(
    mosquitto: Mosquitto, console: ConsoleProcess
) -> None:
    site, jane, vic = Site(mosquitto), console.client("jane"), console.client("vic")
    site.online()
    sub = Subscriber(mosquitto.port, f"{PREFIX}/+/failover/operator")
    try:
        wait(lambda: channel(jane, "news"), "news tile")
        # No request open: confirm is a conflict, said in one line.
        conflict = jane.post("/api/channels/paris/news/failover", {"action": "confirm"})
        assert conflict.status_code == 409 and "no failover request" in conflict.json()["error"]
        request = ConfirmRequest("req-1", "news", "backup", ("black",), "2030-01-01T00:00:00.000Z")
        publish(mosquitto, f"{PREFIX}/news/failover/request", request.to_json(), retain=True)
        state = EncoderState("news", "primary", utc_now(), None, True)
        publish(mosquitto, f"{PREFIX}/news/failover/state", state.to_json(), retain=True)
        tile = wait(
            lambda: (
                (c := channel(jane, "news")) and c["failover"] and c["failover"]["request"] and c
            ),
            "request",
        )
        assert tile["failover"]["request"]["request_id"] == "req-1"
        assert (
            vic.post("/api/channels/paris/news/failover", {"action": "confirm"}).status_code == 403
        )
        done = jane.post("/api/channels/paris/news/failover", {"action": "confirm"})
        assert done.status_code == 202, done.text
        message = sub.wait_for(lambda m: True)
        sent = OperatorRequest.from_json(message.payload)
        assert (sent.action, sent.operator, sent.request_id) == ("confirm", "jane", "req-1")
        assert (
            jane.post("/api/channels/paris/news/failover", {"action": "switch"}).status_code == 400
        )
        jane.post("/api/channels/paris/news/failover", {"action": "switch", "to": "backup"})
        jane.post("/api/channels/paris/news/failover", {"action": "lock"})
        sub.wait_until(lambda ms: len(ms) == 3)
        verbs = [OperatorRequest.from_json(m.payload) for m in sub.received()]
        assert [(v.action, v.to, v.operator) for v in verbs[1:]] == [
            ("switch", "backup", "jane"),
            ("lock", None, "jane"),
        ]
        bad = jane.post("/api/channels/paris/news/failover", {"action": "explode"})
        assert bad.status_code == 400 and bad.json()["error"].startswith("action:")
        assert (
            jane.post("/api/channels/paris/nosuch/failover", {"action": "lock"}).status_code == 404
        )
    finally:
        sub.close()


def test_requests_without_a_session_or_with_bad_parameters_get_one_line_errors(
    mosquitto: Mosquitto, console: ConsoleProcess
) -> None:
    import httpx

    anonymous = httpx.get(f"{console.url}/api/channels")
    assert anonymous.status_code == 401 and "log" in anonymous.json()["error"]
    page = httpx.get(f"{console.url}/alarms")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    jane = console.client("jane")
    for params, key in (({"active": "maybe"}, "active"), ({"severity": "bad"}, "severity"),
                        ({"since": "yesterday"}, "since"), ({"limit": "0"}, "limit")):  # fmt: skip
        response = jane.get("/api/alarms", **params)
        assert response.status_code == 400 and response.json()["error"].startswith(key), (
            response.text
        )
    Site(mosquitto).online()
    wait(lambda: channel(jane, "news"), "news tile")
    headers = {"X-CSRF-Token": jane.session["csrf_token"], "Content-Type": "application/json"}
    not_json = jane.http.post("/api/channels/paris/news/shelve", content=b"{", headers=headers)
    assert not_json.status_code == 400 and not_json.json() == {"error": "body: not JSON"}
    cross = jane.http.post("/api/alarms/x/ack", headers={
        "X-CSRF-Token": jane.session["csrf_token"], "Origin": "http://evil.example"})  # fmt: skip
    assert cross.status_code == 403 and "cross-origin" in cross.json()["error"]
    session = jane.get("/api/session").json()
    assert session["user"] == "jane" and session["role"] == "operator" and session["csrf_token"]


def test_failed_logins_are_refused_then_rate_limited_and_logged(
    mosquitto: Mosquitto, console: ConsoleProcess
) -> None:
    import httpx

    login = f"{console.url}/login"
    cookie = httpx.post(login, data={"username": "jane", "password": "jane-password-1"})
    header = cookie.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Secure" not in header
    codes = [
        httpx.post(login, data={"username": "jane", "password": "wrong"}, timeout=10).status_code
        for _ in range(6)
    ]
    assert codes == [401] * 5 + [429]
    limited = httpx.post(login, data={"username": "jane", "password": "jane-password-1"})
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    lines = [json.loads(line) for line in console.log().splitlines() if line.startswith("{")]
    assert sum(line["event"] == "login failed" for line in lines) == 5
    assert any(line["event"] == "login rate limited" for line in lines)


def test_history_acks_and_shelves_survive_a_restart(
    tmp_path: Path, mosquitto: Mosquitto, console: ConsoleProcess
) -> None:
    site, jane = Site(mosquitto), console.client("jane")
    site.online()
    first = black()
    site.raise_(first)
    wait(lambda: jane.get("/api/alarms", active=1).json()["alarms"], "active")
    jane.post(f"/api/alarms/{first.id}/ack")
    jane.post("/api/channels/paris/sport/shelve", {"duration_s": 600})
    console.stop()
    # While the console is away: the alarm clears and another is raised.
    site.clear(first)
    second = black(channel="sport")
    site.raise_(second)
    console.start()
    jane = console.client("jane")

    def first_cleared() -> list[dict[str, Any]]:
        alarms = jane.get("/api/alarms").json()["alarms"]
        return [a for a in alarms if a["id"] == first.id and a["cleared_at"]]

    history = wait(first_cleared, "first cleared")
    assert history[0]["acked_by"] == "jane"
    recorded = wait(lambda: jane.get("/api/alarms", active=1, shelved=1).json()["alarms"], "second")
    assert [a["id"] for a in recorded] == [second.id] and recorded[0]["shelved"]
    assert channel(jane, "sport")["shelved"]["by"] == "jane"  # type: ignore[index]


def test_over_tls_the_cookie_is_secure_and_websockets_check_their_origin(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    import asyncio

    import aiohttp
    import httpx

    from tests.mqttbroker import make_tls_files

    process = ConsoleProcess(
        tmp_path / "console", mosquitto.port, tls=make_tls_files(tmp_path / "tls")
    )
    process.add_users()
    process.start()
    try:
        login = httpx.post(f"{process.url}/login", verify=process.verify,
                           data={"username": "jane", "password": "jane-password-1"})  # fmt: skip
        cookie = login.headers["set-cookie"]
        assert login.status_code == 303 and "Secure" in cookie and "HttpOnly" in cookie
        assert "Strict-Transport-Security" in login.headers
        token = cookie.split(";")[0].split("=", 1)[1]

        async def handshake(origin: str) -> int:
            async with aiohttp.ClientSession(cookies={"streamqc_session": token}) as http:
                try:
                    async with http.ws_connect(
                        f"wss://127.0.0.1:{process.port}/api/live",
                        ssl=process.verify,
                        headers={"Origin": origin},
                    ) as ws:
                        first = await ws.receive_json(timeout=10)
                        return 101 if first["type"] == "snapshot" else 0
                except aiohttp.WSServerHandshakeError as error:
                    return error.status

        assert asyncio.run(handshake(process.url)) == 101
        assert asyncio.run(handshake("https://evil.example")) == 403
    finally:
        process.stop()


def test_logging_out_ends_the_live_updates_of_that_session(
    mosquitto: Mosquitto, console: ConsoleProcess
) -> None:
    import asyncio

    import aiohttp

    jane = console.client("jane")
    token = jane.http.cookies["streamqc_session"]

    async def watch_then_log_out() -> str:
        async with (
            aiohttp.ClientSession(cookies={"streamqc_session": token}) as http,
            http.ws_connect(f"ws://127.0.0.1:{console.port}/api/live") as ws,
        ):
            assert (await ws.receive_json(timeout=10))["type"] == "snapshot"
            logout = jane.post("/logout")
            assert logout.status_code == 200 and logout.json() == {"logged_out": "jane"}
            while True:  # updates may still be on their way; then the console closes it
                message = await ws.receive(timeout=15)
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return "closed"

    assert asyncio.run(watch_then_log_out()) == "closed"
    assert jane.get("/api/channels").status_code == 401


def test_the_mosaic_shows_an_ad_break_and_whether_captions_are_on_air(
    console: ConsoleProcess, mosquitto: Mosquitto, browser: Any, tmp_path: Path
) -> None:
    """The daemon's status carries its captions and SCTE-35 checks' facts per input; the
    tile of the input on air says AD BREAK, CC or NO CC, the last caption line on hover."""
    site = Site(mosquitto)
    site.online()
    facts = {
        "news": {"captions": {"on_air": True, "last_line": "GOOD EVENING"}, "in_break": True,
                 "break_ends_at": "2026-11-25T03:01:00Z"},
        "sport": {"captions": {"on_air": False, "last_line": None}, "in_break": False},
    }  # fmt: skip
    for name, on_air in facts.items():
        status = channel_status(name, "primary", {"primary": [], "backup": []},
                                facts={"primary": on_air})  # fmt: skip
        publish(mosquitto, TOPICS.status(name), to_json(status), retain=True)
    page = browser.new_page(viewport={"width": 900, "height": 500})
    try:
        log_in(page, console.url, "jane", PASSWORDS["jane"])
        news = page.locator('.tile[data-channel="news"] .onair')
        news.filter(has_text="AD BREAK").wait_for(timeout=10_000)
        assert news.inner_text() == "on air: primary \u00b7 AD BREAK \u00b7 CC"
        assert news.get_attribute("title") == "captions: GOOD EVENING"
        sport = page.locator('.tile[data-channel="sport"] .onair')
        assert sport.inner_text() == "on air: primary \u00b7 NO CC"
        page.screenshot(path=str(tmp_path / "mosaic-compliance.png"))
    finally:
        page.close()
