"""``streamqc demo`` with its console: the printed URL and login work, every channel has its
tile, and the kids failover is confirmed with one request, as a newcomer would click it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_serves_its_console_and_a_confirmed_failover_puts_the_backup_on_air() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "demo", "--duration", "36s"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    assert demo.stdout is not None
    out = ""
    try:
        while "NOC console" not in out or "password" not in out:
            line = demo.stdout.readline()
            assert line, out
            out += line
        url = re.search(r"NOC console: (http://127\.0\.0\.1:\d+)/", out)
        login = re.search(r"log in as (\w+), password (\S+) ", out)
        assert url and login, out
        http = httpx.Client(base_url=url[1], timeout=10.0)
        deadline = time.monotonic() + 20
        while True:  # the console starts with the daemon
            try:
                answer = http.post("/login", data={"username": login[1], "password": login[2]})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert answer.status_code == 303
        token = http.get("/api/session").json()["csrf_token"]

        def kids() -> dict[str, object]:
            channels = http.get("/api/channels").json()["channels"]
            assert sorted(c["channel"] for c in channels) == ["kids", "news", "sport"]
            return next(c for c in channels if c["channel"] == "kids")

        deadline = time.monotonic() + 40
        while not (kids()["failover"] or {}).get("request"):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no failover request for kids"
            time.sleep(0.3)
        confirmed = http.post("/api/channels/demo/kids/failover", json={"action": "confirm"},
                              headers={"X-CSRF-Token": token})  # fmt: skip
        assert confirmed.status_code == 202, confirmed.text
        while kids()["active_input"] != "backup":
            assert time.monotonic() < deadline, "kids never went to backup"
            time.sleep(0.3)
        audit = http.get("/api/channels/demo/kids").json()["audit"]
        assert any(a.get("operator") == login[1] for a in audit), audit
        rest, _ = demo.communicate(timeout=60)
        out += rest
        assert demo.returncode == 0, out
        assert "every injected fault raised its alarm over MQTT, no false alarm" in out
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
