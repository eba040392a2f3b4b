"""How the agent's connection leaves the office: through which proxy, trusting which CAs.

`egress` turns ``[relay]`` settings into the keyword arguments of websockets' ``connect()``
(its own ``proxy=``: HTTP CONNECT built in, SOCKS5 through python-socks), so that `run_link`
only passes them on. The agent resolves the environment's proxy itself rather than letting
websockets do it (``proxy=True``): it then knows which proxy it used and can name it in every
message, ALL_PROXY and CIDR entries in NO_PROXY work as in curl, and a Windows service does
not pick up whatever its account's registry says.

The proxy password may sit in the URL, but can be kept out of the config text: the user name
stays in the URL (``http://alice@proxy:3128``) and the password comes from
``ERP_AGENT_PROXY_PASSWORD`` or ``[relay] proxy_password_file``, read again at every connect
like the token. No message, log line or status ever shows it: proxy URLs go out through
`redact`.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from websockets.exceptions import InvalidProxy
from websockets.proxy import parse_proxy

PROXY_PASSWORD_ENV = "ERP_AGENT_PROXY_PASSWORD"  # noqa: S105 - a variable name, not a password
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
FROM_ENVIRONMENT = "environment"
NO_PROXY = "none"


@dataclass(frozen=True, slots=True)
class Egress:
    """The route one connection takes; `shown` is what messages may print."""

    proxy: str | None
    """The proxy URL with its credentials, for ``connect()`` only; None: direct."""
    shown: str
    """``direct`` or the proxy URL with its password replaced by ``***``."""
    has_credentials: bool
    ssl: ssl.SSLContext | None
    """None for ``ws://`` (allowed only with ``allow_insecure``)."""

    @property
    def scheme(self) -> str:
        return urlsplit(self.proxy).scheme if self.proxy else ""

    @property
    def via(self) -> str:
        """`` through proxy …`` for messages, empty when direct."""
        return f" through proxy {self.shown}" if self.proxy else ""

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"proxy": self.proxy}
        if self.ssl is not None:
            kwargs["ssl"] = self.ssl
        if self.scheme == "https":
            kwargs["proxy_ssl"] = self.ssl or tls_context(None)
        return kwargs


def egress(
    url: str,
    *,
    proxy: str,
    password_file: Path | None,
    ca_file: Path | None,
    allow_insecure: bool,
    environ: Mapping[str, str] = os.environ,
) -> Egress:
    """The route to the relay at ``url``; ValueError names a configuration to fix."""
    require_tls(url, allow_insecure)
    secure = url.startswith("wss://")
    chosen = environment_proxy(url, environ) if proxy == FROM_ENVIRONMENT else proxy
    if chosen is None or chosen == NO_PROXY:
        return Egress(None, "direct", False, tls_context(ca_file) if secure else None)
    check_proxy_url(chosen)
    full, has_credentials = _with_password(chosen, password_file, environ)
    return Egress(full, redact(full), has_credentials, tls_context(ca_file) if secure else None)


def require_tls(url: str, allow_insecure: bool) -> None:
    """Plain ``ws://`` only when the config says so, checked at load and again at connect."""
    if url.startswith("ws://") and not allow_insecure:
        raise ValueError(
            f"relay URL {url} uses ws:// (no TLS); use wss://, or set "
            "relay.allow_insecure = true for local testing"
        )


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's trust store, plus ``ca_file`` (a TLS-inspecting proxy's root CA): certificates
    and host names are always checked; there is no switch to turn that off."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file.expanduser()))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"cannot use relay.ca_file {ca_file}: {exc}; it must be PEM "
                "(Base-64 encoded X.509), one or more certificates"
            ) from exc
    return context


def environment_proxy(url: str, environ: Mapping[str, str]) -> str | None:
    """The proxy curl would use for ``url``: ``wss_proxy``/``ws_proxy`` (websockets' own
    names), then ``https_proxy`` (and ``http_proxy`` for ``ws://``), then ``all_proxy``; none
    when NO_PROXY covers the host. Lower case wins over upper case, as in curl."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "wss" else 80)
    if bypassed(host, port, _env(environ, "no_proxy") or ""):
        return None
    names = ["wss", "https"] if parts.scheme == "wss" else ["ws", "https", "http"]
    for name in [*names, "all"]:
        value = _env(environ, f"{name}_proxy")
        if value:
            # curl reads a bare host:port as an HTTP proxy; so does every office admin
            return value if "://" in value else f"http://{value}"
    return None


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether NO_PROXY lists ``host``: ``*``, a domain and its subdomains (``example.com``,
    ``.example.com``), an address or a CIDR network, each optionally with ``:port``."""
    host = host.lower().strip("[]")
    address = _ip(host)
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        name = name.strip("[]").removeprefix("*").lstrip(".")
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if host == name or host.endswith(f".{name}"):
            return True
    return False


def check_proxy_url(value: str) -> None:
    """ValueError (with the password hidden) unless ``value`` is a proxy the agent can use."""
    scheme = urlsplit(value).scheme
    if scheme not in PROXY_SCHEMES:
        raise ValueError(
            f"proxy {redact(value)}: use http://host:port (HTTP CONNECT), socks5:// or "
            f"socks5h:// (SOCKS5), or https:// (TLS to the proxy); not {scheme or 'no scheme'}"
        )
    try:
        parse_proxy(value if "@" not in value else _placeholder_password(value))
    except InvalidProxy as exc:
        raise ValueError(f"proxy {redact(value)} is not usable: {exc.msg}") from None


def redact(url: str) -> str:
    """``url`` with the password of its user information replaced by ``***``."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:***" if colon else user
    return parts._replace(netloc=f"{shown}@{hostport}").geturl()


def _with_password(
    proxy: str, password_file: Path | None, environ: Mapping[str, str]
) -> tuple[str, bool]:
    parts = urlsplit(proxy)
    if parts.password is not None:
        return proxy, True
    password = environ.get(PROXY_PASSWORD_ENV) or _read_password(password_file)
    if password is None:
        if parts.username:
            raise ValueError(
                f"proxy {redact(proxy)} names user {parts.username!r} without a password: set "
                f"relay.proxy_password_file or {PROXY_PASSWORD_ENV}"
            )
        return proxy, False
    if not parts.username:
        raise ValueError(
            f"a proxy password is set but proxy {redact(proxy)} names no user: write it as "
            f"{parts.scheme}://USER@{parts.netloc}"
        )
    userinfo, _, hostport = parts.netloc.rpartition("@")
    netloc = f"{userinfo}:{quote(password, safe='')}@{hostport}"
    return parts._replace(netloc=netloc).geturl(), True


def _read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        password = path.expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read relay.proxy_password_file {path}: {exc}") from exc
    if not password:
        raise ValueError(f"relay.proxy_password_file {path} is empty")
    return password


def _placeholder_password(proxy: str) -> str:
    """websockets refuses a user without a password; the password arrives at connect time."""
    parts = urlsplit(proxy)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:x@{hostport}").geturl()


def _env(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(name) or environ.get(name.upper())


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port`` or ``[v6]:port``; a bare IPv6 address or network has no port."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
        return name, int(port) if port.isdigit() else None
    name, colon, port = entry.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        return name, int(port)
    return entry, None
