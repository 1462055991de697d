"""The console as a NOC operator uses it, with every part real: Mosquitto, the daemon on live
UDP feeds (black on news's primary at a known time), the failover agent with a script action,
the console, and Debian's Chromium driven by Playwright.

One story, in order: log in, see every tile with a decoded picture, see the black appear on
its tile and in the alarm list, acknowledge it and see the acknowledgement in a second
browser, confirm the daemon's failover request with one click and see the backup on air,
see the alarm leave when the black ends; a viewer's attempt to act is refused (403).
Screenshots of the mosaic, the alarm list and the channel page go to the test's folder.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.demo.synth import MediaSpec, Span, make_ts
from tests.console.browser import log_in
from tests.console.consoleproc import PASSWORDS, ConsoleProcess
from tests.daemon import Channel, Daemon
from tests.failover.test_agent import AgentProcess, flow
from tests.failover.test_closed_loop import FailoverChannel, Feed
from tests.mqttbroker import Mosquitto, Subscriber

CLIP_S = 60.0
BLACK = Span(8.0, 22.0)
"""Long enough for the test to acknowledge it, then confirm the switch while it lasts."""
SCREENSHOTS = os.environ.get("STREAMQC_SCREENSHOTS")
"""Copy the screenshots here too (how the README's picture of the mosaic was made)."""


@pytest.fixture(scope="module")
def e2e_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("console-clips")
    spec = MediaSpec(duration_s=CLIP_S, width=320, height=180, gop=25)
    return {
        "clean": make_ts(folder / "clean.ts", spec),
        "black": make_ts(folder / "black.ts", MediaSpec(**{**spec.__dict__, "black": (BLACK,)})),
        "sport": make_ts(folder / "sport.ts", MediaSpec(**{**spec.__dict__, "seed": 2})),
    }


class Loop:
    def __init__(self, tmp_path: Path, broker: Mosquitto, clips: dict[str, Path]) -> None:
        news = FailoverChannel(
            "news",
            Feed(clips["black"]),
            Feed(clips["clean"]),
            "{mode: confirm, triggers: [black], confirm_timeout: null, failback: stay}",
        )
        sport = Channel("sport", clips["sport"])
        self.switched = tmp_path / "switched.txt"
        script = tmp_path / "switch.sh"
        script.write_text(f'#!/bin/sh\necho "$1" >> "{self.switched}"\n')
        script.chmod(0o755)
        self.agent = AgentProcess(
            tmp_path / "agent",
            broker.port,
            f"""\
  - name: news
    inputs: {{primary: "udp://127.0.0.1:{news.primary.encoder_port}",
              backup: "udp://127.0.0.1:{news.backup.encoder_port}"}}
    action: {{script: {{path: {flow(str(script))}, timeout: 5s}}}}
""",
        )
        self.daemon = Daemon(tmp_path / "daemon", [news, sport], broker_url=broker.url)  # type: ignore[list-item]
        self.console = ConsoleProcess(tmp_path / "console", broker.port)
        self.console.add_users()

    def start(self) -> None:
        self.agent.start()
        self.console.start()
        self.daemon.start()

    def stop(self) -> None:
        self.daemon.stop()
        self.console.stop()
        self.agent.close()


@pytest.fixture
def loop(tmp_path: Path, mosquitto: Mosquitto, e2e_clips: dict[str, Path]) -> Iterator[Loop]:
    running = Loop(tmp_path, mosquitto, e2e_clips)
    try:
        running.start()
        yield running
    finally:
        running.stop()
    assert "Traceback" not in running.console.log(), running.console.log()


def shoot(page: Any, folder: Path, name: str, clip: dict[str, int] | None = None) -> Path:
    path = folder / f"{name}.png"
    if clip is None:
        page.screenshot(path=str(path), full_page=True)
    else:
        page.screenshot(path=str(path), clip=clip)
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(SCREENSHOTS) / path.name)
    return path


TILES_DECODED = """() => {
  const images = [...document.querySelectorAll('.tile img')];
  return images.length === 2 && images.every((i) => i.complete && i.naturalWidth > 0);
}"""


