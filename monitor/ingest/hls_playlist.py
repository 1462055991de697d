"""Reading HLS playlists (RFC 8216) with the ``m3u8`` package: errors that name the line, the
playlist's kind (live, EVENT, VOD) and the encryption methods streamqc cannot decrypt."""

from __future__ import annotations

from typing import Any, Literal

import m3u8  # ships no type hints: see the mypy override in pyproject.toml

PlaylistKind = Literal["live", "event", "vod"]
CLEAR_METHODS = (None, "", "NONE")


class PlaylistError(Exception):
    """A playlist load failed; the message is the ``hls_playlist`` condition's detail."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = {"error": message, **detail}


class PlaylistSyntaxError(PlaylistError):
    """A playlist line the parser cannot read: the line number and the line (the caller names
    the playlist's URL, which the condition's detail carries as well)."""

    def __init__(self, lineno: int | None, line: str, reason: str) -> None:
        where = f"line {lineno}" if lineno is not None else "a line"
        shown = line if len(line) <= 120 else line[:117] + "..."
        super().__init__(f"{where}: malformed {shown!r} ({reason})", line=lineno, tag=shown)


def parse_playlist(text: str, url: str) -> m3u8.M3U8:
    """Parse playlist ``text`` loaded from ``url``; PlaylistSyntaxError names the bad line.

    The m3u8 parser raises bare ValueErrors (``int('abc')``) without a line; its custom tag
    hook is called with the line number before each tag is parsed, so the last line it saw is
    the line that failed.
    """
    seen: list[tuple[int, str]] = []

    def note(line: str, lineno: int, data: Any, state: Any) -> bool:
        seen.append((lineno, line))
        return False  # the standard parser still parses the tag

    try:
        return m3u8.loads(text, uri=url, custom_tags_parser=note)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        lineno, line = seen[-1] if seen else (None, "")
        reason = f"{type(exc).__name__}: {exc}"
        raise PlaylistSyntaxError(lineno, line.strip(), reason) from None


def playlist_kind(playlist: m3u8.M3U8) -> PlaylistKind:
    """The playlist's kind: "vod" with EXT-X-ENDLIST or PLAYLIST-TYPE:VOD (it will not change,
    RFC 8216 §4.3.3.5), "event" with PLAYLIST-TYPE:EVENT (segments are only appended), else
    "live"."""
    kind = (playlist.playlist_type or "").upper()
    if playlist.is_endlist or kind == "VOD":
        return "vod"
    return "event" if kind == "EVENT" else "live"


def unsupported_method(playlist: m3u8.M3U8) -> str | None:
    """The first encryption method of ``playlist`` that cannot be decrypted here, by name:
    anything but METHOD=AES-128 with the default "identity" KEYFORMAT (RFC 8216 §4.3.2.4),
    i.e. SAMPLE-AES, SAMPLE-AES-CTR, or a DRM system's key format."""
    for key in [*playlist.keys, *(seg.key for seg in playlist.segments)]:
        if key is None or key.method in CLEAR_METHODS:
            continue
        keyformat = (key.keyformat or "identity").strip('"')
        if key.method != "AES-128":
            return str(key.method)
        if keyformat != "identity":  # a DRM system's key, not the 16 octets themselves
            return f"AES-128 (KEYFORMAT={keyformat})"
    return None
