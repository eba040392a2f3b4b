"""The agent as a Windows service: ``erp-agent service install|uninstall|start|stop|status``.

Two layers. `AgentRunner` is the service's body and has nothing Windows in it: it loads the
config, sends the log to a rotated file (a service has no console), runs the agent's
`Supervisor` on a thread of its own with its own event loop, and stops it when asked within a
bounded time, answering with an exit status. The Service Control Manager calls SvcDoRun and
SvcStop on two different threads and waits a limited time for a stop; an ERP call stuck in an
ODBC driver must not turn a stop into "the service did not respond", so the wait is bounded and
the agent's thread is a daemon that dies with the process. tests/service/ runs it on Linux
against a real relay.

The rest is thin pywin32 glue, imported only on Windows (pywin32 is installed only there): a
``ServiceFramework`` subclass whose SvcDoRun/SvcStop call the runner, and the install, start,
stop, status and uninstall calls to the SCM. The service runs ``python.exe -m agent service run
--config …`` under its own account, the virtual account ``NT SERVICE\\ErpRelayAgent`` unless a
domain account is named; it starts automatically (delayed) and the SCM restarts it after a
failure. Not tested here: docs/agent-install.md has the checklist for a real Windows machine.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from agent.connectors.base import Connector
from agent.settings import AgentSettings, load_settings
from agent.supervisor import Supervisor

log = logging.getLogger("agent.service")

SERVICE_NAME = "ErpRelayAgent"
DISPLAY_NAME = "ERP Relay agent"
DESCRIPTION = "Connects this site's ERP to the ERP Relay cloud service (outbound HTTPS only)."
VIRTUAL_ACCOUNT = rf"NT SERVICE\{SERVICE_NAME}"
"""A virtual service account: Windows manages its password, it can be granted file rights by
that name once the service exists, and on the network it acts as the computer's account."""

STOP_TIMEOUT_S = 25.0
"""How long a stop may take (the drain of calls in flight, the ERP sessions closing) before the
service reports stopped anyway; the stop-pending wait hint the SCM gets is a little longer."""
RESTART_DELAYS_S = (5, 15, 60)
"""The SCM's recovery actions: restart after a failure, after 5 s, then 15 s, then every 60 s."""
RESET_FAILURES_AFTER_S = 24 * 3600
"""A day without failure and the next one starts the recovery delays from the first again."""

SYSTEMD_HINT = (
    "Windows services exist only on Windows; on Linux run the agent with the systemd unit "
    "deploy/agent/erp-agent.service (docs/agent-install.md)"
)


class ServiceError(Exception):
    """A service command could not be done; the message says why and what to do."""


class Exit(enum.IntEnum):
    """How the agent's run ended: the service's exit status."""

    STOPPED = 0
    """Stopped when asked, everything closed: not a failure, no restart."""
    FAILED = 1
    """Ended by itself on an error: the SCM's recovery restarts it."""
    STOP_TIMEOUT = 2
    """Asked to stop and still busy after `STOP_TIMEOUT_S`; the process exits regardless."""


def program_data(environ: Mapping[str, str] = os.environ) -> Path:
    """``%PROGRAMDATA%\\ErpRelay``: the config, journal and logs of a machine-wide install."""
    base = environ.get("PROGRAMDATA") or environ.get("ALLUSERSPROFILE") or r"C:\ProgramData"
    return Path(base) / "ErpRelay"


def default_config_file() -> Path:
    return program_data() / "agent.toml"


def default_log_file() -> Path:
    return program_data() / "logs" / "agent.log"


def service_command_line(python: str, config: Path) -> str:
    """The command the SCM runs: quoted the way Windows splits a command line, so that
    ``C:\\Program Files\\…`` paths stay whole."""
    return subprocess.list2cmdline(
        [python, "-m", "agent", "service", "run", "--config", str(config)]
    )


