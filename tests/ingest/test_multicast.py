"""Multicast that never mixes channels, in a network namespace of the test's own.

Two channels of one daemon (real ``streamqc run``, real Mosquitto, real UDP senders, all in
the namespace) listen on two groups of ONE port, as plants lay them out; a third is a
source-specific join to a group on which a second source sends too. Each channel must see
exactly its own stream: the black of one feed alarms on its channel only, and each receives
the bytes of one sender, not two.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.demo.udp_sender import UdpSender, free_udp_port
from monitor.errors import InputError
from monitor.ingest.udp import UdpOptions
from tests.daemon import BLACK, CLIP_S, Channel, Clips, Daemon, events
from tests.ingest.netns import SOURCES, NetNamespace, made_for_a_test
from tests.mqttbroker import Mosquitto, Subscriber


@pytest.fixture
def netns() -> Iterator[NetNamespace]:
    yield from made_for_a_test()


@dataclass
class GroupChannel(Channel):
    """A channel whose input is a multicast group; its sender sends to that group."""

    url: str = ""
    group: str = ""
    source: str | None = None
    decoy: Path | None = None  # another stream, sent to the same group from another source
    decoy_sender: UdpSender | None = None

    def yaml(self) -> str:
        text = (
            f'  - name: {self.name}\n    inputs: {{primary: {{url: "{self.url}", watchdog: 4s}}}}\n'
        )
        return text + f"    detectors: {self.detectors}\n"

    def start(self) -> None:
        if self.sender is None:
            self.sender = UdpSender(
                self.clip, self.port, CLIP_S, host=self.group, source=self.source
            ).start()
        if self.decoy is not None and self.decoy_sender is None:
            self.decoy_sender = UdpSender(
                self.decoy, self.port, CLIP_S, host=self.group, source=SOURCES[1]
            ).start()

    def stop(self) -> None:
        super().stop()
        if self.decoy_sender is not None:
            self.decoy_sender.stop()
            self.decoy_sender = None


def byte_counts(daemon: Daemon, channels: list[GroupChannel]) -> dict[str, tuple[float, int]]:
    """Per channel: (bytes its input received, bytes its own sender sent) as of now."""
    out = {}
    for channel in channels:
        got = daemon.metric("streamqc_input_bytes_total", channel=channel.name)
        assert got is not None and channel.sender is not None
        out[channel.name] = (got, channel.sender.sent * 1316)
    return out


def test_two_groups_on_one_port_and_an_ssm_join_each_see_only_their_own_stream(
    tmp_path: Path, clips: Clips, netns: NetNamespace, daemons: list[Daemon]
) -> None:
    with netns.entered():
        port, ssm_port = free_udp_port(), free_udp_port()
        news = GroupChannel(
            "news", clips.black, port, url=f"udp://239.7.7.1:{port}", group="239.7.7.1"
        )
        sport = GroupChannel(
            "sport", clips.clean, port, url=f"udp://239.7.7.2:{port}", group="239.7.7.2"
        )
        ssm = GroupChannel(
            "ssm",
            clips.clean,
            ssm_port,
            url=f"udp://232.7.7.7:{ssm_port}?sources={SOURCES[0]}&localaddr=lo",
            group="232.7.7.7",
            source=SOURCES[0],
            decoy=clips.black,  # from SOURCES[1]: black that must never reach the channel
        )
        broker = Mosquitto(tmp_path / "broker").start()
        sub = Subscriber(broker.port, "streamqc/#")
        try:
            daemon = Daemon(tmp_path / "daemon", [news, sport, ssm], broker_url=broker.url)
            daemons.append(daemon.start())
            # the news black (8-12 s of its clip) raises and clears on news
            sub.wait_for(
                lambda m: m.topic.endswith("news/alarms") and b'"cleared"' in m.payload, 60
            )
            # Over 4 s, each input receives what its own sender sends (the senders started
            # before the daemon had joined: count from now). Mixed groups would double it.
            before = byte_counts(daemon, [news, sport, ssm])
            time.sleep(4.0)
            after = byte_counts(daemon, [news, sport, ssm])
            messages = sub.received()
        finally:
            for d in daemons:
                d.stop()
            sub.close()
            broker.stop()
    found = {name: events(messages, name) for name in ("news", "sport", "ssm")}
    raised = [e for e in found["news"] if e["state"] == "raised"]
    assert [e["alarm"] for e in raised] == ["black"], found["news"]
    cleared = next(e for e in found["news"] if e["state"] == "cleared")
    assert abs(cleared["end"] - cleared["start"] - BLACK.duration_s) < 0.2
    assert found["sport"] == [] and found["ssm"] == [], found
    # each input received its own sender's bytes, not those of the group next door
    shares = {
        name: (after[name][0] - before[name][0]) / (after[name][1] - before[name][1])
        for name in after
    }
    for name, share in shares.items():
        assert 0.75 < share < 1.25, (name, shares)
    status = [json.loads(m.payload) for m in messages if m.topic.endswith("ssm/status")]
    assert status and status[-1]["state"] == "ok", status


def test_interface_by_name_sources_and_block_are_read_from_the_url(netns: NetNamespace):
    with netns.entered():
        options = UdpOptions.from_url(
            "udp://232.1.1.1:5000?sources=10.0.0.9,10.0.0.10&localaddr=lo&fifo_size=1000000"
        )
    assert options.sources == ("10.0.0.9", "10.0.0.10") and options.localaddr == "127.0.0.1"
    assert UdpOptions.from_url("udp://239.1.1.1:5000?block=10.0.0.10").block == ("10.0.0.10",)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("udp://232.1.1.1:5000?sources=10.0.0.x", "sources: '10.0.0.x' is not an IPv4 address"),
        ("udp://232.1.1.1:5000?sources=239.1.1.1", "not a unicast IPv4 address"),
        ("udp://239.1.1.1:5000?localaddr=nosuch0", "interface 'nosuch0': no such interface"),
        ("udp://239.1.1.1:5000?locaddr=10.0.0.1", "unknown option 'locaddr'"),
        ("udp://[ff02::1]:5000", "IPv6 is not supported"),
    ],
)
def test_bad_multicast_options_are_one_line_errors(url: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(")) as caught:
        UdpOptions.from_url(url)
    assert url in str(caught.value) and "\n" not in str(caught.value)


def test_each_socket_gets_its_group_and_sources_only(netns: NetNamespace) -> None:
    """At the socket level: two sources on one group, a second group on the same port."""
    import socket

    from monitor.ingest.pipe import BytePipe
    from monitor.ingest.udp import UdpReader

    with netns.entered():
        port = free_udp_port()
        group, other = "239.7.7.9", "239.7.7.10"
        urls = {
            "all": f"udp://{group}:{port}",
            "ssm": f"udp://{group}:{port}?sources={SOURCES[1]}",
            "block": f"udp://{group}:{port}?block={SOURCES[1]}&localaddr=127.0.0.1",
            "other": f"udp://{other}:{port}",
        }
        readers = {
            name: UdpReader(UdpOptions.from_url(url), BytePipe(), name).start()
            for name, url in urls.items()
        }
        try:
            for source, count in ((SOURCES[0], 30), (SOURCES[1], 20)):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                    sender.bind((source, 0))
                    sender.setsockopt(
                        socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source)
                    )
                    for _ in range(count):
                        sender.sendto(b"\x47" + bytes(187), (group, port))
                        time.sleep(0.002)
            time.sleep(0.5)
        finally:
            for reader in readers.values():
                reader.stop()
    received = {name: reader.datagrams for name, reader in readers.items()}
    assert received == {"all": 50, "ssm": 20, "block": 30, "other": 0}
