"""The account flows beside login: ``[lookup]``, ``[reset]``, ``[signup]``,
``[password_change]`` and ``[policy]`` (reset/sign-up issue)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from proxy.config.login import (
    OK,
    Answer,
    ProfileSource,
    SuccessRules,
    optional_answer,
    read_profile_source,
    read_success,
)
from proxy.config.matching import POST, Match, read_match
from proxy.config.reader import TOKEN, Reader, Secret
from proxy.config.rules import CAPTURE_POLICY_KEYS


@dataclass(frozen=True, slots=True)
class LookupConfig:
    """The legacy look-up: a user's profile by email or by username (``{email}``/``{username}``)."""

    by_email: str | None = None
    by_username: str | None = None
    method: str = "GET"
    headers: tuple[tuple[str, Secret], ...] = ()
    timeout: float = 5.0
    pointer: str = ""
    # A search answer: the pointer to its list, searched for the one element whose [profile]
    # email (by_email) or username (by_username) equals the identifier. None: no list.
    list: str | None = None
    # "database": asked of [legacy_db] find_user instead of by_email/by_username (issue 17).
    source: str = "http"


@dataclass(frozen=True, slots=True)
class ResetConfig:
    request_path: str
    format: str
    email: str
    link: str
    answer: Answer
    done: Answer
    expires: float = 1800.0
    confirm_path: str | None = None
    template: str | None = None
    # name=value pairs the request's query must hold (wp-login.php is the login route too):
    # the older spelling of match.when, which they become
    request_query: tuple[tuple[str, str], ...] = ()
    # In mode migrate with a look-up: what becomes of a request for an address neither the
    # store nor the look-up has (or the look-up could not answer): dropped, or forwarded to the
    # legacy app's own reset in the background (its answer discarded).
    unknown: str = "drop"
    match: Match = POST  # methods and when (proxy/config/matching.py)


@dataclass(frozen=True, slots=True)
class SignupConfig:
    path: str
    format: str
    handler: str
    email: str
    password: str
    answer: Answer
    conflict: Answer
    username: str | None = None
    fields: tuple[str, ...] = ()
    success: SuccessRules | None = None
    profile: ProfileSource | None = None
    # When the legacy look-up guards a local sign-up: "always" (both modes, since the legacy
    # app may still trust identity headers after cut-over) or "migrate" (mode migrate only).
    legacy_check: str = "always"
    match: Match = POST  # methods and when (proxy/config/matching.py)


@dataclass(frozen=True, slots=True)
class PasswordChangeConfig:
    path: str
    format: str
    old: str | None
    new: str
    answer: Answer
    failure: Answer
    confirm: str | None = None
    match: Match = POST  # methods and when (proxy/config/matching.py)
    fresh: float = 0.0  # a session this young may change without the old password
    forward: bool = False  # the legacy app changes it too


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    min_length: int = 8
    max_length: int = 1024


LOOKUP_KEYS = (
    "by_email", "by_username", "method", "headers", "timeout", "pointer", "list", "source",
)  # fmt: skip
RESET_KEYS = (
    "request_path", "format", "email", "answer", "link", "expires", "done", "confirm_path",
    "template", "request_query", "unknown", "methods", "when",
)  # fmt: skip
SIGNUP_KEYS = (
    "path", "format", "handler", "email", "username", "password", "fields", "answer",
    "conflict", "success", "profile", "legacy_check", "methods", "when",
)  # fmt: skip
PASSWORD_CHANGE_KEYS = (
    "path", "format", "old", "new", "confirm", "answer", "failure", "methods", "when",
    "fresh", "forward",
)  # fmt: skip
POLICY_KEYS = ("min_length", "max_length", *CAPTURE_POLICY_KEYS)  # those: config/rules.py
LEGACY_CHECKS = ("always", "migrate")


def read_lookup(r: Reader, doc: Mapping[str, Any]) -> LookupConfig | None:
    if "lookup" not in doc:
        return None
    with r.table(doc, "lookup", LOOKUP_KEYS) as t:
        by_email = _url_template(r, t, "by_email", "{email}")
        by_username = _url_template(r, t, "by_username", "{username}")
        source = r.choice(t, "source", ("http", "database"))
        if source == "database" and (t.get("by_email") or t.get("by_username")):
            r.error("source", "'database' asks [legacy_db] find_user: leave out by_email and "
                    "by_username")  # fmt: skip
        elif source == "http" and not (t.get("by_email") or t.get("by_username")):
            r.error("", "needs by_email or by_username (or both)")
        headers: list[tuple[str, Secret]] = []
        raw_headers = r.get(t, "headers", dict, {})
        with r.section("headers"):
            for name in raw_headers:
                if not TOKEN.match(name):
                    r.error(name, "is not a valid header name")
                elif (value := r.secret(raw_headers, name)) is not None:
                    headers.append((name, value))
        return LookupConfig(
            by_email=by_email,
            by_username=by_username,
            method=r.choice(t, "method", ("GET", "POST")),
            headers=tuple(headers),
            timeout=r.duration(t, "timeout", 5.0),
            pointer=r.pointer(t, "pointer", "") or "",
            list=_list_pointer(r, t),
            source=source,
        )


