"""`streamqc analyze https://…/master.m3u8` end to end against a live HLS ladder on loopback."""

from __future__ import annotations

import time

from tests.ingest.hlsserver import LiveHlsServer, build_ladder
from tests.ingest.test_hls import fmp4_ladder, ladder  # noqa: F401  (session-encoded ladders)
from tests.ingest.test_udp import analyze_live, finish


def renditions_seen(events: list[dict]) -> set[str | None]:
    return {e["rendition"] for e in events}


def test_every_rendition_of_a_clean_ladder_is_monitored_without_alarms(ladder):  # noqa: F811
    with LiveHlsServer(ladder) as server:
        code, events, err = finish(analyze_live(server.url, "--duration", "6s"))
    assert code == 0, err
    assert events == [], events
    assert "monitored" in err and " 0 pictures" not in err


def test_an_fmp4_ladder_is_decoded_without_alarms(fmp4_ladder):  # noqa: F811
    with LiveHlsServer(fmp4_ladder) as server:
        code, events, err = finish(analyze_live(server.url, "--duration", "5s"))
    assert code == 0, err
    assert events == [], events
    assert "monitored" in err and " 0 pictures" not in err


def test_video_renditions_without_audio_beside_an_audio_rendition_are_not_missing_audio(
    tmp_path,
):
    # CMAF-style ladders carry the sound once, in an alternate audio rendition. 11 s: past
    # the join grace (5 s) and audio_missing's raise_after (2 s) with room to spare.
    cmaf = build_ladder(tmp_path, duration_s=12.0, sizes=((160, 90),), muxed_audio=False)
    with LiveHlsServer(cmaf) as server:
        code, events, err = finish(analyze_live(server.url, "--duration", "11s"))
    assert code == 0, err
    assert events == [], events
    assert "monitored" in err and " 0 pictures" not in err


def test_a_rendition_that_stops_updating_raises_rendition_missing_for_it_alone(ladder):  # noqa: F811
    with LiveHlsServer(ladder) as server:
        proc = analyze_live(server.url, "--duration", "9s")
        time.sleep(4.0)
        server.freeze("256x144")
        code, events, err = finish(proc)
    assert code == 0, err
    missing = [e for e in events if e["alarm"] == "rendition_missing" and e["state"] == "raised"]
    assert [e["rendition"] for e in missing] == ["256x144"], events
    assert {e["rendition"] for e in events if e["alarm"] == "input_loss"} <= {"256x144"}
    others = [e for e in events if e["rendition"] != "256x144"]
    assert others == [], others


def test_a_404_master_is_one_clear_line(ladder):  # noqa: F811
    with LiveHlsServer(ladder) as server:
        server.master_status(404)
        code, events, err = finish(analyze_live(server.url, "--duration", "5s"))
    assert code == 1 and events == []
    assert err.strip().count("\n") == 0 and "404" in err


def test_an_aes128_live_ladder_is_decrypted_and_monitored_without_alarms(ladder):  # noqa: F811
    with LiveHlsServer(ladder, key=bytes(range(16))) as server:
        code, events, err = finish(analyze_live(server.url, "--duration", "6s"))
    assert code == 0, err
    assert events == [], events
    assert "monitored" in err and " 0 pictures" not in err
