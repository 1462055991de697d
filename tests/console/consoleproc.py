"""``streamqc console`` as a subprocess for tests, and an HTTP client logged in to it."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.mqttbroker import TlsFiles, free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"jane": "jane-password-1", "vic": "vic-password-1"}
ROLES = {"jane": "operator", "vic": "viewer"}


class ConsoleProcess:
    """A console on a free loopback port reading the broker on ``broker_port``."""

    def __init__(
        self, folder: Path, broker_port: int, *, extra: str = "", tls: TlsFiles | None = None
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.tls = tls
        self.verify: ssl.SSLContext | bool = True
        if tls is not None:
            extra += f'tls: {{cert: "{tls.cert}", key: "{tls.key}"}}\n'
            self.verify = ssl.create_default_context(cafile=str(tls.ca))
        self.port = free_port()
        self.config = folder / "console.yaml"
        self.config.write_text(
            "version: 1\n"
            f'listen: "127.0.0.1:{self.port}"\n'
            f'mqtt: {{url: "mqtt://127.0.0.1:{broker_port}", client_id: "console-{self.port}"}}\n'
            f'state_dir: "{folder / "state"}"\n' + extra
        )
        self.log_path = folder / "console.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def add_users(self) -> None:
        for name, password in PASSWORDS.items():
            subprocess.run(
                [sys.executable, "-m", "monitor.cli", "console", "user", "add", name,
                 "--role", ROLES[name], "--config", str(self.config)],
                input=password + "\n", text=True, check=True, capture_output=True, cwd=ROOT,
                timeout=60,
            )  # fmt: skip

    def start(self, timeout_s: float = 20.0) -> ConsoleProcess:
        env = {**os.environ, "STREAMQC_DEBUG": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "monitor.cli", "console", "--config", str(self.config),
                 "--log-format", "json"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"console exited: {self.log()}")
            try:
                health = httpx.get(f"{self.url}/api/health", timeout=1.0, verify=self.verify)
                if health.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"console not healthy in {timeout_s} s: {self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, user: str) -> ApiClient:
        return ApiClient(self.url, user, PASSWORDS[user])


class ApiClient:
    """A logged-in session of the JSON API, with its CSRF token on every POST."""

    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10.0)
        response = self.http.post("/login", data={"username": user, "password": password})
        assert response.status_code == 303, (response.status_code, response.text[:200])
        self.session = self.http.get("/api/session").json()

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)

    def post(self, path: str, body: Any = None, *, csrf: bool = True) -> httpx.Response:
        headers = {"X-CSRF-Token": self.session["csrf_token"]} if csrf else {}
        return self.http.post(path, json=body, headers=headers)

    def close(self) -> None:
        self.http.close()
