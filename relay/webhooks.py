"""Webhooks for finished jobs: signing, the SSRF guard, and the sender with its retries.

The change feed's subscriptions (relay/changefeed/delivery.py) send through the same pieces
(`key_secret`, `post_signed`, `backoff_s`), so both kinds are signed, guarded and retried alike.

Signing (Stripe-like): ``ERP-Relay-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256 over ``f"{t}.".encode() + body`` keyed with the API key's webhook secret. The secret
is ``whsec_`` + hex(HMAC-SHA256(settings.webhook_signing_key, "erp-relay-webhook:" + key id)):
derived, so the relay stores no extra secret, each API key gets its own, and rotating the relay
key rotates them all. The CRM reads its secret at ``GET /v1/webhooks/secret``.

SSRF guard: a webhook URL's host is resolved and refused if *any* address is loopback, private,
link-local, multicast, reserved or unspecified (unless the operator sets
``webhook_allow_private``). It is checked when the job is accepted and again before every
attempt, and the request then goes to the address that was checked (the Host header and TLS
server name keep the original host name), so a DNS answer that changes in between (rebinding)
cannot redirect it. Redirects are never followed.

Retries: 5 s after the first failed attempt, doubling up to 1 h between attempts, until
`webhook_retry_for_s` (24 h) after the delivery was queued; then the delivery is ``failed`` and
stays visible on the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from relay.settings import RelaySettings
from relay.store.jobs import (
    DELIVERY_DELIVERED,
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DeliveryRecord,
    JobRecord,
    JobStore,
)

log = logging.getLogger("relay.webhooks")

SIGNATURE_HEADER = "ERP-Relay-Signature"
DELIVERY_HEADER = "ERP-Relay-Delivery"
SIGNATURE_TOLERANCE_S = 300
BACKOFF_BASE_S = 5.0
BACKOFF_CAP_S = 3600.0
MAX_URL_LENGTH = 2000


class WebhookRefused(Exception):
    """The URL may not be called (scheme, syntax, or an address the relay must not reach)."""


# Signing


def key_secret(signing_key: str, api_key_id: str) -> str:
    """The webhook secret of one API key, derived from the relay's signing key."""
    digest = hmac.new(
        signing_key.encode(), f"erp-relay-webhook:{api_key_id}".encode(), hashlib.sha256
    ).hexdigest()
    return f"whsec_{digest}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``ERP-Relay-Signature`` header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """What a receiver does (docs/guarantees.md has the same code, standalone)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).rpartition("v1=")[2]
    return hmac.compare_digest(expected, given)


# Retries


