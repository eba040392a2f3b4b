"""Webhook signing, the retry schedule, and the SSRF guard's address classification."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from relay.jobs import retry_delay_s
from relay.webhooks import (
    WebhookRefused,
    backoff_s,
    check_syntax,
    check_url,
    is_forbidden_address,
    key_secret,
    pinned_url,
    signature,
    verify,
)


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"id":"job_x"}'
    header = signature("whsec_abc", 1700000000, body)
    expected = hmac.new(b"whsec_abc", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify("whsec_abc", header, body, now=1700000010)


def test_verify_refuses_tampering_wrong_secret_and_old_timestamps() -> None:
    body = b'{"id":"job_x"}'
    header = signature("whsec_abc", 1700000000, body)
    assert not verify("whsec_abc", header, body + b" ", now=1700000000)
    assert not verify("whsec_other", header, body, now=1700000000)
    assert not verify("whsec_abc", header, body, now=1700000000 + 301)
    assert not verify("whsec_abc", "garbage", body, now=1700000000)


def test_key_secrets_differ_per_api_key_and_relay_key() -> None:
    a = key_secret("relay-key", "key1")
    assert a.startswith("whsec_") and len(a) == 6 + 64
    assert a == key_secret("relay-key", "key1")
    assert a != key_secret("relay-key", "key2")
    assert a != key_secret("other-relay-key", "key1")


def test_backoff_doubles_from_5_s_up_to_an_hour() -> None:
    assert [backoff_s(n) for n in range(1, 6)] == [5, 10, 20, 40, 80]
    assert backoff_s(11) == 3600
    assert backoff_s(1000) == 3600
    assert backoff_s(0) == 0


def test_backoff_gives_up_about_a_day_after_the_first_attempt() -> None:
    waited, attempts = 0.0, 0
    while waited <= 24 * 3600:
        attempts += 1
        waited += backoff_s(attempts)
    assert 25 < attempts < 40


def test_job_retry_delay_is_capped_at_5_minutes() -> None:
    assert retry_delay_s(1) == 5 and retry_delay_s(2) == 10 and retry_delay_s(50) == 300


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",
        "2001:db8::1",
    ],
)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_forbidden_address(address)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
        "https:///nohost",
        "https://example.com:99999/",
        "https://exa mple.com/",
        "https://example.com/" + "a" * 2000,
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(WebhookRefused):
        check_syntax(url, allow_http=False)


def test_http_allowed_only_when_asked() -> None:
    assert check_syntax("http://example.com/x", allow_http=True) == ("http", "example.com", 80)
    assert check_syntax("https://example.com/x", allow_http=False) == ("https", "example.com", 443)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]:8443/hook",
    ],
)
async def test_check_url_refuses_non_public_targets(url: str) -> None:
    with pytest.raises(WebhookRefused):
        await check_url(url, allow_private=False)


async def test_check_url_allows_private_when_the_operator_says_so() -> None:
    target = await check_url("http://127.0.0.1:8080/hook?x=1", allow_private=True)
    assert target.address == "127.0.0.1" and target.port == 8080
    assert pinned_url(target) == "http://127.0.0.1:8080/hook?x=1"


async def test_pinned_url_brackets_ipv6() -> None:
    target = await check_url("http://[::1]:9/h", allow_private=True)
    assert pinned_url(target) == "http://[::1]:9/h"
