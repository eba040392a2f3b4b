"""Fixtures for the egress tests: an office network, real proxies, a relay with TLS, and
``erp-agent check`` run as the office admin runs it.

The relay listens on the test machine's 127.0.0.1; agents run inside `office` (a network
namespace) that reaches only the proxy's address, so a connection that works went through
the proxy.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.e2e.conftest import Credentials, client, creds, relay  # noqa: F401 - fixtures
from tests.support.agent_process import write_agent_config
from tests.support.netns import Office, office_network
from tests.support.proxies import Credentials as ProxyCredentials
from tests.support.servers import RelayHandle, serve_relay

PROXY_USER = ProxyCredentials("office", "Pr0xyS3cret")  # tinyproxy: letters, digits
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy", "wss_proxy")


@pytest.fixture
def office() -> Iterator[Office]:
    with office_network() as network:
        yield network


@dataclass(frozen=True)
class Tls:
    ca: Path
    """The throwaway CA the relay's certificate comes from."""
    other_ca: Path
    """A CA that signed nothing here: trusting it instead is a wrong CA bundle."""
    chain: Path
    key: Path


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    """A certificate for ``localhost`` only, so ``wss://127.0.0.1`` is a name mismatch."""
    folder = tmp_path / "tls"
    folder.mkdir()
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost")
    paths = Tls(folder / "ca.pem", folder / "other-ca.pem", folder / "chain.pem", folder / "key")
    ca.cert_pem.write_to_path(str(paths.ca))
    other.cert_pem.write_to_path(str(paths.other_ca))
    server.private_key_pem.write_to_path(str(paths.key))
    for n, pem in enumerate(server.cert_chain_pems):
        pem.write_to_path(str(paths.chain), append=n > 0)
    return paths


@pytest.fixture
async def tls_relay(creds: Credentials, tls: Tls) -> AsyncIterator[RelayHandle]:  # noqa: F811
    options = {"ssl_certfile": str(tls.chain), "ssl_keyfile": str(tls.key)}
    async with serve_relay(creds.database_url, uvicorn=options) as handle:
        yield handle


def wss_url(server: RelayHandle, host: str = "localhost") -> str:
    return f"wss://{host}:{server.port}/v1/agent/connect"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "proxy-password"
    path.write_text(PROXY_USER.password + "\n", encoding="utf-8")
    return path


def agent_config(
    tmp_path: Path, relay_url: str, erp_path: Path, relay_options: Sequence[str] = ()
) -> Path:
    return write_agent_config(
        tmp_path / "agent.toml",
        relay_url=relay_url,
        erp_path=erp_path,
        journal_path=tmp_path / "state" / "journal.sqlite",
        relay_options=relay_options,
    )


def no_proxy_environment(**env: str) -> dict[str, str]:
    """What `AgentProcess.start` adds so the test machine's own proxy variables (if any) are
    blanked, then ``env``."""
    blank = {name: "" for variable in PROXY_VARIABLES for name in (variable, variable.upper())}
    return {**blank, **env}


@dataclass
class CheckReport:
    returncode: int
    lines: list[str]

    def item(self, name: str) -> tuple[bool, str]:
        """(ok, detail) of the line for check item ``name``."""
        for line in self.lines:
            body = line[5:]
            if body.startswith(f"{name} "):
                return line.startswith("ok"), body[len(name) :].strip()
        raise AssertionError(f"no {name!r} line in:\n" + "\n".join(self.lines))

    def __str__(self) -> str:
        return "\n".join(self.lines)


async def agent_check(
    config: Path, token: str, office: Office | None = None, **env: str
) -> CheckReport:
    """``erp-agent check`` as a process (inside ``office`` when given), as the admin runs it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ERP_AGENT_")}
    environment.update(no_proxy_environment(ERP_AGENT_TOKEN=token, **env))
    prefix = office.prefix if office is not None else ()
    process = await asyncio.create_subprocess_exec(
        *prefix,
        *(sys.executable, "-m", "agent", "check", "--config", str(config)),
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(90):
        out, _ = await process.communicate()
    assert process.returncode is not None
    return CheckReport(process.returncode, out.decode(errors="replace").splitlines())


def reach(office: Office, host: str, port: int) -> subprocess.CompletedProcess[str]:
    """A plain TCP connect from inside the office, as anything bypassing the proxy would try."""
    code = f"import socket\nsocket.create_connection(({host!r}, {port}), timeout=5).close()\n"
    return subprocess.run(
        [*office.prefix, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def wait_for_log(read: object, needle: str, times: int = 1, timeout_s: float = 30) -> str:
    """Wait (bounded) until ``read()`` holds ``needle`` at least ``times`` times; the relay
    shares this loop, so the wait yields to it."""
    assert callable(read)
    deadline = time.monotonic() + timeout_s
    while True:
        text = str(read())
        if text.count(needle) >= times:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not seen {times} times in:\n{text[-4000:]}")
        await asyncio.sleep(0.1)