def test_an_operator_sees_the_fault_acknowledges_it_and_confirms_the_failover(
    tmp_path: Path, mosquitto: Mosquitto, loop: Loop, browser: Any
) -> None:
    base = loop.console.url
    sub = Subscriber(mosquitto.port, "streamqc/test/+/alarms")
    errors: list[str] = []
    jane_context = browser.new_context(viewport={"width": 1280, "height": 800})
    jane = jane_context.new_page()
    jane.on("pageerror", lambda error: errors.append(str(error)))
    try:
        log_in(jane, base, "jane", PASSWORDS["jane"])
        # Every channel's tile, with a picture decoded from the daemon's thumbnail.
        jane.wait_for_function(TILES_DECODED, timeout=40_000)
        assert jane.locator(".tile").count() == 2
        sport = jane.locator('.tile[data-channel="sport"]')
        assert sport.get_attribute("data-state") == "ok"
        assert "OK" in sport.locator(".band").inner_text()
        # The text filter hides what does not match, and shows it again.
        jane.fill("#f-text", "spor")
        jane.locator('.tile[data-channel="news"]').wait_for(state="hidden", timeout=5_000)
        assert sport.is_visible()
        jane.fill("#f-text", "")
        jane.locator("#f-text").blur()
        jane.locator('.tile[data-channel="news"]').wait_for(state="visible", timeout=5_000)

        # The black on news's primary: on its tile within moments of being raised.
        raised = sub.wait_for(lambda m: b'"black"' in m.payload and b'"raised"' in m.payload, 60)
        seen_at = time.monotonic()
        news = jane.locator('.tile[data-channel="news"]')
        news.locator('li[data-alarm="black"]').wait_for(timeout=10_000)
        tile_latency_s = time.monotonic() - seen_at
        assert news.get_attribute("data-state") == "degraded"
        event = json.loads(raised.payload)
        shoot(jane, tmp_path, "mosaic-fault")
        # The README's picture: the two tiles and the bar above them, small.
        shoot(jane, tmp_path, "console-mosaic", clip={"x": 0, "y": 0, "width": 520, "height": 405})

        # In the alarm list; acknowledged here, seen acknowledged in another browser.
        jane.goto(f"{base}/alarms")
        row = jane.locator(f'#active tr[data-id="{event["id"]}"]')
        row.wait_for(timeout=10_000)
        row.locator("button.ack").click()
        row = jane.locator(f'#active tr[data-id="{event["id"]}"]')
        jane.wait_for_function(
            f"""() => {{ const r = document.querySelector('#active tr[data-id="{event["id"]}"]');
            return r && r.textContent.includes('jane'); }}""",
            timeout=10_000,
        )
        vic_context = browser.new_context(viewport={"width": 1280, "height": 800})
        vic = vic_context.new_page()
        log_in(vic, base, "vic", PASSWORDS["vic"])
        vic.goto(f"{base}/alarms")
        acked = vic.locator(f'#active tr[data-id="{event["id"]}"] td.acked')
        acked.wait_for(timeout=10_000)
        assert "jane" in acked.inner_text()
        # The detail: the onset picture, decoded, with every detail field.
        vic.locator(f'#active tr[data-id="{event["id"]}"]').click()
        vic.wait_for_function(
            "() => { const i = document.querySelector('#detail .onset img');"
            " return i && i.complete && i.naturalWidth > 0; }",
            timeout=10_000,
        )
        assert "detail.mean_luma" in vic.locator("#detail").inner_text()
        shoot(vic, tmp_path, "alarm-detail")

        # A viewer cannot act, even by calling the API from the page.
        status = vic.evaluate(
            """async (id) => {
                const s = await (await fetch('/api/session')).json();
                const r = await fetch(`/api/alarms/${id}/ack`, {method: 'POST',
                    headers: {'X-CSRF-Token': s.csrf_token}});
                return r.status; }""",
            event["id"],
        )
        assert status == 403
        vic.goto(f"{base}/channel/test/news")
        vic.locator("button.switch").first.wait_for(timeout=10_000)
        assert vic.locator("button.switch").first.is_disabled()

        # The failover request: one click on Confirm, then the backup is on air.
        jane.goto(f"{base}/channel/test/news")
        confirm = jane.locator("button.confirm")
        confirm.wait_for(timeout=20_000)
        assert "backup" in confirm.inner_text()
        shoot(jane, tmp_path, "channel-request")
        confirm.click()
        jane.locator("#failover-onair", has_text="backup").wait_for(timeout=20_000)
        jane.wait_for_function(
            "() => document.querySelector('button.switch[data-to=backup]').disabled", timeout=5_000
        )
        assert not jane.locator("button.switch[data-to=primary]").is_disabled()
        assert loop.switched.read_text().split() == ["backup"]
        jane.goto(f"{base}/")
        jane.locator('.tile[data-channel="news"] .onair', has_text="on air: backup").wait_for(
            timeout=10_000
        )
        # The black ends on primary: the alarm leaves the tile and the active list.
        jane.locator('.tile[data-channel="news"] li[data-alarm="black"]').wait_for(
            state="detached", timeout=30_000
        )
        shoot(jane, tmp_path, "mosaic")
        jane.goto(f"{base}/alarms")
        jane.locator(f'#history tr[data-id="{event["id"]}"]').wait_for(timeout=10_000)
        assert jane.locator(f'#active tr[data-id="{event["id"]}"]').count() == 0
        jane.goto(f"{base}/channel/test/news")
        jane.locator("#audit td", has_text="jane").first.wait_for(timeout=10_000)
        shoot(jane, tmp_path, "channel")
        print(f"alarm on its tile {tile_latency_s:.2f} s after the raised event reached MQTT")
        assert errors == []
    finally:
        sub.close()
        jane_context.close()
