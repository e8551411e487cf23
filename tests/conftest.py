"""Shared pytest fixtures: stores on every backend, the fake legacy app, authshim itself."""

pytest_plugins = [
    "tests.fixtures.store", "tests.fixtures.legacy", "tests.fixtures.proxy",
    "tests.fixtures.admin", "tests.fixtures.tracker", "tests.fixtures.wiki",
    "tests.fixtures.webhook",
]
