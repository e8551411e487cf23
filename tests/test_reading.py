"""proxy.reading: one reading of an intercepted request, or a refusal naming the rule."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import pytest

from proxy.errors import AmbiguousBody, BadRequestBody, UnreadableBody
from proxy.reading import Reading, read_request
from proxy.reading.names import Touch, core

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
WP = ("log", "pwd")
DJANGO = ("username", "password")
DEVISE = ("user[email]", "user[password]")


def form(body: bytes | str, *, creds: tuple[str, ...] = WP, query: str = "",
         routing: tuple[str, ...] = (), content_type: str = FORM) -> Reading:  # fmt: skip
    raw = body.encode() if isinstance(body, str) else body
    return read_request(raw, content_type=content_type, query=query, fmt="form",
                        credentials=creds, routing=routing)  # fmt: skip


def jsonb(body: bytes | str, *, creds: tuple[str, ...] = ("email", "password"),
          query: str = "", content_type: str = JSON,
          routing: tuple[str, ...] = ()) -> Reading:  # fmt: skip
    raw = body.encode() if isinstance(body, str) else body
    return read_request(raw, content_type=content_type, query=query, fmt="json",
                        credentials=creds, routing=routing)  # fmt: skip


# ---- ordinary logins are read, and re-encoded to the same meaning -------------------------


def test_a_wordpress_login_is_read_and_reencoded_to_the_same_pairs() -> None:
    """WordPress's login form is read; the forwarded body holds the same pairs in order."""
    body = ("log=J%C3%B6rg&pwd=p%26ss+w%3Drd&rememberme=forever&wp-submit=Log+In"
            "&redirect_to=http%3A%2F%2Fsite%2Fwp-admin%2F&testcookie=1")  # fmt: skip
    got = form(body, query="action=login", routing=("action",))
    assert got.text("log") == "Jörg" and got.text("pwd") == "p&ss w=rd"
    assert parse_qsl(got.body.decode()) == parse_qsl(body)
    assert got.routing == {"action": "login"} and got.query == "action=login"


def test_a_django_login_is_read() -> None:
    """Django's login form (csrf token, username, password, next) is read."""
    body = "csrfmiddlewaretoken=abc&username=alice&password=pw&next=%2Faccount%2F"
    got = form(body, creds=DJANGO)
    assert (got.text("username"), got.text("password"), got.text("next")) == (
        "alice", "pw", "/account/")  # fmt: skip
    assert parse_qsl(got.body.decode()) == parse_qsl(body)


def test_a_devise_login_with_its_exact_nested_names_is_read() -> None:
    """Devise's user[email] / user[password] are the configured names, so they are read."""
    body = ("authenticity_token=t%2B%3D&user%5Bemail%5D=a%40x&user%5Bpassword%5D=pw"
            "&user%5Bremember_me%5D=0&user%5Bremember_me%5D=1&commit=Log+in")  # fmt: skip
    got = form(body, creds=DEVISE)
    assert got.text("user[email]") == "a@x" and got.fields["user[remember_me]"] == "0"
    assert parse_qsl(got.body.decode()) == parse_qsl(body)  # duplicates of others are kept


def test_a_json_spa_login_is_read_and_reencoded_compactly() -> None:
    """A JSON login is read; the forwarded body is the same object, compact, keys in order."""
    body = '{ "email": "a@x", "password": "p\\u00e4ss", "remember": true, "n": [1, 2.5, null] }'
    got = jsonb(body)
    assert got.text("email") == "a@x" and got.text("password") == "päss"
    assert got.body == '{"email":"a@x","password":"päss","remember":true,"n":[1,2.5,null]}'.encode()
    assert json.loads(got.body) == json.loads(body)


def test_a_nested_json_login_is_read_by_pointer() -> None:
    """Credentials given as JSON pointers are read at exactly that place."""
    got = jsonb('{"user":{"email":"a@x","password":"pw"},"action":"login"}',
                creds=("/user/email", "/user/password"), routing=("action",))  # fmt: skip
    assert got.text("/user/email") == "a@x" and got.routing == {"action": "login"}


def test_text_and_optional_keep_the_submitted_semantics() -> None:
    """text() raises BadRequestBody when absent or not a string; optional() answers None."""
    got = jsonb('{"email":"a@x","password":"pw","n":1}')
    with pytest.raises(BadRequestBody):
        got.text("missing")
    with pytest.raises(BadRequestBody):
        got.text("n")
    assert got.optional("n") is None and got.optional("/email") == "a@x"


