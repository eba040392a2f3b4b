"""Which agent connections are live, by agent name, and which one takes the next call."""

from __future__ import annotations

import time
from collections.abc import Iterator

from protocol.errors import CloseCode
from relay.hub.link import AgentLink

MOVE_WINDOW_S = 5.0


class Hub:
    """Live links by agent name. Several links per name: HA agents, or one agent reconnecting
    while its old socket has not noticed it is dead yet; both serve calls until one closes."""

    def __init__(self) -> None:
        self._links: dict[str, list[AgentLink]] = {}
        self._moved: dict[str, float] = {}
        """When an agent's link that was sent goaway closed: it is reconnecting elsewhere."""

    def add(self, link: AgentLink) -> None:
        """Add a new connection; an older one of the same agent process and slot is dead."""
        self.replace(link.agent, link.hello.instance_id, link.hello.slot, link.session_id)
        self._links.setdefault(link.agent, []).append(link)

    def replace(self, agent: str, instance_id: str, slot: int, session_id: str) -> int:
        """Drop this replica's connections that `session_id` replaces: same agent process
        (``instance_id``) and slot, another session. An agent that reconnects before the
        relay noticed its old socket died would otherwise have calls sent into the void."""
        if not instance_id:
            return 0
        dropped = 0
        for link in self._links.get(agent, ()):
            hello = link.hello
            if (
                hello.instance_id == instance_id
                and hello.slot == slot
                and link.session_id != session_id
                and not link.closed
            ):
                link.drop(CloseCode.REPLACED, "replaced by a newer connection of this agent")
                dropped += 1
        return dropped

    def disconnect(self, agent: str, session_id: str) -> bool:
        """Close one connection held here (an operator's disconnect); the agent reconnects."""
        for link in self._links.get(agent, ()):
            if link.session_id == session_id and not link.closed:
                link.drop(CloseCode.DISCONNECTED_BY_OPERATOR, "disconnected by an operator")
                return True
        return False

    def revoke(self, agent: str, token_public_id: str | None) -> int:
        """Close the connections held here that authenticated with a revoked token (every one
        of the agent's, for `token_public_id` None: the agent was revoked)."""
        dropped = 0
        for link in self._links.get(agent, ()):
            if not link.closed and token_public_id in (None, link.token_public_id):
                link.drop(CloseCode.CREDENTIALS_REVOKED, "token revoked")
                dropped += 1
        return dropped

    def remove(self, link: AgentLink) -> None:
        links = self._links.get(link.agent)
        if links is None:
            return
        try:
            links.remove(link)
        except ValueError:
            return
        if link.leaving:
            self._moved[link.agent] = time.monotonic()
        if not links:
            del self._links[link.agent]

    def pick(self, agent: str, operation: str | None = None) -> AgentLink | None:
        """The live link with the fewest calls in flight (newest first on a tie)."""
        links = self._links.get(agent)
        if not links:
            return None
        best: AgentLink | None = None
        for link in reversed(links):
            if not link.usable or (operation is not None and not link.supports(operation)):
                continue
            if best is None or link.in_flight < best.in_flight:
                best = link
        return best

    def count(self, agent: str) -> int:
        """Connections of `agent` that take calls."""
        return sum(link.usable for link in self._links.get(agent, ()))

    def is_moving(self, agent: str) -> bool:
        """The agent's connection here was sent goaway, and the agent is (or was, within the
        last `MOVE_WINDOW_S`) on its way to another replica."""
        if any(link.leaving and not link.closed for link in self._links.get(agent, ())):
            return True
        moved = self._moved.get(agent)
        if moved is None:
            return False
        if time.monotonic() - moved < MOVE_WINDOW_S:
            return True
        del self._moved[agent]
        return False

    def agents(self) -> set[str]:
        return set(self._links)

    def links(self, agent: str) -> list[AgentLink]:
        return list(self._links.get(agent, ()))

    def __iter__(self) -> Iterator[AgentLink]:
        for links in list(self._links.values()):
            yield from list(links)

    def __len__(self) -> int:
        return sum(len(links) for links in self._links.values())

    def is_online(self, agent: str) -> bool:
        return self.count(agent) > 0
