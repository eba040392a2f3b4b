"""Who is calling: API keys for CRMs, bearer parsing, and a short-lived cache of verified keys.

Verifying a key needs a store round trip; doing it on every call would put the database on the
hot path. Verified keys are cached for `auth_cache_ttl_s` (5 s by default), which is also the
longest a revoked key keeps working. The cache is keyed by a digest of the presented key, so no
plaintext secret lives in a long-lived structure, and unknown keys are cached briefly too so a
flood of bad keys cannot hammer the store.
"""

from __future__ import annotations

import hashlib
import time
from typing import Protocol

from protocol.errors import ErrorCode
from relay.problems import Problem
from relay.store.records import ApiKeyRecord

_NEGATIVE_TTL_S = 1.0
_MAX_ENTRIES = 10_000


class ApiKeyVerifier(Protocol):
    async def authenticate_api_key(self, plaintext: str) -> ApiKeyRecord | None: ...


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or a 401 problem."""
    if not authorization:
        raise Problem(
            ErrorCode.UNAUTHORIZED,
            "send an API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="erp-relay"'},
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        raise Problem(
            ErrorCode.UNAUTHORIZED,
            "the Authorization header must be 'Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="erp-relay"'},
        )
    return token


class ApiKeyCache:
    def __init__(self, verifier: ApiKeyVerifier, ttl_s: float) -> None:
        self._verifier = verifier
        self._ttl_s = ttl_s
        self._entries: dict[bytes, tuple[float, ApiKeyRecord | None]] = {}

    async def authenticate(self, authorization: str | None) -> ApiKeyRecord:
        token = bearer_token(authorization)
        digest = hashlib.sha256(token.encode("latin-1")).digest()
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is not None and entry[0] > now:
            record = entry[1]
        else:
            record = await self._verifier.authenticate_api_key(token)
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            ttl = self._ttl_s if record is not None else min(self._ttl_s, _NEGATIVE_TTL_S)
            self._entries[digest] = (now + ttl, record)
        if record is None:
            raise Problem(
                ErrorCode.UNAUTHORIZED,
                "the API key is unknown or revoked",
                headers={"WWW-Authenticate": 'Bearer realm="erp-relay", error="invalid_token"'},
            )
        return record

    def forget_all(self) -> None:
        self._entries.clear()
