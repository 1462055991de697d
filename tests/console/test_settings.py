"""console.yaml and the ``streamqc console`` commands: one-line errors naming file, line, key."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from monitor.console.auth import check_password, load_users
from monitor.console.settings import load_console_settings
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MQTT = 'mqtt: {url: "mqtt://127.0.0.1:1883"}\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "console.yaml"
    path.write_text(text)
    return path


def test_the_example_loads_with_its_documented_defaults() -> None:
    settings = load_console_settings(ROOT / "configs" / "console-example.yaml")
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8080)
    assert settings.prefixes == ("streamqc/+",)
    assert settings.history_s == 30 * 86_400 and settings.tls is None
    assert settings.users_file == settings.state_dir / "users.json"


def test_the_smallest_file_needs_only_version_and_the_broker(tmp_path: Path) -> None:
    settings = load_console_settings(write(tmp_path, "version: 1\n" + MQTT))
    assert settings.mqtt.url == "mqtt://127.0.0.1:1883" and settings.listen_port == 8080


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\n", "console.yaml:1: missing required key 'mqtt'"),
        ("version: 1\n" + MQTT + "listne: 1.2.3.4:80\n",
         "console.yaml:3: unknown key 'listne', did you mean 'listen'?"),
        ("version: 1\n" + MQTT + "listen: everywhere\n",
         "console.yaml:3: listen: listen: must be HOST:PORT"),
        ("version: 1\n" + MQTT + "prefixes: ['streamqc/#']\n",
         "console.yaml:3: prefixes[0]: must be topic levels"),
        ("version: 1\n" + MQTT + "prefixes: [a/+, a/+]\n",
         "console.yaml:3: prefixes: lists a prefix twice"),
        ("version: 1\n" + MQTT + "history: 10m\n",
         "console.yaml:3: history: must be at least 1h"),
        ('version: 1\nmqtt: {url: "mqtt://u:p@host"}\n',
         "console.yaml:2: mqtt.url: no credentials"),
        ('version: 1\nmqtt: {url: "http://host"}\n', "console.yaml:2: mqtt.url: must be mqtt://"),
        ("version: 1\n" + MQTT + "tls: {cert: a.pem}\n",
         "console.yaml:3: tls: missing required key 'key'"),
        ("version: 2\n" + MQTT, "console.yaml:1: version: must be 1"),
    ],
)  # fmt: skip
def test_a_bad_file_is_one_line_naming_line_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_console_settings(write(tmp_path, text))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_check_config_and_user_add(tmp_path: Path, streamqc) -> None:  # type: ignore[no-untyped-def]
    config = write(tmp_path, "version: 1\n" + MQTT + f'state_dir: "{tmp_path / "state"}"\n')
    run = streamqc("console", "check-config", str(config))
    assert run.code == 0 and "OK: http://127.0.0.1:8080/, prefixes streamqc/+" in run.stdout
    # Serving without a users file says how to add one.
    run = streamqc("console", "--config", str(config))
    assert run.code == 2 and "streamqc console user add" in run.stderr
    password_file = tmp_path / "password"
    password_file.write_text("correct horse battery\n")
    run = streamqc("console", "user", "add", "jane", "--role", "operator", "--config", str(config),
                   "--password-file", str(password_file))  # fmt: skip
    assert run.code == 0 and "added jane (operator)" in run.stdout, run.stderr
    users_file = tmp_path / "state" / "users.json"
    assert stat.S_IMODE(os.stat(users_file).st_mode) == 0o600
    text = users_file.read_text()
    assert "correct horse" not in text and json.loads(text)["users"]["jane"]["role"] == "operator"
    [jane] = load_users(users_file).values()
    assert check_password("correct horse battery", jane.password_hash)
    assert not check_password("correct horse batterY", jane.password_hash)
    run = streamqc("console", "user", "add", "jane", "--role", "viewer", "--config", str(config),
                   "--password-file", str(password_file))  # fmt: skip
    assert run.code == 0 and "replaced jane (viewer)" in run.stdout
    run = streamqc("console", "user", "add", "bob", "--role", "operator", "--config", str(config),
                   "--password-file", str(tmp_path / "nope"))  # fmt: skip
    assert run.code == 2 and run.stderr.startswith("streamqc: error: --password-file: cannot read")
    short = tmp_path / "short"
    short.write_text("abc\n")
    run = streamqc("console", "user", "add", "bob", "--role", "operator", "--config", str(config),
                   "--password-file", str(short))  # fmt: skip
    assert run.code == 2 and "at least 8 characters" in run.stderr
    run = streamqc("console", "user", "add", "bob", "--role", "admin", "--config", str(config))
    assert run.code == 2 and "invalid choice: 'admin'" in run.stderr


def test_a_users_file_that_is_not_ours_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text('{"users": {"eve": {"role": "operator", "password": "plain"}}}')
    with pytest.raises(ConfigError, match="users.eve: password must be a scrypt hash"):
        load_users(path)
    path.write_text("users:\n  - eve\n")
    with pytest.raises(ConfigError, match="not a users file"):
        load_users(path)
