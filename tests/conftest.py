"""Shared pytest fixtures: stores on every backend, cheap argon2, the fake legacy app."""

pytest_plugins = ["tests.fixtures.store"]
