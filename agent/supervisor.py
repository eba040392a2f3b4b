"""The agent's main loop: connect, serve, and reconnect forever, on each of its links.

Each connection reports how it ended and the supervisor alone decides what comes next:
after a goaway it reconnects at once; after a failure it waits a full-jitter backoff delay
(1 s base, 30 s cap), and a connection that stayed up `stable_after_s` resets the backoff. A
failure at boot (the network is not up yet, the relay is being deployed) is retried like any
other, never fatal: nobody is there to restart an agent in an office at night.

With ``[relay] connections`` above one, every link runs that loop on its own, so one relay
replica going away leaves the others serving; they share one dispatcher, thread pool and
journal, because the site has one ERP and one number of licence seats whatever the number of
links. Links that land on the same replica protect nothing against losing it, so a link
welcomed by a replica another link already holds leaves and comes back a moment later for
the load balancer to place it again (`SPREAD_TRIES`).

While it runs, the supervisor also watches its config file and token file (and takes SIGHUP
from the CLI): a new token or a changed ``[relay]`` section makes each link in turn hand its
connection over to a new one (`agent.link.Handover`), waiting until it is back before the
next, so the site stays reachable throughout; what else a reload changes is decided in
`agent.reload`. And it keeps the status snapshot (`agent.status`) written for
``erp-agent status`` and the optional status page.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from agent.changefeed import ChangeFeed
from agent.connectors.base import Connector
from agent.dispatch import STATUS_OPERATION, Dispatcher
from agent.executor import Executor
from agent.health import ErpHealth
from agent.journal import Journal, JournalUnavailable
from agent.link import HANDOVER_GRACE_S, ConnectFailed, Handover, LinkStatus, run_link
from agent.policy import SitePolicy
from agent.reload import Plan, fingerprint, plan
from agent.settings import AgentSettings, load_settings
from agent.status import Activity, Identity, ReloadState, StatusWriter, snapshot
from agent.status_page import StatusPage
from protocol.backoff import backoff
from protocol.frames import Hello, Welcome
from protocol.operations import CATALOGUE

log = logging.getLogger("agent")


def agent_version() -> str:
    try:
        return version("erp-relay")
    except Exception:
        return "0+unknown"


SPREAD_TRIES = 5
"""Reconnects a link makes to get off a replica another link holds before it stays there:
with one replica up (a deploy, an outage) a second link on it is better than a link down."""


@dataclass
class _Link:
    status: LinkStatus
    spread: Iterator[float]
    """Delays between moves: short and jittered, so that links of many agents moving at once
    do not come back in step, and apart from the failure backoff (moving is no failure)."""
    moves: int = 0
    handover: Handover = field(default_factory=Handover)
    """The current connection's (a new one per connection attempt)."""
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set between connection attempts (waiting to reconnect), clear during one."""


class AgentStatus:
    """The agent as a whole: reachable while any of its links is connected."""

    def __init__(self, links: tuple[LinkStatus, ...]) -> None:
        self.links = links

    @property
    def connected(self) -> bool:
        return any(link.connected for link in self.links)

    @property
    def calls(self) -> int:
        return sum(link.calls for link in self.links)

    @property
    def last_error(self) -> str:
        if len(self.links) == 1:
            return self.links[0].last_error
        errors = [link for link in self.links if link.last_error]
        return "; ".join(f"link {link.slot}: {link.last_error}" for link in errors)


class Supervisor:
    def __init__(
        self,
        settings: AgentSettings,
        connector: Connector,
        *,
        config_path: Path | None = None,
        relog: Callable[[AgentSettings], Any] | None = None,
    ) -> None:
        """``config_path`` is re-read on `request_reload` and when it changes; ``relog`` sets
        logging up again from reloaded settings (None: logging changes need a restart)."""
        self.settings = settings
        self.config_path = config_path
        self._relog = relog
        self.connector = connector
        info = connector.info()
        self.executor = Executor(connector, settings.agent.max_concurrency)
        operations = (frozenset(info.operations) | {STATUS_OPERATION}) & frozenset(CATALOGUE)
        self.journal = Journal(
            settings.agent.journal_file(), retention_days=settings.agent.journal_retention_days
        )
        try:
            self.journal.open()
        except JournalUnavailable as exc:
            # reads still work; every write is refused with journal_unavailable until it opens
            log.error("%s; writes will be refused until it can be written", exc)
        self._served = operations
        policy = SitePolicy.from_options(settings.agent, operations)
        self.dispatcher = Dispatcher(self.executor, operations, journal=self.journal, policy=policy)
        self.health = ErpHealth(self.executor, settings.agent.health_interval_s)
        self.changes = ChangeFeed.create(settings, self.executor, info)
        self.hello = Hello(
            agent_version=agent_version(),
            connector=info.name,
            erp=info.erp,
            operations=tuple(sorted(policy.allowed)),
            not_allowed=tuple(sorted(policy.refused)),
            max_concurrency=self.executor.workers,
            instance_id=uuid.uuid4().hex,
            hostname=socket.gethostname()[:255],
        )
        self.activity = Activity()
        self._links = tuple(
            _Link(LinkStatus(slot=slot, url=url, activity=self.activity), self._delays())
            for slot, url in enumerate(settings.relay.link_urls())
        )
        self.links = tuple(link.status for link in self._links)
        self.status = AgentStatus(self.links)
        self.identity = Identity(
            agent_version=self.hello.agent_version,
            instance_id=self.hello.instance_id,
            hostname=self.hello.hostname,
            config_file=str(config_path or ""),
        )
        self.reload_state = ReloadState()
        self._stop = asyncio.Event()
        self._reloading = asyncio.Lock()
        """One reload or token rotation at a time: two would hand the same links over twice."""
        self._token_seen = self._token_fingerprint()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        """Connections that opened and have ended, over all links."""
        return sum(link.connections for link in self.links)

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self, running: bool = True) -> dict[str, Any]:
        return snapshot(
            self.identity,
            self.links,
            self.activity,
            self.reload_state,
            interval_s=self.settings.status.interval_s,
            running=running,
            changes=None if self.changes is None else self.changes.status(),
        )

    async def run(self) -> None:
        writer = StatusWriter(
            self.settings.status_file(),
            self.settings.status.interval_s,
            self.activity,
            self.snapshot,
        )
        page = None
        if self.settings.status.listen is not None:
            page = StatusPage(
                self.settings.status.listen,
                self.snapshot,
                allow_remote=self.settings.status.allow_remote,
            )
            try:
                await page.start()
            except OSError as exc:  # the port is taken: the page is optional, calls are not
                log.error("cannot serve the status page on %s: %s", page.listen, exc)
                self.activity.error("status page", f"cannot listen on {page.listen}: {exc}")
                page = None
        # cancelled rather than stopped: a probe hanging on a dead ERP must not delay a stop
        helpers = [
            asyncio.create_task(self.health.run(), name="erp-health"),
            asyncio.create_task(writer.run(), name="status-writer"),
            asyncio.create_task(self._watch(), name="config-watch"),
        ]
        if self.changes is not None:
            helpers.append(asyncio.create_task(self.changes.run(), name="change-poller"))
        try:
            async with asyncio.TaskGroup() as links:
                for link in self._links:
                    links.create_task(self._keep(link))
        finally:
            for helper in (*helpers, *self._background):
                helper.cancel()
            await asyncio.gather(*helpers, *self._background, return_exceptions=True)
            if page is not None:
                await page.close()
            writer.write(running=False)
            # waits for calls still in worker threads; off the loop so it keeps turning
            await asyncio.to_thread(self.executor.close)
            self.journal.close()
            if self.changes is not None:
                self.changes.close()
            self.connector.close()

    async def _keep(self, link: _Link) -> None:
        delays = self._delays()
        while not self._stop.is_set():
            link.handover = Handover()
            link.idle.clear()
            try:
                delay = await self._once(link, delays)
            finally:
                link.idle.set()
                self.activity.changed.set()
            if delay is None:
                delays = self._delays()
                delay = 0.0
            elif delay < 0:
                delays = self._delays()
                delay = next(delays)
            if delay > 0:
                log.info("reconnecting", extra={"slot": link.status.slot, "in_s": round(delay, 2)})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    def _delays(self) -> Iterator[float]:
        r = self.settings.reconnect
        return backoff(base=r.base_s, cap=r.cap_s)

    def _placement(self, link: _Link, welcome: Welcome) -> str | None:
        """Why ``link`` should not stay on the replica that welcomed it (see `SPREAD_TRIES`)."""
        holder = None
        if welcome.replica and link.moves < SPREAD_TRIES:
            holder = next(
                (
                    other
                    for other in self.links
                    if other.connected and other.replica == welcome.replica
                ),
                None,
            )
        if holder is None:
            link.moves, link.spread = 0, self._delays()
            return None
        link.moves += 1
        return f"replica {welcome.replica} already holds link {holder.slot}"

    async def _once(self, link: _Link, delays: Iterator[float]) -> float | None:
        """One connection; returns the delay before the next one (None: at once, <0: reset)."""
        status = link.status
        started = time.monotonic()
        running = asyncio.ensure_future(
            run_link(
                self.settings,
                self.dispatcher,
                # from self.hello at each connect: it is the one identity of this process
                replace(self.hello, slot=status.slot),
                status,
                functools.partial(self._placement, link),
                self.health,
                link.handover,
                self.changes,
            )
        )
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not running.done():
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            return 0.0
        try:
            ended = running.result()
        except ConnectFailed as exc:
            status.last_error = str(exc)
            self.activity.error(f"link {status.slot}", status.last_error)
            log.warning("cannot connect to the relay: %s", exc, extra={"slot": status.slot})
            return next(delays)
        except ValueError as exc:  # configuration: no token, unreadable token file
            status.last_error = str(exc)
            self.activity.error(f"link {status.slot}", status.last_error)
            log.error("%s", exc)
            return next(delays)
        status.connections += 1
        status.last_error = ended.reason
        log.info("connection ended: %s", ended.reason, extra={"slot": status.slot})
        if ended.handed_over:
            return None
        if ended.moved:
            return next(link.spread)
        if ended.goaway is not None:
            return ended.goaway.reconnect_delay_ms / 1000 or None
        if time.monotonic() - started >= self.settings.reconnect.stable_after_s:
            return -1.0
        return next(delays)

    # Reload and token rotation

    def request_reload(self) -> None:
        """SIGHUP: re-read the config file (in the background; the signal handler returns)."""
        self._spawn(self.reload("SIGHUP"))

    async def reload(self, why: str) -> Plan | None:
        """Re-read and apply the config file; None when it was refused (the agent keeps the
        settings it runs on) or there is no file."""
        if self.config_path is None:
            log.warning("%s: no config file to reload (settings come from the environment)", why)
            return None
        async with self._reloading:
            self.reload_state.last_attempt_at = time.time()
            try:
                new = load_settings(self.config_path)
                policy = SitePolicy.from_options(new.agent, self._served)
            except ValueError as exc:
                self.reload_state.error = str(exc)
                self.activity.error("config", f"reload refused: {exc}")
                log.error(
                    "config reload refused (%s), still running on the previous settings: %s",
                    why,
                    exc,
                )
                return None
            changes = plan(self.settings, new, relog=self._relog is not None)
            self.settings = new
            self.reload_state.error = ""
            self.reload_state.loaded_at = time.time()
            self.reload_state.restart_required = tuple(
                sorted({*self.reload_state.restart_required, *changes.restart})
            )
            if self._relog is not None and changes.live:
                self._relog(new)
            self.dispatcher.policy = policy  # enforced here at once; the relay learns on relink
            self.hello = replace(
                self.hello,
                operations=tuple(sorted(policy.allowed)),
                not_allowed=tuple(sorted(policy.refused)),
            )
            log.info(
                "config reloaded (%s)",
                why,
                extra={"live": changes.live, "relink": changes.relink},
            )
            if changes.restart:
                log.warning(
                    "config changes that apply only after a restart: %s",
                    ", ".join(changes.restart),
                )
            self.activity.changed.set()
            if changes.relink:
                await self._relink("config reloaded")
            return changes

    async def _watch(self) -> None:
        """Poll the config file and the token file for changes (cheap: a few hundred bytes)."""
        interval = self.settings.reload.watch_interval_s
        if interval <= 0:
            return
        config_seen = fingerprint(self.config_path)
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._stop.wait()
            config_now = fingerprint(self.config_path)
            if config_now != config_seen and config_now is not None:
                config_seen = config_now
                await self.reload("the config file changed")
            token_now = self._token_fingerprint()
            if token_now != self._token_seen and token_now is not None:
                async with self._reloading:
                    await self._relink("token rotated")

    def _token_fingerprint(self) -> str | None:
        """The token's digest; None when it comes from the environment (it cannot change while
        the process runs) or the token file holds none (a copy half done: the connections
        keep the token they have, and the next connect says what is wrong)."""
        if self.settings.token is not None or os.environ.get("ERP_AGENT_TOKEN"):
            return None
        try:
            token = self.settings.read_token()
        except ValueError:
            return None
        return hashlib.sha256(token.encode()).hexdigest()

    async def _relink(self, reason: str) -> None:
        """Hand each link's connection over to a new one, one link at a time, each back
        before the next goes, so the agent stays reachable throughout. Call with
        `_reloading` held."""
        self._token_seen = self._token_fingerprint()
        log.info("reconnecting every link: %s", reason)
        bound = HANDOVER_GRACE_S + 2 * self.settings.relay.connect_timeout_s
        for link in self._links:
            if self._stop.is_set():
                return
            if link.idle.is_set():
                continue  # waiting to reconnect: that connection will use the new settings
            was_connected = link.status.connected
            link.handover.ask(reason)
            if not was_connected:
                continue  # nothing to keep up: it is (re)connecting and will hand over at once
            try:
                async with asyncio.timeout(bound):
                    await link.idle.wait()
                    await link.status.ready.wait()
            except TimeoutError:
                log.warning(
                    "link %d is not back %.0f s after handing over; going on with the next",
                    link.status.slot,
                    bound,
                )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
