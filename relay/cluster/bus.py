"""Calls between replicas over Redis pub/sub, and the `RemoteLink` that hides them.

A CRM call can enter any replica. When the agent's connection is held by another replica, the
call goes there as a message on that replica's inbox channel (``{prefix}:inbox:{replica}``),
runs on the local connection there, and the answer comes back on the caller's inbox. Pub/sub
is fire-and-forget, which is what a call wants: it has a deadline, a lost message ends as a
timeout (and, for a write, an unknown outcome that a retry with the same key resolves). Two
things make failures fast instead of slow:

- ``PUBLISH`` returns how many subscribers got the message. 0 means the target replica is gone
  (its Redis connection closed when it died): the call was not delivered, and the caller may
  try another replica or answer 503 at once.
- On every presence renewal, calls waiting on a replica that is no longer alive fail as lost.

Messages are a one-line JSON header, a newline, and a JSON payload (call arguments, a result's
value or an error's details), forwarded as bytes without being parsed in between.

The broadcast channel (``{prefix}:broadcast``) carries what every replica must hear: a job was
accepted for an agent (the replica holding it delivers), a connection was replaced by a
newer one of the same agent process and slot (the replica holding the old one closes it), an
operator disconnected a connection, or revoked an agent or one of its tokens (the replicas
holding its connections close them).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from protocol.backoff import backoff
from protocol.frames import Error, JSONValue, Result
from protocol.operations import CATALOGUE
from relay.hub import Hub, LinkClosed
from relay.site_policy import refusal

log = logging.getLogger("relay.cluster")

_GRACE_S = 5.0
"""How long past its deadline a forwarded call is waited for at the holder before giving up."""


class NotDelivered(LinkClosed):
    """The call never reached an agent: safe to try elsewhere, and a write was not started.

    ``moving``: the holder had sent the agent goaway; it is reconnecting to another replica.
    """

    def __init__(self, reason: str, *, moving: bool = False) -> None:
        super().__init__(reason)
        self.moving = moving


def _encode(header: dict[str, Any], payload: bytes = b"null") -> bytes:
    return orjson.dumps(header) + b"\n" + payload


def _decode(message: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, payload = message.partition(b"\n")
    header = orjson.loads(head)
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    return header, payload


class RemoteLink:
    """An agent connection held by another replica, as the call path sees a local one."""

    __slots__ = ("_bus", "agent", "replica")

    def __init__(self, bus: CallBus, replica: str, agent: str) -> None:
        self._bus = bus
        self.replica = replica
        self.agent = agent

    async def start_call(
        self,
        operation: str,
        args: JSONValue,
        deadline_ms: int,
        idempotency_key: str | None,
        request_id: str | None,
    ) -> tuple[int, asyncio.Future[Result | Error]]:
        return await self._bus.forward(
            self.replica, self.agent, operation, args, deadline_ms, idempotency_key, request_id
        )

    async def cancel(self, call_id: int, reason: str) -> None:
        await self._bus.cancel(self.replica, call_id, reason)


class CallBus:
    """This replica's end of the pub/sub channels: forwards calls, serves forwarded ones."""

    def __init__(
        self,
        redis: Redis,
        subscriber: Redis,
        *,
        prefix: str,
        replica_id: str,
        hub: Hub,
        on_job: Callable[[str], None],
    ) -> None:
        self._redis = redis
        self._subscriber = subscriber
        self._prefix = prefix
        self._replica_id = replica_id
        self._hub = hub
        self._on_job = on_job
        self._inbox = self.inbox(replica_id)
        self._broadcast = f"{prefix}:broadcast"
        self._uids = itertools.count(1)
        self._waiting: dict[int, tuple[str, asyncio.Future[Result | Error]]] = {}
        self._serving: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def inbox(self, replica: str) -> str:
        return f"{self._prefix}:inbox:{replica}"

    def link(self, replica: str, agent: str) -> RemoteLink:
        return RemoteLink(self, replica, agent)

    # Life cycle

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="cluster-bus")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._serving.values()):
            task.cancel()
        self._fail_waiting(lambda _: True, "this relay is shutting down")

    # The caller's side

    async def forward(
        self,
        replica: str,
        agent: str,
        operation: str,
        args: JSONValue,
        deadline_ms: int,
        idempotency_key: str | None,
        request_id: str | None,
    ) -> tuple[int, asyncio.Future[Result | Error]]:
        if not self.subscribed.is_set():
            # The answer would come back on our inbox, which nobody reads right now.
            raise NotDelivered("this replica is reconnecting to Redis")
        uid = next(self._uids)
        future: asyncio.Future[Result | Error] = asyncio.get_running_loop().create_future()
        header = {
            "k": "call",
            "from": self._replica_id,
            "uid": uid,
            "agent": agent,
            "op": operation,
            "deadline_ms": deadline_ms,
            "key": idempotency_key,
            "req": request_id,
        }
        self._waiting[uid] = (replica, future)
        try:
            receivers = await self._redis.publish(
                self.inbox(replica), _encode(header, orjson.dumps(args))
            )
        except (RedisError, OSError) as exc:
            self._waiting.pop(uid, None)
            raise NotDelivered(f"Redis unreachable ({type(exc).__name__})") from exc
        if not receivers:
            self._waiting.pop(uid, None)
            raise NotDelivered(f"replica {replica} is gone")
        return uid, future

    async def cancel(self, replica: str, uid: int, reason: str) -> None:
        self._waiting.pop(uid, None)
        header = {"k": "cancel", "from": self._replica_id, "uid": uid, "reason": reason}
        with contextlib.suppress(RedisError, OSError):  # the call ends at its deadline anyway
            await self._redis.publish(self.inbox(replica), _encode(header))

    def replicas_alive(self, live: frozenset[str]) -> None:
        """Calls waiting on a replica that died will never be answered: fail them now."""
        self._fail_waiting(
            lambda replica: replica not in live,
            "the relay replica holding the agent connection stopped",
        )

    def _fail_waiting(self, dead: Callable[[str], bool], reason: str) -> None:
        for uid, (replica, future) in list(self._waiting.items()):
            if dead(replica):
                del self._waiting[uid]
                if not future.done():
                    future.set_exception(LinkClosed(reason))

    # Broadcasts

    async def announce_job(self, agent: str) -> None:
        await self._publish_broadcast({"k": "job", "agent": agent})

    async def announce_replacement(
        self, agent: str, instance_id: str, slot: int, session: str
    ) -> None:
        await self._publish_broadcast(
            {
                "k": "replaced",
                "agent": agent,
                "instance": instance_id,
                "slot": slot,
                "session": session,
            }
        )

    async def announce_disconnect(self, agent: str, session: str) -> None:
        await self._publish_broadcast({"k": "disconnect", "agent": agent, "session": session})

    async def announce_revoked(self, agent: str, token: str | None) -> None:
        """`token` None: the agent itself was revoked, with all its tokens."""
        await self._publish_broadcast({"k": "revoked", "agent": agent, "token": token})

    async def _publish_broadcast(self, header: dict[str, Any]) -> None:
        try:
            await self._redis.publish(self._broadcast, _encode(header))
        except (RedisError, OSError) as exc:
            log.warning("could not tell the other replicas (%s)", type(exc).__name__)

    # Listening

    async def _listen(self) -> None:
        delays = backoff(base=0.2, cap=1.0)
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._inbox, self._broadcast)
                self.subscribed.set()
                delays = backoff(base=0.2, cap=1.0)
                await self._read(pubsub)
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                # Answers published while we were away are gone: the calls waiting for them
                # may have run, so they end as lost (an unknown outcome for a write).
                self._fail_waiting(lambda _: True, "the relay lost its link to Redis")
                log.warning("cluster bus lost (%s); subscribing again", type(exc).__name__)
                await asyncio.sleep(next(delays))
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            try:
                header, payload = _decode(message["data"])
                self._dispatch(header, payload)
            except Exception:
                log.exception("bad message on the cluster bus")

    def _dispatch(self, header: dict[str, Any], payload: bytes) -> None:
        kind = header.get("k")
        if kind == "call":
            key = (str(header["from"]), int(header["uid"]))
            task = asyncio.create_task(self._serve(key, header, payload))
            self._serving[key] = task
        elif kind == "cancel":
            serving = self._serving.get((str(header["from"]), int(header["uid"])))
            if serving is not None:
                serving.cancel()
        elif kind in ("result", "error", "lost", "gone"):
            self._answered(kind, header, payload)
        elif kind == "job":
            self._on_job(str(header["agent"]))
        elif kind == "replaced":
            self._hub.replace(
                str(header["agent"]),
                str(header["instance"]),
                int(header["slot"]),
                str(header["session"]),
            )
        elif kind == "disconnect":
            self._hub.disconnect(str(header["agent"]), str(header["session"]))
        elif kind == "revoked":
            token = header.get("token")
            self._hub.revoke(str(header["agent"]), None if token is None else str(token))

    def _answered(self, kind: str, header: dict[str, Any], payload: bytes) -> None:
        entry = self._waiting.pop(int(header["uid"]), None)
        if entry is None or entry[1].done():
            return  # timed out or cancelled meanwhile
        future = entry[1]
        if kind == "result":
            # Passed on as the raw JSON it arrived as: the caller only writes it out again.
            future.set_result(
                Result(0, orjson.Fragment(payload), header["agent_ms"], header["erp_ms"])
            )
        elif kind == "error":
            future.set_result(
                Error(
                    0,
                    header["code"],
                    header["message"],
                    bool(header.get("retryable")),
                    orjson.loads(payload),
                    header["agent_ms"],
                    header["erp_ms"],
                )
            )
        elif kind == "gone":
            reason = str(header.get("reason", "agent not connected"))
            future.set_exception(NotDelivered(reason, moving=bool(header.get("moving"))))
        else:
            future.set_exception(LinkClosed(str(header.get("reason", "connection lost"))))

    # The holder's side

    async def _serve(self, key: tuple[str, int], header: dict[str, Any], args: bytes) -> None:
        origin, uid = key
        reply: dict[str, Any] = {"uid": uid}
        payload = b"null"
        try:
            reply, payload = await self._run(header, args, reply)
        except asyncio.CancelledError:
            return  # the caller cancelled: it waits for nothing
        finally:
            self._serving.pop(key, None)
        try:
            await self._redis.publish(self.inbox(origin), _encode(reply, payload))
        except (RedisError, OSError) as exc:
            log.warning("could not return a forwarded call's answer (%s)", type(exc).__name__)

    async def _run(
        self, header: dict[str, Any], args: bytes, reply: dict[str, Any]
    ) -> tuple[dict[str, Any], bytes]:
        agent, operation = str(header["agent"]), str(header["op"])
        deadline_ms = int(header["deadline_ms"])
        while True:
            link = self._hub.pick(agent, operation)
            if link is None:
                return self._not_here(agent, operation, reply), b"null"
            try:
                call_id, future = await link.start_call(
                    operation,
                    orjson.Fragment(args),
                    deadline_ms,
                    header.get("key"),
                    header.get("req"),
                )
                break
            except LinkClosed as exc:
                # The socket failed as the frame went out (the agent was closing it: a link
                # leaving to be placed on another replica, a dying one). The link is closed
                # now, so the next pick skips it: a read tries this replica's other
                # connections, as a call entering here would. A write's outcome is unknown,
                # as on the local path (relay.api.calls); the caller retries with its key.
                operation_spec = CATALOGUE.get(operation)
                if operation_spec is None or operation_spec.writes:
                    return reply | {"k": "lost", "reason": str(exc)}, b"null"
        try:
            async with asyncio.timeout(max(deadline_ms / 1000 - time.time(), 0) + _GRACE_S):
                frame = await future
        except LinkClosed as exc:
            return reply | {"k": "lost", "reason": str(exc)}, b"null"
        except (TimeoutError, asyncio.CancelledError):
            await link.cancel(call_id, "the caller stopped waiting")
            raise asyncio.CancelledError from None
        timing = {"agent_ms": frame.agent_ms, "erp_ms": frame.erp_ms}
        if isinstance(frame, Result):
            return reply | {"k": "result"} | timing, orjson.dumps(frame.value)
        error = {"k": "error", "code": frame.code, "message": frame.message}
        return reply | error | {"retryable": frame.retryable} | timing, orjson.dumps(frame.details)

    def _not_here(self, agent: str, operation: str, reply: dict[str, Any]) -> dict[str, Any]:
        """The answer when no connection here takes the call: the agent's connector lacks the
        operation or its site refuses it, or the agent is not (or no longer) connected here."""
        if self._hub.is_online(agent):
            code, message = refusal(self._hub, agent, operation)
            return reply | {
                "k": "error",
                "code": code.value,
                "message": message,
                "agent_ms": 0.0,
                "erp_ms": 0.0,
            }
        gone = {"k": "gone", "reason": f"agent {agent!r} is not connected"}
        return reply | gone | {"moving": self._hub.is_moving(agent)}
