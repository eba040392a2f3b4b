"""Per-agent call statistics of this replica, for the console: calls, errors and latency.

Every CRM call is counted once, by the replica it entered (`CallStats.record`, from the
``finally`` of `relay.api.calls.handle_call`), in a ring of 60 one-minute buckets per agent.
A bucket holds the number of calls, the number that failed with a server-side code (the
agent, its ERP or the relay failed; not the caller's 4xx mistakes) and a latency histogram
with fixed log-scale bins. Fixed bins make histograms mergeable by adding counts: the
console sums the buckets of every replica (`relay.fleet`) and reads percentiles off the sum,
which averaging per-replica percentiles could not give.

`record` runs on the hot path: a dict lookup and a few integer increments in preallocated
arrays; no lock (one event loop), no I/O, no allocation beyond the float arithmetic. Memory is
bounded by the agents called in the last hour (`encoded` forgets the others) and capped by
`max_agents`.

`encoded` is what a replica publishes every presence renewal, on the event loop too: a past
minute never changes, so its compact form is built once, when the minute ends, and each
renewal only encodes the current minute of each agent. Readers decode only the minutes they
need (`decode_since`): five per agent for the overview, sixty for one agent's chart.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.errors import ErrorCode

MINUTES = 60
"""Minutes of history kept per agent."""
WINDOW_MINUTES = 5
"""The window of the console's rates and percentiles."""
PER_OCTAVE = 4
MIN_MS = 0.25
BINS = 84
"""Bin 0 holds calls up to `MIN_MS`; bin ``i`` holds (MIN_MS·2^((i-1)/4), MIN_MS·2^(i/4)]
milliseconds, about ±9 % around the bin's geometric middle; the last bin (from about 7 min)
is open-ended, beyond the longest call timeout."""

SERVER_SIDE_CODES = frozenset(
    code.value
    for code in (
        ErrorCode.AGENT_OFFLINE,
        ErrorCode.AGENT_BUSY,
        ErrorCode.TIMEOUT,
        ErrorCode.ERP_ERROR,
        ErrorCode.ERP_UNAVAILABLE,
        ErrorCode.INTERNAL_ERROR,
        ErrorCode.JOURNAL_UNAVAILABLE,
    )
)
"""Codes that count as errors: the site or the relay failed, whatever the caller sent."""

NOT_COUNTED = frozenset(
    code.value
    for code in (
        ErrorCode.UNAUTHORIZED,
        ErrorCode.FORBIDDEN,
        ErrorCode.AGENT_NOT_FOUND,
        ErrorCode.UNKNOWN_OPERATION,
        ErrorCode.BAD_REQUEST,
        ErrorCode.INVALID_ARGUMENTS,
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        ErrorCode.IDEMPOTENCY_KEY_REQUIRED,
        ErrorCode.IDEMPOTENCY_KEY_MISMATCH,
        ErrorCode.IDEMPOTENCY_IN_PROGRESS,
    )
)
"""The caller's mistakes, refused before the agent is looked up: not calls to the agent, and
counting them would let a caller grow the statistics with made-up agent names."""

_ZERO_BINS = array("I", bytes(4 * BINS))


def bin_of(ms: float) -> int:
    if ms <= MIN_MS:
        return 0
    return min(int(math.log2(ms / MIN_MS) * PER_OCTAVE) + 1, BINS - 1)


def bin_range(index: int) -> tuple[float, float]:
    """The milliseconds bin ``index`` covers (the last one is closed at twice its start)."""
    if index == 0:
        return 0.0, MIN_MS
    return MIN_MS * 2 ** ((index - 1) / PER_OCTAVE), MIN_MS * 2 ** (index / PER_OCTAVE)


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram, interpolated log-linearly inside its bin;
    None for an empty histogram."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            low, high = bin_range(index)
            fraction = (rank - seen) / count
            if low == 0.0:
                return high * fraction
            return float(low * (high / low) ** fraction)
        seen += count
    return bin_range(len(counts) - 1)[1]


Encoded = list[Any]
"""A `Minute` as replicas publish it: ``[minute, calls, errors, [bin, count, ...]]``."""


@dataclass(slots=True)
class Minute:
    """One minute of one agent's calls (``minute``: Unix time // 60)."""

    minute: int
    calls: int
    errors: int
    counts: list[int]

    def encode(self) -> Encoded:
        """Compact JSON form: the histogram as ``[bin, count, ...]`` of its non-empty bins."""
        sparse: list[int] = []
        for index, count in enumerate(self.counts):
            if count:
                sparse += (index, count)
        return [self.minute, self.calls, self.errors, sparse]

    @classmethod
    def decode(cls, raw: Sequence[Any]) -> Minute:
        minute, calls, errors, sparse = raw
        counts = [0] * BINS
        for index, count in zip(sparse[::2], sparse[1::2], strict=True):
            if 0 <= index < BINS:
                counts[index] += int(count)
        return cls(int(minute), int(calls), int(errors), counts)


def decode_since(encoded: Iterable[Encoded], after_minute: int) -> list[Minute]:
    """The minutes after ``after_minute``, decoded; the others are not even looked into."""
    return [Minute.decode(raw) for raw in encoded if raw[0] > after_minute]


