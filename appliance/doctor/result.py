"""What a doctor check says: pass, fail or skip, one message, and the fix for a failure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

EX_OK = 0
EX_UNAVAILABLE = 69
"""A check failed (sysexits' "service unavailable")."""
EX_NOPERM = 77
"""Nothing failed, but checks were skipped (mostly: not root); sysexits' "permission denied"."""
EX_CONFIG = 78
"""The config itself is invalid: the other checks could not run."""


class Status(StrEnum):
    PASS = "pass"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Result:
    """One check's verdict. `fix` is what to do: for a failure, and for a skip how to
    include the check."""

    name: str
    status: Status
    message: str
    fix: str = ""

    def line(self, width: int = 10) -> str:
        """The one line `appliance doctor` prints for this check."""
        text = f"{self.status.value:<4}  {self.name:<{width}}  {self.message}"
        if self.fix and self.status is not Status.PASS:
            text += f"; fix: {self.fix}" if self.status is Status.FAIL else f"; {self.fix}"
        return text


def passed(name: str, message: str) -> Result:
    return Result(name, Status.PASS, message)


def failed(name: str, message: str, fix: str) -> Result:
    return Result(name, Status.FAIL, message, fix)


def skipped(name: str, message: str, fix: str = "") -> Result:
    return Result(name, Status.SKIP, message, fix)


def exit_code(results: Iterable[Result]) -> int:
    """0 only when every check passed; 78 when the config failed, 69 when another check
    failed, 77 when none failed but some were skipped."""
    results = list(results)
    if any(r.status is Status.FAIL and r.name == "config" for r in results):
        return EX_CONFIG
    if any(r.status is Status.FAIL for r in results):
        return EX_UNAVAILABLE
    if any(r.status is Status.SKIP for r in results):
        return EX_NOPERM
    return EX_OK
