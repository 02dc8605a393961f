"""Typed statuses and verdicts, and the one function that compares an outcome with its expectation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from harness.cells.cell import Expectation


class Status(str, Enum):
    """What really happened in a cell."""

    PASS = "pass"
    COMPILE_ERROR = "compile_error"
    RUNTIME_ERROR = "runtime_error"
    MISMATCH = "mismatch"
    CRASH = "crash"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"


class Verdict(str, Enum):
    """How a status compares with the documented expectation."""

    OK = "ok"
    REGRESSION = "regression"
    UNEXPECTED_PASS = "unexpected_pass"
    NOT_APPLICABLE = "not_applicable"
    FLAKY = "flaky"  # --repeat saw different statuses: never reported as a pass


@dataclass(frozen=True)
class Judgement:
    """A verdict with the one-line reason shown in summaries and reports."""

    verdict: Verdict
    reason: str


def judge(expected: Expectation, status: Status, error_text: str = "") -> Judgement:
    """Compare a cell's status (and error text) with its expectation."""
    if status is Status.SKIPPED:
        return Judgement(Verdict.NOT_APPLICABLE, "not run here")
    if expected.expect == "observe":
        return Judgement(Verdict.OK, f"observe-only ({expected.reason}): {status.value}")
    if expected.expect == "pass":
        if status is Status.PASS:
            return Judgement(Verdict.OK, "passed as expected")
        return Judgement(Verdict.REGRESSION, f"expected to pass, got {status.value}")
    if status is Status.PASS:
        return Judgement(Verdict.UNEXPECTED_PASS, f"expected to fail ({expected.reason}), but passed")
    if expected.statuses and status.value not in expected.statuses:
        return Judgement(Verdict.REGRESSION,
                         f"expected {'/'.join(expected.statuses)}, got {status.value}")
    if expected.error_match and not re.search(expected.error_match, error_text or ""):
        return Judgement(Verdict.REGRESSION,
                         f"failed ({status.value}) for another reason than expected /{expected.error_match}/")
    return Judgement(Verdict.OK, f"failed as expected ({status.value}): {expected.reason}")
