"""The systemd units keep their promises: notify + watchdog, a sandbox, no root, JIT allowed.

When systemd's own tools are on PATH they check the files too (unknown keys, bad values).
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNITS = ("streamqc.service", "streamqc-agent.service", "streamqc-console.service")
SANDBOX = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
}


class _Repeated(dict):
    """A configparser section dict that keeps every value of a repeated key, in order."""

    def __setitem__(self, key, value):
        if key in self and isinstance(value, list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """{section: {Key: [values...]}}; systemd keys are case-sensitive and may repeat."""
    parser = configparser.RawConfigParser(
        strict=False, dict_type=_Repeated, interpolation=None, empty_lines_in_values=False
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    # configparser joins the collected values of a repeated key with newlines.
    return {
        name: {key: [v.strip() for v in value.split("\n")] for key, value in parser[name].items()}
        for name in parser.sections()
    }


def last(unit: dict[str, dict[str, list[str]]], key: str, section: str = "Service") -> str:
    """The effective value: systemd's last assignment wins."""
    return unit[section][key][-1]


@pytest.fixture(params=UNITS)
def unit(request) -> dict[str, dict[str, list[str]]]:
    return parse(SYSTEMD / request.param)


def test_daemon_is_type_notify_with_a_watchdog_and_main_only_notify():
    daemon = parse(SYSTEMD / "streamqc.service")
    assert last(daemon, "Type") == "notify"
    assert last(daemon, "NotifyAccess") == "main"
    assert re.fullmatch(r"\d+s", last(daemon, "WatchdogSec"))
    assert last(daemon, "KillMode") == "mixed"
    assert last(daemon, "Restart") == "on-failure"


def test_daemon_runs_streamqc_run_with_its_config_and_reloads_on_hup():
    daemon = parse(SYSTEMD / "streamqc.service")
    assert last(daemon, "ExecStart").split()[1:] == [
        "run",
        "--config",
        "/etc/streamqc/streamqc.yaml",
    ]
    assert last(daemon, "ExecStart").split()[0].endswith("/streamqc")
    assert re.search(r"kill -HUP \$MAINPID$", last(daemon, "ExecReload"))


def test_agent_runs_streamqc_agent_with_its_config():
    agent = parse(SYSTEMD / "streamqc-agent.service")
    assert last(agent, "ExecStart").split()[1:] == ["agent", "--config", "/etc/streamqc/agent.yaml"]


def test_console_runs_streamqc_console_with_its_config_as_notify_with_a_watchdog():
    console = parse(SYSTEMD / "streamqc-console.service")
    assert last(console, "ExecStart").split()[1:] == [
        "console",
        "--config",
        "/etc/streamqc/console.yaml",
    ]
    assert last(console, "Type") == "notify" and last(console, "NotifyAccess") == "main"
    assert re.fullmatch(r"\d+s", last(console, "WatchdogSec"))
    assert last(console, "StateDirectory") == "streamqc-console"


def test_every_unit_runs_sandboxed_as_an_unprivileged_user(unit):
    assert last(unit, "User") not in ("root", "0")
    assert last(unit, "DynamicUser") == "no"
    for key, expected in SANDBOX.items():
        assert last(unit, key) == expected, key


def test_jit_memory_is_allowed_because_numba_needs_it(unit):
    assert last(unit, "MemoryDenyWriteExecute") not in ("yes", "true", "1", "on")


def test_numba_cache_goes_to_the_cache_directory():
    daemon = parse(SYSTEMD / "streamqc.service")
    assert last(daemon, "CacheDirectory") == "streamqc"
    assert "NUMBA_CACHE_DIR=/var/cache/streamqc" in daemon["Service"]["Environment"]
    assert last(daemon, "StateDirectory") == "streamqc"


def test_password_environment_file_is_optional(unit):
    assert last(unit, "EnvironmentFile").startswith("-/etc/streamqc/")


def test_sysusers_creates_the_unit_user():
    (line,) = [
        line
        for line in (SYSTEMD / "streamqc.sysusers").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    kind, name, *_ = line.split()
    user = parse(SYSTEMD / "streamqc.service")["Service"]["User"][-1]
    assert (kind, name) == ("u", user)


# --- systemd's own checks, where systemd is installed --------------------------------------


def _installed(tmp_path: Path, name: str, drop_in: bool = False) -> Path:
    """The unit in tmp_path, ExecStart pointed at a real program (verify checks it exists)."""
    program = shutil.which("streamqc") or shutil.which("true") or "/bin/true"
    path = tmp_path / name
    path.write_text((SYSTEMD / name).read_text().replace("/usr/local/bin/streamqc", program))
    if drop_in:
        (tmp_path / f"{name}.d").mkdir()
        example = SYSTEMD / f"{name}.d" / "override.conf.example"
        (tmp_path / f"{name}.d" / "override.conf").write_text(example.read_text())
    return path


needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


@needs_systemd
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_finds_nothing(tmp_path, name):
    path = _installed(tmp_path, name, drop_in=name == "streamqc.service")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    # Only complaints about our files count (the host's own units may have their own).
    ours = [line for line in result.stderr.splitlines() if str(tmp_path) in line or name in line]
    assert result.returncode == 0 and not ours, result.stderr


@needs_systemd
@pytest.mark.parametrize("name", UNITS)
def test_systemd_rates_the_sandbox_ok(tmp_path, name):
    path = _installed(tmp_path, name)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in result.stderr:  # systemd older than 250
        pytest.skip("systemd-analyze security has no --offline")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= 2.5  # systemd's scale: 0 (locked down) .. 10 (UNSAFE)


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_systemd_sysusers_makes_a_nologin_user(tmp_path):
    (tmp_path / "etc").mkdir()
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSTEMD / "streamqc.sysusers")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (entry,) = [
        line.split(":")
        for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
        if line.startswith("streamqc:")
    ]
    assert entry[5] == "/var/lib/streamqc"
    assert entry[6].endswith("nologin")
