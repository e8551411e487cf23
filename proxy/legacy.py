"""The legacy app as authshim sees it: judge a login answer, fetch and map a profile."""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import orjson

from proxy.bodies import MISSING, resolve_pointer
from proxy.config import ProfileMap, ProfileSource, SuccessRules
from proxy.config.login import BodyRule, HeaderRule, LocationRule
from proxy.errors import ProfileError
from store.validation import ProfileFields

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

    from proxy.forward import Forwarder, UpstreamAnswer


def set_cookies(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """The cookies an answer sets (name -> value), leaving out ones it deletes."""
    cookies: dict[str, str] = {}
    for header in headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue
        for name, morsel in jar.items():
            if morsel.value and not _expired(morsel):
                cookies[name] = morsel.value
    return cookies


def _expired(morsel: Any) -> bool:
    if morsel["max-age"] and str(morsel["max-age"]).lstrip("-").isdigit():
        return int(morsel["max-age"]) <= 0
    if morsel["expires"]:
        try:
            return parsedate_to_datetime(morsel["expires"]).timestamp() < time.time()
        except (TypeError, ValueError):
            return False
    return False


def json_body(answer: UpstreamAnswer) -> Any:
    """The answer's body as JSON, or MISSING when it is not (or not wholly) JSON."""
    if not answer.complete or not answer.body:
        return MISSING
    try:
        return orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return MISSING


def judge(answer: UpstreamAnswer, rules: SuccessRules, url: str = "/") -> bool:
    """Whether the legacy app accepted the login: ALL configured rules must hold. ``url`` is
    the URL (or path) the login was sent to, which a relative ``Location`` is resolved against."""
    if rules.status and answer.status not in rules.status:
        return False
    if rules.cookie or rules.cookie_prefix:
        names = set_cookies(answer.headers)
        if rules.cookie and rules.cookie not in names:
            return False
        if rules.cookie_prefix and not any(n.startswith(rules.cookie_prefix) for n in names):
            return False
    if rules.location is not None and not _location_holds(answer, rules.location, url):
        return False
    if not all(_header_holds(answer, rule) for rule in rules.headers):
        return False
    if rules.body is not None and not _body_holds(answer, rules.body):
        return False
    if rules.json is not None:
        value = resolve_pointer(json_body(answer), rules.json)
        if value is MISSING:
            return False
        if rules.has_json_equals:
            return bool(value == rules.json_equals)
        return bool(value)
    return True


def is_step(answer: UpstreamAnswer, rules: SuccessRules | None, url: str = "/") -> bool:
    """Whether the answer is the first step of a login that goes on (a login's ``step`` rules,
    such as a redirect to a second-factor page): the password was right, the login is not done."""
    return rules is not None and judge(answer, rules, url)


def location(answer: UpstreamAnswer, url: str = "/") -> str | None:
    """The answer's ``Location`` resolved against ``url``, or None when it has none."""
    value = answer.headers.get("Location")
    if value is None:
        return None
    return urljoin(url, value.strip())


def _path_query(resolved: str) -> str:
    parts = urlsplit(resolved)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _location_holds(answer: UpstreamAnswer, rule: LocationRule, url: str) -> bool:
    resolved = location(answer, url)
    if resolved is None:
        return False  # a location rule is about a redirect: no Location, no match
    local = _path_query(resolved)

    def seen(value: str) -> str:
        # A configured path is compared with the path and query, so that /x, http://host/x
        # and x (from /) are alike; an absolute URL with the whole URL.
        return local if value.startswith("/") else resolved

    if rule.equals and not any(seen(v) == v for v in rule.equals):
        return False
    if rule.prefix and not any(seen(v).startswith(v) for v in rule.prefix):
        return False
    if any(seen(v).startswith(v) for v in rule.not_prefix):
        return False
    return rule.pattern is None or rule.pattern.search(local) is not None


def _header_holds(answer: UpstreamAnswer, rule: HeaderRule) -> bool:
    values = answer.headers.getall(rule.name, [])
    if not rule.present:
        return not values
    if not values:
        return False
    if rule.equals is not None and rule.equals not in values:
        return False
    pattern = rule.pattern
    return pattern is None or any(pattern.search(v) for v in values)


def _body_holds(answer: UpstreamAnswer, rule: BodyRule) -> bool:
    text = answer.body.decode("utf-8", "replace")
    if not all(c in text for c in rule.contains):
        return False
    return not any(c in text for c in rule.not_contains)


def profile_active(profile: Mapping[str, Any], mapping: ProfileMap) -> bool:
    """Whether the legacy app counts this user as active (``[profile] active``): the value at
    the pointer is one of ``active_values`` (type and value alike: ``true`` is not ``1``), or
    is ``true`` when no values are given. Without ``active`` every profile is active; with it,
    a profile that lacks the value is not."""
    if mapping.active is None:
        return True
    value = resolve_pointer(profile, mapping.active)
    if value is MISSING:
        return False
    if not mapping.active_values:
        return value is True
    return any(type(value) is type(v) and value == v for v in mapping.active_values)


async def fetch_profile(
    forwarder: Forwarder,
    source: ProfileSource,
    answer: UpstreamAnswer,
    client_headers: Mapping[str, str],
) -> dict[str, Any]:
    """The profile of the user the legacy app just accepted; raise ProfileError if none."""
    if source.json is not None:
        profile = resolve_pointer(json_body(answer), source.json)
    else:
        assert source.fetch is not None
        headers = _fetch_headers(answer, client_headers, source.token)
        fetched = await forwarder.get(source.fetch, headers=headers)
        if fetched.status != 200:
            raise ProfileError(f"GET {source.fetch} answered {fetched.status}")
        profile = json_body(fetched)
    if not isinstance(profile, dict):
        raise ProfileError("the profile is not a JSON object")
    return profile


def _fetch_headers(
    answer: UpstreamAnswer, client_headers: Mapping[str, str], token_pointer: str
) -> dict[str, str]:
    """Headers for a profile GET: the client's cookies overlaid with the ones the login set."""
    cookies: dict[str, str] = {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(client_headers.get("Cookie", ""))
    except CookieError:
        pass
    cookies.update({name: m.value for name, m in jar.items()})
    cookies.update(set_cookies(answer.headers))
    headers = {"Accept": "application/json"}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    token = resolve_pointer(json_body(answer), token_pointer)
    if isinstance(token, str):
        headers["Authorization"] = f"Bearer {token}"
    elif "Authorization" in client_headers:
        headers["Authorization"] = client_headers["Authorization"]
    return headers


def map_profile(profile: Mapping[str, Any], mapping: ProfileMap) -> ProfileFields:
    """Pick legacy id, email and username out of a legacy profile."""

    def pick(pointer: str | None) -> str | None:
        if pointer is None:
            return None
        value = resolve_pointer(profile, pointer)
        if value is MISSING or value is None or isinstance(value, dict | list | bool):
            return None
        return str(value)

    return ProfileFields(
        legacy_id=pick(mapping.legacy_id),
        email=pick(mapping.email),
        username=pick(mapping.username),
    )


def has_second_factor(profile: Mapping[str, Any], mapping: ProfileMap) -> bool:
    """Whether the profile says the user has a second factor at the legacy app
    (``[profile] second_factor``: any value there but null, false, 0, "" or an empty list)."""
    if mapping.second_factor is None:
        return False
    value = resolve_pointer(profile, mapping.second_factor)
    return value is not MISSING and bool(value)
