"""Operators' sign-in and browser sessions (docs/admin-api.md, "Session").

The cookie holds a random secret; the database holds only its SHA-256, so a copy of the
database opens no session. The CSRF token is an HMAC of that same secret: the server can
recompute it on every request without storing it, and it dies with the session.

A session ends `session_idle_s` after its last request or `session_max_s` after sign-in,
whichever comes first. `last_seen_at` is written at most every `_TOUCH_FRACTION` of the idle
time, so a busy dashboard does not turn every read into a database write.

Failed sign-ins are counted per client address (per replica, in memory): after
`_MAX_FAILURES` within `_FAILURE_WINDOW_S`, the address gets 429 until the window moves on.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass

from protocol.errors import ErrorCode
from relay.console import passwords
from relay.problems import Problem
from relay.store.console import ConsoleStore

_SECRET_BYTES = 32
_CSRF_CONTEXT = b"erp-relay csrf v1"
_TOUCH_FRACTION = 0.05
_MAX_FAILURES = 5
_FAILURE_WINDOW_S = 300.0
_MAX_TRACKED_ADDRESSES = 10_000


@dataclass(frozen=True, slots=True)
class OperatorSession:
    username: str
    role: str
    csrf_token: str
    expires_at: dt.datetime
    """When the session ends if no other request comes: the earlier of idle and absolute."""


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def csrf_token(secret: str) -> str:
    digest = hmac.new(secret.encode(), _CSRF_CONTEXT, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class SignInThrottle:
    """Failed sign-ins per address, in a sliding window of monotonic time."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def check(self, address: str) -> None:
        failures = self._recent(address, time.monotonic())
        if len(failures) >= _MAX_FAILURES:
            retry_after = max(1, int(failures[0] + _FAILURE_WINDOW_S - time.monotonic()) + 1)
            raise Problem(
                ErrorCode.TOO_MANY_ATTEMPTS,
                "too many failed sign-ins from this address; try again later",
                headers={"Retry-After": str(retry_after)},
            )

    def failed(self, address: str) -> None:
        if len(self._failures) >= _MAX_TRACKED_ADDRESSES:
            self._failures.clear()
        self._failures.setdefault(address, deque(maxlen=_MAX_FAILURES)).append(time.monotonic())

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.get(address, deque())
        while failures and failures[0] <= now - _FAILURE_WINDOW_S:
            failures.popleft()
        return failures


class Sessions:
    def __init__(self, store: ConsoleStore, *, idle_s: float, max_s: float) -> None:
        self._store = store
        self._idle = dt.timedelta(seconds=idle_s)
        self._max = dt.timedelta(seconds=max_s)
        self._throttle = SignInThrottle()

    async def sign_in(
        self, username: str, password: str, address: str
    ) -> tuple[str, OperatorSession]:
        """A new session's cookie secret and its view; the same 401 for any wrong credential."""
        self._throttle.check(address)
        found = await self._store.operator_for_sign_in(username)
        stored_hash = found[1] if found is not None else None
        if not await passwords.verify_password(stored_hash, password) or found is None:
            self._throttle.failed(address)
            raise Problem(ErrorCode.UNAUTHORIZED, "wrong username or password")
        self._throttle.succeeded(address)
        await self.purge()  # sessions nobody signed out of: a cheap delete, as often as sign-ins
        operator, stored_hash = found
        new_hash = None
        if passwords.needs_rehash(stored_hash):
            new_hash = await passwords.hash_password_async(password)
        await self._store.signed_in(operator.id, new_password_hash=new_hash)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        now = self._store.now()
        expires_at = now + self._max
        await self._store.create_session(
            operator.id, token_hash(secret), created_at=now, expires_at=expires_at, address=address
        )
        return secret, OperatorSession(
            username=operator.username,
            role=operator.role,
            csrf_token=csrf_token(secret),
            expires_at=min(expires_at, now + self._idle),
        )

    async def resume(self, secret: str) -> OperatorSession:
        """The live session behind a cookie: 401 unknown, 401 session_expired, else touched."""
        hashed = token_hash(secret)
        record = await self._store.session(hashed)
        if record is None or record.operator_disabled:
            raise Problem(
                ErrorCode.UNAUTHORIZED,
                "not signed in",
                headers={"WWW-Authenticate": 'Bearer realm="erp-relay"'},
            )
        now = self._store.now()
        if now >= record.expires_at or now >= record.last_seen_at + self._idle:
            await self._store.delete_session(hashed)
            raise Problem(ErrorCode.SESSION_EXPIRED, "the session expired; sign in again")
        if now - record.last_seen_at >= self._idle * _TOUCH_FRACTION:
            await self._store.touch_session(hashed, now)
        return OperatorSession(
            username=record.username,
            role=record.role,
            csrf_token=csrf_token(secret),
            expires_at=min(record.expires_at, now + self._idle),
        )

    @staticmethod
    def check_csrf(secret: str, presented: str | None) -> None:
        expected = csrf_token(secret).encode()
        if presented is None or not hmac.compare_digest(expected, presented.encode()):
            raise Problem(ErrorCode.CSRF_FAILED, "send the session's csrf_token as X-CSRF-Token")

    async def sign_out(self, secret: str) -> None:
        await self._store.delete_session(token_hash(secret))

    async def purge(self) -> int:
        """Delete sessions past either expiry (they would be refused anyway)."""
        now = self._store.now()
        return await self._store.purge_sessions(expired_before=now, idle_since=now - self._idle)
