"""What an admin can do (docs/admin-api.md, "Acting"), each written to the audit log.

Each method changes the store, then makes the change felt at once: a revoked token's live
connections are closed on every replica (through the hub here and a broadcast on the cluster
bus), a revoked API key leaves this replica's cache (other replicas' caches expire within
`auth_cache_ttl_s`), a retried job is woken wherever its agent is held. Store errors become
problem documents here, in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.errors import ErrorCode
from relay.api.jobs import cancel_pending_job
from relay.console.audit import AuditTrail
from relay.jobs import JobService
from relay.problems import Problem
from relay.state import RelayState
from relay.store import AlreadyExists, NewSecret, NotFoundError, Revoked
from relay.store.fleet import FleetStore
from relay.store.jobs import JobNotFound, JobNotRetryable, JobRecord


def _agent_not_found(name: str) -> Problem:
    return Problem(ErrorCode.AGENT_NOT_FOUND, f"no agent named {name!r}")


@dataclass(frozen=True, slots=True)
class AdminActions:
    state: RelayState
    audit: AuditTrail

    # Agents and their tokens

    async def create_agent(self, name: str) -> NewSecret:
        try:
            created = await self.state.store.create_agent(name)
        except ValueError as exc:
            raise Problem(ErrorCode.INVALID_ARGUMENTS, str(exc)) from None
        except AlreadyExists:
            raise Problem(ErrorCode.ALREADY_EXISTS, f"agent {name!r} already exists") from None
        await self.audit.record("agent.create", f"agent:{name}", {"token": created.public_id})
        return created

    async def revoke_agent(self, name: str) -> None:
        try:
            await self.state.store.revoke_agent(name)
        except NotFoundError:
            raise _agent_not_found(name) from None
        self._close_revoked(name, None)
        await self.audit.record("agent.revoke", f"agent:{name}")

    async def add_token(self, name: str, *, revoke_others: bool) -> NewSecret:
        try:
            created = await self.state.store.add_agent_token(name)
        except NotFoundError:
            raise _agent_not_found(name) from None
        except Revoked:
            raise Problem(ErrorCode.CONFLICT, f"agent {name!r} is revoked") from None
        revoked: list[str] = []
        if revoke_others:
            for token in await self._tokens(name):
                if token != created.public_id:
                    await self.state.store.revoke_agent_token(token)
                    self._close_revoked(name, token)
                    revoked.append(token)
        await self.audit.record(
            "agent_token.create",
            f"agent:{name}",
            {"token": created.public_id, "revoke_others": revoke_others, "revoked": revoked},
        )
        return created

    async def revoke_token(self, name: str, public_id: str) -> None:
        if await self.state.store.get_agent(name) is None:
            raise _agent_not_found(name)
        if public_id not in await self._tokens(name, live_only=False):
            raise Problem(ErrorCode.TOKEN_NOT_FOUND, f"agent {name!r} has no token {public_id!r}")
        await self.state.store.revoke_agent_token(public_id)
        self._close_revoked(name, public_id)
        await self.audit.record("agent_token.revoke", f"agent:{name}", {"token": public_id})

    async def disconnect(self, name: str, session_id: str) -> None:
        """Close one connection wherever it is held; the agent reconnects by itself."""
        if await self.state.store.get_agent(name) is None:
            raise _agent_not_found(name)
        if self.state.cluster is not None:
            self.state.cluster.disconnect(name, session_id)
        else:
            self.state.hub.disconnect(name, session_id)
        await self.audit.record("connection.disconnect", f"agent:{name}", {"session": session_id})

    async def _tokens(self, name: str, *, live_only: bool = True) -> list[str]:
        tokens = await FleetStore(self.state.store.engine).tokens(name)
        return [t.public_id for t in tokens if not live_only or t.revoked_at is None]

    def _close_revoked(self, agent: str, token: str | None) -> None:
        if self.state.cluster is not None:
            self.state.cluster.revoked(agent, token)
        else:
            self.state.hub.revoke(agent, token)

    # API keys

    async def create_api_key(
        self, name: str, agents: Sequence[str], operations: Sequence[str], *, admin: bool
    ) -> NewSecret:
        try:
            created = await self.state.store.create_api_key(name, agents, operations, admin=admin)
        except ValueError as exc:
            raise Problem(ErrorCode.INVALID_ARGUMENTS, str(exc)) from None
        await self.audit.record(
            "api_key.create",
            f"api_key:{created.public_id}",
            {"name": name, "agents": list(agents), "operations": list(operations), "admin": admin},
        )
        return created

    async def revoke_api_key(self, public_id: str) -> None:
        try:
            await self.state.store.revoke_api_key(public_id)
        except NotFoundError:
            raise Problem(ErrorCode.API_KEY_NOT_FOUND, f"no API key {public_id!r}") from None
        self.state.keys.forget_all()
        await self.audit.record("api_key.revoke", f"api_key:{public_id}")

    # Jobs

    async def retry_job(self, job_id: str) -> JobRecord:
        try:
            job = await self._jobs().retry(job_id)
        except JobNotFound:
            raise Problem(ErrorCode.JOB_NOT_FOUND, "no such job") from None
        except JobNotRetryable as exc:
            raise Problem(ErrorCode.JOB_NOT_RETRYABLE, str(exc), state=exc.state) from None
        await self.audit.record("job.retry", f"job:{job_id}", self._job_details(job))
        return job

    async def cancel_job(self, job_id: str) -> JobRecord:
        job = await cancel_pending_job(self._jobs(), job_id, None)
        await self.audit.record("job.cancel", f"job:{job_id}", self._job_details(job))
        return job

    def _jobs(self) -> JobService:
        if self.state.jobs is None:
            raise Problem(ErrorCode.INTERNAL_ERROR, "jobs are not running")
        return self.state.jobs

    @staticmethod
    def _job_details(job: JobRecord) -> dict[str, str]:
        return {"agent": job.agent_name, "operation": job.operation}
