"""The distribution's nginx, run by a test with the shipped site file (deploy/nginx/erp-relay.conf).

The site file is a template (``${NAME}`` placeholders, filled by envsubst in the nginx image);
`render` fills it the same way, and `NginxProcess` wraps it in a minimal main configuration of
the test's own (``daemon off``, pid, logs and temporary files under the test's folder) and runs
the real binary on loopback ports. The main configuration adds only an access log that names
the replica (``$upstream_addr``) of every request, so tests can see where nginx sent them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).parents[2]
SITE_TEMPLATE = ROOT / "deploy" / "nginx" / "erp-relay.conf"
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def find_nginx() -> str | None:
    """The nginx binary: ``ERP_RELAY_TEST_NGINX``, the distribution's, or the one on PATH."""
    configured = os.environ.get("ERP_RELAY_TEST_NGINX")
    if configured:
        return configured
    for candidate in NGINX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("nginx")


def _code(line: str) -> str:
    """A line without its comment (the site file has no ``#`` inside strings)."""
    return line.split("#", 1)[0]


def placeholders(template: str) -> set[str]:
    """The ``${NAME}`` placeholders the template uses outside comments."""
    return {
        match.group(1)
        for line in template.splitlines()
        for match in _PLACEHOLDER.finditer(_code(line))
    }


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill every placeholder as envsubst would; refuse one without a value (envsubst in the
    nginx image would leave it as it is, and nginx would fail on it less clearly)."""
    missing = placeholders(template) - values.keys()
    if missing:
        raise ValueError(f"no value for {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


_MAIN_CONF = """\
# Written by tests/deploy/nginx_process.py around the shipped site file.
{user}worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log info;

events {{
    worker_connections 512;
}}

http {{
    log_format erp_relay_test '$request_method $uri $status upstream=$upstream_addr '
                              'upstream_status=$upstream_status request_id=$request_id';
    access_log {root}/access.log erp_relay_test;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;

    include {site};
}}
"""


@dataclass
class NginxProcess:
    """nginx with the shipped site file rendered with `values`, in its own folder `root`."""

    binary: str
    root: Path
    values: Mapping[str, str]
    listen: tuple[str, int]
    """Where the rendered file makes nginx listen (host, port), to wait for."""
    process: subprocess.Popen[bytes] | None = None
    _output: IO[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        site = self.root / "erp-relay.conf"
        site.write_text(render(SITE_TEMPLATE.read_text(encoding="utf-8"), self.values))
        # Run as root (CI), nginx would hand its workers to `nobody`, who cannot enter the
        # test's private folder; as anyone else the directive does not apply.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf = self.root / "nginx.conf"
        self.conf.write_text(_MAIN_CONF.format(user=user, root=self.root, site=site))

    def _command(self, *extra: str) -> list[str]:
        # -e: the early error log, before the configuration names one (never /var/log/nginx).
        return [
            self.binary,
            "-p",
            str(self.root),
            "-c",
            str(self.conf),
            "-e",
            str(self.root / "error.log"),
            *extra,
        ]

    def check(self) -> None:
        """``nginx -t``: the rendered configuration is valid; raises with nginx's words."""
        result = subprocess.run(
            self._command("-t"), capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{result.stderr}{result.stdout}")

    def start(self, timeout_s: float = 15) -> NginxProcess:
        self.check()
        self._output = (self.root / "nginx.out").open("ab")
        self.process = subprocess.Popen(
            self._command(), stdout=self._output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout_s
        host, port = self.listen
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((host, port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen on {host}:{port}:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM (a fast shutdown: open WebSockets would hold up a graceful one), then SIGKILL
        after 10 s; always reaps."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._output is not None:
            self._output.close()
            self._output = None

    def log(self) -> str:
        """The error log and whatever nginx printed, for assertion messages."""
        parts = []
        for name in ("nginx.out", "error.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def access_log(self) -> list[str]:
        path = self.root / "access.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []
