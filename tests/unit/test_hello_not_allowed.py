"""``hello.not_allowed`` between agents and relays of different ages (docs/protocol.md,
Versioning): the member is optional, omitted when empty, and ignored by a relay that predates it.
"""

from __future__ import annotations

import orjson
import pytest

from protocol.codec import decode, encode
from protocol.errors import FrameError
from protocol.frames import Hello

RESTRICTED = Hello(
    agent_version="1.1.0",
    connector="demo",
    operations=("customers.get", "operations.status", "ping"),
    max_concurrency=4,
    not_allowed=("customers.create", "orders.create"),
)
OLD_AGENT_HELLO = {
    "type": "hello",
    "agent_version": "1.0.0",
    "connector": "demo",
    "erp": "",
    "operations": ["customers.get", "ping"],
    "max_concurrency": 4,
    "instance_id": "",
    "hostname": "",
    "slot": 0,
}


def test_a_restricted_hello_round_trips() -> None:
    assert decode(encode(RESTRICTED)) == RESTRICTED
    assert orjson.loads(encode(RESTRICTED))["not_allowed"] == ["customers.create", "orders.create"]


def test_an_older_agent_refuses_nothing() -> None:
    hello = decode(orjson.dumps(OLD_AGENT_HELLO))
    assert isinstance(hello, Hello)
    assert hello.not_allowed == ()


def test_an_unrestricted_hello_is_what_an_older_agent_sends() -> None:
    """An unrestricted site's hello carries no new member: same bytes as before the field."""
    hello = Hello("1.0.0", "demo", ("customers.get", "ping"), 4)
    assert orjson.loads(encode(hello)) == OLD_AGENT_HELLO


def test_an_older_relay_sees_the_same_hello_plus_a_member_it_ignores() -> None:
    """A relay older than the field reads only the members it knows (unknown members are
    ignored, as for any optional member): it sees the served-and-allowed operations and routes
    only those, answering the rest operation_not_supported."""
    sent = orjson.loads(encode(RESTRICTED))
    assert set(sent) - set(OLD_AGENT_HELLO) == {"not_allowed"}
    future = decode(orjson.dumps(sent | {"a_member_from_the_future": [1, 2]}))
    assert future == RESTRICTED


@pytest.mark.parametrize("value", ["orders.create", [1], [""], [None], {"orders.create": True}])
def test_a_malformed_not_allowed_is_a_frame_error(value: object) -> None:
    with pytest.raises(FrameError, match=r"hello\.not_allowed"):
        decode(orjson.dumps(OLD_AGENT_HELLO | {"not_allowed": value}))


def test_not_allowed_has_the_limits_of_operations() -> None:
    too_many = [f"op{i}" for i in range(513)]
    with pytest.raises(FrameError, match=r"hello\.not_allowed must be a list of at most 512"):
        decode(orjson.dumps(OLD_AGENT_HELLO | {"not_allowed": too_many}))
