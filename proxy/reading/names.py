"""Which names some mainstream framework reads as a credential or routing field.

The fold rule, one for every parser: a name *touches* a configured field when the casefolded
NFKC alphanumeric core of the whole name, or of any of its ``[`` ``]`` ``.`` segments (also
after PHP's NUL truncation and after one more round of percent-decoding), equals the core of
the field or of its last segment / pointer token. A touching name must be exactly the field.
``FRAMEWORKS`` is the table behind the rule (docs/security.md, "One reading").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

_SEGMENTS = re.compile(r"[\[\].]")
_PERCENT_U = re.compile(r"%u([0-9A-Fa-f]{4})")
_JSON_U = re.compile(r"\\u([0-9A-Fa-f]{4})")


@dataclass(frozen=True, slots=True)
class Framework:
    """How one framework reads a form or JSON login (the table in docs/security.md)."""

    name: str
    duplicates: str  # which value of a repeated form name it reads
    query_and_body: str  # which wins when a name is in both
    name_folds: str  # which other names it reads as a given name
    json_keys: str  # how it matches JSON keys


FRAMEWORKS: tuple[Framework, ...] = (
    Framework(
        "PHP $_POST / $_REQUEST / parse_str",
        "last",
        "$_REQUEST: body (request_order GP)",
        "leading spaces dropped; ' ' and '.' -> '_'; NUL ends the name; unclosed '[' -> '_';"
        " a[b] nests, a[] appends",
        "json_decode: exact, last duplicate wins",
    ),
    Framework(
        "Rails / Rack params",
        "last (a[] collects)",
        "params: body (query split on '&' and ';' in Rack 2)",
        "spaces after a separator dropped; a[b] nests, a[] appends",
        "exact, last duplicate wins; wrap_parameters copies top-level keys into user[...]",
    ),
    Framework(
        "Express body-parser urlencoded (qs) / json",
        "array of all",
        "separate (req.body, req.query)",
        "key percent-decoded, then a[b], a[], a[0] nest",
        "JSON.parse: exact, last duplicate wins",
    ),
    Framework(
        "Java Servlet getParameter",
        "first",
        "query first",
        "none; body decoded in the Content-Type charset",
        "(library-specific)",
    ),
    Framework(
        "ASP.NET Core Form / Query / model binding",
        "comma-joined",
        "model binding: form, then route, then query",
        "case-insensitive; a.b and a[b] nest",
        "System.Text.Json: case-insensitive in ASP.NET, last duplicate wins",
    ),
    Framework(
        "Go net/http FormValue / ParseForm, encoding/json",
        "first",
        "r.Form: body first",
        "none; a pair with ';' or a bad escape is dropped",
        "case-insensitive with Unicode folds (U+017F, U+212A), last wins,"
        " invalid UTF-8 -> U+FFFD",
    ),
    Framework(
        "Django QueryDict",
        "last (request.POST['x'])",
        "separate (request.GET, request.POST)",
        "none",
        "json.loads: exact, last duplicate wins",
    ),
    Framework(
        "Flask / Werkzeug",
        "first",
        "request.values: query first",
        "none",
        "json.loads: exact, last duplicate wins",
    ),
)


def core(text: str) -> str:
    """The casefolded NFKC alphanumeric core of ``text`` (U+017F and the Kelvin sign fold too)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(ch for ch in folded if ch.isalnum())


def unescape(text: str) -> str:
    """``text`` with %XX, %uXXXX and \\uXXXX escapes decoded, the way the most lenient parser
    would (lone surrogates become U+FFFD)."""
    text = _PERCENT_U.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = _JSON_U.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = unquote(text, errors="replace")
    return text.encode("utf-8", "replace").decode("utf-8")


def _readings(name: str) -> set[str]:
    """Every string some framework could take ``name`` (already decoded once) to be."""
    variants = {name, unescape(name)}
    variants |= {v.split("\x00", 1)[0] for v in variants}  # PHP: NUL ends a name
    readings = set(variants)
    for variant in variants:
        readings.update(_SEGMENTS.split(variant))
    return readings


@lru_cache(maxsize=4096)  # a site's forms use a few dozen names; NFKC is the costly part
def name_cores(name: str) -> frozenset[str]:
    """The cores of every reading some framework could make of ``name``."""
    return frozenset(core(reading) for reading in _readings(name))


def last_segment(field: str) -> str:
    """The last ``[ ] .`` segment of a form name, or the last token of a JSON pointer."""
    if field.startswith("/"):
        return field.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
    parts = [p for p in _SEGMENTS.split(field) if p]
    return parts[-1] if parts else field


def targets(field: str) -> frozenset[str]:
    """The cores a name must not reach unless it is ``field`` itself."""
    return frozenset(c for c in (core(field), core(last_segment(field))) if c)


class Touch:
    """Tells which configured fields a name touches."""

    __slots__ = ("_cores",)

    def __init__(self, fields: Iterable[str]) -> None:
        self._cores: dict[str, list[str]] = {}
        for field in fields:
            for target in targets(field):
                self._cores.setdefault(target, []).append(field)

    def fields(self, name: str) -> set[str]:
        """The configured fields that ``name`` touches."""
        found: set[str] = set()
        for reading_core in name_cores(name):
            found.update(self._cores.get(reading_core, ()))
        return found

    def may_name(self, raw: bytes) -> bool:
        """Whether some parser could find a configured field somewhere in ``raw``."""
        # NULs dropped too: Python's json.loads(bytes) (Flask, Django views) reads UTF-16/32.
        for data in (raw, raw.replace(b"\x00", b"")):
            text = unescape(data.decode("utf-8", "replace").replace("+", " "))
            folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
            if any(target in folded for target in self._cores):
                return True
        return False


def form_name(field: str) -> str:
    """The form / query name of a configured field: ``/user/email`` -> ``user[email]``."""
    if not field.startswith("/"):
        return field
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in field[1:].split("/")]
    return tokens[0] + "".join(f"[{t}]" for t in tokens[1:])
