"""Protocol version negotiation through the WebSocket subprotocol."""

from __future__ import annotations

import pytest

import protocol
from protocol.version import (
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    SUPPORTED_SUBPROTOCOLS,
    refusal_reason,
    select_subprotocol,
)


def test_current_version() -> None:
    assert PROTOCOL_VERSION == 1
    assert SUBPROTOCOL == "erp-relay.v1"
    assert SUBPROTOCOL in SUPPORTED_SUBPROTOCOLS
    assert SUPPORTED_SUBPROTOCOLS[-1] == SUBPROTOCOL
    assert protocol.SUBPROTOCOL == SUBPROTOCOL


@pytest.mark.parametrize(
    "offered",
    [
        ["erp-relay.v1"],
        ("erp-relay.v1",),
        ["chat", "erp-relay.v1"],
        ["erp-relay.v1", "erp-relay.v0"],
        ["erp-relay.v99", "erp-relay.v1"],
    ],
)
def test_select_supported(offered: list[str]) -> None:
    assert select_subprotocol(offered) == "erp-relay.v1"


@pytest.mark.parametrize(
    "offered",
    [[], (), ["erp-relay.v2"], ["ERP-RELAY.V1"], ["erp-relay.v1 "], ["erp-relay"], ["v1"]],
)
def test_select_refuses_unsupported(offered: list[str]) -> None:
    assert select_subprotocol(offered) is None


def test_newest_common_version_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("protocol.version.SUPPORTED_SUBPROTOCOLS", ("erp-relay.v1", "erp-relay.v2"))
    assert select_subprotocol(["erp-relay.v1", "erp-relay.v2"]) == "erp-relay.v2"
    assert select_subprotocol(["erp-relay.v2", "erp-relay.v1"]) == "erp-relay.v2"
    assert select_subprotocol(["erp-relay.v1"]) == "erp-relay.v1"


def test_refusal_reason_without_offer() -> None:
    reason = refusal_reason([])
    assert "no protocol version offered" in reason
    assert "Sec-WebSocket-Protocol" in reason
    assert SUBPROTOCOL in reason


def test_refusal_reason_names_the_offer_and_what_is_supported() -> None:
    reason = refusal_reason(["erp-relay.v7", "erp-relay.v8"])
    assert "erp-relay.v7, erp-relay.v8" in reason
    assert f"supported: {SUBPROTOCOL}" in reason
    assert "Upgrade the agent" in reason
