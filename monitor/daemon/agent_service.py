"""``streamqc agent``: wires ``failover.agent.agent.Agent`` to the broker, logging, signals and
systemd."""

from __future__ import annotations

import asyncio
import signal

from failover.agent.agent import Agent
from monitor.config.agent import AgentConfig
from monitor.daemon.sdnotify import Notifier
from monitor.logs import get_logger
from monitor.util.backoff import Backoff
from monitor.util.mqtt_connection import BrokerSettings, MqttConnection


def restart_delays(max_s: float) -> Backoff:
    """The waits between an encoder's restarts: 1 s doubling to ``max_s``, exact (one encoder,
    no crowd to spread)."""
    return Backoff(min(1.0, max_s), max_s, spread=(1.0, 1.0))


async def run_agent(config: AgentConfig, broker: BrokerSettings) -> int:
    """Run the agent until SIGTERM / SIGINT; tell systemd (Type=notify, WatchdogSec=)."""
    log = get_logger()
    notifier = Notifier.from_env()
    link = MqttConnection(broker, log=log.error)
    agent = Agent(config.settings, link, log, delays=restart_delays, notify=notifier)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    log.info(
        "agent configuration",
        config=config.source,
        broker=f"{broker.host}:{broker.port}",
        prefix=config.settings.prefix,
        state_file=config.settings.state_file,
    )
    try:
        await agent.run()
    finally:
        notifier.close()
    return 0
