"""The rule engine: Python rules (sync, async, raising) and webhooks on real loopback servers
(slow, failing, wrong signature, dead), each answer, the failure policy and the breaker."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from proxy.config import RuleConfig, Secret
from proxy.rules import RuleEngine, build_context
from proxy.rules.breaker import Breaker
from proxy.rules.signature import sign, verify
from tests import rule_examples
from tests.fixtures.webhook import HOOK_SECRET, Receiver

USER = {"id": "u1", "email": "bob@example.com", "username": "bob", "profile": {}}


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(autouse=True)
def _clear_seen() -> None:
    rule_examples.SEEN.clear()


def python(name: str, function: str = "record", **kw: Any) -> RuleConfig:
    options = kw.pop("options", {})
    return RuleConfig(name=name, events=kw.pop("events", ("login",)),
                      call=f"tests.rule_examples:{function}", options=options, **kw)  # fmt: skip


def hook(name: str, url: str, secret: str = HOOK_SECRET, **kw: Any) -> RuleConfig:
    return RuleConfig(name=name, events=kw.pop("events", ("login",)), url=url,
                      secret=Secret(secret), **kw)  # fmt: skip


def context(event: str = "login") -> dict[str, Any]:
    return build_context(event, "local", dict(USER), client="127.0.0.1", route="/l", mode="migrate")


async def test_sync_and_async_python_rules_run_in_order_and_merge() -> None:
    """Both kinds of Python rule run in order; identity values and app_metadata merge, a later
    rule overriding, and the second rule sees what the first merged into the profile."""
    engine = RuleEngine([
        python("one", options={"answer": {"identity": {"X-Groups": "a"}, "app_metadata": {"k": 1}}},
               identity_headers=("X-Groups",)),
        python("two", "record_async", options={"answer": {"identity": {"X-Groups": "b"}}},
               identity_headers=("X-Groups",)),
    ], None)  # fmt: skip
    verdict = await engine.run("login", context())
    assert not verdict.denied
    assert verdict.identity == {"X-Groups": "b"} and verdict.app_metadata == {"k": 1}
    assert [r.outcome for r in verdict.results] == ["allow", "allow"]
    assert rule_examples.SEEN[1]["user"]["profile"]["app_metadata"] == {"k": 1}


async def test_a_deny_stops_the_rules_after_it() -> None:
    """A deny ends the run with its message; the next rule does not run."""
    engine = RuleEngine([
        python("gate", options={"answer": {"deny": "not here"}}), python("after"),
    ], None)  # fmt: skip
    verdict = await engine.run("login", context())
    assert verdict.denied_by == "gate" and verdict.message == "not here"
    assert len(rule_examples.SEEN) == 1


@pytest.mark.parametrize(("on_error", "denied"), [("deny", True), ("allow", False)])
async def test_a_raising_rule_follows_on_error(on_error: str, denied: bool) -> None:
    """A rule that raises is a failure: denied or skipped as its on_error says, and counted."""
    engine = RuleEngine([python("buggy", "boom", on_error=on_error), python("after")], None)
    verdict = await engine.run("login", context())
    assert verdict.denied is denied
    assert verdict.results[0].outcome == "error" and "RuntimeError" in verdict.results[0].error
    assert len(rule_examples.SEEN) == (0 if denied else 1)


async def test_a_slow_async_rule_times_out() -> None:
    """An async rule past its timeout has failed (and on_error = deny denies)."""
    slow = python("slow", "record_async", options={"sleep": 5}, timeout=0.05)
    verdict = await RuleEngine([slow], None).run("login", context())
    assert verdict.denied and "timeout" in verdict.results[0].error


@pytest.mark.parametrize(
    "answer",
    [
        {"allow": True},  # an unknown key
        {"identity": {"X-Not-Declared": "x"}},  # a header the rule may not set
        {"deny": 3},
        {"profile": {"a": 1}},  # profile at login
        ["not", "an", "object"],
    ],
)
async def test_an_answer_off_the_schema_is_a_failure(answer: Any) -> None:
    """An answer that does not follow the schema is the rule's failure, never half-applied."""
    rule = python("odd", options={"answer": answer}, on_error="allow")
    verdict = await RuleEngine([rule], None).run("login", context())
    assert verdict.results[0].outcome == "error" and verdict.identity == {}


