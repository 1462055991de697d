"""Who may use the console: the users file, password hashes, sessions, CSRF tokens, login limits.

Passwords are hashed with scrypt (``hashlib.scrypt``, memory-hard) with a random salt per user;
the users file holds only ``scrypt$N$r$p$salt$hash`` strings and is written 0600. The cost
N=2^17, r=8, p=1 is OWASP's Password Storage Cheat Sheet minimum for scrypt (128 MiB and about
a third of a second per check here), stored in each hash so it can be raised later.

Sessions live in memory (a console restart logs everyone out): a random token in an
``HttpOnly; SameSite=Strict`` cookie, an idle timeout, and a CSRF token per session that
every state-changing request repeats in ``X-CSRF-Token``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.console.rules import ROLES, Role
from monitor.errors import ConfigError

SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_MEMORY = 256 * 1024 * 1024
"""scrypt needs 128 * N * r bytes (128 MiB at OWASP's parameters); hashlib caps it at 32 MiB."""
SESSION_IDLE_S = 12 * 3600.0
"""A NOC shift: a session unused this long is gone."""
LOGIN_FAILURES = 5
LOGIN_WINDOW_S = 300.0
"""At most 5 failed logins per user name and per client address in 5 minutes."""
USER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_PASSWORD = 8


def hash_password(password: str, *, n: int = SCRYPT_N, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=n,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=MAX_MEMORY,
        dklen=HASH_BYTES,
    )
    b64 = base64.b64encode
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """Constant-time comparison of the scrypt of ``password`` with a stored hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        wanted = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=MAX_MEMORY,
            dklen=len(wanted),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, wanted)


_DUMMY_HASH = hash_password("not a password", salt=b"\0" * SALT_BYTES)
"""Checked against when the user does not exist, so a login takes as long either way."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str = field(repr=False)


def load_users(path: Path) -> dict[str, User]:
    """The users file; ConfigError naming the file and the entry when it is unusable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no users file; add a user: streamqc console user add NAME --role operator"
        ) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigError(
            f"{path}: not a users file (JSON written by streamqc console user add)"
        ) from None
    users_data = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users_data, dict):
        raise ConfigError(f"{path}: users: missing or not a mapping")
    users = {}
    for name, entry in users_data.items():
        if not isinstance(entry, dict) or entry.get("role") not in ROLES:
            raise ConfigError(f"{path}: users.{name}: role must be one of {', '.join(ROLES)}")
        hashed = entry.get("password")
        if not isinstance(hashed, str) or not hashed.startswith("scrypt$"):
            raise ConfigError(f"{path}: users.{name}: password must be a scrypt hash")
        users[name] = User(name, entry["role"], hashed)
    return users


def add_user(path: Path, name: str, role: str, password: str) -> bool:
    """Add or replace a user; True when it replaced one. The file is written 0600, atomically."""
    if not USER_NAME.fullmatch(name):
        raise ConfigError(f"user name: letters, digits, '_', '.', '@' or '-' (1-64), got {name!r}")
    if role not in ROLES:
        raise ConfigError(f"--role: must be one of {', '.join(ROLES)}, got {role!r}")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"password: at least {MIN_PASSWORD} characters")
    users: dict[str, Any] = {}
    if path.exists():
        load_users(path)  # refuse to rewrite a file we cannot read
        users = json.loads(path.read_text(encoding="utf-8"))["users"]
    replaced = name in users
    users[name] = {"role": role, "password": hash_password(password)}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump({"version": 1, "users": users}, out, indent=1, sort_keys=True)
        out.write("\n")
    os.replace(temporary, path)
    return replaced


class Users:
    """The users of the file, re-read when it changes (``user add`` on a running console)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._users = load_users(path)  # none yet: a ConfigError saying how to add one
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        stat = self.path.stat() if self.path.exists() else None
        return None if stat is None else (stat.st_mtime_ns, stat.st_size)

    def refresh(self) -> None:
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self._users = load_users(self.path)
            self._stamp = stamp

    def verify(self, name: str, password: str) -> User | None:
        """The user when the password is right; as slow for unknown names as for known ones."""
        with contextlib.suppress(ConfigError):  # a half-written file: keep the users we had
            self.refresh()
        user = self._users.get(name)
        ok = check_password(password, user.password_hash if user else _DUMMY_HASH)
        return user if ok and user is not None else None


@dataclass
class Session:
    token: str
    user: str
    role: Role
    csrf_token: str
    last_s: float


class Sessions:
    def __init__(self) -> None:
        self._by_token: dict[str, Session] = {}

    def create(self, user: User, now_s: float) -> Session:
        session = Session(
            secrets.token_urlsafe(32), user.name, user.role, secrets.token_urlsafe(32), now_s
        )
        self._by_token[session.token] = session
        return session

    def get(self, token: str | None, now_s: float) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        if now_s - session.last_s > SESSION_IDLE_S:
            del self._by_token[token]
            return None
        session.last_s = now_s
        return session

    def end(self, token: str) -> None:
        self._by_token.pop(token, None)


def csrf_ok(session: Session, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(session.csrf_token.encode(), header.encode())


class LoginLimiter:
    """Failed logins per user name and per client address in a sliding window."""

    def __init__(self, failures: int = LOGIN_FAILURES, window_s: float = LOGIN_WINDOW_S) -> None:
        self.failures = failures
        self.window_s = window_s
        self._failed: dict[str, deque[float]] = {}

    def _recent(self, key: str, now_s: float) -> deque[float]:
        times = self._failed.setdefault(key, deque())
        while times and times[0] <= now_s - self.window_s:
            times.popleft()
        return times

    def retry_after_s(self, keys: tuple[str, ...], now_s: float) -> float:
        """0 when a login may be tried now, else the seconds until it may."""
        wait = 0.0
        for key in keys:
            times = self._recent(key, now_s)
            if len(times) >= self.failures:
                wait = max(wait, times[0] + self.window_s - now_s)
        return wait

    def failed(self, keys: tuple[str, ...], now_s: float) -> None:
        for key in keys:
            self._recent(key, now_s).append(now_s)
        if len(self._failed) > 10_000:  # a spray of names: forget the quiet ones
            for key in [k for k, v in self._failed.items() if not v]:
                del self._failed[key]

    def succeeded(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self._failed.pop(key, None)
