"""Live agent connections: one `AgentLink` per WebSocket, grouped by agent name in the `Hub`."""

from relay.hub.link import AgentLink, CallerGone, CallTarget, CallTimedOut, LinkClosed
from relay.hub.registry import Hub

__all__ = ["AgentLink", "CallTarget", "CallTimedOut", "CallerGone", "Hub", "LinkClosed"]
