"""Defensive redaction of secrets and personal data in text bound for a log line.

The relay and the agent keep secrets and payloads out of their logs by construction: they log
ids (agent, call, request, API key public id), never arguments, results or credentials. This
module is the second line, for what slips through anyway (an exception message that quotes an
input, a URL with a password in it, a library's own log line): it rewrites every shape that it
can recognise.

What it recognises, in this order (earlier rules win, so a token is never half-read as a phone):

- credentials: agent tokens and API keys (``erpa_``/``erpk_`` + public id + secret, see
  relay/secrets.py; the public id is kept, it names the credential and is not secret),
  ``Bearer <anything>``, ``user:password@`` in URLs, and ``password=…``-style pairs;
- the input echo of pydantic validation errors (``input_value=…``), which quotes arguments;
- IBAN and Polish account numbers (NRB), e-mail addresses, NIP (10 digits, with or without
  dashes and ``PL``), PESEL (11 digits), phone numbers (Polish 9 digits with or without +48,
  and international ``+`` numbers).

What it cannot recognise: names, street addresses and amounts look like any other words and
numbers. They stay out of logs only because payloads are never logged. The patterns err on
the side of redacting: a stray 9- or 10-digit number in a message is masked too.

Pure: `re` only, no I/O, so both the relay and the agent use this one copy.
"""

from __future__ import annotations

import re

from protocol.credentials import PUBLIC_PART

REDACTED = "[redacted]"

_Rule = tuple[re.Pattern[str], str]

_SECRET_RULES: tuple[_Rule, ...] = (
    # erpa_/erpk_ (and any future er??_ kind): keep the prefix and public id, drop the secret.
    (re.compile(rf"\b({PUBLIC_PART})_[A-Za-z0-9]{{8,}}"), rf"\1_{REDACTED}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;]+"), rf"\1 {REDACTED}"),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@/]+@"), rf"\1:{REDACTED}@"),
    (
        re.compile(
            r"(?i)\b((?:password|passwd|pwd|secret|token|api[_-]?key|authorization|"
            r"signing[_-]?key)[\"']?\s*[:=]\s*[\"']?)(?!(?:bearer|basic)\s|\[)[^\s\"'&,;}]+"
        ),
        rf"\1{REDACTED}",
    ),
)

_PERSONAL_RULES: tuple[_Rule, ...] = (
    (re.compile(r"input_value=(?:'[^']*'|\"[^\"]*\"|[^,\]\s]+)"), f"input_value={REDACTED}"),
    # IBAN (two letters, two check digits, 11-30 more, optionally in groups of four) and the
    # Polish NRB (26 digits) before the shorter digit runs below can take pieces of them.
    (re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), "[iban]"),
    (re.compile(r"\b\d{2}(?: ?\d{4}){6}\b"), "[iban]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), "[email]"),
    (re.compile(r"\b(?:PL ?)?\d{3}-?\d{3}-?\d{2}-?\d{2}\b|\b\d{3}-\d{2}-\d{2}-\d{3}\b"), "[nip]"),
    (re.compile(r"\b\d{11}\b"), "[pesel]"),
    (
        re.compile(
            r"(?<![\w+])(?:(?:\+|00)48[ -]?)?\d{3}[ -]?\d{3}[ -]?\d{3}\b"
            r"|(?<![\w+])\+\d{1,3}[ -]?\d[\d -]{6,14}\d\b"
        ),
        "[phone]",
    ),
)


def redact_secrets(text: str) -> str:
    """Mask credentials only: for values whose shape is ours (request ids, names of agents),
    where a number that looks like a phone is not one."""
    for pattern, replacement in _SECRET_RULES:
        text = pattern.sub(replacement, text)
    return text


def redact(text: str) -> str:
    """Mask credentials and every recognisable kind of personal data in ``text``."""
    text = redact_secrets(text)
    for pattern, replacement in _PERSONAL_RULES:
        text = pattern.sub(replacement, text)
    return text


_SECRET_NAME = re.compile(
    r"(?i)password|passwd|secret|token|api[_-]?key|authorization|credential|signing[_-]?key"
)


def is_secret_name(name: str) -> bool:
    """Whether a field called ``name`` holds a credential, whatever its value looks like."""
    return _SECRET_NAME.search(name) is not None
