"""Relay settings, from the environment (``ERP_RELAY_*``) or passed in by tests."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class RelaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERP_RELAY_", extra="ignore")

    database_url: str = "sqlite:///./erp-relay.sqlite"
    host: str = "127.0.0.1"
    port: int = 8000

    default_timeout_s: float = Field(15.0, gt=0, le=120)
    max_timeout_s: float = Field(120.0, gt=0, le=600)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_frame_bytes: int = Field(1024 * 1024, ge=4096)

    ws_ping_interval_s: float = Field(10.0, gt=0)
    """Keepalive: a ping every interval; no pong within the timeout closes the connection, so a
    dead agent is noticed within interval + timeout (20 s by default, under the 30 s promised)."""
    ws_ping_timeout_s: float = Field(10.0, gt=0)
    hello_timeout_s: float = Field(10.0, gt=0)
    """An upgraded socket that says nothing is closed after this long (slowloris)."""

    auth_cache_ttl_s: float = Field(5.0, ge=0)
    """How long a verified API key is trusted without asking the store; bounds how long a
    revoked key keeps working."""
    shutdown_grace_s: float = Field(10.0, ge=0)

    idempotency_retention_s: float = Field(7 * 24 * 3600.0, ge=3600)
    """How long the relay keeps a write's Idempotency-Key and outcome (at least an hour; 7 days
    by default, so an office closed over a long weekend can still retry)."""
    idempotency_purge_interval_s: float = Field(600.0, gt=0)
    """How often expired idempotency keys are deleted."""

    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses of reverse proxies whose X-Forwarded-For/-Proto headers are believed. Empty:
    the headers are ignored, so nobody can forge an agent's or a caller's address."""

    # Durable jobs and their webhooks (relay/jobs.py, relay/webhooks.py, docs/guarantees.md).
    job_default_ttl_s: float = Field(24 * 3600.0, gt=0)
    job_max_ttl_s: float = Field(7 * 24 * 3600.0, gt=0)
    job_call_timeout_s: float = Field(120.0, gt=0, le=600)
    job_poll_interval_s: float = Field(5.0, gt=0)
    job_result_retention_s: float = Field(7 * 24 * 3600.0, gt=0)
    webhook_signing_key: SecretStr | None = None
    """The relay's webhook key; each API key's signing secret is HMAC(this, key public id).
    Webhooks are refused while it is unset."""
    webhook_allow_private: bool = False
    """Allow webhook URLs that resolve to loopback, private, link-local... addresses (and
    plain http). For development and tests only."""
    webhook_allow_http: bool = False
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_retry_for_s: float = Field(24 * 3600.0, gt=0)

    # Several replicas (relay/cluster/, docs/deployment.md). Unset: one replica, no Redis.
    redis_url: SecretStr | None = None
    """Redis that replicas share for agent presence and forwarded calls, e.g.
    ``redis://redis:6379/0``. A secret: it may carry a password."""
    redis_prefix: str = Field("erp-relay", min_length=1, max_length=64, pattern=r"^[\w.:-]+$")
    """Prefix of every Redis key and channel, so several relay clusters can share one Redis."""
    replica_id: str = Field("", max_length=64, pattern=r"^[\w.-]*$")
    """This replica's name in presence and logs; empty: host name, process id and a random
    suffix (unique per start, so a restarted replica never inherits a dead one's calls)."""
    presence_ttl_s: float = Field(6.0, gt=0)
    """A replica that stops refreshing its presence is considered dead after this long."""
    presence_refresh_s: float = Field(2.0, gt=0)

    # The operations console (docs/admin-api.md).
    session_idle_s: float = Field(30 * 60.0, gt=0)
    """An operator's session ends after this long without a request."""
    session_max_s: float = Field(12 * 3600.0, gt=0)
    """An operator's session ends this long after sign-in, however busy."""
    event_retention_s: float = Field(7 * 24 * 3600.0, gt=0)
    """How long GET /v1/events can replay an event (Last-Event-ID) and agent history shows it."""
    event_poll_interval_s: float = Field(0.5, gt=0)
    """How often each replica reads the events other replicas wrote."""

    # The change feed (relay/changefeed/, docs/change-feed.md).
    change_retention_s: float = Field(7 * 24 * 3600.0, gt=0)
    """How long change events are kept for subscribers (GET /v1/agents/{agent}/events and
    webhook subscriptions); reading after an older cursor answers 410 cursor_expired."""
    change_purge_interval_s: float = Field(600.0, gt=0)
    """How often change events older than `change_retention_s` are deleted."""
    change_poll_interval_s: float = Field(0.5, gt=0)
    """How often each replica looks for change events other replicas stored (waking its
    long-polls, event streams and webhook sender) and for webhook retries that fell due."""

    log_level: str = "info"
    log_format: Literal["json", "text"] = "json"
    """JSON lines for log collectors; ``text`` for a terminal (docs/observability.md)."""
    metrics_token: SecretStr | None = None
    """When set, ``GET /metrics`` wants ``Authorization: Bearer <metrics_token>``."""
