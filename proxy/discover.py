"""What ``authshim discover`` reads off a legacy login page and proposes: pure functions only.

Finding the form (stdlib ``html.parser``), building the body a browser would send, telling a
successful login from a failed one, and writing the proposed ``[[login]]`` block as TOML.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

from proxy.bodies import MISSING, resolve_pointer
from proxy.config import SuccessRules
from proxy.config.login import LocationRule
from proxy.forward import UpstreamAnswer
from proxy.legacy import json_body, location, set_cookies

_TEXTLIKE = frozenset({"text", "email", "tel", ""})
_NOT_SENT = frozenset({"reset", "image", "file"})
# A cookie name that ends in a per-site hash (WordPress: wordpress_logged_in_<md5 of siteurl>).
_HASHED = re.compile(r"^(?P<prefix>.*?[_-])[0-9a-f]{16,}$")
# Set cookies that most likely carry the session, best first.
_SESSION_HINTS = ("logged_in", "session", "sid", "auth", "token", "login", "user")
_JSON_FLAGS = ("/ok", "/success", "/authenticated", "/logged_in")
_JSON_TOKENS = ("/token", "/access_token", "/key", "/jwt", "/auth_token")


@dataclass(frozen=True, slots=True)
class FormField:
    """One control of a form, as a browser would submit it by default."""

    name: str
    kind: str
    value: str
    checked: bool = False


@dataclass(slots=True)
class _Form:
    action: str
    method: str
    fields: list[FormField] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoginForm:
    """A login form: where it posts, and which fields carry what."""

    action: str
    method: str
    identifier: str
    password: str
    fields: tuple[FormField, ...]

    @property
    def path(self) -> str:
        """The action's path: what ``login.path`` intercepts."""
        return urlsplit(self.action).path or "/"

    @property
    def hidden(self) -> tuple[str, ...]:
        """Names of the hidden fields (CSRF tokens, test cookies, redirect targets)."""
        return tuple(f.name for f in self.fields if f.kind == "hidden")

    def body(self, identifier: str, password: str) -> bytes:
        """The form-urlencoded body a browser sends, with the given credentials filled in."""
        pairs: list[tuple[str, str]] = []
        submitted = False
        for f in self.fields:
            if f.name == self.identifier:
                pairs.append((f.name, identifier))
            elif f.name == self.password:
                pairs.append((f.name, password))
            elif f.kind == "submit":
                if not submitted:  # only the button that was clicked is sent
                    pairs.append((f.name, f.value))
                    submitted = True
            elif f.kind in ("checkbox", "radio"):
                if f.checked:
                    pairs.append((f.name, f.value or "on"))
            elif f.kind not in _NOT_SENT:
                pairs.append((f.name, f.value))
        return urlencode(pairs).encode()


class _FormParser(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.forms: list[_Form] = []
        self._current: _Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v or "" for k, v in attrs}
        if tag == "form":
            action = urljoin(self.base, a.get("action") or self.base)
            self._current = _Form(action, (a.get("method") or "get").upper())
            self.forms.append(self._current)
        elif self._current is not None and tag in ("input", "button", "select", "textarea"):
            name = a.get("name")
            if not name:
                return
            default = "submit" if tag == "button" else "text" if tag == "input" else tag
            kind = (a.get("type") or default).lower()
            checked = "checked" in a
            self._current.fields.append(FormField(name, kind, a.get("value", ""), checked))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def find_login_form(html: str, page_url: str) -> LoginForm | None:
    """The page's login form: the first form with exactly one password field (a sign-up or
    change-password form has two), its identifier the last text-like field before it."""
    parser = _FormParser(page_url)
    parser.feed(html)
    parser.close()
    for form in parser.forms:
        passwords = [i for i, f in enumerate(form.fields) if f.kind == "password"]
        if len(passwords) != 1:
            continue
        before = form.fields[: passwords[0]]
        candidates = [f for f in before if f.kind in _TEXTLIKE]
        if not candidates:
            continue
        return LoginForm(
            action=form.action,
            method=form.method,
            identifier=candidates[-1].name,
            password=form.fields[passwords[0]].name,
            fields=tuple(form.fields),
        )
    return None


def _session_cookie(names: list[str]) -> str:
    for hint in _SESSION_HINTS:
        for name in names:
            if hint in name.lower():
                return name
    return names[0]


def propose_success(
    good: UpstreamAnswer, bad: UpstreamAnswer, form_url: str | None = None
) -> SuccessRules | None:
    """Rules that hold for the accepted login ``good`` and not for the refused ``bad``. With
    the login form's URL, a redirecting ``good`` also gets a rule that its Location is not the
    form again (where a locked account's right password is sent back) nor where ``bad`` went."""
    status = (good.status,) if good.status != bad.status else ()
    bad_cookies = set_cookies(bad.headers)
    new = [name for name in set_cookies(good.headers) if name not in bad_cookies]
    cookie = prefix = None
    if new:
        name = _session_cookie(new)
        m = _HASHED.match(name)
        prefix, cookie = (m.group("prefix"), None) if m else (None, name)
    pointer = _json_pointer(json_body(good), json_body(bad))
    if not (status or cookie or prefix or pointer):
        return None
    rules = SuccessRules(status=status, cookie=cookie, cookie_prefix=prefix, json=pointer)
    return _with_location(rules, good, bad, form_url) if form_url else rules


