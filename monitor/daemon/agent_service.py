"""``streamqc agent``: wires ``failover.agent.agent.Agent`` to the broker, logging, signals and
systemd."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import aiomqtt

from failover.agent.agent import Agent
from monitor.config.agent import AgentConfig
from monitor.daemon.sdnotify import Notifier
from monitor.logs import get_logger
from monitor.sinks.mqtt import BrokerSettings


def client_factory(broker: BrokerSettings) -> Any:
    """``failover.agent.agent.Connect`` for the broker: a client per connection, with its will."""

    def connect(will: aiomqtt.Will) -> aiomqtt.Client:
        return aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=broker.client_id,
            username=broker.username,
            password=broker.password,
            tls_context=broker.tls,
            will=will,
            clean_session=True,  # no commands kept for an absent agent: see failover.agent.agent
            keepalive=max(1, round(broker.keepalive_s)),
            timeout=10.0,
        )

    return connect


async def run_agent(config: AgentConfig, broker: BrokerSettings) -> int:
    """Run the agent until SIGTERM / SIGINT; tell systemd (Type=notify, WatchdogSec=)."""
    log = get_logger()
    notifier = Notifier.from_env()
    agent = Agent(config.settings, client_factory(broker), log, notify=notifier)
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
