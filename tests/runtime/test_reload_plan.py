"""Which reloaded settings apply live, by handing the connections over, or after a restart."""

from __future__ import annotations

from pathlib import Path

from agent.reload import Apply, Plan, classify, fingerprint, plan
from agent.settings import AgentOptions, AgentSettings, RelayOptions, StatusOptions


def _settings(**changes: object) -> AgentSettings:
    base = AgentSettings(relay=RelayOptions(url="wss://relay.example/v1/agent/connect"))
    return base.model_copy(update=changes)


def test_nothing_changed_is_an_empty_plan() -> None:
    assert plan(_settings(), _settings(), relog=True) == Plan()
    assert not Plan().changed


def test_each_kind_of_change_is_sorted() -> None:
    new = _settings(
        log_level="debug",
        relay=RelayOptions(url="wss://other.example/v1/agent/connect", connections=2),
        agent=AgentOptions(max_concurrency=8, read_only=True),
        connector={"type": "demo", "path": "/other", "password": "hunter2"},
        status=StatusOptions(interval_s=5, listen="127.0.0.1:9000"),
    )
    changes = plan(_settings(), new, relog=True)
    assert changes.live == ("log_level", "status.interval_s")
    assert changes.relink == ("agent.read_only", "relay.url")
    assert changes.restart == (
        "agent.max_concurrency",
        "connector.password",
        "connector.path",
        "relay.connections",
        "status.listen",
    )
    assert "hunter2" not in repr(changes)  # names only, never values


def test_logging_needs_a_restart_when_it_cannot_be_set_up_again() -> None:
    assert classify("log_level", relog=False) is Apply.RESTART
    assert classify("log_format", relog=True) is Apply.LIVE


def test_unknown_keys_need_a_restart() -> None:
    assert classify("agent.something_new", relog=True) is Apply.RESTART
    assert classify("relay.proxy", relog=True) is Apply.RELINK


def test_fingerprint_follows_content(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    assert fingerprint(path) is None
    path.write_text("a", encoding="utf-8")
    first = fingerprint(path)
    path.write_text("b", encoding="utf-8")
    assert fingerprint(path) not in (None, first)
