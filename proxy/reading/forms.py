"""Reading application/x-www-form-urlencoded bodies and query strings one way only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlencode

from proxy.errors import AmbiguousBody
from proxy.reading.names import Touch

MAX_PAIRS = 1000  # PHP max_input_vars, qs parameterLimit: past it they drop or refuse fields
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


class Malformed(ValueError):
    """The bytes are not UTF-8 form data (the caller decides Ambiguous or Unreadable)."""


@dataclass(frozen=True, slots=True)
class Pair:
    """One ``name=value`` pair, decoded, with the raw bytes it came from."""

    name: str
    value: str
    raw: bytes


def _decode(raw: bytes) -> str:
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")


def split_pairs(raw: bytes) -> list[Pair]:
    """Split and decode form data on '&' the way every framework agrees on; raise Malformed
    on invalid UTF-8 (Go keeps the bytes, Python parsers replace them)."""
    pairs: list[Pair] = []
    for chunk in raw.split(b"&"):
        if not chunk:
            continue
        name, _, value = chunk.partition(b"=")
        try:
            pairs.append(Pair(_decode(name), _decode(value), chunk))
        except UnicodeDecodeError:
            raise Malformed("the form data is not UTF-8") from None
    return pairs


@dataclass(slots=True)
class Checked:
    """What one source (body or query) holds of the configured fields."""

    pairs: list[Pair]
    credentials: dict[str, str]
    routing: dict[str, str]


def check_pairs(
    pairs: list[Pair],
    *,
    where: str,
    credentials: dict[str, str],
    routing: dict[str, str],
    cred_touch: Touch,
    route_touch: Touch,
) -> Checked:
    """Refuse any pair that some framework could read as another credential or routing value.

    ``credentials`` and ``routing`` map each field's exact form name to the configured field.
    """
    if len(pairs) > MAX_PAIRS:
        raise AmbiguousBody(f"the {where} has more than {MAX_PAIRS} fields")
    found_cred: dict[str, str] = {}
    found_route: dict[str, str] = {}
    for pair in pairs:
        names = {pair.name, *_semicolon_names(pair.raw)}
        touched_cred = set().union(*(cred_touch.fields(n) for n in names))
        touched_route = set().union(*(route_touch.fields(n) for n in names))
        if not touched_cred and not touched_route:
            _charset_field(pair)
            continue
        # SECURITY: Rack 2 splits a query on ';' and Go drops a pair holding one; a pair
        # that names a field must read the same in every parser.
        if b";" in pair.raw:
            raise AmbiguousBody(f"a field of the {where} is split by ';' in some parsers")
        if _BAD_ESCAPE.search(pair.raw):
            raise AmbiguousBody(f"a field of the {where} has an invalid %-escape")
        if pair.name in credentials and touched_cred <= {credentials[pair.name]}:
            if where == "query":
                # SECURITY: Servlet getParameter, ASP.NET Request[] and Flask request.values
                # read the query first; PHP $_REQUEST and Rack params read the body first.
                raise AmbiguousBody("a credential field is in the query string")
            if pair.name in found_cred:
                raise AmbiguousBody("a credential field is given more than once")
            found_cred[pair.name] = pair.value
        elif pair.name in routing and touched_route <= {routing[pair.name]} and not touched_cred:
            if pair.name in found_route:
                raise AmbiguousBody(f"a routing field is given more than once in the {where}")
            found_route[pair.name] = pair.value
        else:
            # SECURITY: PHP reads ' log', 'log%00x', 'log[' as log; ASP.NET and Go ignore
            # case; Rack, qs, PHP and ASP.NET nest 'x[log]', 'log[]', 'user.log'.
            raise AmbiguousBody(f"a name in the {where} folds into a credential or routing field")
    return Checked(pairs, found_cred, found_route)


def _semicolon_names(raw: bytes) -> list[str]:
    """The names Rack 2 would see after each ';' of a pair."""
    if b";" not in raw:
        return []
    names = []
    for piece in raw.split(b";")[1:]:
        name = piece.partition(b"=")[0].lstrip(b" ")
        names.append(unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8", "replace"))
    return names


def _charset_field(pair: Pair) -> None:
    # Servlet containers and some form libraries decode the rest of the form in _charset_.
    if pair.name.strip().lower() == "_charset_" and pair.value.strip().lower() not in (
        "",
        "utf-8",
    ):
        raise AmbiguousBody("the form names a charset other than UTF-8")


def encode(pairs: list[Pair]) -> str:
    """Pairs re-encoded so that every framework reads them the same way."""
    return urlencode([(p.name, p.value) for p in pairs])
