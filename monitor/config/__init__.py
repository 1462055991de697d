"""Configuration: the typed model of the daemon's and the agent's YAML, and its loader.

The public API that the daemon, the agent, the console and tests use; the modules behind it:
``model`` (the dataclasses), ``schema`` (YAML sections generated from them), ``load`` (the
daemon's file), ``agent`` (the agent's file), ``messages`` (validation errors as one line) and
``yaml_lines`` (YAML with the line of every key).
"""

from monitor.config.load import (
    DAEMON_ONLY_MQTT_KEYS,
    broker_section,
    load_config,
    load_document,
    read_config_text,
)
from monitor.config.model import (
    AlarmRule,
    ChannelConfig,
    Config,
    DaemonConfig,
    DetectorConfig,
    InputConfig,
    MetricsConfig,
    MqttConfig,
    Presence,
    Severity,
    ThumbnailConfig,
    TlsConfig,
    broker_address,
    default_channel,
    host_port,
)
from monitor.config.schema import parse_duration

__all__ = [
    "DAEMON_ONLY_MQTT_KEYS",
    "AlarmRule",
    "ChannelConfig",
    "Config",
    "DaemonConfig",
    "DetectorConfig",
    "InputConfig",
    "MetricsConfig",
    "MqttConfig",
    "Presence",
    "Severity",
    "ThumbnailConfig",
    "TlsConfig",
    "broker_address",
    "broker_section",
    "default_channel",
    "host_port",
    "load_config",
    "load_document",
    "parse_duration",
    "read_config_text",
]
