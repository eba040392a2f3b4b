"""What the running agent tells the office admin about itself: the status snapshot.

The agent writes the snapshot to a JSON file in its state folder (next to the journal; ``[status]
file``) every couple of seconds and soon after anything changes, by writing a temporary file and
renaming it over the old one, so a reader never sees half a file. ``erp-agent status`` reads it
from another process, possibly as another user, without talking to the agent: a hung agent
still shows its last state, and a stale file or a dead pid says the agent is not running.

The snapshot holds no call arguments, results, tokens or personal data: calls are their time,
operation, outcome code and duration; URLs and error texts pass through `protocol.redaction`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.dispatch import Outcome, Success
from protocol.redaction import redact, redact_secrets

if TYPE_CHECKING:
    from agent.link import LinkStatus

SCHEMA = 1
RECENT = 20
"""Calls and errors kept for the snapshot."""
COALESCE_S = 0.2
"""After a change, how long the writer waits for more before writing: a busy agent answers
hundreds of calls a second, and one file per call would cost more than the calls."""

SnapshotSource = Callable[[bool], dict[str, Any]]
"""Builds the snapshot; the argument says whether the agent is still running."""


@dataclass(frozen=True, slots=True)
class CallNote:
    at: float
    operation: str
    code: str
    """``ok`` or the wire error code."""
    ms: float


@dataclass(frozen=True, slots=True)
class ErrorNote:
    at: float
    source: str
    """Where it happened: ``link 0``, ``config``, ``token``."""
    message: str


@dataclass
class ReloadState:
    """The last configuration reload, for the snapshot."""

    loaded_at: float = field(default_factory=time.time)
    last_attempt_at: float = 0.0
    error: str = ""
    """Why the last reload was refused (the agent runs on the settings it had); "" when it
    was applied."""
    restart_required: tuple[str, ...] = ()
    """Settings changed in the file that apply only after a restart."""


class Activity:
    """What the agent did lately: answered calls and errors, shared by all its links."""

    def __init__(self, keep: int = RECENT) -> None:
        self.calls: deque[CallNote] = deque(maxlen=keep)
        self.errors: deque[ErrorNote] = deque(maxlen=keep)
        self.answered = 0
        self.failed = 0
        self.changed = asyncio.Event()
        """Set on every change; the status writer clears it."""

    def call(self, operation: str, outcome: Outcome, ms: float) -> None:
        self.answered += 1
        if isinstance(outcome, Success):
            code = "ok"
        else:
            self.failed += 1
            code = outcome.code.value
        self.calls.append(CallNote(time.time(), operation, code, round(ms, 1)))
        self.changed.set()

    def error(self, source: str, message: str) -> None:
        self.errors.append(ErrorNote(time.time(), source, redact(message)))
        self.changed.set()


@dataclass(frozen=True, slots=True)
class Identity:
    """What does not change while the process runs."""

    agent_version: str
    instance_id: str
    hostname: str
    config_file: str
    started_at: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)


def snapshot(
    identity: Identity,
    links: tuple[LinkStatus, ...],
    activity: Activity,
    reload: ReloadState,
    *,
    interval_s: float,
    running: bool = True,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The status as JSON-ready values (the file's and the status page's content).

    ``changes`` is the change feed's own part (`agent.changefeed.ChangeFeed.status`), None
    when the feed is off."""
    return {
        "schema": SCHEMA,
        "state": "running" if running else "stopped",
        "written_at": time.time(),
        "interval_s": interval_s,
        **asdict(identity),
        "config": asdict(reload),
        "links": [
            {
                "slot": link.slot,
                "url": redact_secrets(link.url),
                "connected": link.connected,
                "replica": link.replica if link.connected else "",
                "session_id": link.session_id if link.connected else "",
                "connected_since": link.connected_since if link.connected else None,
                "clock_skew_ms": link.clock_skew_ms,
                "clock_warning": link.clock_warning,
                "token_id": link.token_id,
                "last_error": redact(link.last_error),
                "calls": link.calls,
                "connections": link.connections,
            }
            for link in links
        ],
        "counters": {"answered": activity.answered, "failed": activity.failed},
        "changes": changes,
        "calls": [asdict(note) for note in reversed(activity.calls)],
        "errors": [asdict(note) for note in reversed(activity.errors)],
    }


