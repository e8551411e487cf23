"""Building the rule engine from the config, once per app (or per ``authshim rules test``)."""

from __future__ import annotations

import aiohttp

from proxy.config import Config
from proxy.config.rules import rule_headers
from proxy.errors import ConfigError
from proxy.rules.engine import RuleEngine
from proxy.rules.errors import RuleFailed
from proxy.stats import Counters

__all__ = ["create_rules", "rule_headers"]


def create_rules(
    config: Config, client: aiohttp.ClientSession | None, counters: Counters | None = None
) -> RuleEngine | None:
    """The engine for ``[[rules]]``, or None when there is none (no cost on any request).

    Raises:
        ConfigError: a Python rule cannot be imported (named by its key).
    """
    if not config.rules:
        return None
    try:
        return RuleEngine(config.rules, client, counters)
    except RuleFailed as exc:
        raise ConfigError([f"rules.call: {exc.detail}"]) from None
