"""The agent run the way deploy/agent/erp-agent.service runs it, against a real relay process.

systemd is not PID 1 here, so the test builds what the unit asks for by hand: the unit's own
ExecStart (its paths moved into a temporary tree), its Environment= and WorkingDirectory=, the
variables systemd sets (STATE_DIRECTORY, HOME, USER…), an unprivileged user that owns only the
state directory, the config and token readable through its group only (0640 root:group), no
capabilities, no new privileges, and a mount namespace in which everything is read-only but
the state directory (ProtectSystem=strict, stricter still: no writable /tmp). Needs root (for
the namespace and the user switch), as CI has; skipped elsewhere, failed under CI=true.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.service.conftest import UNIT, Relay
from tests.service.test_unit_file import CONFIG, INSTALLED_BIN, directives
from tests.support.agent_process import wait_until
from tests.support.required import unavailable

pytestmark = pytest.mark.slow

# In the namespace: the state directory becomes a mount of its own, then every other mount
# (but the kernel's /proc, /sys and /dev) is remounted read-only; then the service's umask.
SANDBOX = """
set -eu
state="$1"; shift
mount --bind "$state" "$state"
findmnt -rno TARGET | while read -r target; do
  case "$target" in
    "$state"|/proc|/proc/*|/sys|/sys/*|/dev|/dev/pts|/dev/mqueue) ;;
    *) mount -o remount,bind,ro "$target" ;;
  esac
done
umask 077
exec "$@"
"""


def free_uid() -> int:
    """A user id no account has, like the one DynamicUser= would pick: it owns nothing else."""
    for uid in range(61184, 65519):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise AssertionError("no free user id")


@dataclass
class Installed:
    """The files of an installation laid out as on a real machine, under ``root``."""

    root: Path
    uid: int

    @property
    def etc(self) -> Path:
        return self.root / "etc" / "erp-agent"

    @property
    def state(self) -> Path:
        return self.root / "var" / "lib" / "erp-agent"

    @property
    def erp(self) -> Path:
        """The demo ERP, in the state directory; a real one is a database server."""
        return self.state / "erp.sqlite"

    def configure(self, relay: Relay) -> None:
        """The config and the token, 0640 root:group, as the install guide has them."""
        secrets = {
            "token": relay.token + "\n",
            "agent.toml": (
                "log_format = 'text'\n"
                "[relay]\n"
                f"url = '{relay.process.ws_url}'\n"
                "allow_insecure = true\n"
                f"token_file = '{self.etc / 'token'}'\n"
                "[reconnect]\nbase_s = 0.2\ncap_s = 1\n"
                "[connector]\ntype = 'demo'\n"
                f"path = '{self.erp}'\nseed = false\n"
            ),
        }
        for name, text in secrets.items():
            path = self.etc / name
            path.write_text(text, encoding="utf-8")
            os.chown(path, 0, self.uid)
            path.chmod(0o640)

    def command(self) -> list[str]:
        unit_command = directives(UNIT.read_text(encoding="utf-8"))["ExecStart"][0]
        moved = unit_command.replace(INSTALLED_BIN, str(Path(sys.executable).parent / "erp-agent"))
        return shlex.split(moved.replace(CONFIG, str(self.etc / "agent.toml")))

    def environment(self) -> dict[str, str]:
        """What systemd gives the unit's process: a clean environment, not the test's."""
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.state),  # erp-agent's home in erp-agent.sysusers.conf
            "USER": "erp-agent",
            "LOGNAME": "erp-agent",
            "SHELL": "/usr/sbin/nologin",
            "STATE_DIRECTORY": str(self.state),
            "INVOCATION_ID": "0" * 32,
        }
        for line in directives(UNIT.read_text(encoding="utf-8")).get("Environment", []):
            for pair in shlex.split(line):
                key, _, value = pair.partition("=")
                env[key] = value
        return env

    def sandboxed(self, command: list[str]) -> list[str]:
        """``command`` as the unit's user, in the read-only namespace."""
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SANDBOX,
            "sandbox",
            str(self.state),
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.uid}",
            "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            *command,
        ]


@pytest.fixture
def installed(erp_path: Path) -> Iterator[Installed]:
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "setpriv")):
        unavailable("running the agent as the unit does needs root, unshare and setpriv")
    # not under pytest's 0700 tmp_path: the service's user must be able to reach its files
    root = Path(tempfile.mkdtemp(prefix="erp-agent-unit-"))
    root.chmod(0o755)
    uid = free_uid()
    tree = Installed(root, uid)
    try:
        tree.etc.mkdir(parents=True)
        tree.state.mkdir(parents=True)
        for folder in (root / "etc", root / "var", root / "var" / "lib"):
            folder.chmod(0o755)
        os.chown(tree.etc, 0, uid)
        tree.etc.chmod(0o750)
        os.chown(tree.state, uid, uid)
        tree.state.chmod(0o700)
        shutil.copy(erp_path, tree.erp)
        os.chown(tree.erp, uid, uid)
        yield tree
    finally:
        shutil.rmtree(root)


def run_sandboxed(tree: Installed, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tree.sandboxed([sys.executable, "-c", code]),
        env=tree.environment(),
        cwd=tree.state,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_only_the_state_directory_is_writable_in_the_sandbox(installed: Installed) -> None:
    """The harness itself: the test below proves something only if this holds."""
    probe = run_sandboxed(
        installed,
        "import os, sys\n"
        "open(os.path.join(os.environ['STATE_DIRECTORY'], 'probe'), 'w').write('x')\n"
        f"for path in ('/tmp/erp-agent-probe', {str(installed.etc / 'probe')!r}):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "    except OSError as exc:\n"
        "        print(path, exc.errno)\n"
        "    else:\n"
        "        sys.exit(f'{path} is writable')\n"
        "print(os.getuid(), os.getgid(), os.getgroups())\n",
    )
    assert probe.returncode == 0, probe.stderr + probe.stdout
    assert (installed.state / "probe").stat().st_uid == installed.uid
    assert f"{installed.uid} {installed.uid} []" in probe.stdout


def test_the_agent_runs_as_the_unit_runs_it_reloads_on_hup_and_stops_with_status_0(
    installed: Installed, relay: Relay
) -> None:
    installed.configure(relay)
    log_path = installed.root.parent / f"{installed.root.name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            installed.sandboxed(installed.command()),
            env=installed.environment(),
            cwd=installed.state,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def agent_log() -> str:
            return log_path.read_text(encoding="utf-8", errors="replace")

        def connected() -> bool:
            assert proc.poll() is None, f"the agent exited:\n{agent_log()}"
            return relay.agent_online()

        wait_until(connected, timeout_s=60, what="the agent to connect")
        assert "connected to the relay" in agent_log()
        # its journal and status file in the state directory, as the service's user
        journal = installed.state / "journal.sqlite"
        assert journal.exists(), sorted(p.name for p in installed.state.iterdir())
        assert journal.stat().st_uid == installed.uid

        proc.send_signal(signal.SIGHUP)  # systemctl reload erp-agent
        wait_until(
            lambda: "config reloaded (SIGHUP)" in agent_log(), timeout_s=30, what="the reload"
        )
        assert proc.poll() is None
        assert relay.agent_online()

        proc.send_signal(signal.SIGTERM)  # systemctl stop erp-agent
        code = proc.wait(30)
        assert code == 0, agent_log()
        wait_until(lambda: not relay.agent_online(), timeout_s=30, what="the relay to see it go")
        text = agent_log()
        assert "Traceback" not in text, text
        assert "Read-only file system" not in text, text
        assert relay.token not in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log_path.unlink(missing_ok=True)
