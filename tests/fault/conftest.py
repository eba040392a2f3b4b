"""Fault tests reuse the end-to-end fixtures: a migrated store, keys, a live relay."""

from tests.e2e.conftest import agent_process, client, creds, relay  # noqa: F401 - fixtures
