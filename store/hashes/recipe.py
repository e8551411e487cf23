"""The operator's recipe: an ordered list of steps over ``password``, ``salt`` and ``pepper``
for a hash format no one ships, such as ``sha1(salt + sha1(password))``.

A recipe starts from the password (UTF-8 bytes) as its ``value`` and applies each step:

    md5 | sha1 | sha224 | sha256 | sha384 | sha512 | sha3_256 | sha3_512
                                 value = digest(value), raw bytes
    hmac DIGEST TERM             value = HMAC(key=TERM, msg=value)
    pbkdf2 DIGEST N TERM [LEN]   value = PBKDF2(value, salt=TERM, N iterations)
    hex | HEX | base64 | base64url   value = its text form (lower/upper hex, padded base64)
    concat TERM TERM ...         value = the terms joined (TERM: value, password, salt,
                                 pepper, or =literal text)
    repeat N STEP                apply STEP N times (``repeat 1000 sha256``)

The final value is compared, in constant time, with the stored hash as text. Users imported
with a recipe are stored as ``$recipe$NAME$<base64 salt>$<hash>``. A recipe carries a
self-test (a password, salt and hash made by the legacy app); one that fails it verifies
nothing, so a wrong recipe can never let a wrong password in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from store.hashes.common import MAX_PBKDF2_ITERATIONS, b64decode, equal

DIGESTS = frozenset(
    {"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_256", "sha3_512"}
)
TERMS = frozenset({"value", "password", "salt", "pepper"})
MAX_REPEAT = 1_000_000
PREFIX = "$recipe$"
NAME = re.compile(r"^[a-z0-9_-]{1,40}$")

# A compiled step: (value, {"password": .., "salt": .., "pepper": ..}) -> value.
Step = Callable[[bytes, dict[str, bytes]], bytes]


class RecipeError(ValueError):
    """A step that does not parse; the message names the step."""


@dataclass(frozen=True, slots=True)
class SelfTest:
    """A password, salt and hash the legacy app made, that the recipe must reproduce."""

    password: str = field(repr=False)
    salt: str
    hash: str


@dataclass(frozen=True, slots=True)
class Recipe:
    """A parsed recipe; ``pepper`` is the application-wide secret some apps mix in."""

    name: str
    steps: tuple[Step, ...]
    test: SelfTest
    pepper: bytes = field(default=b"", repr=False)

    def compute(self, password: bytes, salt: bytes) -> bytes:
        """The recipe's output for this password and salt."""
        terms = {"password": password, "salt": salt, "pepper": self.pepper}
        value = password
        for step in self.steps:
            value = step(value, terms)
        return value

    def passes_self_test(self) -> bool:
        """Whether the recipe reproduces its self-test's hash."""
        computed = self.compute(self.test.password.encode(), self.test.salt.encode())
        return equal(computed, self.test.hash)

    def check(self, stored: str, password: bytes) -> bool:
        """Verify ``password`` against ``$recipe$NAME$salt$hash``."""
        name, salt, digest = split_stored(stored)
        if name != self.name:
            raise ValueError("another recipe's hash")
        return equal(self.compute(password, salt), digest)


def stored_form(name: str, salt: str, digest: str) -> str:
    """How a recipe user's hash is kept: the recipe's name, the salt and the legacy hash."""
    encoded = base64.b64encode(salt.encode()).decode("ascii")
    return f"{PREFIX}{name}${encoded}${digest}"


def split_stored(stored: str) -> tuple[str, bytes, str]:
    """``(recipe name, salt bytes, hash text)`` of a stored recipe hash."""
    if not stored.startswith(PREFIX):
        raise ValueError("not a recipe hash")
    name, salt, digest = stored[len(PREFIX) :].split("$", 2)
    return name, b64decode(salt), digest


def parse_recipe(
    name: str, steps: Sequence[str], test: SelfTest, pepper: bytes = b""
) -> Recipe:
    """Compile ``steps``.

    Raises:
        RecipeError: the name or a step is not valid; the message says which.
    """
    if not NAME.match(name):
        raise RecipeError(f"name {name!r} must be 1-40 of a-z, 0-9, _ and -")
    if not steps:
        raise RecipeError("a recipe needs at least one step")
    compiled = []
    for index, text in enumerate(steps):
        try:
            compiled.append(_step(shlex.split(text)))
        except (RecipeError, ValueError) as exc:
            raise RecipeError(f"step {index + 1} {text!r}: {exc}") from None
    return Recipe(name, tuple(compiled), test, pepper)


def _step(words: list[str]) -> Step:
    if not words:
        raise RecipeError("empty step")
    op, args = words[0], words[1:]
    if op in DIGESTS and not args:
        return lambda value, _: hashlib.new(op, value).digest()
    if op == "hex" and not args:
        return lambda value, _: value.hex().encode("ascii")
    if op == "HEX" and not args:
        return lambda value, _: value.hex().upper().encode("ascii")
    if op == "base64" and not args:
        return lambda value, _: base64.b64encode(value)
    if op == "base64url" and not args:
        return lambda value, _: base64.urlsafe_b64encode(value)
    if op == "concat" and args:
        getters = [_term(arg) for arg in args]
        return lambda value, terms: b"".join(get(value, terms) for get in getters)
    if op == "hmac" and len(args) == 2:
        digest, key = _digest(args[0]), _term(args[1])
        return lambda value, terms: hmac.new(key(value, terms), value, digest).digest()
    if op == "pbkdf2" and len(args) in (3, 4):
        digest, count, salt = _digest(args[0]), _count(args[1], MAX_PBKDF2_ITERATIONS), args[2]
        get_salt, length = _term(salt), int(args[3]) if len(args) == 4 else None
        return lambda value, terms: hashlib.pbkdf2_hmac(
            digest, value, get_salt(value, terms), count, length
        )
    if op == "repeat" and len(args) >= 2:
        times, inner = _count(args[0], MAX_REPEAT), _step(args[1:])

        def repeat(value: bytes, terms: dict[str, bytes]) -> bytes:
            for _ in range(times):
                value = inner(value, terms)
            return value

        return repeat
    raise RecipeError(f"unknown step or wrong arguments: {' '.join(words)!r}")


def _term(word: str) -> Callable[[bytes, dict[str, bytes]], bytes]:
    if word == "value":
        return lambda value, _: value
    if word in TERMS:
        return lambda _, terms: terms[word]
    if word.startswith("'") or word.startswith('"'):
        raise RecipeError(f"unterminated literal {word!r}")
    if word.startswith("="):  # shlex removed the quotes: literals are written '=text'
        literal = word[1:].encode()
        return lambda _, __: literal
    raise RecipeError(f"unknown term {word!r} (value, password, salt, pepper or '=literal')")


def _digest(word: str) -> str:
    if word not in DIGESTS:
        raise RecipeError(f"unknown digest {word!r}")
    return word


def _count(word: str, limit: int) -> int:
    if not word.isdigit() or not 1 <= int(word) <= limit:
        raise RecipeError(f"count {word!r} must be 1..{limit}")
    return int(word)
