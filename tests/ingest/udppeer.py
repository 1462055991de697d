"""The tests' UDP/RTP peer: the live feed sender of monitor.demo.udp_sender."""

from monitor.demo.udp_sender import (
    DATAGRAM,
    NULL_PACKET,
    TS_PER_DATAGRAM,
    UdpSender,
    free_udp_port,
    pcr_times,
)

__all__ = ["DATAGRAM", "NULL_PACKET", "TS_PER_DATAGRAM", "UdpSender", "free_udp_port", "pcr_times"]
