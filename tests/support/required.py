"""Servers the tests need (PostgreSQL, Redis, nginx): skip without them locally, fail in CI.

A developer without a local PostgreSQL can still run the rest; CI (``CI=true``) starts every
server in `.ci/run`, so a missing one there is a broken build, never a quietly skipped test.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
