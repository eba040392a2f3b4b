"""What went wrong, in one sentence an office admin can act on.

A first install meets the same few failures — DNS, a proxy that refuses or wants credentials,
a TLS-inspecting proxy whose CA is not trusted, a rejected token, a relay too new or too old,
a clock that is off — and each gets a sentence that blames the right machine and says what
to fix (docs/agent-network.md lists them). Kept apart from `agent.link`, which only moves
frames, so that the wording can grow without touching the connection's life.
"""

from __future__ import annotations

import errno
import socket
import ssl
from urllib.parse import urlsplit

import orjson
from python_socks import ProxyConnectionError as SocksConnectionError
from python_socks import ProxyError as SocksError
from websockets.exceptions import (
    InvalidHandshake,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidStatus,
    ProxyError,
)

from agent.egress import PROXY_PASSWORD_ENV, Egress

CLOCK_SKEW_WARN_MS = 30_000
"""Beyond this the agent warns: deadlines are corrected for any skew, but logs, the journal
and certificate checks go by this machine's clock."""

PROXY_AUTH = frozenset({401, 407})
"""407 is the standard answer; some proxies (tinyproxy) answer wrong credentials with 401."""
PROXY_FORBIDDEN = 403
PROXY_GATEWAY_ERRORS = 500
SOCKS_NOT_ALLOWED = 0x02
SOCKS_UNREACHABLE = frozenset({0x03, 0x04, 0x05, 0x06})
"""Network or host unreachable, connection refused, TTL expired: the proxy got no further."""
UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH})
"""Raised only by the TCP connect, so with an HTTP proxy they are about the proxy."""
TLS_NAME_MISMATCH = frozenset({62, 64})
"""X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH."""
TLS_CLOCK = frozenset({9, 10})
"""X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED."""


def clock_warning(skew_ms: int) -> str:
    """What to tell the admin about a skew (`clock_skew_ms`); empty when it is small."""
    if abs(skew_ms) <= CLOCK_SKEW_WARN_MS:
        return ""
    direction = "behind" if skew_ms > 0 else "ahead of"
    return (
        f"this machine's clock is {abs(skew_ms) / 1000:.0f} s {direction} the relay's: sync it "
        "with NTP (Windows: w32tm /resync; Linux: timedatectl set-ntp true)"
    )


def explain_connect_error(exc: BaseException, url: str, route: Egress | None = None) -> str:
    """One sentence an office admin can act on, for each failure a first install meets.

    ``route`` says whether a proxy was in the way, so the sentence blames the right machine;
    a proxy URL in it never shows its password (`Egress.shown`)."""
    target = _target(url)
    proxy = route.shown if route is not None and route.proxy else None
    if isinstance(exc, InvalidStatus):
        return _relay_status(exc)
    if proxy is not None and route is not None:
        explained = _proxy_failure(exc, route, proxy, target)
        if explained:
            return explained
    via = route.via if route is not None else ""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the relay's host name in {url} (DNS){via}: {exc.strerror or exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _untrusted(exc, target)
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "WRONG_VERSION_NUMBER":
            return (
                f"{target} did not answer with TLS: check the port in {url} "
                "(wss:// needs the relay's TLS port)"
            )
        return f"TLS handshake with the relay at {target} failed{via}: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {url} refused: is the relay running, is a firewall in the way?"
    if isinstance(exc, TimeoutError):
        return f"no answer from {url}{via} in time: check the network, firewall or proxy"
    if isinstance(exc, InvalidHandshake):
        return f"the WebSocket handshake with {url}{via} failed: {exc}"
    if isinstance(exc, OSError):
        return f"cannot reach {url}{via}: {exc.strerror or exc}"
    return f"cannot connect to {url}{via}: {type(exc).__name__}: {exc}"


def _relay_status(exc: InvalidStatus) -> str:
    response = exc.response
    detail = ""
    try:
        body = orjson.loads(response.body or b"{}")
        detail = str(body.get("detail", "")) if isinstance(body, dict) else ""
    except orjson.JSONDecodeError:
        pass
    status = response.status_code
    if status == 401:
        return f"the relay rejected the agent token (401): {detail or 'unknown or revoked'}"
    if status == 403:
        return f"the relay refused this agent (403): {detail}"
    if status == 426:
        return f"protocol version refused by the relay: {detail}"
    return f"the relay answered HTTP {status} instead of opening the connection: {detail}"


