"""Each row of the one-reading table checked against the real parser: the attack makes it read
another user (or route) than a naive reading does, and proxy.reading refuses the request."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from proxy.errors import AmbiguousBody
from proxy.reading import FRAMEWORKS, read_request

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
HERE = Path(__file__).parent
NODE_PATH = "/usr/share/nodejs"  # Debian's node-qs


@dataclass(frozen=True)
class Row:
    """One attack: the real parser ``parser`` reads ``real`` at ``where``; naively: ``naive``."""

    id: str
    framework: str  # a FRAMEWORKS name prefix
    parser: str
    body: bytes
    field: str  # the credential or routing field at stake
    where: tuple[str, ...]  # where in the parser's output the field is read
    real: Any
    naive: Any
    query: str = ""
    fmt: str = "form"
    credentials: tuple[str, ...] = ()
    routing: tuple[str, ...] = ()


WP = ("log", "pwd")
DJ = ("username", "password")
SPA = ("email", "password")
ROWS = [
    Row("php-leading-space", "PHP", "php", b"log=victim&pwd=pw&+log=attacker",
        "log", ("post", "log"), "attacker", "victim", credentials=WP),
    Row("php-nul-ends-name", "PHP", "php", b"log=victim&pwd=pw&log%00x=attacker",
        "log", ("post", "log"), "attacker", "victim", credentials=WP),
    Row("php-dot-is-underscore", "PHP", "php", b"user_login=victim&pwd=pw&user.login=attacker",
        "user_login", ("post", "user_login"), "attacker", "victim",
        credentials=("user_login", "pwd")),
    Row("php-space-is-underscore", "PHP", "php", b"user_login=victim&pwd=pw&user+login=attacker",
        "user_login", ("post", "user_login"), "attacker", "victim",
        credentials=("user_login", "pwd")),
    Row("php-unclosed-bracket", "PHP", "php", b"user_login=victim&pwd=pw&user[login=attacker",
        "user_login", ("post", "user_login"), "attacker", "victim",
        credentials=("user_login", "pwd")),
    Row("php-last-wins", "PHP", "php", b"log=victim&pwd=pw&log=attacker",
        "log", ("post", "log"), "attacker", "victim", credentials=WP),
    Row("php-request-body-wins", "PHP", "php", b"action=login&log=victim&pwd=pw",
        "action", ("request", "action"), "login", "lostpassword",
        query="action=lostpassword", credentials=WP, routing=("action",)),
    Row("php-json-last-wins", "PHP", "php-json", b'{"email":"victim","email":"attacker"}',
        "email", ("email",), "attacker", "victim", fmt="json", credentials=SPA),
    Row("rack-space-after-separator", "Rails", "rack", b"log=victim&pwd=pw& log=attacker",
        "log", ("POST", "log"), "attacker", "victim", credentials=WP),
    Row("rack-last-wins", "Rails", "rack",
        b"user[email]=victim&user[password]=pw&user%5Bemail%5D=attacker",
        "user[email]", ("POST", "user", "email"), "attacker", "victim",
        credentials=("user[email]", "user[password]")),
    Row("rack-query-semicolon", "Rails", "rack", b"log=victim&pwd=pw",
        "action", ("params", "action"), "lostpassword", None,
        query="next=%2F;action=lostpassword", credentials=WP, routing=("action",)),
    Row("rack-params-body-wins", "Rails", "rack", b"action=login&log=victim&pwd=pw",
        "action", ("params", "action"), "login", "lostpassword",
        query="action=lostpassword", credentials=WP, routing=("action",)),
    Row("qs-leading-bracket", "Express", "qs", b"email=victim&password=pw&[email]=attacker",
        "email", ("email",), ["victim", "attacker"], "victim", credentials=SPA),
    Row("qs-decoded-brackets", "Express", "qs", b"email=victim&password=pw&email%5B%5D=attacker",
        "email", ("email",), ["victim", "attacker"], "victim", credentials=SPA),
    Row("qs-duplicates-array", "Express", "qs", b"email=victim&password=pw&email=attacker",
        "email", ("email",), ["victim", "attacker"], "victim", credentials=SPA),
    Row("node-json-last-wins", "Express", "node-json",
        b'{"email":"victim","password":"pw","email":"attacker"}',
        "email", ("email",), "attacker", "victim", fmt="json", credentials=SPA),
    Row("go-json-case", "Go", "go-json", b'{"email":"victim","EMAIL":"attacker","password":"pw"}',
        "email", ("Email",), "attacker", "victim", fmt="json", credentials=SPA),
    Row("go-json-long-s", "Go", "go-json",
        '{"username":"victim","u\u017fername":"attacker","password":"pw"}'.encode(),
        "username", ("Username",), "attacker", "victim", fmt="json", credentials=DJ),
    Row("go-json-nested-case", "Go", "go-json",
        b'{"user":{"email":"victim","Email":"attacker","password":"pw"}}',
        "/user/email", ("User", "Email"), "attacker", "victim", fmt="json",
        credentials=("/user/email", "/user/password")),
    Row("go-form-query-credential", "Go", "go-form", b"password=pw",
        "username", ("username",), "attacker", None, query="username=attacker", credentials=DJ),
    Row("django-last-wins", "Django", "django", b"username=victim&password=pw&username=attacker",
        "username", ("post", "username"), "attacker", "victim", credentials=DJ),
    Row("werkzeug-values-query-first", "Flask", "werkzeug", b"username=victim&password=pw",
        "username", ("values", "username"), "attacker", "victim",
        query="username=attacker", credentials=DJ),
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def php_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """PHP's built-in server answering what $_GET, $_POST and $_REQUEST hold."""
    if shutil.which("php") is None:
        pytest.skip("php (Debian php-cli) is not installed")
    root = tmp_path_factory.mktemp("php")
    (root / "index.php").write_text(
        "<?php echo json_encode(['get' => $_GET, 'post' => $_POST, 'request' => $_REQUEST]);"
    )
    port = _free_port()
    proc = subprocess.Popen(
        ["php", "-n", "-d", "request_order=GP", "-S", f"127.0.0.1:{port}", "-t", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait()


@pytest.fixture(scope="session")
def go_reader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/parsers/reader.go built once, offline, into a temporary folder."""
    if shutil.which("go") is None:
        pytest.skip("go (Debian golang-go) is not installed")
    tmp = tmp_path_factory.mktemp("go")
    env = {**os.environ, "GOCACHE": str(tmp / "cache"), "HOME": str(tmp),
           "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GO111MODULE": "off"}  # fmt: skip
    binary = tmp / "reader"
    subprocess.run(
        ["go", "build", "-o", str(binary), str(HERE / "parsers" / "reader.go")],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return binary


def _run(argv: list[str], body: bytes, env: dict[str, str] | None = None) -> Any:
    done = subprocess.run(argv, input=body, capture_output=True, check=True, env=env)
    return json.loads(done.stdout)


RUBY = """
require "rack"; require "json"
body = STDIN.read
env = Rack::MockRequest.env_for("/login?" + ARGV[0], method: "POST", input: body,
                                "CONTENT_TYPE" => "application/x-www-form-urlencoded")
r = Rack::Request.new(env)
puts({"GET" => r.GET, "POST" => r.POST, "params" => r.params}.to_json)
"""
QS = """
const qs = require("qs"); let body = "";
process.stdin.on("data", (d) => body += d).on("end", () => console.log(JSON.stringify(
  process.argv[1] === "json" ? JSON.parse(body)
    // body-parser's urlencoded({extended: true}) options
    : qs.parse(body, {allowPrototypes: true, arrayLimit: 100, depth: Infinity}))));
"""
DJANGO = """
import json, sys
from django.conf import settings
settings.configure()
from django.http import QueryDict
post = QueryDict(sys.stdin.buffer.read())
print(json.dumps({"post": {k: post[k] for k in post}}))
"""


def _need(binary: str, package: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} ({package}) is not installed")


def real_reading(row: Row, request: pytest.FixtureRequest) -> Any:
    """What the real parser of ``row`` hands the legacy app."""
    if row.parser == "php":
        port = request.getfixturevalue("php_server")
        conn = HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", f"/index.php?{row.query}", row.body, {"Content-Type": FORM})
        return json.loads(conn.getresponse().read())
    if row.parser == "php-json":
        _need("php", "Debian php-cli")
        code = "echo json_encode(json_decode(file_get_contents('php://stdin'), true));"
        return _run(["php", "-n", "-r", code], row.body)
    if row.parser == "rack":
        _need("ruby", "Debian ruby + ruby-rack")
        probe = subprocess.run(["ruby", "-e", 'require "rack"'], capture_output=True)
        if probe.returncode:
            pytest.skip("ruby-rack is not installed")
        return _run(["ruby", "-e", RUBY, row.query], row.body)
    if row.parser in ("qs", "node-json"):
        node = shutil.which("nodejs") or shutil.which("node")
        if node is None or not Path(NODE_PATH, "qs").exists():
            pytest.skip("node with Debian node-qs is not installed")
        env = {**os.environ, "NODE_PATH": NODE_PATH}
        mode = "json" if row.parser == "node-json" else "form"
        return _run([node, "-e", QS, mode], row.body, env)
    if row.parser == "go-json":
        return _run([str(request.getfixturevalue("go_reader")), "json"], row.body)
    if row.parser == "go-form":
        reader = request.getfixturevalue("go_reader")
        return _run([str(reader), "form", FORM, row.query, row.field], row.body)
    if row.parser == "django":
        return _run([sys.executable, "-c", DJANGO], row.body)
    if row.parser == "werkzeug":
        from werkzeug.test import EnvironBuilder
        from werkzeug.wrappers import Request

        builder = EnvironBuilder(
            method="POST", query_string=row.query, data=row.body, content_type=FORM
        )
        req = Request(builder.get_environ())
        return {"values": req.values.to_dict(), "form": req.form.to_dict()}
    raise AssertionError(row.parser)


def naive_reading(row: Row) -> Any:
    """A first-value reading: the query for a routing field, the body for a credential."""
    if row.fmt == "json":
        first: dict[str, Any] = {}

        def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            result: dict[str, Any] = {}
            for key, value in pairs:
                result.setdefault(key, value)
            return result

        value = json.loads(row.body, object_pairs_hook=hook)
        for token in row.field.lstrip("/").split("/"):
            value = value.get(token) if isinstance(value, dict) else None
        return value
    source = row.query if row.field in row.routing else row.body.decode()
    first = {}
    for key, value in parse_qsl(source, keep_blank_values=True):
        first.setdefault(key, value)
    return first.get(row.field)


def _at(doc: Any, where: tuple[str, ...]) -> Any:
    for key in where:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_the_real_parser_reads_otherwise_and_the_request_is_refused(
    row: Row, request: pytest.FixtureRequest
) -> None:
    """The real parser reads another value than a naive reading, and read_request refuses."""
    assert naive_reading(row) == row.naive
    assert _at(real_reading(row, request), row.where) == row.real
    with pytest.raises(AmbiguousBody):
        read_request(
            row.body,
            content_type=JSON if row.fmt == "json" else FORM,
            query=row.query,
            fmt=row.fmt,
            credentials=row.credentials,
            routing=row.routing,
        )


def test_every_framework_of_the_table_has_a_row_or_is_named_unverified() -> None:
    """Each framework of proxy.reading's table has a real-parser row here, or is known to
    have no parser on this machine (ASP.NET Core, Java Servlet)."""
    unverified = {"Java Servlet", "ASP.NET Core"}
    for framework in FRAMEWORKS:
        has_row = any(framework.name.startswith(r.framework) for r in ROWS)
        assert has_row or any(framework.name.startswith(u) for u in unverified), framework


@pytest.mark.parametrize(
    ("row_id", "make"),
    [("php-last-wins", lambda b: b.replace(b"log=attacker", b"x=1"))],
)
def test_the_same_request_without_the_attack_reads_alike(
    row_id: str, make: Callable[[bytes], bytes], request: pytest.FixtureRequest
) -> None:
    """Without the attack the real parser and read_request agree (the row is not vacuous)."""
    row = next(r for r in ROWS if r.id == row_id)
    body = make(row.body)
    got = read_request(body, content_type=FORM, query="", fmt="form", credentials=row.credentials)
    real = real_reading(Row(**{**row.__dict__, "body": body}), request)
    assert _at(real, row.where) == got.text(row.field) == "victim"
