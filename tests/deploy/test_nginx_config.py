"""deploy/nginx/erp-relay.conf read as configuration, and checked by ``nginx -t`` when rendered.

tests/deploy/test_nginx.py runs the same file in front of relays; these checks are the quick
part, and name the rule a change would break.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from relay.settings import RelaySettings
from tests.deploy.conftest import Tls
from tests.deploy.nginx_process import SITE_TEMPLATE, NginxProcess, placeholders, render
from tests.support.servers import free_port

TEMPLATE = SITE_TEMPLATE.read_text(encoding="utf-8")
PLACEHOLDERS = {
    "NGINX_LISTEN",
    "NGINX_SERVER_NAME",
    "NGINX_TLS_CERTIFICATE",
    "NGINX_TLS_CERTIFICATE_KEY",
    "RELAY_1",
    "RELAY_2",
    "ERP_RELAY_MAX_BODY_BYTES",
}


@dataclass
class Block:
    """One ``name args { ... }`` block: its simple directives and its blocks, in order."""

    name: str
    args: list[str]
    directives: list[list[str]] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    def values(self, name: str) -> list[list[str]]:
        return [d[1:] for d in self.directives if d[0] == name]

    def value(self, name: str) -> list[str]:
        found = self.values(name)
        assert len(found) == 1, f"{self.name} {self.args}: {name} {found}"
        return found[0]

    def children(self, name: str) -> list[Block]:
        return [b for b in self.blocks if b.name == name]


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for match in re.finditer(
        r"#[^\n]*|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[{};]|(?:\$\{\w+\}|[^\s{};])+", text
    ):
        token = match.group(0)
        if token.startswith("#"):
            continue
        if token[0] in "'\"":
            token = token[1:-1]
        tokens.append(token)
    return tokens


def parse(text: str) -> Block:
    root = Block("main", [])
    stack = [root]
    words: list[str] = []
    for token in _tokens(text):
        if token == ";":
            stack[-1].directives.append(words)
            words = []
        elif token == "{":
            block = Block(words[0], words[1:])
            stack[-1].blocks.append(block)
            stack.append(block)
            words = []
        elif token == "}":
            assert not words, words
            stack.pop()
        else:
            words.append(token)
    assert len(stack) == 1 and not words, "unbalanced braces"
    return root


CONF = parse(TEMPLATE)
(SERVER,) = CONF.children("server")
LOCATIONS = {" ".join(block.args): block for block in SERVER.children("location")}


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert match, value
    return int(match.group(1)) * units[match.group(2) or "s"]


def test_the_placeholders_are_the_documented_ones() -> None:
    assert placeholders(TEMPLATE) == PLACEHOLDERS
    lines = TEMPLATE.splitlines()
    header = "\n".join(lines[: next(n for n, line in enumerate(lines) if line and line[0] != "#")])
    for name in PLACEHOLDERS:
        assert re.search(rf"^#\s+(?:\w+, )*{name}\b", header, re.MULTILINE), (
            f"{name} is not explained"
        )


def test_render_refuses_a_missing_value() -> None:
    with pytest.raises(ValueError, match="RELAY_2"):
        render(TEMPLATE, dict.fromkeys(PLACEHOLDERS - {"RELAY_2"}, "x"))


def test_websocket_upgrade_map_and_http_1_1() -> None:
    (upgrade_map,) = [
        b for b in CONF.children("map") if b.args == ["$http_upgrade", "$connection_upgrade"]
    ]
    assert ["upgrade"] in [d[1:] for d in upgrade_map.directives if d[0] == "default"]
    assert SERVER.value("proxy_http_version") == ["1.1"]
    agent = LOCATIONS["= /v1/agent/connect"]
    assert not agent.values("proxy_http_version")  # inherits 1.1: an upgrade needs it
    headers = {tuple(v[:1]): v[1:] for v in agent.values("proxy_set_header")}
    assert headers[("Upgrade",)] == ["$http_upgrade"]
    assert headers[("Connection",)] == ["$connection_upgrade"]


def test_the_agent_socket_is_unbuffered_with_long_timeouts() -> None:
    agent = LOCATIONS["= /v1/agent/connect"]
    assert agent.value("proxy_buffering") == ["off"]
    # far above the 20 s in which pings notice a dead agent, so a live one is never cut
    assert seconds(agent.value("proxy_read_timeout")[0]) >= 600
    assert seconds(agent.value("proxy_send_timeout")[0]) >= 600


def test_calls_may_run_their_longest_timeout() -> None:
    longest = RelaySettings.model_fields["max_timeout_s"].default
    assert seconds(SERVER.value("proxy_read_timeout")[0]) > longest


def test_every_proxied_location_sets_all_forwarding_headers() -> None:
    # proxy_set_header in a location replaces everything inherited: each must set them all
    proxied = [block for block in LOCATIONS.values() if block.values("proxy_pass")]
    assert len(proxied) >= 3
    for block in proxied:
        headers = {v[0].lower(): v[1:] for v in block.values("proxy_set_header")}
        where = " ".join(block.args)
        assert headers.get("host") == ["$host"], where
        # the address nginx saw: a forged X-Forwarded-For from the caller is not passed on
        assert headers.get("x-forwarded-for") == ["$remote_addr"], where
        assert headers.get("x-forwarded-proto") == ["$scheme"], where
        assert "connection" in headers, where  # "" keeps upstream connections alive
        assert block.value("proxy_pass") == ["http://erp_relay"], where


def test_upstream_has_both_replicas_and_keepalive() -> None:
    (upstream,) = CONF.children("upstream")
    servers = [v[0] for v in upstream.values("server")]
    assert servers == ["${RELAY_1}", "${RELAY_2}"]
    assert int(upstream.value("keepalive")[0]) > 0
    # below uvicorn's default keep-alive (5 s): nginx never reuses a connection being closed
    assert seconds(upstream.value("keepalive_timeout")[0]) < 5


CALLS = "~ ^/v1/agents/[^/]+/calls/"


def test_calls_move_to_another_replica_after_a_failure_but_jobs_never() -> None:
    # everything but calls: a POST once sent stays where it went (a job has no key)
    assert set(SERVER.value("proxy_next_upstream")) == {"error", "timeout"}
    for where, block in LOCATIONS.items():
        if where != CALLS:
            assert not block.values("proxy_next_upstream"), where
    # calls: reads change nothing, writes carry an Idempotency-Key (docs/guarantees.md)
    assert set(LOCATIONS[CALLS].value("proxy_next_upstream")) == {
        "error",
        "timeout",
        "non_idempotent",
    }
    calls = re.compile(CALLS.removeprefix("~ "))
    assert calls.match("/v1/agents/acme/calls/orders.create")
    assert calls.match("/v1/agents/acme/calls/products.stock")
    assert not calls.match("/v1/agents/acme/jobs/orders.create")
    assert not calls.match("/v1/jobs/job_123")
    assert not calls.match("/v1/agent/connect")
    # a retry must end well before a call's own timeout could be mistaken for a failure
    assert seconds(SERVER.value("proxy_next_upstream_timeout")[0]) < seconds(
        SERVER.value("proxy_read_timeout")[0]
    )


def test_body_limit_is_the_relays() -> None:
    assert SERVER.value("client_max_body_size") == ["${ERP_RELAY_MAX_BODY_BYTES}"]
    assert ["413", "@payload_too_large"] in SERVER.values("error_page")


def test_tls_only() -> None:
    listen = SERVER.value("listen")
    assert listen == ["${NGINX_LISTEN}", "ssl"]
    assert set(SERVER.value("ssl_protocols")) <= {"TLSv1.2", "TLSv1.3"}


def test_the_rendered_file_passes_nginx_t(nginx_binary: str, tls: Tls, tmp_path: Path) -> None:
    port = free_port()
    values = {
        "NGINX_LISTEN": f"127.0.0.1:{port}",
        "NGINX_SERVER_NAME": "relay.example.com",
        "NGINX_TLS_CERTIFICATE": str(tls.chain),
        "NGINX_TLS_CERTIFICATE_KEY": str(tls.key),
        "RELAY_1": "127.0.0.1:1",
        "RELAY_2": "127.0.0.1:2",
        "ERP_RELAY_MAX_BODY_BYTES": "1048576",
    }
    NginxProcess(nginx_binary, tmp_path / "nginx", values, ("127.0.0.1", port)).check()
