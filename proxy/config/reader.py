"""Reading raw TOML strictly: the ``Reader`` that casts values and collects every problem.

Each problem names its key (``login[1].success``); nothing is raised until all are known.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from proxy.errors import ConfigError

T = TypeVar("T")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
# An HTTP token (RFC 9110): what a header or cookie name may be made of.
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret value whose repr never shows it."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"


def parse_duration(value: object) -> float:
    """Return seconds for ``"14d"``, ``"30m"``, ``"5s"``, ``"250ms"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s' or '14d'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration such as '30s' or '14d', got {value!r}")


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``"host:port"`` (IPv6 in brackets) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected 'host:port', got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit ':8080' means all


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; raise ``ConfigError`` when it cannot be read or parsed."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


class Reader:
    """Walks the raw TOML, casting values strictly and collecting every problem with its key."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []
        self._path: list[str] = []

    def key(self, name: str) -> str:
        return ".".join([*self._path, name]) if name else ".".join(self._path)

    def error(self, name: str, message: str) -> None:
        self.errors.append(f"{self.key(name)}: {message}")

    def check(self) -> None:
        """Raise ``ConfigError`` listing every problem found so far, if there is one."""
        if self.errors:
            raise ConfigError(self.errors)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        self._path.append(name)
        try:
            yield
        finally:
            self._path.pop()

    @contextmanager
    def table(
        self, raw: Mapping[str, Any], name: str, allowed: tuple[str, ...]
    ) -> Iterator[dict[str, Any]]:
        """Open the table ``raw[name]`` (empty when absent), with its problems keyed under it."""
        value = raw.get(name, {})
        with self.section(name):
            if not isinstance(value, dict):
                self.error("", "must be a table")
                value = {}
            self.unknown(value, allowed)
            yield value

    def subtable(
        self, raw: Mapping[str, Any], name: str, allowed: tuple[str, ...]
    ) -> dict[str, Any] | None:
        """The required table ``raw[name]`` with its unknown keys reported, or None."""
        value = raw.get(name)
        if value is None:
            self.error(name, "is required")
            return None
        if not isinstance(value, dict):
            self.error(name, "must be a table")
            return None
        with self.section(name):
            self.unknown(value, allowed)
        return value

    def unknown(self, raw: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
        for name in raw:
            if name not in allowed:
                self.error(name, f"unknown key (expected one of: {', '.join(allowed)})")

    def get(self, raw: Mapping[str, Any], name: str, kind: type[T], default: T) -> T:
        value = raw.get(name, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.error(name, f"must be {kind.__name__}, got {type(value).__name__}")
            return default
        return value

    def optional(self, raw: Mapping[str, Any], name: str) -> str | None:
        """A string that may be left out; an empty one counts as left out."""
        return self.get(raw, name, str, "") or None

    def field(self, raw: Mapping[str, Any], name: str) -> str:
        """The required name of the form field or JSON key that carries ``name``."""
        value = self.get(raw, name, str, "")
        if not value:
            self.error(name, "is required (the form field or JSON key that carries it)")
        return value

    def format(self, raw: Mapping[str, Any]) -> str:
        """How an intercepted route's body comes: ``form`` (the default) or ``json``."""
        return self.choice(raw, "format", ("form", "json"))

    def positive(self, raw: Mapping[str, Any], name: str, default: int) -> int:
        value = self.get(raw, name, int, default)
        if value <= 0:
            self.error(name, "must be greater than 0")
            return default
        return value

    def duration(self, raw: Mapping[str, Any], name: str, default: float) -> float:
        if name not in raw:
            return default
        try:
            return parse_duration(raw[name])
        except ValueError as exc:
            self.error(name, str(exc))
            return default

    def listen(
        self,
        raw: Mapping[str, Any],
        default: str,
        *,
        override: str | None = None,
        name: str = "listen",
    ) -> tuple[str, int]:
        """``name`` (``listen``) as ``(host, port)``; the default's parts when it is not
        ``host:port``.

        The environment variable ``override``, when set, replaces what the file says: a
        container listens on all its addresses while the same file serves outside one.
        """
        fallback = parse_listen(default)
        from_env = self.env.get(override, "") if override else ""
        try:
            if from_env:
                return parse_listen(from_env)
            return parse_listen(self.get(raw, name, str, default))
        except ValueError as exc:
            self.error(name, f"{exc} (from {override})" if from_env else str(exc))
            return fallback

    def choice(self, raw: Mapping[str, Any], name: str, options: tuple[str, ...]) -> str:
        value = self.get(raw, name, str, options[0])
        if value not in options:
            self.error(name, f"must be one of {', '.join(options)}, got {value!r}")
            return options[0]
        return value

    def pointer(self, raw: Mapping[str, Any], name: str, default: str | None) -> str | None:
        value = raw.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not (value == "" or value.startswith("/")):
            self.error(name, f"must be a JSON pointer such as '/user/email', got {value!r}")
            return default
        return value

    def path(self, raw: Mapping[str, Any], name: str, *, required: bool) -> str | None:
        value = raw.get(name)
        if value is None:
            if required:
                self.error(name, "is required")
            return None
        if not isinstance(value, str) or not value.startswith("/"):
            self.error(name, f"must be an absolute path starting with '/', got {value!r}")
            return None
        return value

    def secret(self, raw: Mapping[str, Any], name: str, *, min_length: int = 0) -> Secret | None:
        """``name`` as written or, written ``env:NAME``, from the environment.

        A secret shorter than ``min_length`` is reported but still returned, so that what
        depends on its presence is judged as written.
        """
        value = raw.get(name)
        if value is None:
            self.error(name, "is required (write it as env:NAME to read it from the environment)")
            return None
        if not isinstance(value, str):
            self.error(name, "must be a string")
            return None
        if value.startswith("env:"):
            var = value[4:]
            if var not in self.env:
                self.error(name, f"environment variable {var} is not set")
                return None
            value = self.env[var]
        if len(value) < min_length:
            self.error(name, f"must be at least {min_length} characters long")
        return Secret(value)
