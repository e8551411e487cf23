"""Errors raised by the proxy package.

AuthshimError           root; never raised itself
├── ConfigError         the config has problems; ``problems`` lists each, naming its key
├── ListenError         a listen address is taken (another authshim, another program) or unusable
├── BadRequestBody      an intercepted request's body cannot be read as the route expects
│   ├── AmbiguousBody   some framework could read a credential or routing field otherwise:
│   │                   never forwarded, always 400 (proxy/reading)
│   └── UnreadableBody  not in the route's format and names no credential or routing field
├── Throttled           brute-force protection or a rate limit refused it (answered 429)
├── ForbiddenOrigin     a form login posted from another site (answered 403)
├── UpstreamError       the legacy app could not be reached or answered badly
│   ├── UpstreamUnavailable   connection refused or reset      (answered 502)
│   └── UpstreamTimeout       no answer in time                 (answered 504)
├── ProfileError        a captured profile could not be fetched or read
├── LookupFailed        the legacy look-up failed (never the same as "not found")
├── WeakPassword        a new password breaks the [policy] (answered 400)
├── MailError           a mail could not be handed over; it stays in the outbox for a retry
└── IdentityConflict    a new email or username belongs to another user (store or legacy)
"""

from __future__ import annotations


class AuthshimError(Exception):
    """Root of every error the proxy package raises."""


class ConfigError(AuthshimError):
    """The config cannot be used; every problem is listed, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ListenError(AuthshimError):
    """authshim cannot listen where the config says: the message names the key and why."""


class BadRequestBody(AuthshimError):
    """An intercepted request's body is malformed, too large or lacks a field."""


class AmbiguousBody(BadRequestBody):
    """Some parser could read another credential or routing value from the request.

    The message names the rule that refused it, never a value.
    """


class UnreadableBody(BadRequestBody):
    """The body is not in the route's format, and no parser could find a credential or
    routing field in it: in mode migrate it may be forwarded unchanged."""


class Throttled(AuthshimError):
    """Too many attempts on a key: retry after ``retry_after`` seconds (answered 429)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many attempts; retry later")
        self.retry_after = retry_after


class ForbiddenOrigin(AuthshimError):
    """A form login came from another site than the configured one (login CSRF)."""


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


class LookupFailed(AuthshimError):
    """The legacy look-up answered neither a profile (200) nor "not found" (404), or not at all."""


class WeakPassword(AuthshimError):
    """A new password is shorter or longer than the configured policy allows."""


class MailError(AuthshimError):
    """A mail could not be sent (SMTP refused, unreachable, or the folder cannot be written)."""


class IdentityConflict(AuthshimError):
    """A new email or username is taken, by a stored user or (mode migrate) a legacy user.

    ``field`` is ``email`` or ``username``; ``where`` is ``store`` or ``legacy``.
    """

    def __init__(self, field: str, where: str) -> None:
        super().__init__(f"the {field} belongs to another user ({where})")
        self.field = field
        self.where = where
