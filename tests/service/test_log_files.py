"""The agent's log file: rotated by size, nothing lost in the live file, redacted as stderr is.

Each case runs in a process of its own, which sets up logging exactly as the agent does
(`agent.logs.configure_logging`) and writes numbered lines through it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

LINES = 400
MAX_BYTES = 8192
PHONE = "+48 601 234 567"
TOKEN = "erpa_abcdef123456_" + "Q" * 40  # prefix, 12-character public id, secret

WRITER = """
import logging, sys
from pathlib import Path
from agent.logs import configure_logging
from agent.settings import AgentSettings
log_file, backups, lines = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
settings = AgentSettings(
    log_file=log_file, log_file_max_bytes={max_bytes}, log_file_backups=backups,
    log_format="json",
)
assert configure_logging(settings, console=False) == log_file
log = logging.getLogger("agent")
for n in range(lines):
    log.info("line %05d from a customer at {phone} with token {token}", n)
"""


def write_lines(log_file: Path, backups: int) -> None:
    script = WRITER.format(max_bytes=MAX_BYTES, phone=PHONE, token=TOKEN)
    done = subprocess.run(
        [sys.executable, "-c", script, str(log_file), str(backups), str(LINES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # console=False: nothing on stderr


def numbers(path: Path) -> list[int]:
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        message = orjson.loads(line)["msg"]
        assert message.startswith("line ")
        found.append(int(message.split()[1]))
    return found


def files_oldest_first(log_file: Path) -> list[Path]:
    backups = sorted(log_file.parent.glob(log_file.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [*backups, log_file]


def test_rotation_keeps_every_line_once_in_order_across_the_files(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "agent.log"  # the folder is created
    write_lines(log_file, backups=50)
    files = files_oldest_first(log_file)
    assert len(files) > 3  # it did rotate, several times
    assert all(path.stat().st_size <= MAX_BYTES for path in files)
    seen = [n for path in files for n in numbers(path)]
    assert seen == list(range(LINES))  # nothing lost or repeated, the newest in agent.log
    assert numbers(log_file)[-1] == LINES - 1


def test_rotation_keeps_only_the_configured_backups_newest_whole(tmp_path: Path) -> None:
    log_file = tmp_path / "agent.log"
    write_lines(log_file, backups=2)
    files = files_oldest_first(log_file)
    assert [path.name for path in files] == ["agent.log.2", "agent.log.1", "agent.log"]
    seen = [n for path in files for n in numbers(path)]
    # the oldest lines went with the deleted files; what is kept is the newest, contiguous
    assert seen == list(range(LINES - len(seen), LINES))


def test_the_log_file_is_redacted_like_stderr(tmp_path: Path) -> None:
    log_file = tmp_path / "agent.log"
    write_lines(log_file, backups=1)
    text = "".join(path.read_text(encoding="utf-8") for path in files_oldest_first(log_file))
    assert PHONE not in text
    assert "601 234 567" not in text
    assert "Q" * 40 not in text
    assert "erpa_abcdef123456_[redacted]" in text
