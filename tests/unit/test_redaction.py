"""The defensive redaction (`protocol.redaction`) and the log line shape (`protocol.logs`)."""

from __future__ import annotations

import logging
import sys

import orjson
import pytest

from protocol.logs import REQUEST_ID, JsonFormatter, TextFormatter
from protocol.redaction import REDACTED, is_secret_name, redact, redact_secrets

AGENT_TOKEN = "erpa_k3v9x0q2m8ab_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"
API_KEY = "erpk_0a1b2c3d4e5f_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8Nn7Mm6L"


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        (f"token {AGENT_TOKEN} refused", AGENT_TOKEN[18:], "erpa_k3v9x0q2m8ab_"),
        (f"key={API_KEY}", API_KEY[18:], "key="),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi", "Bearer"),
        ("postgresql://relay:s3cr3t-pw@db:5432/relay", "s3cr3t-pw", "postgresql://relay:"),
        ("redis://:hunter2@redis:6379/0", "hunter2", "redis:6379"),
        ('{"password": "tajne!haslo"}', "tajne!haslo", "password"),
        ("api_key=live_123456 and more", "live_123456", "and more"),
    ],
)
def test_credentials_are_masked(text: str, gone: str, kept: str) -> None:
    for masked in (redact(text), redact_secrets(text)):
        assert gone not in masked
        assert kept in masked


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("write to jan.kowalski+crm@przyklad.com.pl failed", "jan.kowalski+crm@przyklad.com.pl"),
        ("NIP 5252248481 exists", "5252248481"),
        ("NIP 525-224-84-81 exists", "525-224-84-81"),
        ("NIP 525-22-48-481 exists", "525-22-48-481"),
        ("NIP PL5252248481 exists", "5252248481"),
        ("PESEL 44051401359", "44051401359"),
        ("call +48 601 234 567 now", "601 234 567"),
        ("call 601-234-567 now", "601-234-567"),
        ("call 0048601234567 now", "601234567"),
        ("call +44 20 7946 0958 now", "7946 0958"),
        ("IBAN PL61 1090 1014 0000 0712 1981 2874", "1090 1014 0000 0712 1981 2874"),
        ("konto 61109010140000071219812874", "61109010140000071219812874"),
        ("DE89370400440532013000", "370400440532013000"),
        ("1 validation error\n  input_value='Jan Kowalski', input_type=str", "Jan Kowalski"),
    ],
)
def test_personal_data_is_masked(text: str, gone: str) -> None:
    assert gone not in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "call answered in 12.345 ms",
        "agent acme connected from 203.0.113.7:51234",
        "job job_Ab3dEf7hIj9kLm1nOp3qRs5t ended at 2024-06-01T12:00:00.123Z",
        "session 9f86d081884c7d65, slot 2, 3 connections",
        "deadline_ms 1718000000123",
    ],
)
def test_ordinary_lines_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_secrets_only_spares_digits_that_are_ids() -> None:
    assert redact_secrets("123456789") == "123456789"
    assert redact("123456789") != "123456789"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("token", True),
        ("api_key", True),
        ("Authorization", True),
        ("webhook_signing_key", True),
        ("agent", False),
        ("request_id", False),
        ("session", False),
    ],
)
def test_secret_field_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("relay.test", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_line_carries_fields_and_the_context_request_id() -> None:
    token = REQUEST_ID.set("req-1")
    try:
        line = JsonFormatter().format(
            _record("customer %s", "a@b.pl", agent="acme", attempts=3, password="x")
        )
    finally:
        REQUEST_ID.reset(token)
    fields = orjson.loads(line)
    assert fields["msg"] == "customer [email]"
    assert fields["request_id"] == "req-1"
    assert fields["agent"] == "acme"
    assert fields["attempts"] == 3
    assert fields["password"] == REDACTED
    assert fields["level"] == "warning"
    assert fields["logger"] == "relay.test"
    assert fields["ts"].endswith("Z")
    assert "\n" not in line


def test_an_explicit_request_id_wins_and_an_all_digit_one_survives() -> None:
    fields = orjson.loads(JsonFormatter().format(_record("x", request_id="123456789")))
    assert fields["request_id"] == "123456789"


def test_tracebacks_are_redacted() -> None:
    try:
        raise ValueError(f"bad customer jan@example.com with {AGENT_TOKEN}")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert "jan@example.com" not in line
        assert AGENT_TOKEN not in line
        assert "ValueError" in line


def test_text_line() -> None:
    line = TextFormatter().format(_record("agent connected", agent="acme", slot=1))
    assert " WARNING relay.test agent connected " in line
    assert line.endswith("agent=acme slot=1")
