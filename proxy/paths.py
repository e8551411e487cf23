"""Routes by their meaning, not their spelling: the path a legacy server would serve.

A login path has many spellings that web servers and frameworks resolve to the same script:
``/./api/login``, ``/x/../api/login``, ``/%2e/api/login``, ``//api//login``, ``/api/%6cogin``,
``/api/login;jsessionid=0`` (Servlet path parameters), ``/API/Login`` (IIS), ``/login.aspx.``
(Windows drops trailing dots and spaces), ``/wp-login.php/x`` (PHP runs the script with
PATH_INFO ``/x``). ``canonical`` folds them all to one form, and says when a spelling cannot
be folded safely (an encoded ``/`` or ``\\``, a NUL, a bad escape): such a request must not be
forwarded raw when it could be an intercepted one.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import unquote_to_bytes, urlsplit

# Server-side scripts that take PATH_INFO: /login.php/anything runs login.php.
SCRIPT_SUFFIXES = (".php", ".asp", ".aspx", ".jsp", ".cgi", ".pl", ".ashx", ".asmx", ".do")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# An encoded slash, backslash, NUL, '?', '#' or '%' (a double escape: one server decodes twice),
# a control character: no two servers read these alike.
_UNSAFE = re.compile(r"%(?:2f|5c|00|3f|23|25|[01][0-9a-f]|7f)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f#]")


class Unfoldable(ValueError):
    """A path spelling no server reads alike: an encoded slash or backslash, a NUL, a bad escape,
    a ``..`` above the root, bytes that are not UTF-8."""


_PLAIN = re.compile(r"/[A-Za-z0-9_\-/]*(?:\.[A-Za-z0-9_\-]+)?")


def canonical(target: str, *, case_insensitive: bool = False) -> str:
    """The path a legacy server serves for the request target ``target`` (raw, as received:
    percent-escapes and query included), folded to one spelling.

    Raises:
        Unfoldable: see the class.
    """
    if not target.startswith("/"):
        target = urlsplit(target).path or "/"  # absolute-form: http://host/path
    path = target.split("?", 1)[0].split("#", 1)[0]
    if not case_insensitive and "//" not in path and _PLAIN.fullmatch(path):
        return path.rstrip("/") or "/"  # the common case: nothing to fold
    return _canonical(path, case_insensitive)


@lru_cache(maxsize=4096)
def _canonical(path: str, case_insensitive: bool) -> str:
    if _BAD_ESCAPE.search(path) or _UNSAFE.search(path) or "\\" in path or _CONTROL.search(path):
        raise Unfoldable("the path has an encoded slash, a backslash, a control character, "
                         "a double escape or a bad escape")  # fmt: skip
    try:
        decoded = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise Unfoldable("the path is not UTF-8") from None
    if ("//" in decoded and "/.." in decoded) or "..;" in decoded:
        # nginx merges slashes before it removes dot segments, RFC 3986 after; Tomcat reads
        # "..;x" as "..".
        raise Unfoldable("the path mixes empty segments or parameters with '..'")
    segments: list[str] = []
    for segment in decoded.split("/"):
        segment = segment.split(";", 1)[0]  # Servlet path parameters: /login;jsessionid=0
        if case_insensitive:
            # Windows (IIS) drops trailing dots and spaces, and serves ::$DATA as the file.
            segment = segment.casefold()
            segment = segment.removesuffix("::$data").rstrip(". ")
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise Unfoldable("the path climbs above the root")
            segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def script_prefixes(path: str) -> list[str]:
    """The prefixes of a canonical path that end in a script and would run it with the rest as
    PATH_INFO, longest first: ``/a.php/x/y`` -> ``['/a.php']``."""
    found = []
    parts = path.split("/")
    for end in range(len(parts) - 1, 1, -1):
        prefix = "/".join(parts[:end])
        if prefix.lower().endswith(SCRIPT_SUFFIXES):
            found.append(prefix)
    return found


def may_name(target: str, names: frozenset[str]) -> bool:
    """Whether a target that cannot be folded may still name an intercepted path: any of the
    routes' last segments appears in it, decoded loosely and case folded."""
    loose = unquote_to_bytes(target.split("?", 1)[0]).decode("utf-8", "replace").casefold()
    return any(name in loose for name in names)
