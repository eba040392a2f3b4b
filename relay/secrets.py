"""Agent tokens and API keys: generated once, shown once, stored only as a hash.

Format: ``<prefix>_<public id>_<secret>``, for example
``erpa_k3v9x0q2m8ab_4fTq...`` (43 secret characters).

- The prefix (``erpa`` for agent tokens, ``erpk`` for API keys) lets secret scanners (GitHub
  push protection, gitleaks, trufflehog) recognise a leaked credential, and lets a human tell a
  token from a key at a glance.
- The public id (12 characters of ``[a-z0-9]``) names the credential in lists, logs and revoke
  commands, and is the database lookup key, so authentication is one indexed read and never a
  scan over hashes. It is not secret.
- The secret is 43 base62 characters: 256 bits from `secrets`. Base62 keeps the whole string
  one "word" for double-click selection and regexes.

Why SHA-256 and not bcrypt/scrypt/argon2: slow hashes exist to make guessing *low-entropy human
passwords* expensive after a database leak. A 256-bit random secret cannot be guessed whatever
the hash speed, so a slow hash would only add latency to every CRM call and every agent
connection. Comparison is still constant-time (`hmac.compare_digest`) so response timing does
not reveal how much of a hash matched.

Nothing in this module logs; callers must never log `plaintext` or the secret part either.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass, field

from protocol.credentials import PUBLIC_ID_LENGTH, SECRET_LENGTH

_PUBLIC_ID_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits


class SecretKind(enum.Enum):
    """What a credential opens; the value is its prefix."""

    AGENT_TOKEN = "erpa"  # noqa: S105 - a prefix, not a secret
    API_KEY = "erpk"

    @property
    def prefix(self) -> str:
        return self.value


_PATTERNS = {
    kind: re.compile(
        rf"{kind.prefix}_([a-z0-9]{{{PUBLIC_ID_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})",
        re.ASCII,
    )
    for kind in SecretKind
}
_TOTAL_LENGTH = 4 + 1 + PUBLIC_ID_LENGTH + 1 + SECRET_LENGTH


@dataclass(frozen=True, slots=True)
class GeneratedSecret:
    """A fresh credential: `plaintext` goes to the user once, `secret_hash` to the database."""

    public_id: str
    plaintext: str = field(repr=False)
    secret_hash: str


def generate(kind: SecretKind) -> GeneratedSecret:
    """Make a new credential of `kind` from the operating system's CSPRNG."""
    public_id = "".join(secrets.choice(_PUBLIC_ID_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return GeneratedSecret(
        public_id=public_id,
        plaintext=f"{kind.prefix}_{public_id}_{secret}",
        secret_hash=hash_secret(secret),
    )


def parse(plaintext: object, kind: SecretKind) -> tuple[str, str] | None:
    """Split a presented credential into (public id, secret), or None if it is not one.

    Strict on purpose: anything a client sends arrives here, so the length is checked before
    the regex runs and no input makes this raise. A token offered as an API key (or the other
    way round) is rejected by its prefix.
    """
    if not isinstance(plaintext, str) or len(plaintext) != _TOTAL_LENGTH:
        return None
    match = _PATTERNS[kind].fullmatch(plaintext)
    if match is None:
        return None
    return match.group(1), match.group(2)


def hash_secret(secret: str) -> str:
    """SHA-256 hex of the secret part; see the module docstring for why a fast hash is right."""
    return hashlib.sha256(secret.encode()).hexdigest()


def verify(secret: str, stored_hash: str) -> bool:
    """Whether `secret` hashes to `stored_hash`, compared in constant time."""
    computed = hash_secret(secret).encode()
    try:
        stored = stored_hash.encode("ascii")
    except (AttributeError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(computed, stored)
