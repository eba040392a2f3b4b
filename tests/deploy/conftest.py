"""Fixtures for the deployment tests: nginx, a throwaway CA, PostgreSQL and Redis.

nginx is the distribution's binary (``apt-get install nginx``; `.ci/run` installs it): without
it these tests are skipped locally and fail under ``CI=true``, like PostgreSQL and Redis.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.deploy.nginx_process import find_nginx
from tests.support.postgres import postgres_url  # noqa: F401 - fixture
from tests.support.redis import redis_target  # noqa: F401 - fixture
from tests.support.required import unavailable


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    binary = find_nginx()
    if binary is None:
        unavailable(
            "nginx is not installed (apt-get install nginx, or set ERP_RELAY_TEST_NGINX to "
            "its binary)"
        )
    return binary


@dataclass(frozen=True)
class Tls:
    ca: Path
    """The throwaway CA's certificate: what clients trust (httpx verify=, SSL_CERT_FILE)."""
    chain: Path
    key: Path


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    """A CA made for this test and a server certificate for localhost, 127.0.0.1 and ::1."""
    folder = tmp_path / "tls"
    folder.mkdir()
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1", "::1")
    paths = Tls(folder / "ca.pem", folder / "fullchain.pem", folder / "privkey.pem")
    ca.cert_pem.write_to_path(str(paths.ca))
    server.private_key_pem.write_to_path(str(paths.key))
    for n, pem in enumerate(server.cert_chain_pems):
        pem.write_to_path(str(paths.chain), append=n > 0)
    return paths


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def client_host() -> str:
    """Where clients reach nginx: ``::1`` when the machine has it, so the address the relay
    learns from X-Forwarded-For differs from the one nginx itself connects from (127.0.0.1)."""
    return "::1" if _has_ipv6_loopback() else "127.0.0.1"