async def test_a_webhook_gets_the_signed_context_and_its_answer_counts(
    receiver: tuple[Receiver, str], client: aiohttp.ClientSession
) -> None:
    """The receiver verifies the documented signature over the exact body; its answer is
    applied."""
    state, url = receiver
    state.answer = {"identity": {"X-Groups": "staff"}, "must_change_password": True}
    engine = RuleEngine([hook("hook", url, identity_headers=("X-Groups",))], client)
    verdict = await engine.run("login", context())
    assert state.refused == 0 and state.received[0]["user"]["email"] == "bob@example.com"
    assert verdict.identity == {"X-Groups": "staff"} and verdict.must_change_password


async def test_a_webhook_with_the_wrong_secret_is_refused_and_fails(
    receiver: tuple[Receiver, str], client: aiohttp.ClientSession
) -> None:
    """Signed with another secret, the receiver refuses it (401): the rule has failed."""
    state, url = receiver
    engine = RuleEngine([hook("hook", url, secret="another-secret-0123456789")], client)
    verdict = await engine.run("login", context())
    assert state.refused == 1 and verdict.denied and "401" in verdict.results[0].error


async def test_a_failing_webhook_follows_on_error(
    receiver: tuple[Receiver, str], client: aiohttp.ClientSession
) -> None:
    """A 500 is a failure; with on_error = allow the login goes on."""
    state, url = receiver
    state.status = 500
    verdict = await RuleEngine([hook("hook", url, on_error="allow")], client).run(
        "login", context()
    )
    assert not verdict.denied and verdict.results[0].outcome == "error"


async def test_a_slow_webhook_times_out(
    receiver: tuple[Receiver, str], client: aiohttp.ClientSession
) -> None:
    """A receiver slower than the timeout: the rule fails at its timeout."""
    state, url = receiver
    state.delay = 2.0
    verdict = await RuleEngine([hook("hook", url, timeout=0.1)], client).run("login", context())
    assert verdict.denied and "timeout" in verdict.results[0].error


async def test_a_dead_webhook_opens_the_breaker(client: aiohttp.ClientSession) -> None:
    """Nobody listens: after breaker_failures failures the rule fails at once, without a
    connection attempt, until the interval passes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    rule = hook("dead", f"http://127.0.0.1:{port}/hook", breaker_failures=2,
                breaker_interval=60.0, on_error="allow")  # fmt: skip
    engine = RuleEngine([rule], client)
    errors = [(await engine.run("login", context())).results[0].error for _ in range(3)]
    assert errors[0].startswith("unreachable") and errors[1].startswith("unreachable")
    assert errors[2].startswith("open")


def test_the_breaker_lets_one_trial_through_after_the_interval() -> None:
    """Open, then one trial after the interval; a success closes it."""
    now = [0.0]
    breaker = Breaker(1, 10.0, clock=lambda: now[0])
    breaker.failed()
    assert not breaker.allow()
    now[0] = 11.0
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.succeeded()
    assert breaker.allow()


def test_the_signature_is_checkable_and_refuses_tampering_and_old_stamps() -> None:
    """verify accepts the header sign gives, and refuses another body, secret or an old t."""
    header = sign("s" * 16, b'{"a":1}', now=1000)
    assert header.startswith("t=1000,v1=")
    assert verify("s" * 16, header, b'{"a":1}', now=1010)
    assert not verify("s" * 16, header, b'{"a":2}', now=1010)
    assert not verify("t" * 16, header, b'{"a":1}', now=1010)
    assert not verify("s" * 16, header, b'{"a":1}', now=1000 + 301)


async def test_events_run_only_their_rules() -> None:
    """A rule runs on the events it names and no other."""
    engine = RuleEngine([python("m", events=("migrated",))], None)
    assert not engine.has("login") and engine.has("migrated")
    await engine.run("login", context())
    await engine.run("migrated", context("migrated"))
    assert [c["event"] for c in rule_examples.SEEN] == ["migrated"]
