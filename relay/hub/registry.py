"""Which agent connections are live, by agent name, and which one takes the next call."""

from __future__ import annotations

from collections.abc import Iterator

from relay.hub.link import AgentLink


class Hub:
    """Live links by agent name. Several links per name: HA agents, or one agent reconnecting
    while its old socket has not noticed it is dead yet; both serve calls until one closes."""

    def __init__(self) -> None:
        self._links: dict[str, list[AgentLink]] = {}

    def add(self, link: AgentLink) -> None:
        self._links.setdefault(link.agent, []).append(link)

    def remove(self, link: AgentLink) -> None:
        links = self._links.get(link.agent)
        if links is None:
            return
        try:
            links.remove(link)
        except ValueError:
            return
        if not links:
            del self._links[link.agent]

    def pick(self, agent: str, operation: str | None = None) -> AgentLink | None:
        """The live link with the fewest calls in flight (newest first on a tie)."""
        links = self._links.get(agent)
        if not links:
            return None
        best: AgentLink | None = None
        for link in reversed(links):
            if link.closed or (operation is not None and not link.supports(operation)):
                continue
            if best is None or link.in_flight < best.in_flight:
                best = link
        return best

    def links(self, agent: str) -> list[AgentLink]:
        return list(self._links.get(agent, ()))

    def __iter__(self) -> Iterator[AgentLink]:
        for links in list(self._links.values()):
            yield from list(links)

    def __len__(self) -> int:
        return sum(len(links) for links in self._links.values())

    def is_online(self, agent: str) -> bool:
        return bool(self._links.get(agent))
