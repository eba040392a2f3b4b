"""Agent configuration: a TOML file, overridden by ``ERP_AGENT_*`` environment variables.

Nested keys use a double underscore: ``ERP_AGENT_RELAY__URL`` overrides ``[relay] url``; a list
is JSON (``ERP_AGENT_RELAY__URLS='["wss://a/v1/agent/connect", "wss://b/v1/agent/connect"]'``).
The token never comes from the command line (it would show in the process list): it is read from
``ERP_AGENT_TOKEN`` or from the file named by ``[relay] token_file``, again at every connect, so
a rotated token file is picked up without a restart.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agent.egress import (
    FROM_ENVIRONMENT,
    NO_PROXY,
    Egress,
    check_proxy_url,
    egress,
    require_tls,
)
from agent.policy import check_allow

MAX_CONNECTIONS = 4


def _check_scheme(value: str) -> str:
    if not value.startswith(("ws://", "wss://")):
        raise ValueError("relay URLs must start with wss:// (or ws:// with allow_insecure)")
    return value


class RelayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = "wss://localhost/v1/agent/connect"
    urls: list[str] = Field(default_factory=list)
    """Instead of `url`: several addresses of one relay service (two load balancers, or replicas
    reachable by name), so that no single address is on every link's path; link ``i``
    connects to ``urls[i % len(urls)]``."""
    connections: int = Field(1, ge=1, le=MAX_CONNECTIONS)
    """Connections held at once, each with its own reconnect loop, so that losing one relay
    replica leaves the site reachable through another; they share the ERP sessions."""
    token_file: Path | None = None
    allow_insecure: bool = False
    """Permit plain ``ws://`` (local testing only); without it the agent refuses to connect."""
    proxy: str = FROM_ENVIRONMENT
    """``environment`` (HTTPS_PROXY, ALL_PROXY and NO_PROXY, as curl reads them), ``none``
    (always direct), or a proxy URL: ``http://host:port`` (HTTP CONNECT), ``socks5://`` or
    ``socks5h://`` (the proxy resolves the relay's name). ``http://user@host:port`` takes the
    password from `proxy_password_file` or ERP_AGENT_PROXY_PASSWORD (docs/agent-network.md)."""
    proxy_password_file: Path | None = None
    """A file holding only the proxy password, so that it stays out of this config."""
    ca_file: Path | None = None
    """PEM certificates trusted in addition to the system's (a TLS-inspecting proxy's root CA).
    Certificates are always verified; there is no way to turn that off."""
    connect_timeout_s: float = Field(10.0, gt=0)
    ping_interval_s: float = Field(10.0, gt=0)
    ping_timeout_s: float = Field(10.0, gt=0)
    max_frame_bytes: int = Field(1024 * 1024, ge=4096)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        return _check_scheme(value)

    @field_validator("urls")
    @classmethod
    def _schemes(cls, values: list[str]) -> list[str]:
        return [_check_scheme(value) for value in values]

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in (FROM_ENVIRONMENT, NO_PROXY):
            return value.lower()
        check_proxy_url(value)
        return value

    @model_validator(mode="after")
    def _one_address(self) -> RelayOptions:
        # Both set (a file with urls, an environment with url) has no obvious winner: say so
        # rather than silently connect somewhere the admin did not mean.
        if "urls" not in self.model_fields_set:
            return self
        if "url" in self.model_fields_set:
            raise ValueError("set relay.url or relay.urls, not both")
        if not self.urls:
            raise ValueError("relay.urls is empty: name at least one relay, or use relay.url")
        if len(self.urls) > self.connections:
            # an address no link would ever use looks like failover but is none
            raise ValueError(
                f"relay.urls names {len(self.urls)} relays but relay.connections = "
                f"{self.connections}: raise relay.connections or remove the unused URLs"
            )
        return self

    def link_url(self, slot: int) -> str:
        """The relay that link number ``slot`` connects to."""
        urls = self.urls or [self.url]
        return urls[slot % len(urls)]

    def link_urls(self) -> list[str]:
        return [self.link_url(slot) for slot in range(self.connections)]

    def egress(self, url: str) -> Egress:
        """The proxy and TLS trust for one connection to ``url``, read afresh (environment,
        password file, CA file) so that a change applies at the next connect."""
        return egress(
            url,
            proxy=self.proxy,
            password_file=self.proxy_password_file,
            ca_file=self.ca_file,
            allow_insecure=self.allow_insecure,
        )


class ReconnectOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_s: float = Field(1.0, gt=0)
    cap_s: float = Field(30.0, gt=0)
    stable_after_s: float = Field(30.0, ge=0)
    """A connection that stayed up this long resets the backoff to its base."""


class StatusOptions(BaseModel):
    """The status snapshot (`agent.status`) and the optional local status page."""

    model_config = ConfigDict(extra="forbid")

    file: Path | None = None
    """Default: ``status.json`` next to the journal (`AgentOptions.journal_file`)."""
    interval_s: float = Field(2.0, gt=0, le=60)
    """The snapshot is rewritten this often, and soon after a change."""
    listen: str | None = None
    """``127.0.0.1:8765`` serves the snapshot at ``/`` (HTML) and ``/status.json``. Loopback
    addresses only, unless `allow_remote`: the page has no authentication."""
    allow_remote: bool = False
    """Let `listen` name a non-loopback address (the page is then readable from the network)."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            listen_address(value)
        return value

    @model_validator(mode="after")
    def _loopback(self) -> StatusOptions:
        if self.listen is not None and not self.allow_remote:
            host, _ = listen_address(self.listen)
            if not is_loopback(host):
                raise ValueError(
                    f"status.listen = {self.listen!r} is not a loopback address; the status "
                    "page has no authentication: use 127.0.0.1, or set status.allow_remote = true"
                )
        return self


def listen_address(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) as a host and a port; ValueError if malformed."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"status.listen = {value!r}: expected host:port, such as 127.0.0.1:8765")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve anywhere


class ReloadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    watch_interval_s: float = Field(3.0, ge=0, le=3600)
    """How often the config file and the token file are checked for changes (0: never; the
    config is then reloaded on SIGHUP only, and a new token is used from the next reconnect)."""


class ChangesOptions(BaseModel):
    """The change feed (docs/change-feed.md): changes found in the ERP, sent to the relay."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    """None (the default): on when the connector can detect changes. False: off. True: on, and
    an error in the log when the connector cannot."""
    interval_s: float = Field(2.0, gt=0, le=3600)
    """How often the ERP is polled for changes."""
    outbox_path: Path | None = None
    """The outbox (SQLite) of changes waiting for the relay's ack. Default: ``changes.sqlite``
    next to the write journal (`AgentOptions.journal_file`)."""
    max_outbox: int = Field(100_000, ge=1)
    """Events the outbox may hold; when full (a relay that never acknowledges) the agent stops
    polling for changes, with a warning, and finds them later once there is room."""
    max_in_flight: int = Field(100, ge=1, le=10_000)
    """Events sent and not acknowledged yet, at most, on the connection that sends them."""


class AgentOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_concurrency: int = Field(4, ge=1, le=256)
    """Calls run at once; also the number of ERP sessions (licence seats) the agent opens."""
    journal_path: Path | None = None
    """The write journal (SQLite). Default: `default_journal_path()`, a per-machine state
    folder (``%PROGRAMDATA%\\ErpRelay\\journal.sqlite`` on Windows,
    ``$XDG_STATE_HOME/erp-agent/journal.sqlite`` or ``~/.local/state/erp-agent/journal.sqlite``
    elsewhere)."""
    journal_retention_days: float = Field(30.0, gt=0)
    """Journal rows older than this are deleted; a retry after that is a new write."""
    health_interval_s: float = Field(15.0, gt=0)
    """How often the ERP is probed and each connection reports its health to the relay
    (and at once when the ERP's reachability changes)."""
    allow: list[str] | None = None
    """The operations the site lets the cloud run: exact names and ``group.*`` (agent/policy.py,
    docs/site-policy.md). Default: every operation the connector serves."""
    read_only: bool = False
    """Refuse every operation that writes to the ERP, whatever `allow` says."""

    @model_validator(mode="after")
    def _site_policy(self) -> AgentOptions:
        if self.allow is not None:
            check_allow(self.allow, read_only=self.read_only)
        return self

    def journal_file(self) -> Path:
        """`journal_path` (``~`` expanded), or the platform default."""
        if self.journal_path is not None:
            return self.journal_path.expanduser()
        return default_journal_path()


def default_journal_path() -> Path:
    """Where the write journal lives unless ``[agent] journal_path`` says otherwise."""
    if sys.platform == "win32":
        base = (
            os.environ.get("PROGRAMDATA") or os.environ.get("ALLUSERSPROFILE") or r"C:\ProgramData"
        )
        return Path(base) / "ErpRelay" / "journal.sqlite"
    systemd = os.environ.get("STATE_DIRECTORY")  # the unit's StateDirectory= (deploy/agent/)
    if systemd:
        return Path(systemd.split(":")[0]) / "journal.sqlite"
    state = os.environ.get("XDG_STATE_HOME")
    root = Path(state) if state else Path.home() / ".local" / "state"
    return root / "erp-agent" / "journal.sqlite"


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ERP_AGENT_",
        env_nested_delimiter="__",
        extra="forbid",
        # a rejected value is echoed otherwise, and it may be a proxy URL with its password
        hide_input_in_errors=True,
    )
    config_file: ClassVar[Path | None] = None

    relay: RelayOptions = RelayOptions()
    agent: AgentOptions = AgentOptions()
    reconnect: ReconnectOptions = ReconnectOptions()
    status: StatusOptions = StatusOptions()
    reload: ReloadOptions = ReloadOptions()
    changes: ChangesOptions = ChangesOptions()
    connector: dict[str, Any] = Field(default_factory=lambda: {"type": "demo"})
    """``type`` names the connector; the other keys are its own options."""
    token: SecretStr | None = None
    log_level: str = "info"
    log_format: Literal["json", "text"] = "json"
    """JSON lines for a log collector; ``text`` for a terminal (docs/observability.md)."""
    log_file: Path | None = None
    """Also write the log to this file, rotated by size. None: stderr only, which is right
    under systemd (the journal keeps it); the Windows service, which has no console, writes
    to ``%PROGRAMDATA%\\ErpRelay\\logs\\agent.log`` unless this names another file."""
    log_file_max_bytes: int = Field(10 * 1024 * 1024, ge=4096)
    """The log file is rotated when a line would take it past this size."""
    log_file_backups: int = Field(5, ge=1, le=100)
    """Rotated files kept (``agent.log.1`` … ``agent.log.N``, the oldest deleted)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.config_file))
        return tuple(sources)

    def status_file(self) -> Path:
        """`StatusOptions.file` (``~`` expanded), or ``status.json`` next to the journal."""
        if self.status.file is not None:
            return self.status.file.expanduser()
        return self.agent.journal_file().with_name("status.json")

    def outbox_file(self) -> Path:
        """`ChangesOptions.outbox_path` (``~`` expanded), or ``changes.sqlite`` next to the
        journal."""
        if self.changes.outbox_path is not None:
            return self.changes.outbox_path.expanduser()
        return self.agent.journal_file().with_name("changes.sqlite")

    def read_token(self) -> str:
        """The agent token, from the environment or the token file; ValueError if absent."""
        if self.token is not None:
            return self.token.get_secret_value().strip()
        env = os.environ.get("ERP_AGENT_TOKEN")
        if env:
            return env.strip()
        if self.relay.token_file is None:
            raise ValueError("no agent token: set ERP_AGENT_TOKEN or [relay] token_file")
        try:
            token = self.relay.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read the token file {self.relay.token_file}: {exc}") from exc
        if not token:
            raise ValueError(f"the token file {self.relay.token_file} is empty")
        return token

    def check_transport(self) -> None:
        for url in self.relay.link_urls():
            require_tls(url, self.relay.allow_insecure)


def load_settings(path: Path | None = None, **overrides: Any) -> AgentSettings:
    """Read the TOML file (if any), apply the environment, then ``overrides``."""
    if path is not None and not path.is_file():
        raise ValueError(f"config file {path} does not exist")

    class _FromFile(AgentSettings):
        config_file = path

    settings = _FromFile(**overrides)
    settings.check_transport()
    return settings
