"""Protocol version, negotiated as the WebSocket subprotocol.

Agents in offices lag behind the cloud by months, so the relay keeps accepting every version in
`SUPPORTED_SUBPROTOCOLS` and refuses anything else at the handshake with a readable reason.
"""

from __future__ import annotations

PROTOCOL_VERSION = 1
SUBPROTOCOL = f"erp-relay.v{PROTOCOL_VERSION}"
SUPPORTED_SUBPROTOCOLS: tuple[str, ...] = (SUBPROTOCOL,)


def select_subprotocol(offered: list[str] | tuple[str, ...]) -> str | None:
    """Pick the newest version both sides speak, or None when there is none."""
    for candidate in SUPPORTED_SUBPROTOCOLS[::-1]:
        if candidate in offered:
            return candidate
    return None


def refusal_reason(offered: list[str] | tuple[str, ...]) -> str:
    """Explain a refused handshake so that an office admin can act on it."""
    if not offered:
        return "no protocol version offered: send Sec-WebSocket-Protocol with one of " + ", ".join(
            SUPPORTED_SUBPROTOCOLS
        )
    return (
        f"protocol version {', '.join(offered)} is not supported by this relay; "
        f"supported: {', '.join(SUPPORTED_SUBPROTOCOLS)}. Upgrade the agent."
    )
