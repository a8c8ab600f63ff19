"""Test-wide fixtures: real servers come from tests/servers.py (env, containers or local)."""

pytest_plugins = ["tests.servers"]