def _list_pointer(r: Reader, t: Mapping[str, Any]) -> str | None:
    pointer = r.pointer(t, "list", None)
    if pointer is not None and t.get("pointer"):
        r.error("list", "takes the place of pointer: give one of them")
    return pointer


def _url_template(r: Reader, raw: Mapping[str, Any], name: str, placeholder: str) -> str | None:
    value = r.optional(raw, name)
    if value is not None and (
        placeholder not in value or urlsplit(value).scheme not in ("http", "https")
    ):
        r.error(name, f"must be an http(s):// URL containing {placeholder}, got {value!r}")
        return None
    return value


def read_reset(r: Reader, doc: Mapping[str, Any]) -> ResetConfig | None:
    if "reset" not in doc:
        return None
    with r.table(doc, "reset", RESET_KEYS) as t:
        link = r.get(t, "link", str, "")
        if "{token}" not in link or urlsplit(link).scheme not in ("http", "https"):
            r.error("link", "must be an http(s):// URL containing {token}, such as "
                    "'https://example.com/.authshim/reset?token={token}'")  # fmt: skip
        template = r.optional(t, "template")
        if template is not None and not Path(template).is_file():
            r.error("template", f"no such file: {template!r}")
        expires = r.duration(t, "expires", 1800.0)
        if expires <= 0:
            r.error("expires", "must be greater than 0")
        query = r.get(t, "request_query", str, "")
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
        except ValueError:
            pairs = []
        if query and not pairs:
            r.error("request_query", f"must be name=value pairs joined by &, such as "
                    f"'action=lostpassword', got {query!r}")  # fmt: skip
        return ResetConfig(
            request_path=r.path(t, "request_path", required=True) or "/",
            format=r.format(t),
            email=r.field(t, "email"),
            link=link,
            answer=optional_answer(r, t, "answer", OK),
            done=optional_answer(r, t, "done", OK),
            expires=expires,
            confirm_path=r.path(t, "confirm_path", required=False),
            template=template,
            request_query=tuple(pairs),
            unknown=r.choice(t, "unknown", ("drop", "forward")),
            match=_reset_match(r, t, tuple(pairs)),
        )


def _reset_match(
    r: Reader, t: Mapping[str, Any], pairs: tuple[tuple[str, str], ...]
) -> Match:
    match = read_match(r, t, ("POST",))
    if pairs:
        if match.when:
            r.error("request_query", "is the older spelling of when: give one of them")
        return Match(match.methods, tuple((k, (v,)) for k, v in pairs))
    return match


def read_signup(r: Reader, doc: Mapping[str, Any]) -> SignupConfig | None:
    if "signup" not in doc:
        return None
    with r.table(doc, "signup", SIGNUP_KEYS) as t:
        handler = r.choice(t, "handler", ("local", "upstream"))
        fields = r.get(t, "fields", list, [])
        if not all(isinstance(f, str) and f for f in fields):
            r.error("fields", "must be a list of field names")
            fields = []
        upstream = handler == "upstream"
        for name in ("success", "profile"):
            if name in t and not upstream:
                r.error(name, "only applies with handler = 'upstream'")
        conflict = Answer(json={"error": "this email or username is taken"}, status=409)
        return SignupConfig(
            path=r.path(t, "path", required=True) or "/",
            format=r.format(t),
            handler=handler,
            email=r.field(t, "email"),
            password=r.field(t, "password"),
            answer=optional_answer(r, t, "answer", OK),
            conflict=optional_answer(r, t, "conflict", conflict),
            username=r.optional(t, "username"),
            fields=tuple(fields),
            success=read_success(r, t) if upstream else None,
            profile=read_profile_source(r, t) if upstream else None,
            legacy_check=r.choice(t, "legacy_check", LEGACY_CHECKS),
            match=read_match(r, t, ("POST",)),
        )


def read_password_change(r: Reader, doc: Mapping[str, Any]) -> PasswordChangeConfig | None:
    if "password_change" not in doc:
        return None
    refused = Answer(json={"error": "the password was not changed"}, status=401)
    with r.table(doc, "password_change", PASSWORD_CHANGE_KEYS) as t:
        return PasswordChangeConfig(
            path=r.path(t, "path", required=True) or "/",
            format=r.format(t),
            old=r.field(t, "old") if "old" in t or "fresh" not in t else None,
            new=r.field(t, "new"),
            answer=optional_answer(r, t, "answer", OK),
            failure=optional_answer(r, t, "failure", refused),
            confirm=r.optional(t, "confirm"),
            match=read_match(r, t, ("POST",)),
            fresh=r.duration(t, "fresh", 0.0),
            forward=r.get(t, "forward", bool, False),
        )


def read_policy(r: Reader, doc: Mapping[str, Any]) -> PolicyConfig:
    with r.table(doc, "policy", POLICY_KEYS) as t:
        policy = PolicyConfig(r.positive(t, "min_length", 8), r.positive(t, "max_length", 1024))
        if policy.min_length > policy.max_length:
            r.error("min_length", "must not be greater than max_length")
        return policy
