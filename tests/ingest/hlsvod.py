"""VOD HLS for tests: a ladder packaged by FFmpeg's own hls muxer, served by a real HTTP server.

``package_vod`` runs Debian's ``ffmpeg`` (``-c copy -f hls -hls_playlist_type vod`` with a
master playlist and one variant per input file), optionally encrypting every segment with
AES-128 through ``-hls_key_info_file`` (the key served beside the playlists, the IV
FFmpeg's default: the segment's media sequence number). ``StaticHlsServer`` serves a folder
from a ``ThreadingHTTPServer`` on 127.0.0.1 and lets a test rewrite what a path returns.

Layout: ``master.m3u8``, ``v<i>/index.m3u8``, ``v<i>/seg<n>.ts``, ``key.bin``.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FFMPEG = shutil.which("ffmpeg")
KEY = bytes(range(0x10, 0x20))  # a fixed test key: reproducible ciphertext
FFMPEG_TIMEOUT_S = 120.0


def package_vod(
    inputs: list[Path],
    folder: Path,
    *,
    segment_s: float = 2.0,
    encrypt: bool = False,
    playlist_type: str = "vod",
) -> Path:
    """Package one variant per TS file of ``inputs`` (video + audio each) into ``folder``;
    returns the master playlist's path."""
    if FFMPEG is None:
        raise RuntimeError("ffmpeg not found: .ci/setup installs Debian's ffmpeg")
    folder.mkdir(parents=True, exist_ok=True)
    args = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y"]
    for path in inputs:
        args += ["-i", str(path)]
    for i in range(len(inputs)):
        args += ["-map", f"{i}:v:0", "-map", f"{i}:a:0"]
    stream_map = " ".join(f"v:{i},a:{i}" for i in range(len(inputs)))
    args += ["-c", "copy", "-f", "hls", "-hls_time", f"{segment_s:g}"]
    args += ["-hls_playlist_type", playlist_type]
    args += ["-hls_segment_filename", str(folder / "v%v" / "seg%d.ts")]
    args += ["-master_pl_name", "master.m3u8", "-var_stream_map", stream_map]
    if encrypt:
        (folder / "key.bin").write_bytes(KEY)
        # key URI as the playlist shows it (relative to each variant's playlist), key file
        info = folder / "key.info"
        info.write_text(f"../key.bin\n{folder / 'key.bin'}\n")
        args += ["-hls_key_info_file", str(info)]
    args.append(str(folder / "v%v" / "index.m3u8"))
    subprocess.run(args, check=True, timeout=FFMPEG_TIMEOUT_S, capture_output=True)
    return folder / "master.m3u8"


Override = Callable[[bytes], bytes]


class StaticHlsServer:
    """Serves ``folder`` over HTTP on 127.0.0.1 (``with StaticHlsServer(folder) as server``).

    ``override(path, fn)`` makes ``path`` (e.g. "/v0/index.m3u8") answer ``fn(file bytes)``;
    ``delay(path, seconds)`` answers ``path`` that much later (a hanging origin).
    ``requests`` lists every path asked for, in order.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.requests: list[str] = []
        self._overrides: dict[str, Override] = {}
        self._delays: dict[str, float] = {}
        self._closing = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def override(self, path: str, fn: Override) -> None:
        self._overrides[path] = fn

    def delay(self, path: str, seconds: float) -> None:
        self._delays[path] = seconds

    def __enter__(self) -> StaticHlsServer:
        server = self

        class Handler(SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 1.0  # idle keep-alive connections end soon: stop() never waits long

            def do_GET(self) -> None:
                server.requests.append(self.path)
                path = self.path.split("?")[0]
                if path in server._delays:
                    server._closing.wait(server._delays[path])
                fn = server._overrides.get(path)
                if fn is None:
                    super().do_GET()
                    return
                body = fn((server.folder / self.path.lstrip("/")).read_bytes())
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.apple.mpegurl")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        handler = partial(Handler, directory=str(self.folder))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="vod-server"
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._closing.set()  # wakes delayed answers
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    def url(self, path: str = "master.m3u8") -> str:
        return f"{self.base_url}/{path}"
