"""Errors raised by the proxy package.

AuthshimError           root; never raised itself
├── ConfigError         the config has problems; ``problems`` lists each, naming its key
├── BadRequestBody      an intercepted request's body cannot be read as the route expects
├── UpstreamError       the legacy app could not be reached or answered badly
│   ├── UpstreamUnavailable   connection refused or reset      (answered 502)
│   └── UpstreamTimeout       no answer in time                 (answered 504)
└── ProfileError        a captured profile could not be fetched or read
"""

from __future__ import annotations


class AuthshimError(Exception):
    """Root of every error the proxy package raises."""


class ConfigError(AuthshimError):
    """The config cannot be used; every problem is listed, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class BadRequestBody(AuthshimError):
    """An intercepted request's body is malformed, too large or lacks a field."""


class UpstreamError(AuthshimError):
    """The legacy app failed to answer."""

    status = 502


class UpstreamUnavailable(UpstreamError):
    """The legacy app refused or dropped the connection."""

    status = 502


class UpstreamTimeout(UpstreamError):
    """The legacy app did not answer in time."""

    status = 504


class ProfileError(AuthshimError):
    """A profile could not be fetched from, or found in, the legacy app's answer."""
