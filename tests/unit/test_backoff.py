"""Reconnect delays: exponential backoff with full jitter, on injected randomness."""

from __future__ import annotations

from itertools import islice

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.backoff import backoff


def take(n: int, **kwargs: object) -> list[float]:
    return list(islice(backoff(**kwargs), n))  # type: ignore[arg-type]


def test_ceiling_sequence_with_rand_one() -> None:
    assert take(9, rand=lambda: 1.0) == [1, 2, 4, 8, 16, 30, 30, 30, 30]


def test_zero_with_rand_zero() -> None:
    assert take(20, rand=lambda: 0.0) == [0.0] * 20


def test_half_jitter_is_half_the_ceiling() -> None:
    assert take(7, rand=lambda: 0.5) == [0.5, 1, 2, 4, 8, 15, 15]


def test_custom_base_factor_and_cap() -> None:
    assert take(6, base=0.1, factor=3.0, cap=2.0, rand=lambda: 1.0) == pytest.approx(
        [0.1, 0.3, 0.9, 2.0, 2.0, 2.0]
    )


def test_cap_applies_to_the_first_attempt() -> None:
    # A base above the cap must not make the first delay exceed the cap.
    assert take(3, base=60.0, cap=30.0, rand=lambda: 1.0) == [30.0, 30.0, 30.0]


def test_generator_never_ends() -> None:
    delays = take(10_000, rand=lambda: 1.0)
    assert len(delays) == 10_000
    assert delays[-1] == 30.0


def test_rand_is_called_once_per_delay() -> None:
    calls = 0

    def rand() -> float:
        nonlocal calls
        calls += 1
        return 1.0

    gen = backoff(rand=rand)
    assert calls == 0
    next(gen)
    next(gen)
    assert calls == 2


def test_default_rand_stays_within_bounds() -> None:
    ceilings = take(12, rand=lambda: 1.0)
    for delay, ceiling in zip(take(12), ceilings, strict=True):
        assert 0.0 <= delay <= ceiling


@settings(max_examples=200, deadline=None)
@given(
    base=st.floats(min_value=0.001, max_value=100),
    cap=st.floats(min_value=0.001, max_value=1000),
    factor=st.floats(min_value=1.0, max_value=10),
    draws=st.lists(
        st.floats(min_value=0.0, max_value=1.0, exclude_max=True), min_size=1, max_size=40
    ),
)
def test_full_jitter_bounds(base: float, cap: float, factor: float, draws: list[float]) -> None:
    it = iter(draws)
    delays = list(islice(backoff(base, cap, factor, rand=lambda: next(it)), len(draws)))
    ceilings = take(len(draws), base=base, cap=cap, factor=factor, rand=lambda: 1.0)
    for n, (delay, ceiling, r) in enumerate(zip(delays, ceilings, draws, strict=True)):
        assert 0.0 <= delay <= cap
        assert ceiling == pytest.approx(min(cap, base * factor**n))
        assert delay == pytest.approx(r * ceiling)
    # Ceilings never shrink.
    assert ceilings == sorted(ceilings)
