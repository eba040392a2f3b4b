"""Agent configuration: TOML, environment overrides, and where the token may come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.settings import load_settings


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(body)
    return path


def test_toml_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("erpa_aaaaaaaaaaaa_secret\n")
    path = _config(
        tmp_path,
        f'[relay]\nurl = "wss://relay.example.com/v1/agent/connect"\ntoken_file = "{token}"\n'
        '[agent]\nmax_concurrency = 2\n[connector]\ntype = "demo"\npath = "x.sqlite"\n',
    )
    monkeypatch.setenv("ERP_AGENT_AGENT__MAX_CONCURRENCY", "7")
    settings = load_settings(path)
    assert settings.relay.url == "wss://relay.example.com/v1/agent/connect"
    assert settings.agent.max_concurrency == 7
    assert settings.connector == {"type": "demo", "path": "x.sqlite"}
    assert settings.read_token() == "erpa_aaaaaaaaaaaa_secret"


def test_token_from_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config(tmp_path, '[relay]\nurl = "wss://relay.example.com/v1/agent/connect"\n')
    monkeypatch.setenv("ERP_AGENT_TOKEN", "erpa_bbbbbbbbbbbb_fromenv")
    assert load_settings(path).read_token() == "erpa_bbbbbbbbbbbb_fromenv"


def test_missing_token_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ERP_AGENT_TOKEN", raising=False)
    path = _config(tmp_path, '[relay]\nurl = "wss://relay.example.com/v1/agent/connect"\n')
    with pytest.raises(ValueError, match="ERP_AGENT_TOKEN"):
        load_settings(path).read_token()


def test_plain_ws_needs_explicit_permission(tmp_path: Path) -> None:
    path = _config(tmp_path, '[relay]\nurl = "ws://relay.example.com/v1/agent/connect"\n')
    with pytest.raises(ValueError, match="allow_insecure"):
        load_settings(path)


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    path = _config(tmp_path, '[relay]\nurl = "wss://x/v1/agent/connect"\nurll = "typo"\n')
    with pytest.raises(ValueError, match="urll"):
        load_settings(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


A = "wss://a.example.com/v1/agent/connect"
B = "wss://b.example.com/v1/agent/connect"


@pytest.mark.parametrize(
    ("relay", "links"),
    [
        (f'url = "{A}"', [A]),
        (f'url = "{A}"\nconnections = 3', [A, A, A]),
        (f'urls = ["{A}", "{B}"]\nconnections = 2', [A, B]),
        (f'urls = ["{A}", "{B}"]\nconnections = 4', [A, B, A, B]),
        (f'urls = ["{A}"]\nconnections = 2', [A, A]),
    ],
)
def test_each_link_has_its_relay(tmp_path: Path, relay: str, links: list[str]) -> None:
    settings = load_settings(_config(tmp_path, f"[relay]\n{relay}\n"))
    assert settings.relay.link_urls() == links


def test_urls_and_connections_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _config(tmp_path, '[relay]\ntoken_file = "agent.token"\n')
    monkeypatch.setenv("ERP_AGENT_RELAY__URLS", f'["{A}", "{B}"]')
    monkeypatch.setenv("ERP_AGENT_RELAY__CONNECTIONS", "2")
    assert load_settings(path).relay.link_urls() == [A, B]


def test_environment_url_with_file_urls_is_ambiguous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _config(tmp_path, f'[relay]\nurls = ["{A}", "{B}"]\nconnections = 2\n')
    monkeypatch.setenv("ERP_AGENT_RELAY__URL", A)
    with pytest.raises(ValueError, match="not both"):
        load_settings(path)


@pytest.mark.parametrize(
    ("relay", "message"),
    [
        (f'url = "{A}"\nurls = ["{B}"]', "not both"),
        ("urls = []", "relay.urls is empty"),
        (f'urls = ["{A}", "{B}"]', "relay.connections = 1"),
        (f'urls = ["{A}", "https://b.example.com/"]\nconnections = 2', "must start with wss://"),
        (f'urls = ["{A}", "ws://b.example.com/"]\nconnections = 2', "allow_insecure"),
        ("connections = 0", "connections"),
        ("connections = 5", "connections"),
    ],
)
def test_bad_relay_addresses_are_refused(tmp_path: Path, relay: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(_config(tmp_path, f"[relay]\n{relay}\n"))