def test_a_form_without_content_type_and_an_empty_body_are_read() -> None:
    """No Content-Type is read as a form (as before); an empty body has no fields."""
    assert form("log=a&pwd=b", content_type="").text("log") == "a"
    assert form(b"", content_type=f"{FORM}; charset=UTF-8").fields == {}


# ---- forms: repeated and folded names ---------------------------------------------------


def test_a_credential_given_twice_is_refused_even_with_equal_values() -> None:
    """log twice: PHP reads the last, Servlet the first, ASP.NET joins them."""
    for body in ("log=victim&pwd=x&log=attacker", "log=a&pwd=x&log=a", "log=a&pwd=x&pwd=y"):
        with pytest.raises(AmbiguousBody):
            form(body)


@pytest.mark.parametrize(
    "name",
    ["+log", "++log", "log%00x", "LOG", "Log", "log[]", "log[x]", "x[log]", "%5Blog%5D",
     "x%5Blog%5D", "[log]", "log[", "log.x", "x.log", "lOg",
     "x%255Blog%255D", "%u006cog", "lo%67%00"],
)  # fmt: skip
def test_a_name_some_framework_folds_into_a_credential_is_refused(name: str) -> None:
    """PHP's space/NUL/bracket rules, ASP.NET and Go case, Rack/qs/PHP/ASP.NET nesting."""
    with pytest.raises(AmbiguousBody):
        form(f"log=victim&pwd=attackers-pw&{name}=attacker")


@pytest.mark.parametrize("name", ["user.login", "user+login", "user[login", "USER_LOGIN",
                                  "user%20login", "%20user_login", "user-login"])  # fmt: skip
def test_php_name_mangling_is_refused(name: str) -> None:
    """PHP reads 'user.login', 'user login' and 'user[login' as user_login."""
    with pytest.raises(AmbiguousBody):
        form(f"user_login=victim&pwd=x&{name}=attacker", creds=("user_login", "pwd"))


@pytest.mark.parametrize("name", ["user.email", "USER[email]", "user[email][]", "email",
                                  "user[Email]", "user[email", "x[user][email]"])  # fmt: skip
def test_other_spellings_of_a_nested_credential_are_refused(name: str) -> None:
    """Only the configured user[email] itself is read; ASP.NET's user.email and the rest refused."""
    with pytest.raises(AmbiguousBody):
        form(f"user[email]=victim&user[password]=x&{name}=attacker", creds=DEVISE)


def test_unicode_folds_of_a_name_are_refused() -> None:
    """U+017F (long s) and U+212A (Kelvin sign) fold to s and k, as in Go and ASP.NET."""
    assert core("u\u017fername") == "username" and core("\u212aey") == "key"
    with pytest.raises(AmbiguousBody):
        form("username=victim&password=x&u%C5%BFername=attacker", creds=DJANGO)
    with pytest.raises(AmbiguousBody):
        form("key=victim&password=x&%E2%84%AAEY=attacker", creds=("key", "password"))


def test_names_that_merely_contain_a_credential_are_read() -> None:
    """login, blog, pwd_hint and log_level are other fields, not folds of log or pwd."""
    got = form("log=a&pwd=b&login=1&blog=2&pwdhint2=3&catalog[x]=4")
    assert got.fields["login"] == "1" and got.text("log") == "a"


# ---- query string and routing -----------------------------------------------------------


@pytest.mark.parametrize("query", ["username=attacker", "USERNAME=attacker", "x[username]=a",
                                   "username=victim"])  # fmt: skip
def test_a_credential_in_the_query_is_refused(query: str) -> None:
    """Servlet getParameter, ASP.NET Request[] and Flask request.values read the query first."""
    with pytest.raises(AmbiguousBody):
        form("username=victim&password=x", creds=DJANGO, query=query)


def test_routing_in_query_and_body_must_agree() -> None:
    """PHP $_REQUEST reads the body's action, Servlet and Flask the query's: they must agree."""
    body = "action=login&log=v&pwd=x"
    with pytest.raises(AmbiguousBody):
        form(body, query="action=lostpassword", routing=("action",))
    got = form(body, query="action=login&x=%2F", routing=("action",))
    assert got.routing == {"action": "login"} and got.query == "action=login&x=%2F"
    assert form("log=v&pwd=x", query="action=rp", routing=("action",)).routing == {"action": "rp"}


