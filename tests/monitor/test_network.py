"""`streamqc analyze` over real network peers on loopback, started and stopped by the test."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from monitor.demo.synth import MediaSpec, Span

FRAME_S = 0.04


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_file_over_http_gives_the_same_alarms_as_the_file(media, streamqc, http_server):
    base, folder = http_server
    spec = MediaSpec(duration_s=9.0, black=(Span(2.0, 5.0),), silence=(Span(5.5, 8.5),))
    (folder / "feed.ts").write_bytes(media(spec).read_bytes())
    over_http = streamqc("analyze", f"{base}/feed.ts")
    from_file = streamqc("analyze", str(media(spec)))
    assert over_http.code == 0, over_http.stderr
    assert [a for a, _, _ in over_http.alarms()] == ["black", "silence"]
    assert over_http.alarms() == from_file.alarms()


def test_missing_resource_over_http_is_one_clear_line(streamqc, http_server):
    base, _ = http_server
    run = streamqc("analyze", f"{base}/nothing-here.ts")
    assert run.code == 1 and run.stderr.strip().count("\n") == 0
    assert "nothing-here.ts: cannot open" in run.stderr and "404" in run.stderr
