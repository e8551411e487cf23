"""The login sections: each ``[[login]]`` route with its success rules, profile source and
answers, the ``[profile]`` map and ``[logout]``.

``Answer`` and the success and profile readers serve ``[signup]`` and the other flows too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config.matching import GET_OR_POST, POST, Match, read_match
from proxy.config.reader import Reader

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class LocationRule:
    """Rules on an answer's ``Location``, resolved against the request URL first. A value
    that is a path is compared with the resolved path and query, an absolute URL with the
    whole resolved URL; ``pattern`` is searched in the path and query."""

    equals: tuple[str, ...] = ()  # one of these
    prefix: tuple[str, ...] = ()  # starts with one of these
    not_prefix: tuple[str, ...] = ()  # starts with none of these
    pattern: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class HeaderRule:
    """A rule on one answer header: present (or, ``present = false``, absent), equal to a
    value, or matching a regular expression (searched)."""

    name: str
    present: bool = True
    equals: str | None = None
    pattern: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class BodyRule:
    """Text the answer's body must contain, and text it must not (any of ``not_contains``)."""

    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SuccessRules:
    """All rules must hold for the legacy app's answer to count as an accepted login (or, as
    ``step``, as the first step of a login that goes on, such as a second-factor page)."""

    status: tuple[int, ...] = ()
    cookie: str | None = None
    cookie_prefix: str | None = None
    json: str | None = None
    json_equals: Any = _UNSET
    location: LocationRule | None = None
    headers: tuple[HeaderRule, ...] = ()
    body: BodyRule | None = None

    @property
    def has_json_equals(self) -> bool:
        return self.json_equals is not _UNSET


@dataclass(frozen=True, slots=True)
class ProfileSource:
    """Where a captured profile comes from: a pointer into the login answer, or a GET."""

    json: str | None = None
    fetch: str | None = None
    lookup: bool = False  # the [lookup] by the submitted identifier
    token: str = "/token"  # with fetch: the answer's bearer token, such as "/access_token"


@dataclass(frozen=True, slots=True)
class Answer:
    """A configured answer: a redirect, or a status with an optional JSON body."""

    redirect: str | None = None
    next_param: str | None = None
    json: Any = None
    status: int = 200
    # A login's failure only: the legacy app renders it (see proxy/flows/failure.py), this
    # answer is the fallback when it cannot.
    from_legacy: bool = False


@dataclass(frozen=True, slots=True)
class LoginRoute:
    path: str
    format: str
    identifier: str
    password: str
    success: SuccessRules
    profile: ProfileSource
    answer: Answer
    failure: Answer
    failure_floor: float | None = None  # seconds; None: learned (proxy/pacing.py)
    # The first step of a login that goes on (a second-factor page): never a capture.
    step: SuccessRules | None = None
    # The requests that go on with it (proxy/flows/steps.py), whether the step is a second
    # factor (the user then stays on the legacy login), how long a pending capture waits.
    step_paths: tuple[str, ...] = ()
    second_factor: bool = True
    step_expires: float = 300.0
    match: Match = POST  # methods and when: which requests on the path are logins
    # Who judges an unmigrated user's password: the legacy app ("legacy", a forwarded login)
    # or its database ("database": [legacy_db], for logins that cannot be forwarded).
    judge: str = "legacy"


@dataclass(frozen=True, slots=True)
class ProfileMap:
    """JSON pointers into a legacy profile."""

    legacy_id: str | None = "/id"
    email: str | None = "/email"
    username: str | None = "/username"
    refresh_on_login: bool = False
    # A user the legacy app refuses (locked, unconfirmed): the pointer's value must be one of
    # active_values, or true when there are none. None: every profile is active.
    active: str | None = None
    active_values: tuple[Any, ...] = ()
    # A user with a second factor at the legacy app (a non-empty value here): never answered
    # on the password alone.
    second_factor: str | None = None


@dataclass(frozen=True, slots=True)
class LogoutConfig:
    path: str | None = None
    match: Match = GET_OR_POST


LOGIN_KEYS = (
    "path", "format", "identifier", "password", "success", "profile", "answer", "failure",
    "failure_floor", "step", "step_paths", "second_factor", "step_expires", "methods", "when",
    "judge",
)  # fmt: skip
SUCCESS_KEYS = (
    "status", "cookie", "cookie_prefix", "json", "json_equals", "location", "headers", "body",
)  # fmt: skip
LOCATION_KEYS = ("equals", "prefix", "not_prefix", "pattern")
HEADER_KEYS = ("present", "equals", "pattern")
BODY_KEYS = ("contains", "not_contains")
PROFILE_SOURCE_KEYS = ("json", "fetch", "lookup", "token")
ANSWER_KEYS = ("redirect", "next_param", "json", "status")
FAILURE_KEYS = (*ANSWER_KEYS, "from_legacy")
PROFILE_KEYS = (
    "legacy_id", "email", "username", "refresh_on_login", "active", "active_values",
    "second_factor",
)  # fmt: skip
LOGOUT_KEYS = ("path", "methods", "when")
OK = Answer(json={"ok": True}, status=200)