def _proxy_failure(exc: BaseException, route: Egress, proxy: str, target: str) -> str | None:
    """What went wrong at the proxy, or None when the failure lies beyond it."""
    if isinstance(exc, InvalidProxyStatus):
        return _proxy_status(exc, route, proxy, target)
    if isinstance(exc, InvalidProxyMessage):
        return (
            f"proxy {proxy} did not answer as an HTTP proxy: is it a SOCKS proxy "
            "(then write socks5://), or is the port wrong?"
        )
    if isinstance(exc, ProxyError) and isinstance(exc.__cause__, SocksError):
        return _socks_reply(exc.__cause__, route, proxy, target)
    # reaching the proxy itself: python-socks wraps it, HTTP CONNECT does not
    reaching = exc.__cause__ if isinstance(exc, SocksConnectionError) else exc
    if route.scheme.startswith("socks") and not isinstance(exc, SocksConnectionError):
        return None
    if isinstance(reaching, socket.gaierror):
        return f"cannot resolve the proxy's host name in {proxy} (DNS): {reaching.strerror}"
    if isinstance(reaching, ConnectionRefusedError):
        return (
            f"proxy {proxy} refused the connection: check the proxy's address and port, "
            "and that it is running"
        )
    if isinstance(reaching, OSError) and (
        isinstance(exc, SocksConnectionError) or reaching.errno in UNREACHABLE
    ):
        return f"cannot reach proxy {proxy}: {reaching.strerror or reaching}"
    return None


def _proxy_status(exc: InvalidProxyStatus, route: Egress, proxy: str, target: str) -> str:
    status = exc.response.status_code
    if status in PROXY_AUTH:
        offered = exc.response.headers.get_all("Proxy-Authenticate")
        schemes = sorted({value.split(" ", 1)[0].strip() for value in offered if value.strip()})
        if schemes and not any(scheme.lower() == "basic" for scheme in schemes):
            return (
                f"proxy {proxy} asks for {'/'.join(schemes)} authentication ({status}); the agent "
                "speaks Basic only: let the relay's host through without authentication, or "
                "use a local helper proxy (docs/agent-network.md)"
            )
        if route.has_credentials:
            return (
                f"proxy {proxy} rejected the user name or password ({status}): check the user in "
                f"relay.proxy and the password in relay.proxy_password_file or "
                f"{PROXY_PASSWORD_ENV}"
            )
        return (
            f"proxy {proxy} requires a user name and password ({status}): write the user into "
            f"relay.proxy (http://USER@host:port) and the password into "
            f"relay.proxy_password_file or {PROXY_PASSWORD_ENV}"
        )
    if status == PROXY_FORBIDDEN:
        return (
            f"proxy {proxy} does not allow connections to {target} (403): ask the proxy's "
            f"administrator to allow {target}"
        )
    if status >= PROXY_GATEWAY_ERRORS:
        return (
            f"proxy {proxy} could not reach {target} (HTTP {status}): check the relay's host "
            "name and port, and that the proxy may connect to it"
        )
    return f"proxy {proxy} refused to open a tunnel to {target} (HTTP {status})"


def _socks_reply(exc: SocksError, route: Egress, proxy: str, target: str) -> str:
    text = str(exc)
    if "authentication failure" in text:
        return f"SOCKS proxy {proxy} rejected the user name or password: {text}"
    if "No acceptable authentication" in text:
        if route.has_credentials:
            return f"SOCKS proxy {proxy} does not accept user name and password: {text}"
        return (
            f"SOCKS proxy {proxy} requires a user name and password: write the user into "
            f"relay.proxy (socks5://USER@host:port) and the password into "
            f"relay.proxy_password_file or {PROXY_PASSWORD_ENV}"
        )
    if exc.error_code == SOCKS_NOT_ALLOWED:
        return f"SOCKS proxy {proxy} does not allow connections to {target}: {text}"
    if exc.error_code in SOCKS_UNREACHABLE:
        return (
            f"SOCKS proxy {proxy} could not reach {target}: {text}; check the relay's host "
            "name and port"
        )
    return f"SOCKS proxy {proxy} failed to connect to {target}: {text}"


def _untrusted(exc: ssl.SSLCertVerificationError, target: str) -> str:
    code, message = exc.verify_code, exc.verify_message
    if code in TLS_NAME_MISMATCH:
        return (
            f"the TLS certificate presented by {target} is for another name ({message}): "
            "check the host in the relay URL; no connection was made"
        )
    if code in TLS_CLOCK:
        return (
            f"the relay's TLS certificate is not valid now ({message}) by this machine's "
            "clock: check its date and time (w32tm /resync, timedatectl set-ntp true)"
        )
    return (
        f"the relay's TLS certificate at {target} is not trusted ({message}); no connection "
        "was made. If a proxy inspects TLS here, set relay.ca_file to its root CA "
        "(docs/agent-network.md)"
    )


def _target(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    return f"{parts.hostname}:{port}"
