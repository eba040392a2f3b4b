"""`SitePolicy` and the ``[agent] allow`` / ``read_only`` settings, on plain values."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.policy import ALWAYS_ALLOWED, SitePolicy, expand
from agent.settings import load_settings
from protocol.operations import CATALOGUE, WRITE_OPERATIONS

EVERYTHING = frozenset(CATALOGUE)


def _reads(prefix: str) -> set[str]:
    """The catalogue's read operations whose names start with ``prefix``."""
    return {name for name in CATALOGUE if name.startswith(prefix)} - WRITE_OPERATIONS


def test_without_options_everything_served_is_allowed() -> None:
    policy = SitePolicy.build({"ping", "customers.get", "orders.create"})
    assert policy.allowed == {"ping", "customers.get", "orders.create"}
    assert policy.refused == frozenset()
    assert all(policy.allows(name) for name in CATALOGUE)


def test_wildcards_and_exact_names() -> None:
    policy = SitePolicy.build(EVERYTHING, allow=["customers.*", "products.*", "orders.get"])
    customers = {name for name in CATALOGUE if name.startswith("customers.")}
    products = {name for name in CATALOGUE if name.startswith("products.")}
    assert policy.allowed == customers | products | {"orders.get"} | ALWAYS_ALLOWED
    assert policy.refused == EVERYTHING - policy.allowed
    assert {"orders.create", "invoices.list"} <= policy.refused
    assert policy.allows("customers.create"), "a wildcard covers the group's writes"
    assert not policy.allows("orders.create")


def test_read_only_refuses_every_write() -> None:
    policy = SitePolicy.build(EVERYTHING, read_only=True)
    assert policy.refused == WRITE_OPERATIONS
    assert {"customers.create", "orders.create", "orders.fulfil"} <= WRITE_OPERATIONS
    assert policy.allowed == EVERYTHING - WRITE_OPERATIONS


def test_read_only_takes_writes_out_of_a_wildcard() -> None:
    policy = SitePolicy.build(EVERYTHING, allow=["customers.*"], read_only=True)
    assert policy.allowed == _reads("customers.") | ALWAYS_ALLOWED
    assert "customers.balance" in policy.allowed and "customers.create" not in policy.allowed


def test_ping_and_operations_status_are_always_allowed() -> None:
    assert ALWAYS_ALLOWED == {"ping", "operations.status"} <= EVERYTHING
    for policy in (
        SitePolicy.build(EVERYTHING, allow=[]),
        SitePolicy.build(EVERYTHING, allow=["orders.get"], read_only=True),
    ):
        assert policy.allowed >= ALWAYS_ALLOWED
        assert not policy.refused & ALWAYS_ALLOWED


def test_only_what_the_connector_serves_is_reported() -> None:
    """An operation the connector lacks is neither allowed nor refused: the relay answers it
    operation_not_supported, not operation_not_allowed_by_site."""
    policy = SitePolicy.build({"ping", "customers.get"}, allow=["customers.get", "invoices.list"])
    assert policy.allowed == {"ping", "customers.get"}
    assert policy.refused == frozenset()
    assert policy.allows("invoices.list")


@pytest.mark.parametrize(
    "pattern",
    ["orders.gte", "customer.*", "ping.*", "*", "*.*", ".*", "orders.", "Orders.get", ""],
)
def test_a_pattern_matching_nothing_is_a_config_error(pattern: str) -> None:
    with pytest.raises(ValueError, match="matches no operation") as info:
        expand(["customers.get", pattern])
    assert repr(pattern) in str(info.value)
    assert "customers.*" in str(info.value), "the message lists the groups there are"


def test_every_bad_pattern_is_named_at_once() -> None:
    with pytest.raises(ValueError, match=r"'nope', 'orders\.gte' match no operation"):
        expand(["nope", "orders.get", "orders.gte"])


def _config(tmp_path: Path, agent: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f'[relay]\nurl = "wss://relay.example.com/v1/agent/connect"\n[agent]\n{agent}')
    return path


def test_settings_from_toml(tmp_path: Path) -> None:
    settings = load_settings(
        _config(tmp_path, 'allow = ["customers.*", "orders.get"]\nread_only = true\n')
    )
    assert settings.agent.allow == ["customers.*", "orders.get"]
    assert settings.agent.read_only is True
    policy = SitePolicy.from_options(settings.agent, EVERYTHING)
    assert policy.refused == EVERYTHING - _reads("customers.") - {"orders.get", *ALWAYS_ALLOWED}


def test_settings_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERP_AGENT_AGENT__READ_ONLY", "true")
    monkeypatch.setenv("ERP_AGENT_AGENT__ALLOW", '["products.*"]')
    settings = load_settings(_config(tmp_path, ""))
    assert settings.agent.read_only is True
    assert settings.agent.allow == ["products.*"]


def test_the_default_is_everything(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path, ""))
    assert settings.agent.allow is None and settings.agent.read_only is False


def test_unknown_names_stop_the_agent_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"agent\.allow: 'orders\.gte' matches no operation"):
        load_settings(_config(tmp_path, 'allow = ["orders.gte"]\n'))


def test_an_allowed_write_under_read_only_is_a_contradiction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"orders\.create, which writes .*agent\.read_only = true"):
        load_settings(_config(tmp_path, 'allow = ["orders.create"]\nread_only = true\n'))
