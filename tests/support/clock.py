"""A clock the test moves, for the store's `clock=` parameters (aware UTC datetimes)."""

from __future__ import annotations

import datetime as dt


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
