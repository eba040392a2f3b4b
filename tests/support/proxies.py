"""Real proxy servers from the distribution, in the foreground on a free port, for egress tests.

tinyproxy is the HTTP CONNECT proxy (with or without Basic authentication, optionally limited
to some destination ports, which makes it answer 403 like a corporate proxy's policy);
microsocks is the SOCKS5 proxy with a user name and password. Each is started with its config
in the test's folder and stopped (SIGTERM, then SIGKILL) at the end.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.support.required import unavailable


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


@dataclass
class ProxyServer:
    scheme: str
    host: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        """The proxy's address without credentials."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def url_for(self, user: str) -> str:
        """The address with a user name only; the password comes from elsewhere."""
        return f"{self.scheme}://{user}@{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def free_port_on(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        unavailable(f"{name} is not installed (apt-get install {package})")
    return found


@contextmanager
def tinyproxy(
    folder: Path,
    listen: str,
    *,
    auth: Credentials | None = None,
    connect_ports: Sequence[int] = (),
) -> Iterator[ProxyServer]:
    """tinyproxy on ``listen``; without ``connect_ports`` it tunnels to any port."""
    program = binary("tinyproxy", "tinyproxy")
    port = free_port_on(listen)
    lines = [
        f"Port {port}",
        f"Listen {listen}",
        "Timeout 60",
        "MaxClients 50",
        "LogLevel Connect",
        "DisableViaHeader Yes",
        *(f"ConnectPort {allowed}" for allowed in connect_ports),
    ]
    if auth is not None:
        lines.append(f"BasicAuth {auth.user} {auth.password}")
    config = folder / f"tinyproxy-{port}.conf"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    server = ProxyServer("http", listen, port, folder / f"tinyproxy-{port}.log")
    with _running([program, "-d", "-c", str(config)], server):
        yield server


@contextmanager
def microsocks(folder: Path, listen: str, auth: Credentials) -> Iterator[ProxyServer]:
    """microsocks (SOCKS5) on ``listen``, accepting only ``auth``."""
    program = binary("microsocks", "microsocks")
    port = free_port_on(listen)
    server = ProxyServer("socks5", listen, port, folder / f"microsocks-{port}.log")
    command = [program, "-i", listen, "-p", str(port), "-u", auth.user, "-P", auth.password]
    with _running(command, server):
        yield server


@contextmanager
def _running(command: list[str], server: ProxyServer) -> Iterator[None]:
    log: IO[bytes] = server.log_path.open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(process, server)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _wait_listening(process: subprocess.Popen[bytes], server: ProxyServer) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{server.scheme} proxy exited at start:\n{server.log()}")
        try:
            with socket.create_connection((server.host, server.port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{server.scheme} proxy did not listen on {server.url}:\n{server.log()}")
