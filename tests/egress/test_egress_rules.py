"""The rules of `agent.egress` on plain values: which proxy the environment names, NO_PROXY,
where the password comes from, that it never shows; and the clock-skew warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.diagnosis import clock_warning
from agent.egress import bypassed, egress, environment_proxy, redact
from agent.settings import load_settings

WSS = "wss://relay.example.com/v1/agent/connect"
WS = "ws://relay.example.com:8080/v1/agent/connect"


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({}, WSS, None),
        ({"HTTPS_PROXY": "http://p:3128"}, WSS, "http://p:3128"),
        ({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"}, WSS, "http://low:1"),
        ({"HTTPS_PROXY": "p:3128"}, WSS, "http://p:3128"),
        ({"ALL_PROXY": "socks5h://s:1080"}, WSS, "socks5h://s:1080"),
        ({"wss_proxy": "http://ws:1", "https_proxy": "http://h:2"}, WSS, "http://ws:1"),
        ({"http_proxy": "http://plain:1"}, WSS, None),
        ({"http_proxy": "http://plain:1"}, WS, "http://plain:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, WSS, None),
        ({"HTTPS_PROXY": "http://p:1", "no_proxy": "other.com, .example.com"}, WSS, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "relay.example.com:8080"}, WSS, "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "relay.example.com:8080"}, WS, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, WSS, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "ample.com"}, WSS, "http://p:1"),
    ],
)
def test_the_environments_proxy(env: dict[str, str], url: str, expected: str | None) -> None:
    assert environment_proxy(url, env) == expected


@pytest.mark.parametrize(
    ("host", "no_proxy", "expected"),
    [
        ("10.1.2.3", "10.0.0.0/8", True),
        ("10.1.2.3", "192.168.0.0/16,10.1.2.3", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("::1", "::1", True),
        ("::1", "[::1]:443", True),
        ("::1", "[::1]:80", False),
        ("relay.corp", "*.corp", True),
    ],
)
def test_no_proxy_entries(host: str, no_proxy: str, expected: bool) -> None:
    assert bypassed(host, 443, no_proxy) is expected


def test_the_password_from_a_file_or_the_environment_never_shows(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("p@ss:w/rd\n", encoding="utf-8")
    route = egress(
        WSS,
        proxy="http://DOMAIN%5Calice@proxy:3128",
        password_file=secret,
        ca_file=None,
        allow_insecure=False,
        environ={},
    )
    assert route.proxy == "http://DOMAIN%5Calice:p%40ss%3Aw%2Frd@proxy:3128"
    assert route.shown == "http://DOMAIN%5Calice:***@proxy:3128"
    assert route.has_credentials
    from_env = egress(
        WSS,
        proxy="socks5h://bob@proxy:1080",
        password_file=secret,
        ca_file=None,
        allow_insecure=False,
        environ={"ERP_AGENT_PROXY_PASSWORD": "env-secret"},
    )
    assert from_env.proxy == "socks5h://bob:env-secret@proxy:1080"
    assert "env-secret" not in from_env.shown


def test_a_user_without_a_password_or_a_password_without_a_user() -> None:
    def route(proxy: str, environ: dict[str, str]) -> None:
        egress(
            WSS,
            proxy=proxy,
            password_file=None,
            ca_file=None,
            allow_insecure=False,
            environ=environ,
        )

    with pytest.raises(ValueError, match="names user 'alice' without a password"):
        route("http://alice@p:1", {})
    with pytest.raises(ValueError, match="names no user"):
        route("http://p:1", {"ERP_AGENT_PROXY_PASSWORD": "x"})


def test_direct_and_plain_routes() -> None:
    direct = egress(WSS, proxy="none", password_file=None, ca_file=None, allow_insecure=False)
    assert direct.connect_kwargs()["proxy"] is None
    assert direct.connect_kwargs()["ssl"].verify_mode.name == "CERT_REQUIRED"
    plain = egress(WS, proxy="none", password_file=None, ca_file=None, allow_insecure=True)
    assert "ssl" not in plain.connect_kwargs()
    with pytest.raises(ValueError, match=r"uses ws:// \(no TLS\)"):
        egress(WS, proxy="none", password_file=None, ca_file=None, allow_insecure=False)


def test_redact() -> None:
    assert redact("http://u:p@h:1") == "http://u:***@h:1"
    assert redact("http://u@h:1") == "http://u@h:1"
    assert redact("http://h:1") == "http://h:1"


def test_a_rejected_config_does_not_echo_the_proxy_password(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        '[relay]\nurl = "wss://r/v1/agent/connect"\nurls = ["wss://r/v1/agent/connect"]\n'
        'proxy = "http://u:TopSecret@p:1"\n',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="not both") as raised:
        load_settings(config)
    assert "TopSecret" not in str(raised.value)


@pytest.mark.parametrize(
    ("skew_ms", "expected"),
    [
        (0, ""),
        (30_000, ""),
        (-30_000, ""),
        (45_000, "this machine's clock is 45 s behind the relay's"),
        (-90_400, "this machine's clock is 90 s ahead of the relay's"),
    ],
)
def test_clock_warning(skew_ms: int, expected: str) -> None:
    warning = clock_warning(skew_ms)
    assert warning.startswith(expected)
    assert bool(warning) is bool(expected)
    if warning:
        assert "w32tm /resync" in warning
