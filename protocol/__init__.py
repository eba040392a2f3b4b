"""The ERP Relay wire protocol, free of I/O.

Everything here is pure: frames are frozen dataclasses, the codec turns bytes into frames and
back, the session objects track what each side may send next, and the operation catalogue
describes every ERP call with typed arguments and results. No sockets, no asyncio, no clocks:
time and randomness come in as arguments, so the relay and the agent are thin I/O shells around
this package and the rules can be tested on plain values.
"""

from protocol.version import PROTOCOL_VERSION, SUBPROTOCOL, SUPPORTED_SUBPROTOCOLS

__all__ = ["PROTOCOL_VERSION", "SUBPROTOCOL", "SUPPORTED_SUBPROTOCOLS"]
