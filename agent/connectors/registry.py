"""Connectors chosen by name, like uvicorn's protocol map.

Built-in connectors are listed here; third-party ones register through the
``erp_relay.connectors`` entry-point group, so adding an ERP never edits the agent core.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from agent.connectors.base import Connector

_BUILTIN: dict[str, str] = {
    "demo": "agent.connectors.demo:DemoConnector",
}

_registered: dict[str, type[Connector]] = {}


def register(name: str, cls: type[Connector]) -> None:
    """Make a connector class available under ``name`` (used by plugins and tests)."""
    _registered[name] = cls


def available() -> list[str]:
    names = set(_BUILTIN) | set(_registered)
    names.update(ep.name for ep in entry_points(group="erp_relay.connectors"))
    return sorted(names)


def load(name: str) -> type[Connector]:
    """The connector class registered as ``name``; ValueError lists the known names."""
    if name in _registered:
        return _registered[name]
    target = _BUILTIN.get(name)
    if target is None:
        for ep in entry_points(group="erp_relay.connectors", name=name):
            cls = ep.load()
            break
        else:
            raise ValueError(f"unknown connector {name!r}; available: {', '.join(available())}")
    else:
        module_name, _, attr = target.partition(":")
        module = __import__(module_name, fromlist=[attr])
        cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ValueError(f"connector {name!r} does not implement agent.connectors.base.Connector")
    return cls