def write(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically: a reader sees the old snapshot or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(temporary, path)


class StatusWriter:
    """Writes the snapshot every ``interval_s``, and soon after `Activity.changed`."""

    def __init__(
        self, path: Path, interval_s: float, activity: Activity, build: SnapshotSource
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self._activity = activity
        self._build = build

    async def run(self) -> None:
        while True:
            self.write()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._activity.changed.wait()
                await asyncio.sleep(COALESCE_S)
            self._activity.changed.clear()

    def write(self, *, running: bool = True) -> None:
        try:
            write(self.path, self._build(running))
        except OSError as exc:
            # Status is for people; an unwritable file must never stop the calls.
            self._activity.error("status", f"cannot write the status file {self.path}: {exc}")


# Reading: `erp-agent status`, in another process.


class NotRunning(Exception):
    """No agent is running that writes this status file; the message says how we know."""


def read(path: Path) -> dict[str, Any]:
    """The last snapshot; raises `NotRunning` when the agent is not running (or never ran)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotRunning(
            f"no status file at {path}: the agent has not run with this config"
        ) from None
    except (OSError, ValueError) as exc:
        raise NotRunning(f"cannot read the status file {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise NotRunning(f"{path} is not a status file of this agent version")
    return data


def why_not_running(data: dict[str, Any], now: float | None = None) -> str | None:
    """Why the snapshot does not describe a running agent (None: it does)."""
    now = time.time() if now is None else now
    if data.get("state") == "stopped":
        return f"the agent stopped at {_when(data.get('written_at'))}"
    pid = int(data.get("pid", 0))
    if pid and not _alive(pid):
        return f"the agent (pid {pid}) is not running; last status {_when(data.get('written_at'))}"
    age = now - float(data.get("written_at", 0))
    stale_after = max(3 * float(data.get("interval_s", 2)), 10.0)
    if age > stale_after:
        return (
            f"the status file was last written {round(age)} s ago (at "
            f"{_when(data.get('written_at'))}): the agent is not running or is stuck"
        )
    return None


def _alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would terminate it there; staleness tells instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # running as another user (the service account)
    return True


def _when(stamp: object) -> str:
    if not isinstance(stamp, int | float) or stamp <= 0:
        return "-"
    return dt.datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def render(data: dict[str, Any], now: float | None = None) -> str:
    """The snapshot as a few lines for a terminal."""
    now = time.time() if now is None else now
    lines = [
        f"erp-agent {data.get('agent_version', '?')} (pid {data.get('pid', '?')}, "
        f"host {data.get('hostname', '?')}), running since {_when(data.get('started_at'))}",
        f"status written {max(round(now - float(data.get('written_at', now))), 0)} s ago",
    ]
    config = data.get("config", {})
    lines.append(
        f"config {data.get('config_file') or '(environment only)'}: "
        f"loaded {_when(config.get('loaded_at'))}"
    )
    if config.get("error"):
        lines.append(
            f"  last reload refused ({_when(config.get('last_attempt_at'))}), still running on "
            f"the previous settings: {config['error']}"
        )
    if config.get("restart_required"):
        lines.append(f"  restart required to apply: {', '.join(config['restart_required'])}")
    for link in data.get("links", []):
        if link.get("connected"):
            where = f"replica {link['replica']}, " if link.get("replica") else ""
            token = f", token {link['token_id']}" if link.get("token_id") else ""
            lines.append(
                f"link {link['slot']}: connected to {link['url']} ({where}session "
                f"{link['session_id']}) since {_when(link.get('connected_since'))}, clock skew "
                f"{link['clock_skew_ms']} ms{token}"
            )
            if link.get("clock_warning"):
                lines.append(f"  WARNING: {link['clock_warning']}")
        else:
            error = link.get("last_error") or "not connected yet"
            lines.append(f"link {link['slot']}: NOT CONNECTED to {link['url']}: {error}")
    counters = data.get("counters", {})
    lines.append(
        f"calls: {counters.get('answered', 0)} answered, {counters.get('failed', 0)} failed"
    )
    changes = data.get("changes")
    if changes:
        lines.append(
            f"change feed: {changes.get('outbox', 0)} events waiting for the relay's ack"
            + (" (outbox full: not polling)" if changes.get("full") else "")
        )
        if changes.get("last_error"):
            lines.append(f"  {changes['last_error']}")
    if data.get("calls"):
        lines.append("last calls:")
        lines.extend(
            f"  {_when(c['at'])}  {c['operation']:<24} {c['code']:<28} {c['ms']} ms"
            for c in data["calls"]
        )
    if data.get("errors"):
        lines.append("last errors:")
        lines.extend(f"  {_when(e['at'])}  {e['source']}: {e['message']}" for e in data["errors"])
    return "\n".join(lines)
