"""The operator's rules: code run on every authentication (docs/rules.md).

    context    the one JSON-able context an event carries (never a password or hash)
    answers    what a rule may answer, checked; the verdict of every rule of an event
    signature  the webhook signature: HMAC-SHA256 over timestamp + body, and its check
    breaker    a circuit breaker: a dead webhook costs its timeout once per interval
    runners    the in-process runner (module:function) and the webhook runner
    engine     runs an event's rules in order under each one's failure policy; identity cache
    weak       the [policy] judged at capture: short or breached legacy passwords
    builtin    example rules shipped with authshim (and tested)
    hooks      the one call per event the flows make (imports proxy.services: not re-exported)
"""

from proxy.rules.answers import RuleAnswer, RuleResult, Verdict
from proxy.rules.context import build_context, user_context
from proxy.rules.engine import RuleEngine

__all__ = ["RuleAnswer", "RuleEngine", "RuleResult", "Verdict", "build_context", "user_context"]