def read_logins(r: Reader, doc: Mapping[str, Any]) -> tuple[LoginRoute, ...]:
    raw = doc.get("login", [])
    if not isinstance(raw, list):
        r.error("login", "must be an array of tables ([[login]])")
        return ()
    routes: list[LoginRoute] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        with r.section(f"login[{i}]"):
            if not isinstance(item, dict):
                r.error("", "must be a table")
                continue
            r.unknown(item, LOGIN_KEYS)
            path = r.path(item, "path", required=True) or "/"
            if path in seen and "when" not in item:
                r.error("path", f"{path} is intercepted twice (tell them apart with when)")
            seen.add(path)
            route = LoginRoute(
                path=path,
                format=r.format(item),
                identifier=r.field(item, "identifier"),
                password=r.field(item, "password"),
                success=read_success(r, item),
                profile=read_profile_source(r, item),
                answer=read_answer(r, item, "answer", default_status=200),
                failure=read_answer(r, item, "failure", default_status=401, keys=FAILURE_KEYS),
                failure_floor=_floor(r, item),
                step=read_success(r, item, "step") if "step" in item else None,
                step_paths=_step_paths(r, item),
                second_factor=r.get(item, "second_factor", bool, True),
                step_expires=r.duration(item, "step_expires", 300.0),
                match=read_match(r, item, ("POST",)),
                judge=r.choice(item, "judge", ("legacy", "database")),
            )
            if (route.step_paths or "second_factor" in item) and route.step is None:
                r.error("step", "is required with step_paths or second_factor")
            if not route.second_factor and not route.step_paths:
                r.error("step_paths", "is required with second_factor = false (the requests "
                        "that finish the login, where the capture completes)")  # fmt: skip
            routes.append(route)
    return tuple(routes)


