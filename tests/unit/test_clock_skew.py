"""The agent's estimate of the relay's clock, which turns call deadlines into local ones."""

from __future__ import annotations

from agent.link import clock_skew_ms


def test_same_clocks_and_slow_link_give_no_skew() -> None:
    # hello leaves at 1000, relay stamps 1300 after 300 ms in transit, welcome lands at 1600
    assert clock_skew_ms(1000.0, 1300, 1600.0) == 0


def test_relay_ahead_by_five_seconds() -> None:
    assert clock_skew_ms(1000.0, 6010, 1020.0) == 5000


def test_relay_behind() -> None:
    assert clock_skew_ms(10_000.0, 2_000, 10_040.0) == -8020
