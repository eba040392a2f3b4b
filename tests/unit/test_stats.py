"""relay.stats: the histogram's bins and percentiles, the rolling window, merging replicas."""

from __future__ import annotations

import pytest

from relay.stats import (
    BINS,
    MINUTES,
    CallStats,
    bin_of,
    bin_range,
    decode_since,
    merge,
    percentile,
    series,
    summarize,
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


T0 = 1_795_392_000.0  # a whole minute
assert T0 % 60 == 0


@pytest.mark.parametrize("ms", [0.0, 0.1, 0.25, 0.3, 1.0, 7.5, 100.0, 12_345.0, 119_000.0])
def test_a_value_falls_in_the_bin_that_covers_it(ms: float) -> None:
    low, high = bin_range(bin_of(ms))
    assert low <= ms <= high or (ms == 0.0 and low == 0.0)
    # four bins per octave: a bin is at most 19 % wide
    if low:
        assert high / low == pytest.approx(2**0.25)


def test_huge_values_land_in_the_last_bin() -> None:
    assert bin_of(1e12) == BINS - 1


def test_percentiles_of_a_known_distribution_are_within_a_bin() -> None:
    counts = [0] * BINS
    for ms in range(1, 1001):  # 1..1000 ms, uniform
        counts[bin_of(float(ms))] += 1
    p50, p99 = percentile(counts, 0.5), percentile(counts, 0.99)
    assert p50 == pytest.approx(500, rel=0.1)
    assert p99 == pytest.approx(990, rel=0.1)
    assert percentile([0] * BINS, 0.5) is None


def test_the_window_covers_five_minutes_and_older_calls_drop_out() -> None:
    clock = Clock(T0 + 30)
    stats = CallStats(clock)
    for _ in range(8):
        stats.record("acme", None, 10.0)
    stats.record("acme", "erp_unavailable", 2000.0)
    stats.record("acme", "not_found", 5.0)  # the ERP's answer: a call, not an error
    stats.record("acme", "forbidden", 1.0)  # the caller's mistakes are no calls to the agent
    stats.record("acme", "invalid_arguments", 1.0)
    summary = summarize(stats.minutes("acme"), clock.now)
    assert (summary.calls, summary.errors) == (10, 1)
    assert summary.error_rate == pytest.approx(0.1)
    assert summary.p50_ms == pytest.approx(10, rel=0.1)
    assert summary.p99_ms is not None and summary.p99_ms > 1000
    # 10 calls in 4.5 minutes of window
    assert summary.calls_per_min == pytest.approx(10 / 4.5, rel=0.01)

    clock.now = T0 + 4 * 60 + 59  # still inside the five minute buckets
    assert summarize(stats.minutes("acme"), clock.now).calls == 10
    clock.now = T0 + 5 * 60
    later = summarize(stats.minutes("acme"), clock.now)
    assert (later.calls, later.error_rate, later.p50_ms) == (0, None, None)


def test_the_ring_keeps_an_hour_and_reuses_its_slots() -> None:
    clock = Clock(T0)
    stats = CallStats(clock)
    for minute in range(MINUTES + 5):
        clock.now = T0 + minute * 60
        stats.record("acme", None, float(minute + 1))
    kept = stats.minutes("acme")
    assert len(kept) == MINUTES
    assert [m.minute for m in kept] == sorted(m.minute for m in kept)
    assert kept[0].minute == int(clock.now // 60) - MINUTES + 1
    assert all(m.calls == 1 for m in kept)  # a reused slot starts from zero
    points = series(kept, clock.now, 3)
    assert [p["calls"] for p in points] == [1, 1, 1]
    assert points[-1]["minute"].timestamp() == int(clock.now // 60) * 60


def test_the_published_form_encodes_past_minutes_once_and_the_current_one_afresh() -> None:
    clock = Clock(T0)
    stats = CallStats(clock)
    stats.record("acme", None, 1.0)
    clock.now += 60
    stats.record("acme", "timeout", 3000.0)
    first = stats.encoded()["acme"]
    stats.record("acme", None, 2.0)
    second = stats.encoded()["acme"]
    assert first[0] is second[0]  # the past minute, reused
    assert [raw[1:3] for raw in second] == [[1, 0], [2, 1]]
    assert decode_since(second, int(clock.now // 60) - 1) == stats.minutes("acme")[1:]
    clock.now += MINUTES * 60 - 60  # the first minute leaves the hour
    assert [raw[0] for raw in stats.encoded()["acme"]] == [int(T0 // 60) + 1]


def test_agents_without_calls_for_an_hour_are_forgotten() -> None:
    clock = Clock(T0)
    stats = CallStats(clock)
    stats.record("acme", None, 1.0)
    assert set(stats.encoded()) == {"acme"}
    clock.now += MINUTES * 60
    assert stats.encoded() == {}
    assert stats.minutes("acme") == []


def test_the_number_of_agents_is_capped() -> None:
    stats = CallStats(Clock(T0), max_agents=2)
    for name in ("a", "b", "c"):
        stats.record(name, None, 1.0)
    assert set(stats.encoded()) == {"a", "b"}
    assert stats.dropped == 1


def test_replicas_merge_by_adding_their_buckets() -> None:
    clock = Clock(T0 + 10)
    one, two = CallStats(clock), CallStats(clock)
    for _ in range(50):
        one.record("acme", None, 2.0)
    for _ in range(50):
        two.record("acme", "timeout", 800.0)
    clock.now += 60
    two.record("acme", None, 2.0)
    # through the form replicas publish
    remote = decode_since(two.encoded()["acme"], 0)
    merged = merge([one.minutes("acme"), remote])
    assert [m.calls for m in merged] == [100, 1]
    summary = summarize(merged, clock.now)
    assert (summary.calls, summary.errors) == (101, 50)
    # the merged median sits between the two replicas' own, where no average would put it
    assert summary.p50_ms is not None and 2.0 <= summary.p50_ms <= 800 * 1.2
    assert summary.p99_ms == pytest.approx(800, rel=0.1)
    # merging leaves the parts alone
    assert one.minutes("acme")[0].calls == 50
