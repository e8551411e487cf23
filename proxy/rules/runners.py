"""The two kinds of rule: a Python callable run in this process, and a signed webhook.

A Python rule is ``function(context, options)``, sync or async, returning an answer (see
``proxy/rules/answers.py``). A sync one runs on the event loop: it must not block (a rule that
does I/O should be async). A webhook gets the context as a JSON POST signed as
``proxy/rules/signature.py`` says, on the app's one pooled keep-alive client session, and
answers 200 with the answer as JSON, or 204 (allow).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from proxy.config import RuleConfig
from proxy.rules.breaker import Breaker
from proxy.rules.errors import RuleFailed
from proxy.rules.signature import HEADER, sign

MAX_ANSWER = 64 * 1024


class Runner:
    """One configured rule with its breaker; ``call`` returns the raw answer."""

    def __init__(self, config: RuleConfig) -> None:
        self.config = config
        self.name = config.name
        self.breaker = Breaker(config.breaker_failures, config.breaker_interval)
        # Lower-case: what parse_answer compares header names against.
        self.headers = frozenset(h.lower() for h in config.identity_headers)

    async def call(self, context: dict[str, Any]) -> Any:
        raise NotImplementedError


class PythonRule(Runner):
    """``module:function`` from the operator's own package on the path."""

    def __init__(self, config: RuleConfig) -> None:
        super().__init__(config)
        assert config.call is not None
        self.function = load_callable(config.call)

    async def call(self, context: dict[str, Any]) -> Any:
        try:
            async with asyncio.timeout(self.config.timeout):
                result = self.function(context, self.config.options)
                if inspect.isawaitable(result):
                    result = await result
                return result
        except TimeoutError:
            raise RuleFailed("timeout", f"no answer in {self.config.timeout}s") from None
        except RuleFailed:
            raise
        except Exception as exc:  # the operator's code: any error is this rule's failure
            # The type only: an exception's text may quote the context.
            raise RuleFailed("error", type(exc).__name__) from None


class WebhookRule(Runner):
    """A POST of the context, signed, answered within ``timeout``."""

    def __init__(self, config: RuleConfig, client: aiohttp.ClientSession) -> None:
        super().__init__(config)
        assert config.url is not None and config.secret is not None
        self.url = config.url
        self._secret = config.secret
        self._client = client

    async def call(self, context: dict[str, Any]) -> Any:
        body = orjson.dumps(context)
        headers = {
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",
            HEADER: sign(self._secret.value, body),
            "X-Authshim-Event": str(context.get("event", "")),
            "X-Authshim-Rule": self.name,
        }
        try:
            async with asyncio.timeout(self.config.timeout):
                async with self._client.post(self.url, data=body, headers=headers) as answer:
                    if answer.status == 204:
                        return None
                    if answer.status != 200:
                        raise RuleFailed("status", f"answered {answer.status}")
                    raw = await answer.content.read(MAX_ANSWER + 1)
        except TimeoutError:
            raise RuleFailed("timeout", f"no answer in {self.config.timeout}s") from None
        except aiohttp.ClientError as exc:
            raise RuleFailed("unreachable", type(exc).__name__) from None
        if len(raw) > MAX_ANSWER:
            raise RuleFailed("answer", f"longer than {MAX_ANSWER} bytes")
        if not raw.strip():
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RuleFailed("answer", "not JSON") from None


def load_callable(spec: str) -> Callable[..., Any]:
    """The function ``module:function`` names.

    Raises:
        RuleFailed: ``import``: the module cannot be imported or has no such callable.
    """
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuleFailed("import", f"cannot import {module_name}: {exc}") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise RuleFailed("import", f"{module_name} has no callable {attr}")
    return function  # type: ignore[no-any-return]


def make_runner(config: RuleConfig, client: aiohttp.ClientSession | None) -> Runner:
    """The runner for one configured rule.

    Raises:
        RuleFailed: a Python rule that cannot be imported, a webhook without a client.
    """
    if config.call is not None:
        return PythonRule(config)
    if client is None:
        raise RuleFailed("import", "a webhook rule needs a client session")
    return WebhookRule(config, client)
