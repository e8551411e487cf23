"""Errors of the rules package.

RuleError           root; never raised itself
└── RuleFailed      a rule raised, timed out, answered badly or its breaker is open; ``reason``
                    is a short word for counters (``error``, ``timeout``, ``answer``, ``status``,
                    ``open``)
"""

from __future__ import annotations


class RuleError(Exception):
    """Root of every error the rules package raises."""


class RuleFailed(RuleError):
    """A rule gave no usable answer; its ``on_error`` decides."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
