"""An office network in a box: a Linux network namespace whose only way out is a proxy.

`office_network` creates a namespace joined to the test machine by one veth pair on its own
/30; processes started with `Office.prefix` see only that link, so the relay on the machine's
127.0.0.1 is out of their reach and only a proxy listening on `Office.gateway` gets them out,
as in an office where the firewall lets only the proxy through. Needs root and ``ip`` (iproute2).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count

from tests.support.required import unavailable

_serial = count()


@dataclass(frozen=True)
class Office:
    name: str
    gateway: str
    """The machine's address on the link: the only address the namespace can reach."""
    inside: str

    @property
    def prefix(self) -> tuple[str, ...]:
        """Prepend to a command to run it inside the namespace."""
        return ("ip", "netns", "exec", self.name)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def netns_unavailable_reason() -> str | None:
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"erpprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"cannot create a network namespace: {exc.stderr.decode(errors='replace')}"
    _ip("netns", "del", probe)
    return None


@contextmanager
def office_network() -> Iterator[Office]:
    """A fresh namespace (name unique per test run), removed with its veth pair afterwards."""
    reason = netns_unavailable_reason()
    if reason is not None:
        unavailable(f"the egress tests run the agent in a network namespace: {reason}")
    serial = next(_serial)
    name = f"erp-egress-{os.getpid()}-{serial}"
    tag = f"{os.getpid() % 100000}{serial}"  # interface names have at most 15 characters
    outside, inside_link = f"erpo{tag}", f"erpi{tag}"
    net = f"10.{random.randint(64, 127)}.{random.randint(0, 255)}"
    subnet = random.randrange(0, 256, 4)
    gateway, inside = f"{net}.{subnet + 1}", f"{net}.{subnet + 2}"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside_link)
        _ip("link", "set", inside_link, "netns", name)
        _ip("addr", "add", f"{gateway}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("-n", name, "addr", "add", f"{inside}/30", "dev", inside_link)
        _ip("-n", name, "link", "set", inside_link, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield Office(name, gateway, inside)
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True, timeout=30, check=False)
        _ip("netns", "del", name)
