"""Relay settings, from the environment (``ERP_RELAY_*``) or passed in by tests."""

from __future__ import annotations

from pydantic import Field
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

    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses of reverse proxies whose X-Forwarded-For/-Proto headers are believed. Empty:
    the headers are ignored, so nobody can forge an agent's or a caller's address."""

    log_level: str = "info"
