"""What a configuration reload changes, and how each change can be applied.

The agent re-reads its config on SIGHUP or when the file changes (`agent.supervisor`). A file
that no longer validates changes nothing: the agent keeps running on the settings it has, and
says why. A valid one is compared key by key with the running settings (`plan`); each changed
key is applied one of three ways:

- **live**: taken as is: ``reconnect.*``, ``status.file``, ``status.interval_s``, and the
  logging keys when the runner can set logging up again (`LOGGING`);
- **relink**: the connections must be made again for it to count: ``relay.*`` (addresses,
  token file, proxy, TLS trust, timeouts), ``agent.allow`` and ``agent.read_only`` (the relay
  learns the site policy from hello). Each link hands its connection over in turn
  (`agent.link.Handover`), so no call is refused meanwhile;
- **restart**: everything else — the connector, ``agent.max_concurrency`` (the ERP sessions),
  the journal, ``relay.connections``, the status page's address. Logged as a warning naming
  the keys and shown by ``erp-agent status`` until the agent is restarted.

Only key names are ever reported, never values: a connector section holds database passwords.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.settings import AgentSettings


class Apply(enum.Enum):
    LIVE = "live"
    RELINK = "relink"
    RESTART = "restart"


LOGGING = ("log_level", "log_format", "log_file", "log_file_max_bytes", "log_file_backups")
"""Live when the runner passes a way to set logging up again, else restart."""

RULES: tuple[tuple[str, Apply], ...] = (
    ("relay.connections", Apply.RESTART),
    ("relay.*", Apply.RELINK),
    ("token", Apply.RELINK),
    ("agent.allow", Apply.RELINK),
    ("agent.read_only", Apply.RELINK),
    ("reconnect.*", Apply.LIVE),
    ("status.file", Apply.LIVE),
    ("status.interval_s", Apply.LIVE),
)
"""First match wins; a key matching none needs a restart (the safe default for keys this
module has not been taught about)."""


@dataclass(frozen=True, slots=True)
class Plan:
    live: tuple[str, ...] = ()
    relink: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.live or self.relink or self.restart)


def plan(old: AgentSettings, new: AgentSettings, *, relog: bool) -> Plan:
    """How to go from ``old`` to ``new``; ``relog``: logging can be set up again live."""
    before = flatten(old.model_dump(mode="json"))
    after = flatten(new.model_dump(mode="json"))
    changed = sorted(
        key for key in before.keys() | after.keys() if before.get(key) != after.get(key)
    )
    sorted_keys: dict[Apply, list[str]] = {kind: [] for kind in Apply}
    for key in changed:
        sorted_keys[classify(key, relog=relog)].append(key)
    return Plan(
        live=tuple(sorted_keys[Apply.LIVE]),
        relink=tuple(sorted_keys[Apply.RELINK]),
        restart=tuple(sorted_keys[Apply.RESTART]),
    )


def classify(key: str, *, relog: bool) -> Apply:
    if key in LOGGING:
        return Apply.LIVE if relog else Apply.RESTART
    for rule, kind in RULES:
        if key == rule or (rule.endswith(".*") and key.startswith(rule[:-1])):
            return kind
    return Apply.RESTART


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys (``relay.url``); lists stay whole values."""
    flat: dict[str, Any] = {}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{key}."))
        else:
            flat[key] = value
    return flat


def fingerprint(path: Path | None) -> str | None:
    """A digest of the file's content (None: no file, or unreadable), to notice a change.

    Content rather than mtime: an editor or a deploy tool may keep the time, a copy may set an
    old one, and the files watched are a few hundred bytes. The token is never kept, only this.
    """
    if path is None:
        return None
    try:
        return hashlib.sha256(path.expanduser().read_bytes()).hexdigest()
    except OSError:
        return None