@pytest.mark.parametrize(
    ("body", "query"),
    [("action=login&action=login&log=v&pwd=x", ""), ("log=v&pwd=x", "action=a&action=a"),
     ("Action=lostpassword&action=login&log=v&pwd=x", ""), ("log=v&pwd=x", "action[]=rp"),
     ("log=v&pwd=x&+action=rp", "action=login")],
)  # fmt: skip
def test_a_routing_name_repeated_or_folded_is_refused(body: str, query: str) -> None:
    """ASP.NET joins a repeated action; PHP and ASP.NET fold ' action' and 'Action'."""
    with pytest.raises(AmbiguousBody):
        form(body, query=query, routing=("action",))


# ---- separators, charsets, encodings ----------------------------------------------------


@pytest.mark.parametrize(("body", "query"), [("log=v&pwd=x;log=a", ""), ("log=v;x&pwd=y", ""),
                                             ("log=v&pwd=x", "a=1;action=rp")])  # fmt: skip
def test_a_semicolon_next_to_a_field_is_refused(body: str, query: str) -> None:
    """Rack 2 splits a query on ';' and Go drops such pairs: a field beside one is refused."""
    with pytest.raises(AmbiguousBody):
        form(body, query=query, routing=("action",))


def test_a_semicolon_inside_another_value_is_kept() -> None:
    """A ';' in an unrelated value is read as part of it and sent percent-encoded."""
    got = form("log=v&pwd=x&redirect_to=/a;b")
    assert got.fields["redirect_to"] == "/a;b" and b"%3B" in got.body


@pytest.mark.parametrize(
    "content_type",
    [f"{FORM}; charset=iso-8859-1", f"{FORM}; charset=utf-16", f"{FORM};charset=utf-8;charset=x",
     f'{FORM}; charset="windows-1252"'],
)  # fmt: skip
def test_a_charset_other_than_utf8_is_refused(content_type: str) -> None:
    """Servlet containers and ASP.NET decode the body in the declared charset."""
    with pytest.raises(AmbiguousBody):
        form("log=v&pwd=x", content_type=content_type)
    assert form("log=v&pwd=x", content_type=f'{FORM}; charset="UTF-8"').text("log") == "v"


def test_a_charset_field_is_refused() -> None:
    """_charset_=iso-8859-1 makes some form parsers decode the rest in Latin-1."""
    with pytest.raises(AmbiguousBody):
        form("_charset_=iso-8859-1&log=J%F6rg&pwd=x")


def test_invalid_utf8_is_ambiguous_when_it_may_name_a_field_else_unreadable() -> None:
    """Go keeps invalid bytes, Python parsers replace them: refused, Unreadable if nameless."""
    with pytest.raises(AmbiguousBody):
        form(b"log=victim%FF&pwd=x")
    with pytest.raises(UnreadableBody):
        form(b"a=%FF&b=2")


def test_an_invalid_escape_in_a_field_and_too_many_fields_are_refused() -> None:
    """Go and Tomcat drop a pair with a bad %-escape; PHP and qs stop reading at 1,000 fields."""
    with pytest.raises(AmbiguousBody):
        form("log=victim%zz&pwd=x")
    assert form("log=v&pwd=x&next=100%").fields["next"] == "100%"
    with pytest.raises(AmbiguousBody):
        form("&".join(f"f{i}=1" for i in range(1001)) + "&log=v&pwd=x")


# ---- JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ['{"email":"v","e\\u006dail":"a","password":"p"}',
        '{"email":"v","password":"p","x":{"k":1,"k":2}}',
     '{"email":"v","EMAIL":"a","password":"p"}',
     '{"email":"v","password":"p","pa\\u017f\\u017fword":"a"}',
     '{"email":"v","password":"p","a":{"Name":1,"name":2}}'],
)  # fmt: skip
def test_json_keys_repeated_or_equal_under_the_fold_are_refused(body: str) -> None:
    """Duplicates after unescaping at any depth, and keys equal ignoring case (Go, ASP.NET)."""
    with pytest.raises(AmbiguousBody):
        jsonb(body)


@pytest.mark.parametrize(
    "body",
    ['{"email":"v","password":"p","user":{"email":"a"}}',
        '{"email":"v","password":"p","user.email":"a"}',
     '{"email":"v","password":"p","list":[{"email":"a"}]}',
     '{"password":"p","user[email":"a","email":"v"}',
     '{"email":"v","password":"p","Email ":"a"}'],
)  # fmt: skip
def test_a_json_key_touching_a_credential_elsewhere_is_refused(body: str) -> None:
    """Rails wrap_parameters and Devise read user.email; only the configured place is read."""
    with pytest.raises(AmbiguousBody):
        jsonb(body)