def _step_paths(r: Reader, raw: Mapping[str, Any]) -> tuple[str, ...]:
    paths = raw.get("step_paths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        r.error("step_paths", "must be a list of paths")
        return ()
    for path in paths:
        if not path.startswith("/"):
            r.error("step_paths", f"must be paths starting with '/', got {path!r}")
            return ()
    return tuple(paths)


def read_success(r: Reader, raw: Mapping[str, Any], name: str = "success") -> SuccessRules:
    """The required rules table ``name`` (``success``, or a login's ``step``) of ``raw``."""
    t = r.subtable(raw, name, SUCCESS_KEYS)
    if t is None:
        return SuccessRules()
    with r.section(name):
        status = t.get("status", [])
        status = [status] if isinstance(status, int) and not isinstance(status, bool) else status
        if not isinstance(status, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in status
        ):
            r.error("status", "must be a list of HTTP status codes")
            status = []
        rules = SuccessRules(
            status=tuple(status),
            cookie=r.optional(t, "cookie"),
            cookie_prefix=r.optional(t, "cookie_prefix"),
            json=r.pointer(t, "json", None),
            json_equals=t.get("json_equals", _UNSET),
            location=_read_location(r, t),
            headers=_read_headers(r, t),
            body=_read_body(r, t),
        )
        if rules.has_json_equals and rules.json is None:
            r.error("json_equals", f"needs {name}.json (the pointer it compares)")
        if not (
            rules.status or rules.cookie or rules.cookie_prefix or rules.json or rules.location
            or rules.headers or rules.body
        ):  # fmt: skip
            r.error("", "needs at least one rule: status, cookie, cookie_prefix, json, "
                    "location, headers or body")  # fmt: skip
        return rules


def _strings(r: Reader, raw: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """A string or a list of strings (any empty one refused)."""
    value = raw.get(name, [])
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        r.error(name, "must be a string or a list of strings")
        return ()
    return tuple(value)


def _regex(r: Reader, raw: Mapping[str, Any], name: str) -> re.Pattern[str] | None:
    value = r.optional(raw, name)
    if value is None:
        return None
    try:
        return re.compile(value)
    except re.error as exc:
        r.error(name, f"is not a valid regular expression: {exc}")
        return None


def _read_location(r: Reader, t: Mapping[str, Any]) -> LocationRule | None:
    if "location" not in t:
        return None
    raw = r.subtable(t, "location", LOCATION_KEYS) or {}
    with r.section("location"):
        rule = LocationRule(
            equals=_strings(r, raw, "equals"),
            prefix=_strings(r, raw, "prefix"),
            not_prefix=_strings(r, raw, "not_prefix"),
            pattern=_regex(r, raw, "pattern"),
        )
        for value in (*rule.equals, *rule.prefix, *rule.not_prefix):
            if not (value.startswith("/") or "://" in value):
                r.error("", f"compares paths or absolute URLs, got {value!r}")
        if not (rule.equals or rule.prefix or rule.not_prefix or rule.pattern):
            r.error("", "needs equals, prefix, not_prefix or pattern")
        return rule


def _read_headers(r: Reader, t: Mapping[str, Any]) -> tuple[HeaderRule, ...]:
    raw = r.get(t, "headers", dict, {})
    rules: list[HeaderRule] = []
    with r.section("headers"):
        for name, value in raw.items():
            if not isinstance(value, dict):
                r.error(name, 'must be a table such as { equals = "ok" } or { present = true }')
                continue
            with r.section(name):
                r.unknown(value, HEADER_KEYS)
                rule = HeaderRule(
                    name=name,
                    present=r.get(value, "present", bool, True),
                    equals=r.optional(value, "equals"),
                    pattern=_regex(r, value, "pattern"),
                )
                if not rule.present and (rule.equals is not None or rule.pattern is not None):
                    r.error("present", "false (the header is absent) takes no equals or pattern")
                rules.append(rule)
    return tuple(rules)


def _read_body(r: Reader, t: Mapping[str, Any]) -> BodyRule | None:
    if "body" not in t:
        return None
    raw = r.subtable(t, "body", BODY_KEYS) or {}
    with r.section("body"):
        rule = BodyRule(
            contains=_strings(r, raw, "contains"), not_contains=_strings(r, raw, "not_contains")
        )
        if not (rule.contains or rule.not_contains):
            r.error("", "needs contains or not_contains")
        return rule


def read_profile_source(r: Reader, raw: Mapping[str, Any]) -> ProfileSource:
    """The required ``profile`` table of ``raw``."""
    t = r.subtable(raw, "profile", PROFILE_SOURCE_KEYS)
    if t is None:
        return ProfileSource()
    with r.section("profile"):
        source = ProfileSource(
            json=r.pointer(t, "json", None),
            fetch=r.path(t, "fetch", required=False),
            lookup=r.get(t, "lookup", bool, False),
            token=r.pointer(t, "token", "/token") or "/token",
        )
        if [source.json is not None, source.fetch is not None, source.lookup].count(True) != 1:
            r.error("", "needs exactly one of json (a pointer into the answer), fetch (a path) "
                    "or lookup = true (the [lookup])")  # fmt: skip
        return source


def _floor(r: Reader, raw: Mapping[str, Any]) -> float | None:
    """``failure_floor``: ``"auto"`` (the default: learned) or a duration."""
    if raw.get("failure_floor", "auto") == "auto":
        return None
    return r.duration(raw, "failure_floor", 0.0)


def read_answer(
    r: Reader,
    raw: Mapping[str, Any],
    name: str,
    *,
    default_status: int,
    keys: tuple[str, ...] = ANSWER_KEYS,
) -> Answer:
    """The required answer table ``name`` of ``raw``."""
    t = r.subtable(raw, name, keys)
    if t is None:
        return Answer()
    with r.section(name):
        redirect = r.optional(t, "redirect")
        if redirect is not None and not (redirect.startswith("/") or "://" in redirect):
            r.error("redirect", f"must be a path or an absolute URL, got {redirect!r}")
        if redirect is not None and "{next}" in redirect and r.optional(t, "next_param") is None:
            r.error("redirect", "a {next} template needs next_param (the parameter it comes from)")
        status = r.get(t, "status", int, 302 if redirect else default_status)
        if not 100 <= status <= 599:
            r.error("status", f"must be an HTTP status code, got {status}")
        answer = Answer(
            redirect=redirect,
            next_param=r.optional(t, "next_param"),
            json=t.get("json"),
            status=status,
            from_legacy=r.get(t, "from_legacy", bool, False),
        )
        if answer.redirect and answer.json is not None:
            r.error("", "takes redirect or json, not both")
        if answer.next_param and not answer.redirect:
            r.error("next_param", "only applies with redirect")
        return answer


def optional_answer(r: Reader, raw: Mapping[str, Any], name: str, default: Answer) -> Answer:
    """The answer table ``name`` of ``raw``, or ``default`` when there is none."""
    return read_answer(r, raw, name, default_status=default.status) if name in raw else default


def read_profile_map(r: Reader, doc: Mapping[str, Any]) -> ProfileMap:
    with r.table(doc, "profile", PROFILE_KEYS) as t:
        return ProfileMap(
            legacy_id=r.pointer(t, "legacy_id", "/id"),
            email=r.pointer(t, "email", "/email"),
            username=r.pointer(t, "username", "/username"),
            refresh_on_login=r.get(t, "refresh_on_login", bool, False),
            active=r.pointer(t, "active", None),
            active_values=_active_values(r, t),
            second_factor=r.pointer(t, "second_factor", None),
        )


def _active_values(r: Reader, t: Mapping[str, Any]) -> tuple[Any, ...]:
    values = r.get(t, "active_values", list, [])
    if values and "active" not in t:
        r.error("active_values", "needs profile.active (the pointer whose value it lists)")
    if not all(isinstance(v, str | int | float | bool) for v in values):
        r.error("active_values", "must be a list of strings, numbers or booleans")
        return ()
    return tuple(values)


def read_logout(r: Reader, doc: Mapping[str, Any]) -> LogoutConfig:
    with r.table(doc, "logout", LOGOUT_KEYS) as t:
        return LogoutConfig(
            path=r.path(t, "path", required=False), match=read_match(r, t, ("GET", "POST"))
        )