class AgentRunner:
    """The agent on a thread of its own, started by `run` and stopped by `stop` from another.

    `run` blocks, as SvcDoRun must, until the agent ends by itself or `stop` is called, and
    then at most `stop_timeout_s` more. `stop` may come at any moment, even before `run`: a
    stop the SCM sends while the config is still being read is not lost.
    """

    def __init__(
        self,
        config: Path,
        *,
        console: bool = False,
        default_log_file: Path | None = None,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.console = console
        self.default_log_file = default_log_file
        self.stop_timeout_s = stop_timeout_s
        self.supervisor: Supervisor | None = None
        """Set once the agent is up (tests and the status read its connection state)."""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._wake = threading.Event()
        """Set when a stop is asked or the agent's thread ends, whichever comes first."""
        self._done = threading.Event()
        self._error: Exception | None = None

    def run(self) -> Exit:
        """Load the config and run the agent until stopped; ValueError or OSError if the
        config, the connector or the log file cannot be set up (nothing has started then)."""
        from agent.cli import build_connector  # cli imports this module lazily, and vice versa
        from agent.logs import configure_logging

        settings = load_settings(self.config)
        configure_logging(settings, console=self.console, default_file=self.default_log_file)
        connector = build_connector(settings)
        thread = threading.Thread(
            target=self._main, args=(settings, connector), name="erp-agent", daemon=True
        )
        thread.start()
        self._wake.wait()
        if not self._done.wait(self.stop_timeout_s):
            log.error(
                "the agent did not stop within %s s; exiting with calls still open",
                self.stop_timeout_s,
            )
            return Exit.STOP_TIMEOUT
        if self._error is None and self._stopping:
            log.info("the agent stopped")
            return Exit.STOPPED
        return Exit.FAILED

    def stop(self) -> None:
        """Ask the agent to stop (from any thread); `run` returns once it has, or in time."""
        with self._lock:
            self._stopping = True
            if self._loop is not None and self.supervisor is not None:
                self._loop.call_soon_threadsafe(self.supervisor.stop)
        self._wake.set()

    def _main(self, settings: AgentSettings, connector: Connector) -> None:
        try:
            asyncio.run(self._serve(settings, connector))
            if not self._stopping:
                log.error("the agent ended without being asked to stop")
        except Exception as exc:
            self._error = exc
            log.critical("the agent stopped on an error", exc_info=exc)
        finally:
            self._done.set()
            self._wake.set()

    async def _serve(self, settings: AgentSettings, connector: Connector) -> None:
        from agent.logs import configure_logging

        def relog(new: AgentSettings) -> None:
            configure_logging(new, console=self.console, default_file=self.default_log_file)

        # the config file is watched and reloaded as under `erp-agent run` (no SIGHUP here)
        supervisor = Supervisor(settings, connector, config_path=self.config, relog=relog)
        with self._lock:
            self.supervisor = supervisor
            self._loop = asyncio.get_running_loop()
            if self._stopping:
                supervisor.stop()
        try:
            await supervisor.run()
        finally:
            with self._lock:
                self._loop = None


@dataclass(frozen=True)
class ServiceState:
    """What `erp-agent service status` prints."""

    state: str
    pid: int
    command: str
    account: str
    start: str

    def lines(self) -> list[str]:
        return [
            f"service   {SERVICE_NAME} ({DISPLAY_NAME})",
            f"state     {self.state}" + (f" (pid {self.pid})" if self.pid else ""),
            f"start     {self.start}",
            f"account   {self.account}",
            f"command   {self.command}",
        ]


def _check_interpreter() -> None:
    # A virtual environment's python.exe on Windows is a launcher that starts the real
    # interpreter as a child process; the SCM expects the process it started to answer it.
    if sys.prefix != sys.base_prefix:
        raise ServiceError(
            f"the agent is installed in a virtual environment ({sys.prefix}); the service needs "
            "a Python of its own (docs/agent-install.md, 'Install the agent')"
        )


def _read_password(path: Path) -> str:
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ServiceError(f"cannot read the password file {path}: {exc}") from exc
    if not password:
        raise ServiceError(f"the password file {path} is empty")
    return password


def install(config: Path, account: str | None, password_file: Path | None) -> str:
    """Create the service; returns the command line it runs."""
    if sys.platform != "win32":  # before anything else: the message that matters on Linux
        raise ServiceError(SYSTEMD_HINT)
    _check_interpreter()
    if password_file is not None and account is None:
        raise ServiceError("--password-file goes with --account (a domain or local account)")
    if account is not None and password_file is None:
        raise ServiceError(f"--account {account} needs --password-file")
    config = config.resolve()
    if not config.is_file():
        raise ServiceError(f"config file {config} does not exist")
    password = _read_password(password_file) if password_file is not None else None
    command = service_command_line(sys.executable, config)
    if sys.platform == "win32":
        _win_install(command, account or VIRTUAL_ACCOUNT, password)
    return command


def uninstall() -> None:
    if sys.platform == "win32":
        _win_uninstall()
    else:
        raise ServiceError(SYSTEMD_HINT)


def start() -> None:
    if sys.platform == "win32":
        _win_start()
    else:
        raise ServiceError(SYSTEMD_HINT)


def stop() -> None:
    if sys.platform == "win32":
        _win_stop()
    else:
        raise ServiceError(SYSTEMD_HINT)


def status() -> ServiceState:
    if sys.platform == "win32":
        return _win_status()
    raise ServiceError(SYSTEMD_HINT)


def run(config: Path) -> None:
    """Host the service in this process (the command line the SCM runs)."""
    if sys.platform == "win32":
        _win_run(config)
    else:
        raise ServiceError(SYSTEMD_HINT)


# pywin32 glue. mypy checks only the branch of the platform it runs on, and pywin32 exists only
# on Windows; everything below calls the SCM and is tested on a Windows machine (the checklist in
# docs/agent-install.md).
if sys.platform == "win32":
    import pywintypes
    import servicemanager
    import win32evtlogutil
    import win32security
    import win32service
    import win32serviceutil
    import winerror

    _STATES = {
        win32service.SERVICE_STOPPED: "stopped",
        win32service.SERVICE_START_PENDING: "starting",
        win32service.SERVICE_STOP_PENDING: "stopping",
        win32service.SERVICE_RUNNING: "running",
    }
    _START_TYPES = {
        win32service.SERVICE_AUTO_START: "automatic",
        win32service.SERVICE_DEMAND_START: "manual",
        win32service.SERVICE_DISABLED: "disabled",
    }

    class _Service(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION
        config: ClassVar[Path]

        def __init__(self, args: list[str]) -> None:
            super().__init__(args)
            self.runner = AgentRunner(self.config, default_log_file=default_log_file())

        def SvcDoRun(self) -> None:  # noqa: N802 - pywin32's name
            try:
                code = self.runner.run()
            except (ValueError, OSError) as exc:
                servicemanager.LogErrorMsg(f"{DISPLAY_NAME} cannot start: {exc}")
                raise
            if code is not Exit.STOPPED:
                # raising makes the SCM see a failure, which its recovery actions restart
                servicemanager.LogErrorMsg(f"{DISPLAY_NAME} ended: {code.name.lower()}")
                raise ServiceError(code.name)

        def SvcStop(self) -> None:  # noqa: N802 - pywin32's name
            self.ReportServiceStatus(
                win32service.SERVICE_STOP_PENDING, waitHint=int((STOP_TIMEOUT_S + 5) * 1000)
            )
            self.runner.stop()

        SvcShutdown = SvcStop

    def _scm() -> object:
        return win32service.OpenSCManager(None, None, win32service.SC_MANAGER_ALL_ACCESS)

    def _win_install(command: str, account: str, password: str | None) -> None:
        scm = _scm()
        try:
            try:
                handle = win32service.CreateService(
                    scm,
                    SERVICE_NAME,
                    DISPLAY_NAME,
                    win32service.SERVICE_ALL_ACCESS,
                    win32service.SERVICE_WIN32_OWN_PROCESS,
                    win32service.SERVICE_AUTO_START,
                    win32service.SERVICE_ERROR_NORMAL,
                    command,
                    None,
                    0,
                    None,
                    account,
                    password,
                )
            except pywintypes.error as exc:
                if exc.winerror == winerror.ERROR_SERVICE_EXISTS:
                    raise ServiceError(
                        f"service {SERVICE_NAME} already exists: `erp-agent service uninstall` "
                        "first to change it"
                    ) from exc
                raise ServiceError(f"cannot create the service: {exc.strerror}") from exc
            try:
                config2 = win32service.ChangeServiceConfig2
                config2(handle, win32service.SERVICE_CONFIG_DESCRIPTION, DESCRIPTION)
                config2(handle, win32service.SERVICE_CONFIG_DELAYED_AUTO_START_INFO, True)
                config2(
                    handle,
                    win32service.SERVICE_CONFIG_SERVICE_SID_INFO,
                    win32service.SERVICE_SID_TYPE_UNRESTRICTED,
                )
                config2(
                    handle,
                    win32service.SERVICE_CONFIG_FAILURE_ACTIONS,
                    {
                        "ResetPeriod": RESET_FAILURES_AFTER_S,
                        "RebootMsg": None,
                        "Command": None,
                        "Actions": [
                            (win32service.SC_ACTION_RESTART, delay * 1000)
                            for delay in RESTART_DELAYS_S
                        ],
                    },
                )
                # a stop with an error status counts as a failure too, not only a crash
                config2(handle, win32service.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, True)
            finally:
                win32service.CloseServiceHandle(handle)
        finally:
            win32service.CloseServiceHandle(scm)
        if password is not None:
            _grant_service_logon(account)
        win32evtlogutil.AddSourceToRegistry(SERVICE_NAME, servicemanager.__file__)

    def _grant_service_logon(account: str) -> None:
        """CreateService does not give an account the right to log on as a service (the
        Services console does); virtual accounts have it already."""
        policy = win32security.LsaOpenPolicy(None, win32security.POLICY_ALL_ACCESS)
        try:
            sid = win32security.LookupAccountName(None, account)[0]
            win32security.LsaAddAccountRights(policy, sid, ["SeServiceLogonRight"])
        finally:
            win32security.LsaClose(policy)

    def _win_uninstall() -> None:
        if _win_status().state != "stopped":
            _win_stop()
        try:
            win32serviceutil.RemoveService(SERVICE_NAME)
        except pywintypes.error as exc:
            raise ServiceError(f"cannot remove the service: {exc.strerror}") from exc

    def _win_start() -> None:
        try:
            win32serviceutil.StartService(SERVICE_NAME)
            win32serviceutil.WaitForServiceStatus(
                SERVICE_NAME, win32service.SERVICE_RUNNING, waitSecs=60
            )
        except pywintypes.error as exc:
            raise ServiceError(
                f"cannot start the service: {exc.strerror}; see {default_log_file()} and the "
                "Application event log"
            ) from exc

    def _win_stop() -> None:
        try:
            win32serviceutil.StopService(SERVICE_NAME)
            win32serviceutil.WaitForServiceStatus(
                SERVICE_NAME, win32service.SERVICE_STOPPED, waitSecs=int(STOP_TIMEOUT_S) + 10
            )
        except pywintypes.error as exc:
            raise ServiceError(f"cannot stop the service: {exc.strerror}") from exc

    def _win_status() -> ServiceState:
        scm = _scm()
        try:
            try:
                handle = win32service.OpenService(
                    scm,
                    SERVICE_NAME,
                    win32service.SERVICE_QUERY_CONFIG | win32service.SERVICE_QUERY_STATUS,
                )
            except pywintypes.error as exc:
                raise ServiceError(
                    f"service {SERVICE_NAME} is not installed: {exc.strerror}"
                ) from exc
            try:
                state = win32service.QueryServiceStatusEx(handle)
                config = win32service.QueryServiceConfig(handle)
            finally:
                win32service.CloseServiceHandle(handle)
        finally:
            win32service.CloseServiceHandle(scm)
        return ServiceState(
            state=_STATES.get(state["CurrentState"], str(state["CurrentState"])),
            pid=int(state["ProcessId"]),
            command=config[3],
            account=config[7],
            start=_START_TYPES.get(config[1], str(config[1])),
        )

    def _win_run(config: Path) -> None:
        _Service.config = config
        servicemanager.Initialize()
        servicemanager.PrepareToHostSingle(_Service)
        servicemanager.StartServiceCtrlDispatcher()
