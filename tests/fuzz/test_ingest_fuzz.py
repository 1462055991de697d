"""Property tests of what the network hands the inputs: any bytes to the TS scanner, any RTP
numbering, any playlist text. Damaged input is data to report, never a crash.

CI runs Hypothesis's default budget; ``HYPOTHESIS_PROFILE=long pytest tests/fuzz`` runs more.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.ingest.hls_playlist import PlaylistSyntaxError, parse_playlist
from monitor.ingest.reports import TransportCondition
from monitor.ingest.rtp import RtpSequence, parse_rtp
from monitor.ingest.tr101290 import Tr101290Analyzer, Tr101290Settings

SYNC = b"\x47"
packet = st.binary(min_size=187, max_size=187).map(lambda rest: SYNC + rest)
# Mostly sync-aligned packets with random headers, with stray bytes spliced in between.
streams = st.lists(packet | st.binary(max_size=200), max_size=40).map(b"".join)


@settings(deadline=None)  # the first call loads the scanner's compiled kernels
@given(chunks=st.lists(streams, min_size=1, max_size=5))
def test_the_transport_scanner_takes_any_bytes_and_counts_what_it_saw(chunks: list[bytes]) -> None:
    conditions: list[TransportCondition] = []
    analyzer = Tr101290Analyzer(Tr101290Settings(), conditions.append)
    for i, chunk in enumerate(chunks):
        analyzer.feed(chunk, 1000.0 + 0.1 * i)
    totals = analyzer.counters.totals
    assert all(count >= 0 for count in totals.values())
    # Every whole packet it locked onto was counted once at most.
    assert totals["packets"] * 188 <= sum(map(len, chunks))
    assert all(c.alarm.startswith("tr101290_") for c in conditions)


# Version 2 in the first byte half the time, with any flags, CSRC count, extension, padding.
datagrams = st.tuples(
    st.sampled_from([0x80, 0x90, 0xA0, 0xBF]) | st.integers(0, 255), st.binary(max_size=80)
).map(lambda parts: bytes([parts[0]]) + parts[1])


@given(datagram=datagrams)
def test_any_datagram_is_an_rtp_header_or_not_rtp(datagram: bytes) -> None:
    header = parse_rtp(datagram)
    if header is not None:
        assert 12 <= header.payload_offset <= header.payload_end <= len(datagram)


@given(
    start=st.integers(0, 65535),
    steps=st.lists(st.integers(-40, 40) | st.integers(-70000, 70000), max_size=300),
)
def test_rtp_accounting_never_counts_more_than_it_could_have_seen(
    start: int, steps: list[int]
) -> None:
    sequence = RtpSequence()
    number = start
    sequence.packet(number, ssrc=7)
    for i, step in enumerate(steps):
        number = (number + step) % 65536
        sequence.packet(number, ssrc=7)
        if i % 50 == 49:
            sequence.judge()
    c = sequence.counters
    assert c.received == len(steps) + 1
    assert min(c.lost, c.duplicates, c.reordered, c.restarts) >= 0
    assert c.duplicates + c.reordered <= c.received


@given(
    start=st.integers(0, 65535),
    count=st.integers(1, 400),
    dropped=st.sets(st.integers(1, 398), max_size=20),
)
def test_rtp_counts_exactly_the_packets_dropped_across_the_wrap(
    start: int, count: int, dropped: set[int]
) -> None:
    sequence = RtpSequence()
    sent = [i for i in range(count) if i not in dropped]
    for i in sent:
        sequence.packet((start + i) % 65536, ssrc=1)
    sequence.judge()
    sequence.judge()
    inside = {i for i in dropped if i < max(sent)}
    assert sequence.counters.lost == len(inside)
    assert sequence.counters.duplicates == sequence.counters.reordered == 0


tags = st.sampled_from(
    [
        "#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:", "#EXT-X-MEDIA-SEQUENCE:",
        "#EXTINF:", "#EXT-X-ENDLIST", "#EXT-X-PLAYLIST-TYPE:", "#EXT-X-KEY:METHOD=",
        "#EXT-X-STREAM-INF:BANDWIDTH=", "#EXT-X-MAP:URI=", "#EXT-X-DISCONTINUITY",
        "#EXT-X-PROGRAM-DATE-TIME:", "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=", "seg.ts", "",
    ]
)  # fmt: skip
lines = st.tuples(tags, st.text(max_size=12) | st.integers(-5, 10**6).map(str)).map("".join)


@given(playlist=st.lists(lines, max_size=30).map("\n".join))
def test_any_playlist_parses_or_names_its_bad_line(playlist: str) -> None:
    try:
        parse_playlist(playlist, "http://127.0.0.1/p.m3u8")
    except PlaylistSyntaxError as error:
        assert "\n" not in str(error) and "malformed" in str(error)


def test_a_hand_made_rtp_packet_is_read() -> None:
    """The property above can hold vacuously: one real header must parse."""
    datagram = struct.pack("!BBHII", 0x80, 33, 65535, 1234, 99) + b"\x47" * 188
    header = parse_rtp(datagram)
    assert header is not None and header.sequence == 65535 and header.payload_offset == 12
