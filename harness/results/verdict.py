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
    FLAKY = "flaky"  # repeated observations disagree (--repeat, or files merged): never reported as a pass


@dataclass(frozen=True)
class Judgement:
    """A verdict with the one-line reason shown in summaries and reports."""

    verdict: Verdict
    reason: str


def error_text(error: dict | None) -> str:
    """The text an expectation's `error_match` is searched in: error type, then detail (or message)."""
    return "" if not error else f"{error.get('type', '')}: {error.get('detail') or error.get('message', '')}"


def judge(expected: Expectation, status: Status, error: dict | str | None = None,
          repeat_statuses: list[str] | tuple[str, ...] = ()) -> Judgement:
    """The one verdict of a cell: its status (and error) against its expectation.

    Every verdict comes from here: not_applicable for a cell that did not run (skipped), flaky when repeated
    observations disagree (never reported as a pass), else ok / regression / unexpected_pass against the docs' claim.
    `error` is the cell's error record (or already its text); `repeat_statuses` label each repeated observation:
    the statuses of `run --repeat`, or a merge's statuses with their error types.
    """
    if len(set(repeat_statuses)) > 1:
        return Judgement(Verdict.FLAKY, f"status varies over {len(repeat_statuses)} runs: "
                                        f"{', '.join(repeat_statuses)}")
    return _against_claim(expected, status, error if isinstance(error, str) else error_text(error))


def _against_claim(expected: Expectation, status: Status, error_text: str) -> Judgement:
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
