"""Every configuration the docs show loads: a user who copies one must not get exit 2.

Checked: every file in configs/, every ```yaml block of the READMEs whose top-level keys are
the daemon's or the agent's (a fragment of the daemon's file is completed with a minimal
version, site and channel), and the YAML quoted in comments of the systemd drop-in example.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.checks.registry import refuse_unrunnable
from monitor.config import load_config
from monitor.config.agent import load_agent_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "systemd" / "README.md", ROOT / "benchmarks" / "README.md"]
DAEMON_KEYS = {
    "version", "site", "mqtt", "metrics", "thumbnails", "workers", "state_dir", "defaults",
    "channels",
}  # fmt: skip
AGENT_KEYS = {"version", "site", "agent_id", "mqtt", "state_dir", "max_command_age", "channels"}
MINIMAL: dict[str, Any] = {
    "version": 1,
    "site": "docs",
    "channels": [{"name": "docs", "inputs": {"primary": {"url": "udp://127.0.0.1:5000"}}}],
}


def yaml_blocks() -> list[tuple[str, str]]:
    blocks = []
    for doc in DOCS:
        if not doc.exists():
            continue
        text = doc.read_text()
        for match in re.finditer(r"```ya?ml\n(.*?)```", text, re.S):
            line = text[: match.start()].count("\n") + 2
            blocks.append((f"{doc.relative_to(ROOT)}:{line}", match[1]))
    for example in sorted((ROOT / "systemd").rglob("*.example")):
        lines = example.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.rstrip().endswith("In streamqc.yaml:"):
                quoted = []
                for following in lines[i + 1 :]:
                    if not following.startswith("#   "):
                        break
                    quoted.append(following[4:])
                blocks.append((f"{example.relative_to(ROOT)}:{i + 2}", "\n".join(quoted)))
    return blocks


def kind(data: object) -> str | None:
    if not isinstance(data, dict) or not data:
        return None
    keys = set(data)
    channels = data.get("channels")
    is_agent = isinstance(channels, list) and any(
        isinstance(c, dict) and "action" in c for c in channels
    )
    if keys <= AGENT_KEYS and is_agent:
        return "agent"
    if keys <= DAEMON_KEYS:
        return "daemon"
    return None


def named_config(where: str, text: str) -> bool:
    """The block says it is (part of) a configuration file, whatever keys it holds."""
    first = text.lstrip().split("\n", 1)[0]
    return (
        where.endswith(".example") or "/systemd/" in where or bool(re.match(r"#.*\.ya?ml\b", first))
    )


BLOCKS = [
    (where, text)
    for where, text in yaml_blocks()
    if kind(yaml.safe_load(text)) or named_config(where, text)
]


def test_the_docs_show_configurations_to_check() -> None:
    assert len(BLOCKS) >= 4, [where for where, _ in BLOCKS]


@pytest.mark.parametrize(("where", "text"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_a_configuration_in_the_docs_loads(where: str, text: str, tmp_path: Path) -> None:
    data = yaml.safe_load(text)
    assert isinstance(data, dict), f"{where}: not a mapping of configuration keys"
    path = tmp_path / "docs.yaml"
    if kind(data) == "agent":
        path.write_text(text)
        load_agent_config(path)
        return
    if "version" not in data:  # a fragment of the daemon's file: the rest as small as can be
        data = {**MINIMAL, **data}
        text = yaml.safe_dump(data)
    path.write_text(text)
    refuse_unrunnable(load_config(path))  # as check-config and the daemon do


@pytest.mark.parametrize("name", ["example.yaml", "demo.yaml"])
def test_the_example_configurations_load(name: str) -> None:
    config = load_config(ROOT / "configs" / name)
    refuse_unrunnable(config)  # every input's picture tier runs what its channel writes
    assert config.channels


def test_the_agent_example_loads() -> None:
    assert load_agent_config(ROOT / "configs" / "agent-example.yaml").settings.channels


def test_the_prometheus_rules_and_grafana_dashboard_are_well_formed() -> None:
    """(tests/monitor/test_daemon.py checks that every metric they name is exported.)"""
    rules = yaml.safe_load((ROOT / "configs" / "prometheus-alerts.yaml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert alerts and all({"alert", "expr", "labels", "annotations"} <= set(r) for r in alerts)
    assert {r["labels"]["severity"] for r in alerts} <= {"critical", "warning"}
    dashboard = json.loads((ROOT / "configs" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert exprs and all("streamqc_" in expr for expr in exprs)
