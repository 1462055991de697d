"""Property tests: whatever YAML a user writes, the loaders give a configuration or one
ConfigError line naming the file, never another exception."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import load_config
from monitor.config.agent import load_agent_config
from monitor.errors import ConfigError

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=16)
    | st.sampled_from(["5s", "500ms", "2m", "udp://127.0.0.1:5000", "mqtt://127.0.0.1", "6:30"])
)
keys = st.sampled_from(
    [
        "version", "site", "channels", "name", "inputs", "primary", "backup", "url", "mqtt",
        "metrics", "thumbnails", "workers", "state_dir", "defaults", "detectors", "black",
        "freeze", "silence", "loudness", "av_sync", "graphics", "failover", "mode", "raise_after",
        "threshold_db", "roi", "agent_id", "action", "process", "command", "max_command_age",
    ]
) | st.text(max_size=8)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=6),
    max_leaves=25,
)
valid_start = st.fixed_dictionaries(
    {
        "version": st.just(1),
        "site": st.sampled_from(["a", "b-1"]),
        "channels": st.lists(
            st.fixed_dictionaries(
                {"name": st.text(max_size=6), "inputs": documents},
                optional={"detectors": documents},
            ),
            max_size=2,
        ),
    },
    optional={"mqtt": documents, "defaults": documents, "workers": scalars},
)


def loads_or_refuses(load, text: str, folder: Path) -> None:
    path = folder / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load(path)
    except ConfigError as error:
        message = str(error)
        assert message.startswith(str(path)) and "\n" not in message, message


FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


@FUZZ
@given(document=documents | valid_start)
def test_any_document_loads_or_is_one_line(document: object, tmp_path: Path) -> None:
    text = yaml.safe_dump(document, allow_unicode=True)
    loads_or_refuses(load_config, text, tmp_path)
    loads_or_refuses(load_agent_config, text, tmp_path)


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text_loads_or_is_one_line(text: str, tmp_path: Path) -> None:
    loads_or_refuses(load_config, text, tmp_path)