def backoff_s(attempts: int, *, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Wait after the `attempts`-th failed attempt: 5, 10, 20, ... s, at most 1 h."""
    if attempts < 1:
        return 0.0
    return float(min(cap, base * 2 ** min(attempts - 1, 32)))


# The SSRF guard


def is_forbidden_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for any address a webhook must not reach from the relay's network."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None and is_forbidden_address(mapped):
            return True
        if ip.teredo is not None:
            return True
    return bool(
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL and the address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: str


def check_syntax(url: str, *, allow_http: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL, else WebhookRefused."""
    if (
        len(url) > MAX_URL_LENGTH
        or not url.isascii()
        or not url.isprintable()
        or any(c.isspace() for c in url)
    ):
        raise WebhookRefused(f"the URL must be at most {MAX_URL_LENGTH} printable ASCII characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or (scheme == "http" and not allow_http):
        raise WebhookRefused("the URL must use https")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("the URL must not contain credentials")
    host = parts.hostname
    if not host:
        raise WebhookRefused("the URL has no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookRefused(f"cannot resolve {host!r}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if not addresses:
        raise WebhookRefused(f"{host!r} has no address")
    return addresses


async def check_url(url: str, *, allow_private: bool, allow_http: bool = False) -> Target:
    """Resolve and check a webhook URL; WebhookRefused explains a refusal."""
    scheme, host, port = check_syntax(url, allow_http=allow_http or allow_private)
    addresses = await resolve(host, port)
    if not allow_private:
        for address in addresses:
            if is_forbidden_address(address):
                raise WebhookRefused(
                    f"{host!r} resolves to {address}, a loopback, private, link-local or "
                    "otherwise non-public address"
                )
    return Target(url, scheme, host, port, addresses[0])


def pinned_url(target: Target) -> str:
    """The URL with its host replaced by the checked address (port kept explicit)."""
    parts = urlsplit(target.url)
    ip = ipaddress.ip_address(target.address)
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return urlunsplit((target.scheme, f"{host}:{target.port}", parts.path or "/", parts.query, ""))


# The sender

RenderJob = Callable[[JobRecord], bytes]


NO_SIGNING_KEY = "the relay has no webhook signing key (ERP_RELAY_WEBHOOK_SIGNING_KEY)"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST to a webhook: the receiver's status (None when none answered) and, unless it
    was delivered, why not, in words for the CRM's delivery list."""

    status: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.error is None


class WebhookPoster:
    """What every webhook the relay sends shares (job results, change subscriptions): the
    signing secret of the subscribing key, the SSRF guard before each attempt, the HTTP client
    and how long a delivery is retried. One place, so the two senders cannot drift apart."""

    def __init__(
        self,
        *,
        signing_key: str | None,
        allow_private: bool,
        allow_http: bool = False,
        timeout_s: float = 10.0,
        retry_for_s: float = 24 * 3600.0,
        user_agent: str = "erp-relay",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.signing_key = signing_key
        self.timeout_s = timeout_s
        self._allow_private = allow_private
        self._allow_http = allow_http
        self._retry_for = dt.timedelta(seconds=retry_for_s)
        self._client = webhook_client(timeout_s, user_agent, transport)

    @classmethod
    def from_settings(cls, settings: RelaySettings, user_agent: str) -> WebhookPoster:
        key = settings.webhook_signing_key
        return cls(
            signing_key=key.get_secret_value() if key is not None else None,
            allow_private=settings.webhook_allow_private,
            allow_http=settings.webhook_allow_http,
            timeout_s=settings.webhook_timeout_s,
            retry_for_s=settings.webhook_retry_for_s,
            user_agent=user_agent,
        )

    def gives_up(self, since: dt.datetime, next_attempt_at: dt.datetime) -> bool:
        """Whether a delivery pending since ``since`` is past its retry window at its next
        attempt."""
        return next_attempt_at - since > self._retry_for

    async def post(self, url: str, body: bytes, api_key_id: str, delivery_id: str) -> Attempt:
        """Sign ``body`` for the key and POST it; never raises for the receiver's failures."""
        if self.signing_key is None:
            return Attempt(None, NO_SIGNING_KEY)
        secret = key_secret(self.signing_key, api_key_id)
        try:
            status = await post_signed(
                self._client,
                url,
                body,
                secret,
                delivery_id,
                allow_private=self._allow_private,
                allow_http=self._allow_http,
            )
        except WebhookRefused as exc:
            return Attempt(None, f"refused: {exc}")
        except httpx.HTTPError as exc:
            return Attempt(None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= status < 300:
            return Attempt(status)
        return Attempt(status, f"the receiver answered {status}")

    async def aclose(self) -> None:
        await self._client.aclose()


class WebhookSender:
    """Posts due deliveries in the background; one task per relay, started in the lifespan."""

    def __init__(
        self,
        jobs: JobStore,
        render: RenderJob,
        poster: WebhookPoster,
        *,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._jobs = jobs
        self._render = render
        self._poster = poster
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.on_attempt: Callable[[str], None] = lambda outcome: None
        """Told each attempt's outcome (delivered, retry, gave_up), for /metrics."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-sender")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._poster.aclose()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook sender pass failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval_s):
                    await self._wake.wait()
            self._wake.clear()

    async def run_once(self) -> int:
        """Attempt every due delivery once; return how many were attempted."""
        due = await self._jobs.due_deliveries()
        if due:
            await asyncio.gather(*(self._attempt(delivery) for delivery in due))
        return len(due)

    async def _attempt(self, delivery: DeliveryRecord) -> None:
        job = await self._jobs.job_by_id(delivery.job_id)
        if job is None:
            attempt = Attempt(None, "the job no longer exists")
        else:
            attempt = await self._poster.post(
                delivery.url, self._render(job), job.api_key_id, str(delivery.id)
            )
            if attempt.delivered:
                await self._jobs.record_attempt(
                    delivery.id,
                    state=DELIVERY_DELIVERED,
                    status=attempt.status,
                    error=None,
                    next_attempt_at=None,
                )
                self.on_attempt("delivered")
                return
        status, error = attempt.status, attempt.error
        attempts = delivery.attempts + 1
        next_at = self._jobs.now() + dt.timedelta(seconds=backoff_s(attempts))
        gave_up = job is None or self._poster.gives_up(delivery.created_at, next_at)
        self.on_attempt("gave_up" if gave_up else "retry")
        log.info(
            "webhook attempt failed",
            extra={"delivery": delivery.id, "attempts": attempts, "gave_up": gave_up},
        )
        await self._jobs.record_attempt(
            delivery.id,
            state=DELIVERY_FAILED if gave_up else DELIVERY_PENDING,
            status=status,
            error=error,
            next_attempt_at=None if gave_up else next_at,
        )


def webhook_client(
    timeout_s: float, user_agent: str, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The HTTP client of a webhook sender: no redirects, no proxies from the environment."""
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=timeout_s,
        headers={"User-Agent": user_agent},
        transport=transport,
        trust_env=False,
    )


async def post_signed(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    secret: str,
    delivery_id: str,
    *,
    allow_private: bool,
    allow_http: bool,
) -> int:
    """POST `body` signed with `secret` to the address `url` resolves to now (checked by the
    SSRF guard); the receiver's status. Raises WebhookRefused or httpx.HTTPError."""
    target = await check_url(url, allow_private=allow_private, allow_http=allow_http)
    host_header = target.host if ":" not in target.host else f"[{target.host}]"
    default_port = 443 if target.scheme == "https" else 80
    if target.port != default_port:
        host_header = f"{host_header}:{target.port}"
    headers = {
        "Host": host_header,
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret, int(time.time()), body),
        DELIVERY_HEADER: delivery_id,
    }
    response = await client.post(
        pinned_url(target),
        content=body,
        headers=headers,
        extensions={"sni_hostname": target.host},
    )
    return response.status_code