class AgentStats:
    """The ring of minute buckets of one agent, in flat preallocated arrays."""

    __slots__ = ("_past", "_past_until", "calls", "errors", "hist", "minutes")

    def __init__(self) -> None:
        self.minutes = array("q", [-1] * MINUTES)
        self.calls = array("I", bytes(4 * MINUTES))
        self.errors = array("I", bytes(4 * MINUTES))
        self.hist = array("I", bytes(4 * MINUTES * BINS))
        self._past: list[Encoded] = []
        self._past_until = -1
        """`_past` holds the encoded minutes before this one."""

    def add(self, minute: int, ms: float, error: bool) -> None:
        slot = minute % MINUTES
        if self.minutes[slot] != minute:
            self.minutes[slot] = minute
            self.calls[slot] = 0
            self.errors[slot] = 0
            self.hist[slot * BINS : (slot + 1) * BINS] = _ZERO_BINS
        self.calls[slot] += 1
        if error:
            self.errors[slot] += 1
        self.hist[slot * BINS + bin_of(ms)] += 1

    def bucket(self, minute: int) -> Minute | None:
        """The bucket of ``minute``, if the ring still holds it and it saw calls."""
        slot = minute % MINUTES
        if self.minutes[slot] != minute or not self.calls[slot]:
            return None
        return Minute(
            minute,
            self.calls[slot],
            self.errors[slot],
            self.hist[slot * BINS : (slot + 1) * BINS].tolist(),
        )

    def export(self, now_minute: int) -> list[Minute]:
        """The buckets of the last `MINUTES` minutes that saw calls, oldest first."""
        buckets = (self.bucket(m) for m in range(now_minute - MINUTES + 1, now_minute + 1))
        return [bucket for bucket in buckets if bucket is not None]

    def encoded(self, now_minute: int) -> list[Encoded]:
        """`export` in its published form; each past minute is encoded once, when it has
        ended (see the module docstring)."""
        if self._past_until != now_minute:
            first = max(self._past_until, now_minute - MINUTES + 1)
            ended = (self.bucket(m) for m in range(first, now_minute))
            self._past = [raw for raw in self._past if raw[0] > now_minute - MINUTES]
            self._past += [bucket.encode() for bucket in ended if bucket is not None]
            self._past_until = now_minute
        current = self.bucket(now_minute)
        return self._past if current is None else [*self._past, current.encode()]


class CallStats:
    """This replica's statistics of every agent; see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.time, max_agents: int = 10_000) -> None:
        self._clock = clock
        self._max_agents = max_agents
        self._agents: dict[str, AgentStats] = {}
        self.dropped = 0
        """Calls not counted because `max_agents` agents already have statistics."""

    def now_minute(self) -> int:
        return int(self._clock() // 60)

    def record(self, agent: str, code: str | None, duration_ms: float) -> None:
        """Count one finished call (``code`` None: it succeeded)."""
        if code in NOT_COUNTED:
            return
        stats = self._agents.get(agent)
        if stats is None:
            if len(self._agents) >= self._max_agents:
                self.dropped += 1
                return
            stats = self._agents[agent] = AgentStats()
        stats.add(int(self._clock() // 60), duration_ms, code in SERVER_SIDE_CODES)

    def minutes(self, agent: str) -> list[Minute]:
        stats = self._agents.get(agent)
        return [] if stats is None else stats.export(self.now_minute())

    def encoded(self) -> dict[str, list[Encoded]]:
        """Every agent's buckets, published form; agents without a call in the last hour are
        forgotten."""
        now = self.now_minute()
        exported: dict[str, list[Encoded]] = {}
        for agent, stats in list(self._agents.items()):
            minutes = stats.encoded(now)
            if minutes:
                exported[agent] = minutes
            else:
                del self._agents[agent]
        return exported


def merge(parts: Iterable[Iterable[Minute]]) -> list[Minute]:
    """The buckets of several replicas (or sources) added minute by minute, oldest first."""
    merged: dict[int, Minute] = {}
    for part in parts:
        for minute in part:
            into = merged.get(minute.minute)
            if into is None:
                merged[minute.minute] = Minute(
                    minute.minute, minute.calls, minute.errors, list(minute.counts)
                )
                continue
            into.calls += minute.calls
            into.errors += minute.errors
            into.counts = [a + b for a, b in zip(into.counts, minute.counts, strict=True)]
    return [merged[key] for key in sorted(merged)]


@dataclass(frozen=True, slots=True)
class Summary:
    calls: int
    errors: int
    calls_per_min: float
    error_rate: float | None
    p50_ms: float | None
    p99_ms: float | None


def summarize(minutes: Sequence[Minute], now: float) -> Summary:
    """Rates and percentiles of the last `WINDOW_MINUTES` minutes: the current minute (as far
    as it went) and the four before it."""
    current = int(now // 60)
    recent = [m for m in minutes if current - WINDOW_MINUTES < m.minute <= current]
    calls = sum(m.calls for m in recent)
    errors = sum(m.errors for m in recent)
    counts = [sum(column) for column in zip(*(m.counts for m in recent), strict=True)]
    span = WINDOW_MINUTES - 1 + (now - current * 60) / 60
    return Summary(
        calls=calls,
        errors=errors,
        calls_per_min=round(calls / span, 3),
        error_rate=round(errors / calls, 4) if calls else None,
        p50_ms=_rounded(percentile(counts, 0.5)) if counts else None,
        p99_ms=_rounded(percentile(counts, 0.99)) if counts else None,
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def series(minutes: Sequence[Minute], now: float, span: int) -> list[dict[str, Any]]:
    """One point per minute with calls in the last ``span`` minutes, oldest first."""
    current = int(now // 60)
    return [
        {
            "minute": dt.datetime.fromtimestamp(m.minute * 60, dt.UTC),
            "calls": m.calls,
            "errors": m.errors,
            "p50_ms": _rounded(percentile(m.counts, 0.5)),
            "p99_ms": _rounded(percentile(m.counts, 0.99)),
        }
        for m in minutes
        if current - span < m.minute <= current
    ]
