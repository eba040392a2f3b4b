"""Operators' passwords, hashed with Argon2id (argon2-cffi's RFC 9106 low-memory profile).

Unlike agent tokens and API keys (`relay.secrets`), passwords are chosen by people and can be
guessed, so a leaked table must make every guess expensive: a memory-hard hash does. Hashing
costs tens of milliseconds and 64 MiB, so it runs in a worker thread and at most
`_CONCURRENT` at once (a thread semaphore: it serves every event loop of the process): a flood
of sign-ins can neither stall the event loop nor exhaust memory.
"""

from __future__ import annotations

import asyncio
import functools
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 1024
_CONCURRENT = 2

_hasher = PasswordHasher()
_slots = threading.BoundedSemaphore(_CONCURRENT)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so that answer takes as long as a wrong
    password does and timing does not reveal which usernames exist. Made on first use, not at
    import: the CLI imports this module too."""
    return _hasher.hash("not the password of anybody")


def check_strength(password: str) -> str:
    """Return `password` if it is long enough to be worth hashing, else raise ValueError."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise ValueError(f"a password needs {MIN_LENGTH} to {MAX_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    with _slots:
        return _hasher.hash(password)


def _verify(stored_hash: str | None, password: str) -> bool:
    with _slots:
        try:
            matched = _hasher.verify(stored_hash or _dummy_hash(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    return matched and stored_hash is not None


def needs_rehash(stored_hash: str) -> bool:
    """The hash was made with other parameters than today's: replace it at the next sign-in."""
    return _hasher.check_needs_rehash(stored_hash)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether `password` matches; `stored_hash` None (no such operator) costs the same."""
    if len(password) > MAX_LENGTH:
        return False
    return await asyncio.to_thread(_verify, stored_hash, password)


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)
