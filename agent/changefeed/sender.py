"""Sending the outbox to the relay: one connection at a time, in order, a bounded window.

Every link, once welcomed, hands its connection to `Sender.serve`; the open connection with the
lowest slot sends (so the choice is the same whichever link connected first), the others wait
to take over. The sending one sends the outbox's events in ``seq`` order, at most ``window``
without an ack; each `Ack` frees a place and its event is deleted from the outbox. When the
sending connection ends (or one with a lower slot opens), the next one starts again from the
oldest event not acknowledged: the relay stores each (stream, seq) once, so a repeat costs one
frame and loses nothing.

An event the relay took but did not acknowledge (its intake was full, its database down for
longer than it retries) would hold a place in the window for good, so when no ack or new event
has come for `resend_after_s` the sending connection starts again from the oldest event not
acknowledged. A relay that never acks (one older than the change feed) gets ``window`` events
that often and nothing more; the rest waits in the outbox (`agent.changefeed.poller` caps it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from agent.changefeed.outbox import Outbox, OutboxUnavailable
from protocol.frames import CHANGE_EVENT, Ack
from protocol.session import AgentSession

log = logging.getLogger("agent.changefeed")


@dataclass(eq=False)
class _Channel:
    slot: int
    ws: ClientConnection
    session: AgentSession


RESEND_AFTER_S = 30.0


class Sender:
    def __init__(self, outbox: Outbox, window: int, resend_after_s: float = RESEND_AFTER_S) -> None:
        self._outbox = outbox
        self._window = window
        self._resend_after_s = resend_after_s
        self._channels: dict[int, _Channel] = {}
        self._sending: _Channel | None = None
        """The channel the in-flight events below were sent on."""
        self._in_flight: set[int] = set()
        self._cursor = 0
        """The highest seq sent on `_sending`."""
        self._highest_sent = 0
        """The highest seq sent in this process: an ack above it is for no event of ours."""
        self._acked: set[int] = set()
        """Acknowledged, not deleted from the outbox yet."""
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """Something to do: new events, an ack, a channel opened or closed."""
        self._changed.set()
        self._changed = asyncio.Event()

    def acked(self, ack: Ack) -> None:
        """The relay stored event ``ack.seq``; acks for other streams or seqs never sent (by
        this process) are ignored."""
        if ack.stream != self._outbox.stream or not 0 < ack.seq <= self._highest_sent:
            log.debug("ignoring an ack for an unknown event", extra={"seq": ack.seq})
            return
        self._in_flight.discard(ack.seq)
        self._acked.add(ack.seq)
        self.notify()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def serve(self, ws: ClientConnection, session: AgentSession, slot: int) -> None:
        """Send over this connection while it is the chosen one, until it closes."""
        channel = _Channel(slot, ws, session)
        self._channels[slot] = channel
        self.notify()
        try:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    changed = self._changed
                    try:
                        await self._forget_acked()
                        sent = await self._send_some(channel)
                    except OutboxUnavailable as exc:
                        log.warning("%s", exc)  # the poller reopens it and says so
                        sent = False
                    if not sent:
                        await self._wait(changed, channel)
        finally:
            if self._channels.get(slot) is channel:
                del self._channels[slot]
            if self._sending is channel:
                self._sending = None
            self.notify()

    async def _wait(self, changed: asyncio.Event, channel: _Channel) -> None:
        """Until something changes; events unacknowledged for too long are sent again."""
        waiting_for_acks = self._sending is channel and bool(self._in_flight)
        try:
            async with asyncio.timeout(self._resend_after_s if waiting_for_acks else None):
                await changed.wait()
        except TimeoutError:
            if self._sending is channel and self._in_flight:
                log.warning(
                    "the relay acknowledged none of %d change events; sending them again",
                    len(self._in_flight),
                )
                self._cursor = 0
                self._in_flight.clear()

    async def _forget_acked(self) -> None:
        if not self._acked:
            return
        seqs = set(self._acked)
        await asyncio.to_thread(self._outbox.forget, seqs)
        self._acked -= seqs

    async def _send_some(self, channel: _Channel) -> bool:
        """Send what the window allows if ``channel`` is the chosen one; False: nothing sent."""
        if not self._outbox.stream:
            return False  # not open yet: the poller opens it and notifies
        if not self._channels or self._channels[min(self._channels)] is not channel:
            return False
        if self._sending is not channel:  # a new connection: everything unacked again
            self._sending, self._cursor = channel, 0
            self._in_flight.clear()
        room = self._window - len(self._in_flight)
        if room <= 0:
            return False
        batch = await asyncio.to_thread(self._outbox.pending, self._cursor, room)
        if self._sending is not channel:
            return True  # it changed while reading: start over
        sent = False
        for event in batch:
            self._cursor = event.seq
            if event.seq in self._acked:
                continue
            data = channel.session.event(
                CHANGE_EVENT, orjson.Fragment(event.data), event.seq, self._outbox.stream
            )
            self._in_flight.add(event.seq)
            self._highest_sent = max(self._highest_sent, event.seq)
            await channel.ws.send(data)
            sent = True
        return sent or bool(batch)