def test_a_top_level_copy_of_a_nested_credential_is_refused() -> None:
    """With /user/email configured, a top-level email (wrap_parameters' source) is refused."""
    with pytest.raises(AmbiguousBody):
        jsonb('{"email":"a","user":{"email":"v","password":"p"}}',
              creds=("/user/email", "/user/password"))  # fmt: skip


@pytest.mark.parametrize(
    "body",
    ['{"email":"v","password":NaN}', '{"email":"v","password":"p","n":Infinity}',
     '{"email":"v","password":"p","n":1e400}', '{"email":["v","a"],"password":"p"}',
     '{"email":{"$ne":null},"password":"p"}', '{"email":null,"password":"p"}',
     '{"email":"v\\ud800","password":"p"}', '[{"email":"v","password":"p"}]',
     '{"email":"v","password":"p"', '\ufeff{"email":"v","password":"p"}',
     '{"email":"v","password":"p","x":"\\udc00"}'],
)  # fmt: skip
def test_malformed_json_or_odd_credential_values_are_refused(body: str) -> None:
    """NaN/Infinity, out-of-range numbers, non-string or lone-surrogate credentials, a BOM, a
    non-object or broken document that names a credential: AmbiguousBody."""
    with pytest.raises(AmbiguousBody):
        jsonb(body)


def test_utf16_json_naming_a_credential_is_ambiguous() -> None:
    """Python's json.loads(bytes), behind Flask's get_json, reads UTF-16: it may name email."""
    body = '{"email":"v","password":"p"}'.encode("utf-16")
    assert json.loads(body)["email"] == "v"
    with pytest.raises(AmbiguousBody):
        jsonb(body)


@pytest.mark.parametrize("body", [b"", b"[1,2]", b"{", b"\xff\xfe", b"null"])
def test_json_that_names_no_credential_is_unreadable(body: bytes) -> None:
    """Broken or non-object JSON naming no field may be forwarded unchanged (UnreadableBody)."""
    with pytest.raises(UnreadableBody):
        jsonb(body)


# ---- other formats ----------------------------------------------------------------------


MULTIPART = b'--b\r\nContent-Disposition: form-data; name="%s"\r\n\r\nvictim\r\n--b--\r\n'


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(MULTIPART % b"log", "multipart/form-data; boundary=b"), (b'{"log":"v"}', JSON),
     (b'{"\\u006Cog":"v"}', JSON), (b"%6Cog=v", "text/plain"),
     (b"LOG=v", "application/x-www-form")],
)  # fmt: skip
def test_another_format_on_a_form_route_naming_a_credential_is_ambiguous(
    body: bytes, content_type: str
) -> None:
    """Multipart, JSON or text sent to a form route that may name log is refused outright."""
    with pytest.raises(AmbiguousBody):
        form(body, content_type=content_type)


def test_another_format_naming_nothing_is_unreadable() -> None:
    """Multipart or JSON naming no credential may be forwarded unchanged (UnreadableBody)."""
    with pytest.raises(UnreadableBody):
        form(MULTIPART % b"comment", content_type="multipart/form-data; boundary=b")
    with pytest.raises(UnreadableBody):
        jsonb(b"a=1&b=2", content_type=FORM)
    with pytest.raises(AmbiguousBody):
        jsonb(b"email=v&password=p", content_type=FORM)


def test_touch_tells_which_field_a_name_reaches() -> None:
    """The fold rule: whole name or any [ ] . segment, after NUL truncation, by core."""
    touch = Touch(["user[email]", "pwd"])
    assert touch.fields("x.EMAIL") == {"user[email]"} and touch.fields("PWD\x00x") == {"pwd"}
    assert touch.fields("remember_me") == set() and touch.fields("user") == set()


def _roundtrip(got: Reading) -> Any:
    return json.loads(got.body)


def test_reencoded_json_keeps_unicode_and_order() -> None:
    """ensure_ascii=False and key order: the legacy app sees the same object."""
    got = jsonb('{"password":"p","email":"j\\u00f6rg@x","z":{"b":1,"a":2}}')
    assert list(_roundtrip(got)) == ["password", "email", "z"]
    assert "jörg".encode() in got.body
