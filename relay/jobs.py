"""Durable jobs: accepted into the store, delivered to the agent when it is connected.

`JobService` owns three background activities, started and stopped in the app's lifespan:

- one worker per agent that has pending jobs and a live connection, which delivers that agent's
  jobs strictly in order of acceptance, one at a time, and exits when the queue is empty or the
  agent is gone; it is woken when a job is accepted and when the agent connects;
- a sweep every `job_poll_interval_s` (the fallback): expires pending jobs whose time to live
  passed (never delivered), starts workers for connected agents with pending jobs, and forgets
  results older than `job_result_retention_s`;
- the `WebhookSender` (relay/webhooks.py).

How a delivery ends (docs/guarantees.md, "Durable jobs"):

- a result → ``succeeded`` with the result;
- an error frame whose code is not retryable → ``failed`` with the code and message;
- a retryable error (agent_busy, erp_unavailable, timeout, journal_unavailable, ...), the link
  lost, or no answer within `job_call_timeout_s` → back to ``pending`` and tried again after a
  backoff (5 s doubling, at most 5 min) while the queue behind it waits (order is kept), until
  `MAX_ATTEMPTS` attempts → ``failed``, or the time to live → ``expired``.

Write operations carry the idempotency key ``job:<id>`` on every attempt, so a redelivery (after
a lost link or a relay crash) is answered from the agent's journal instead of writing twice.

Several replicas may deliver from one database. A claim records this replica as the job's
runner and refuses while the agent has a job running anywhere (`JobStore.claim`), so order
per agent holds even when two replicas hold a connection to the same agent. At start and in
every sweep, jobs whose runner is not among `Membership.live_replicas()` (a replica that died)
go back to ``pending``, so they are delivered again within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from protocol.errors import ErrorCode, parse_error_code
from protocol.frames import Result
from protocol.operations import CATALOGUE
from relay.cluster.membership import Membership, SoloMembership
from relay.hub import AgentLink, Hub, LinkClosed
from relay.settings import RelaySettings
from relay.site_policy import refusal
from relay.store import models
from relay.store.jobs import (
    EXPIRED,
    FAILED,
    SUCCEEDED,
    DeliveryRecord,
    JobRecord,
    JobStore,
)
from relay.webhooks import WebhookPoster, WebhookSender

log = logging.getLogger("relay.jobs")

MAX_ATTEMPTS = 10
RETRY_BASE_S = 5.0
RETRY_CAP_S = 300.0
PURGE_EVERY_S = 600.0


def retry_delay_s(attempts: int) -> float:
    return float(min(RETRY_CAP_S, RETRY_BASE_S * 2 ** min(max(attempts - 1, 0), 16)))


def job_location(job: JobRecord) -> str:
    return f"/v1/jobs/{job.public_id}"


def job_view(job: JobRecord, deliveries: list[DeliveryRecord] | None = None) -> dict[str, Any]:
    """The job as the API shows it and as webhooks send it (`result` embedded as-is)."""
    view: dict[str, Any] = {
        "id": job.public_id,
        "agent": job.agent_name,
        "operation": job.operation,
        "state": job.state,
        "location": job_location(job),
        "attempts": job.attempts,
        "created_at": job.created_at,
        "expires_at": job.expires_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "result": orjson.Fragment(job.result) if job.result is not None else None,
        "error": (
            {"code": job.error_code, "message": job.error_message}
            if job.error_code is not None
            else None
        ),
    }
    if job.webhook_url is not None:
        webhook: dict[str, Any] = {"url": job.webhook_url}
        if deliveries is not None:
            webhook["deliveries"] = [
                {
                    "id": d.id,
                    "state": d.state,
                    "attempts": d.attempts,
                    "last_status": d.last_status,
                    "last_error": d.last_error,
                    "next_attempt_at": d.next_attempt_at,
                    "created_at": d.created_at,
                    "updated_at": d.updated_at,
                }
                for d in deliveries
            ]
        view["webhook"] = webhook
    return view


def render_job(job: JobRecord) -> bytes:
    return orjson.dumps(job_view(job))


class JobService:
    """Accepts, delivers, expires and cancels jobs; see the module docstring.

    `membership` says which replica this is (the runner recorded on the jobs it claims) and
    which are alive; without one the relay is taken to run alone. `on_accepted`, when set, is
    called with the agent's name after a job was accepted (committed), so that another replica
    holding that agent's connection can be woken; this replica wakes its own worker anyway.
    """

    def __init__(
        self,
        store: JobStore,
        hub: Hub,
        settings: RelaySettings,
        *,
        webhooks: WebhookSender | None = None,
        version: str = "",
        membership: Membership | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.settings = settings
        self.membership: Membership = membership or SoloMembership()
        if len(self.membership.replica_id) > models.REPLICA_ID_MAX:
            # Refused here rather than by the database on the first claim.
            raise ValueError(f"a replica id is at most {models.REPLICA_ID_MAX} characters")
        self.on_accepted: Callable[[str], None] | None = None
        self.on_finished: Callable[[JobRecord], None] | None = None
        """Called with every job that ended here (succeeded, failed, expired, cancelled):
        the relay publishes it as a ``job.finished`` event."""
        user_agent = f"erp-relay/{version}" if version else "erp-relay"
        self.webhooks = webhooks or WebhookSender(
            store, render_job, WebhookPoster.from_settings(settings, user_agent)
        )
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._sweep_wake = asyncio.Event()
        self._last_purge = 0.0
        self._stopping = False

    # Life cycle

    @property
    def runner(self) -> str:
        """This replica's id, recorded on the jobs it claims."""
        return self.membership.replica_id

    async def start(self) -> None:
        await self.recover_orphans()
        await self.webhooks.start()
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="job-sweeper")

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in (self._sweeper, *self._workers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._workers.clear()
        await self.webhooks.stop()

    # Hooks

    def agent_connected(self, agent: str) -> None:
        """Deliver the agent's pending jobs: it connected here, or (through the cluster)
        another replica accepted a job for it while this replica holds its connection."""
        self._kick(agent)

    async def accept(
        self,
        *,
        api_key_id: str,
        agent: str,
        operation: str,
        args: bytes,
        ttl_s: float,
        webhook_url: str | None,
    ) -> JobRecord:
        """Store a job (committed when this returns) and wake the agent's worker."""
        job = await self.store.create(
            api_key_id=api_key_id,
            agent_name=agent,
            operation=operation,
            args=args,
            ttl=dt.timedelta(seconds=ttl_s),
            writes=CATALOGUE[operation].writes,
            webhook_url=webhook_url,
        )
        self._queued(agent)
        return job

    async def cancel(self, public_id: str, api_key_id: str | None) -> JobRecord:
        """Cancel a pending job (of that API key; None: of anyone, for operators)."""
        job = await self.store.cancel(public_id, api_key_id)
        self._notify_finished(job)
        return job

    async def retry(self, public_id: str) -> JobRecord:
        """Put a failed or expired job back to pending (`JobStore.retry`) and deliver it."""
        job = await self.store.retry(public_id)
        self._queued(job.agent_name)
        return job

    def _queued(self, agent: str) -> None:
        """A job of `agent` became pending: wake the worker here and the agent's replica."""
        self._kick(agent)
        if self.on_accepted is not None:
            try:
                self.on_accepted(agent)
            except Exception:
                # The job is committed and the sweep delivers it anyway: failing the request
                # now would only make the client submit it a second time.
                log.exception("on_accepted hook failed", extra={"agent": agent})

    def _notify_finished(self, job: JobRecord) -> None:
        if self.on_finished is not None:
            try:
                self.on_finished(job)
            except Exception:
                log.exception("on_finished hook failed", extra={"job": job.public_id})

    def _kick(self, agent: str) -> None:
        if self._stopping:
            return
        wake = self._wakes.setdefault(agent, asyncio.Event())
        wake.set()
        worker = self._workers.get(agent)
        if worker is None or worker.done():
            self._workers[agent] = asyncio.create_task(self._work(agent), name=f"jobs-{agent}")

    # The sweep

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job sweep failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.job_poll_interval_s):
                    await self._sweep_wake.wait()
            self._sweep_wake.clear()

    async def recover_orphans(self) -> int:
        """Jobs running on replicas that are gone go back to pending; none when the live
        replicas cannot be told (a live replica's job must never be delivered twice at once)."""
        live = await self.membership.live_replicas()
        if live is None:
            return 0
        # This replica is alive whatever the shared view says: it is the one asking.
        recovered = await self.store.recover_orphans(live | {self.runner})
        if recovered:
            log.warning("jobs left running by replicas that are gone are pending: %d", recovered)
        return recovered

    async def sweep(self) -> None:
        try:
            await self.recover_orphans()
        except Exception as exc:
            # The rest of the sweep (expiry, waking workers) must not depend on it.
            log.warning("job orphan recovery failed (%s)", type(exc).__name__)
        expired = await self.store.expire_due()
        for job in expired:
            self._notify_finished(job)
        if any(job.webhook_url for job in expired):
            self.webhooks.wake()
        for agent in await self.store.agents_with_pending():
            if self.hub.is_online(agent):
                self._kick(agent)
        if time.monotonic() - self._last_purge > PURGE_EVERY_S:
            self._last_purge = time.monotonic()
            cutoff = self.store.now() - dt.timedelta(seconds=self.settings.job_result_retention_s)
            await self.store.purge_results(cutoff)

    # One agent's queue

    async def _work(self, agent: str) -> None:
        wake = self._wakes.setdefault(agent, asyncio.Event())
        refused: int | None = None
        try:
            while True:
                wake.clear()
                job = await self.store.next_pending(agent)
                if job is None:
                    if wake.is_set():
                        continue
                    return
                now = self.store.now()
                if job.expires_at <= now:
                    await self._ended(await self.store.expire(job.id))
                    continue
                if job.not_before is not None and job.not_before > now:
                    await self._wait(wake, (job.not_before - now).total_seconds())
                    continue
                link = self.hub.pick(agent, job.operation)
                if link is None:
                    if self.hub.is_online(agent):
                        await self._refused(job)
                        continue
                    if wake.is_set():
                        continue
                    return  # offline: the connect hook or the sweep starts a worker again
                claimed = await self.store.claim(job.id, self.runner)
                if claimed is not None:
                    refused = None
                    await self._deliver(claimed, link)
                elif refused == job.id:
                    # Refused twice at the same head: another replica is delivering this
                    # agent's jobs. Wait for a wake or the poll instead of asking in a loop.
                    await self._wait(wake, self.settings.job_poll_interval_s)
                else:
                    refused = job.id  # maybe just taken or cancelled: look again at once
        finally:
            if self._workers.get(agent) is asyncio.current_task():
                del self._workers[agent]

    async def _wait(self, wake: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(seconds, self.settings.job_poll_interval_s)):
                await wake.wait()

    async def _refused(self, job: JobRecord) -> None:
        """The agent is online but none of its connections takes the operation: that will not
        change by retrying (`relay.site_policy`), so the job fails without a delivery."""
        code, message = refusal(self.hub, job.agent_name, job.operation)
        await self._ended(
            await self.store.finish(
                job.id,
                FAILED,
                error_code=code.value,
                error_message=message,
                from_states=("pending",),
            )
        )

    async def _deliver(self, job: JobRecord, link: AgentLink) -> None:
        timeout = self.settings.job_call_timeout_s
        deadline_ms = int((time.time() + timeout) * 1000)
        try:
            call_id, future = await link.start_call(
                job.operation,
                orjson.Fragment(job.args or b"{}"),
                deadline_ms,
                job.idempotency_key,
                job.public_id,
            )
        except LinkClosed:
            await self._retry(
                job, ErrorCode.AGENT_OFFLINE.value, "the agent connection closed", delay=False
            )
            return
        except asyncio.CancelledError:
            await asyncio.shield(self.store.release(job.id, runner=self.runner))
            raise
        try:
            async with asyncio.timeout(timeout):
                frame = await asyncio.shield(future)
        except TimeoutError:
            await link.cancel(call_id, "deadline passed")
            await self._retry(job, ErrorCode.TIMEOUT.value, f"no answer within {timeout:g} s")
            return
        except LinkClosed:
            await self._retry(
                job, ErrorCode.AGENT_OFFLINE.value, "the agent connection was lost", delay=False
            )
            return
        except asyncio.CancelledError:
            # Relay shutting down: leave the job pending (its idempotency key makes a rerun
            # of a write safe); after a crash, a live replica (or the next start) recovers it.
            await link.cancel(call_id, "relay shutting down")
            await asyncio.shield(self.store.release(job.id, runner=self.runner))
            raise
        if isinstance(frame, Result):
            ended = await self.store.finish(
                job.id, SUCCEEDED, result=orjson.dumps(frame.value), runner=self.runner
            )
            await self._ended(ended)
            return
        code = parse_error_code(frame.code)
        if code.retryable:
            await self._retry(job, code.value, frame.message)
            return
        await self._ended(
            await self.store.finish(
                job.id,
                FAILED,
                error_code=code.value,
                error_message=frame.message,
                runner=self.runner,
            )
        )

    async def _retry(self, job: JobRecord, code: str, message: str, *, delay: bool = True) -> None:
        """Back to pending; after a backoff unless the link was lost (redeliver on reconnect)."""
        if job.attempts >= MAX_ATTEMPTS:
            await self._ended(
                await self.store.finish(
                    job.id,
                    FAILED,
                    error_code=code,
                    error_message=f"{message} (gave up after {job.attempts} attempts)",
                    runner=self.runner,
                )
            )
            return
        not_before = (
            self.store.now() + dt.timedelta(seconds=retry_delay_s(job.attempts)) if delay else None
        )
        await self.store.release(
            job.id,
            not_before=not_before,
            error_code=code,
            error_message=message,
            runner=self.runner,
        )

    async def _ended(self, job: JobRecord | None) -> None:
        if job is None:
            return
        log.info(
            "job ended",
            extra={"job": job.public_id, "agent": job.agent_name, "state": job.state},
        )
        self._notify_finished(job)
        if job.webhook_url is not None:
            self.webhooks.wake()


__all__ = ["EXPIRED", "JobService", "job_location", "job_view", "render_job", "retry_delay_s"]