def _with_location(
    rules: SuccessRules, good: UpstreamAnswer, bad: UpstreamAnswer, form_url: str
) -> SuccessRules:
    went = location(good, form_url)
    if went is None or _origin(went) != _origin(form_url):
        return rules
    avoid = [_local(form_url)]
    refused = location(bad, form_url)
    if refused is not None and _origin(refused) == _origin(form_url):
        avoid.append(_local(refused))
    here = _local(went)
    not_prefix = tuple(dict.fromkeys(a for a in avoid if not here.startswith(a)))
    if not not_prefix:
        return rules
    return SuccessRules(
        status=rules.status, cookie=rules.cookie, cookie_prefix=rules.cookie_prefix,
        json=rules.json, location=LocationRule(not_prefix=not_prefix),
    )  # fmt: skip


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _local(url: str) -> str:
    """A URL's path (without its query: a prefix rule covers /login?back_url=...)."""
    return urlsplit(url).path or "/"


def alike(good: UpstreamAnswer, bad: UpstreamAnswer, form_url: str) -> list[str]:
    """What the right and the wrong password's answers share: what no rule can tell apart."""
    same: list[str] = []
    if good.status == bad.status:
        same.append(f"status (both {good.status})")
    went, refused = location(good, form_url), location(bad, form_url)
    if went is not None and went == refused:
        same.append(f"Location (both {_local(went)})")
    cookies = set(set_cookies(good.headers))
    if cookies and cookies <= set(set_cookies(bad.headers)):
        same.append(f"cookies set (both set {', '.join(sorted(cookies))})")
    return same


def propose_failure(bad: UpstreamAnswer, form_url: str) -> tuple[dict[str, object], str]:
    """The ``failure`` answer for a wrong password, taken from the legacy app's own answer,
    and a comment on where it comes from."""
    refused = location(bad, form_url)
    if bad.status in (301, 302, 303, 307, 308) and refused is not None:
        if _origin(refused) == _origin(form_url):
            path = urlsplit(refused)
            target = path.path + (f"?{path.query}" if path.query else "")
            return {"redirect": target}, "a wrong password is redirected there"
    body = json_body(bad)
    if isinstance(body, dict):
        return {"status": bad.status, "json": body}, f"a wrong password gets {bad.status} JSON"
    return (
        {"redirect": _local(form_url)},
        f"a wrong password gets a {bad.status} page; authshim sends the browser back to the form",
    )


def _json_pointer(good: object, bad: object) -> str | None:
    for pointer in _JSON_FLAGS:
        if resolve_pointer(good, pointer) is True and resolve_pointer(bad, pointer) is not True:
            return pointer
    for pointer in _JSON_TOKENS:
        value, refused = resolve_pointer(good, pointer), resolve_pointer(bad, pointer)
        if isinstance(value, str) and value and (refused is MISSING or not refused):
            return pointer
    return None


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value)
    if value is None:
        return '""'  # TOML has no null
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value).__name__)


def success_table(rules: SuccessRules) -> dict[str, object]:
    """The ``success`` rules as a TOML inline table's items."""
    table: dict[str, object] = {}
    if rules.status:
        table["status"] = list(rules.status)
    if rules.cookie:
        table["cookie"] = rules.cookie
    if rules.cookie_prefix:
        table["cookie_prefix"] = rules.cookie_prefix
    if rules.json is not None:
        table["json"] = rules.json
    if rules.location is not None and rules.location.not_prefix:
        prefixes = list(rules.location.not_prefix)
        table["location"] = {"not_prefix": prefixes[0] if len(prefixes) == 1 else prefixes}
    return table


def login_block(
    form: LoginForm,
    *,
    success: SuccessRules | None = None,
    profile: dict[str, str] | None = None,
    answer_redirect: str = "/",
    failure: tuple[dict[str, object], str] | None = None,
) -> str:
    """The proposed ``[[login]]`` block for ``form``, as TOML with explaining comments."""
    next_param = next((n for n in ("redirect_to", "next") if n in form.hidden), None)
    answer: dict[str, object] = {"redirect": answer_redirect}
    if next_param:
        answer["next_param"] = next_param
    lines = ["[[login]]", f"path = {_toml(form.path)}", 'format = "form"']
    lines += [f"identifier = {_toml(form.identifier)}", f"password = {_toml(form.password)}"]
    if form.hidden:
        lines.append(f"# passed through untouched: {', '.join(form.hidden)}")
    if success is None:
        lines.append("# success: run again with --try USER to see what a real login does")
        lines.append("success = { status = [302] }")
    else:
        lines.append(f"success = {_toml(success_table(success))}")
    if profile is None:
        lines.append("# profile: no source found; see docs/configuration.md ([lookup])")
        lines.append('profile = { fetch = "/api/me" }')
    else:
        lines.append(f"profile = {_toml(profile)}")
    lines.append(f"answer = {_toml(answer)}")
    if failure is None:
        lines.append(f"failure = {_toml({'redirect': form.path})}")
    else:
        lines.append(f"# failure: {failure[1]}")
        lines.append(f"failure = {_toml(failure[0])}")
    return "\n".join(lines) + "\n"
