"""What the site's owner lets the cloud do: ``[agent] allow`` and ``[agent] read_only``.

The ERP belongs to the office, not to the relay's operator, so the last word on which
operations run is the agent's config::

    [agent]
    allow = ["customers.*", "products.*", "orders.get"]   # exact names and group.* wildcards
    read_only = true                                       # refuse every write

Without ``allow`` every operation the connector serves is allowed; ``read_only`` then refuses
those marked ``writes`` in the catalogue, and with ``allow`` it still does. The agent reports the
refused operations in its hello so the relay answers ``operation_not_allowed_by_site`` without
a round trip, and refuses them itself anyway (agent/dispatch.py): a relay is a third party's
server and may be compromised, misconfigured or older than this rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocol.operations import CATALOGUE

if TYPE_CHECKING:
    from agent.settings import AgentOptions

ALWAYS_ALLOWED: frozenset[str] = frozenset({"ping", "operations.status"})
"""Allowed whatever the config says, because refusing them protects nothing and breaks what the
site's owner wants to keep working:

- ``ping`` reads no business data (the ERP's clock and version); it is how the CRM, the relay
  and the office tell "agent up, ERP down" from "agent gone".
- ``operations.status`` answers from the agent's journal what became of a write the same API key
  already made (the relay scopes the key per caller). A site that turns read-only must still let
  a CRM learn whether its last order went through; otherwise the CRM can only guess, or retry a
  write elsewhere and duplicate it.
"""


def expand(patterns: Iterable[str]) -> frozenset[str]:
    """The catalogue operations named by ``patterns`` (exact names and ``group.*``).

    Raises ValueError naming every pattern that matches nothing, so a typo in the config stops
    the agent at start instead of silently refusing (or allowing) something else.
    """
    found: set[str] = set()
    unknown: list[str] = []
    for pattern in patterns:
        if pattern.endswith(".*"):
            matched = {name for name in CATALOGUE if name.startswith(pattern[:-1])}
        else:
            matched = {pattern} & set(CATALOGUE)
        if not matched:
            unknown.append(pattern)
        found |= matched
    if unknown:
        groups = ", ".join(sorted({f"{op.group}.*" for op in CATALOGUE.values() if "." in op.name}))
        raise ValueError(
            f"agent.allow: {', '.join(repr(p) for p in unknown)} "
            f"{'matches' if len(unknown) == 1 else 'match'} no operation; use exact names "
            f"(such as orders.get) or a group followed by .* ({groups})"
        )
    return frozenset(found)


def check_allow(patterns: list[str], *, read_only: bool) -> None:
    """Refuse a config that contradicts itself: an exact write named in ``allow`` while
    ``read_only`` refuses it (a wildcard may cover writes: read_only takes them out)."""
    expand(patterns)
    writes = sorted(p for p in patterns if p in CATALOGUE and CATALOGUE[p].writes)
    if read_only and writes:
        raise ValueError(
            f"agent.allow names {', '.join(writes)}, which "
            f"{'writes' if len(writes) == 1 else 'write'} to the ERP, but agent.read_only = true "
            "refuses every write: remove one of the two"
        )


@dataclass(frozen=True, slots=True)
class SitePolicy:
    """The operations the site permits, and what that leaves of what the connector serves."""

    served: frozenset[str]
    """What the connector implements (and the agent itself: ``operations.status``)."""
    permitted: frozenset[str]
    """What the site's owner permits, over the whole catalogue."""

    @classmethod
    def build(
        cls, served: Iterable[str], *, allow: Iterable[str] | None = None, read_only: bool = False
    ) -> SitePolicy:
        permitted = expand(allow) if allow is not None else frozenset(CATALOGUE)
        if read_only:
            permitted = frozenset(name for name in permitted if not CATALOGUE[name].writes)
        return cls(frozenset(served), permitted | ALWAYS_ALLOWED)

    @classmethod
    def from_options(cls, options: AgentOptions, served: Iterable[str]) -> SitePolicy:
        return cls.build(served, allow=options.allow, read_only=options.read_only)

    def allows(self, operation: str) -> bool:
        return operation in self.permitted

    @property
    def allowed(self) -> frozenset[str]:
        """Served and permitted: ``hello.operations``."""
        return self.served & self.permitted

    @property
    def refused(self) -> frozenset[str]:
        """Served but not permitted: ``hello.not_allowed``."""
        return self.served - self.permitted
