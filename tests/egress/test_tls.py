"""TLS to the relay is always verified: a relay certificate from a throwaway CA (trustme) is
trusted only through ``[relay] ca_file`` (as a TLS-inspecting proxy's root CA would be), and a
wrong CA or a wrong name gives a clear message and no connection, through a proxy or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Credentials
from tests.egress.conftest import Tls, agent_check, agent_config, wss_url
from tests.support.netns import Office
from tests.support.proxies import tinyproxy
from tests.support.servers import RelayHandle

pytestmark = pytest.mark.slow


async def test_the_custom_ca_bundle_through_the_environments_proxy(
    office: Office,
    tls_relay: RelayHandle,
    tls: Tls,
    creds: Credentials,
    erp_path: Path,
    tmp_path: Path,
) -> None:
    config = agent_config(tmp_path, wss_url(tls_relay), erp_path, [f"ca_file = {str(tls.ca)!r}"])
    with tinyproxy(tmp_path, office.gateway) as proxy:
        report = await agent_check(config, creds.agent_token, office, HTTPS_PROXY=proxy.url)
    ok, detail = report.item("relay")
    assert ok, report
    assert f"connected to {wss_url(tls_relay)} through proxy {proxy.url}" in detail


@pytest.mark.parametrize("trust", ["system store only", "another CA"])
async def test_an_untrusted_certificate_is_refused(
    tls_relay: RelayHandle,
    tls: Tls,
    creds: Credentials,
    erp_path: Path,
    tmp_path: Path,
    trust: str,
) -> None:
    options = [f"ca_file = {str(tls.other_ca)!r}"] if trust == "another CA" else []
    config = agent_config(tmp_path, wss_url(tls_relay), erp_path, ['proxy = "none"', *options])
    report = await agent_check(config, creds.agent_token)
    ok, detail = report.item("relay")
    assert not ok, report
    assert detail.startswith(
        f"the relay's TLS certificate at localhost:{tls_relay.port} is not trusted "
        "(unable to get local issuer certificate); no connection was made"
    ), detail
    assert "relay.ca_file" in detail
    assert not tls_relay.state.hub.is_online("acme")


async def test_a_certificate_for_another_name_is_refused(
    tls_relay: RelayHandle, tls: Tls, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    url = wss_url(tls_relay, host="127.0.0.1")
    config = agent_config(tmp_path, url, erp_path, ['proxy = "none"', f"ca_file = {str(tls.ca)!r}"])
    report = await agent_check(config, creds.agent_token)
    ok, detail = report.item("relay")
    assert not ok, report
    assert f"the TLS certificate presented by 127.0.0.1:{tls_relay.port} is for another name" in (
        detail
    )


async def test_an_unreadable_ca_file_is_a_config_error(
    tls_relay: RelayHandle, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    bogus = tmp_path / "not-a-ca.pem"
    bogus.write_text("this is not a certificate\n", encoding="utf-8")
    config = agent_config(
        tmp_path, wss_url(tls_relay), erp_path, ['proxy = "none"', f"ca_file = {str(bogus)!r}"]
    )
    report = await agent_check(config, creds.agent_token)
    ok, detail = report.item("relay")
    assert not ok, report
    assert detail.startswith(f"cannot use relay.ca_file {bogus}"), detail


async def test_wss_to_a_plain_port_says_the_port_is_wrong(
    relay: RelayHandle, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    config = agent_config(tmp_path, wss_url(relay), erp_path, ['proxy = "none"'])
    report = await agent_check(config, creds.agent_token)
    ok, detail = report.item("relay")
    assert not ok, report
    assert f"localhost:{relay.port} did not answer with TLS" in detail
