"""The report ``doctor`` prints: one ``Check`` per line, and the exit code they add up to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..errors import ExitCode, SchwabTokensError


class Status(StrEnum):
    """How a check ended: ``OK``, ``WARN`` and ``SKIP`` pass; ``FAIL`` and ``ERROR`` do not."""

    OK = "ok"
    WARN = "warn"
    SKIP = "skip"
    FAIL = "FAIL"
    ERROR = "ERROR"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, what was found, and the fix if it failed."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    exit_code: ExitCode = ExitCode.OK

    @property
    def ok(self) -> bool:
        """Whether the check passed (``OK``, ``WARN`` or ``SKIP``)."""
        return self.status in (Status.OK, Status.WARN, Status.SKIP)

    def line(self) -> str:
        """The line ``doctor`` prints: status, name, what was found, and the fix if any."""
        text = f"{self.status.value:<6}{self.name}: {self.detail}"
        return f"{text}; {self.fix}" if self.fix and self.status is not Status.OK else text

    def to_dict(self) -> dict[str, Any]:
        """The check as ``doctor --json`` prints it."""
        return {
            "name": self.name,
            "ok": self.ok,
            "status": self.status.value.lower(),
            "detail": self.detail,
            "fix": self.fix,
        }


def ok(name: str, detail: str) -> Check:
    """A check that passed."""
    return Check(name, Status.OK, detail)


def fail(name: str, detail: str, fix: str = "", code: ExitCode = ExitCode.CONFIGURATION) -> Check:
    """A check that failed, with the fix to print and the exit code it calls for."""
    return Check(name, Status.FAIL, detail, fix, code)


def could_not(name: str, exc: SchwabTokensError) -> Check:
    """A check that raised: AWS did not answer (``ERROR``, exit 4), or refused (``FAIL``)."""
    if exc.exit_code == ExitCode.TEMPORARY:
        return Check(name, Status.ERROR, f"could not check: {exc}", "", ExitCode.TEMPORARY)
    return fail(name, f"could not check: {exc}", code=ExitCode(exc.exit_code))


def guarded(name: str, run: Callable[[], Check]) -> Check:
    """``run()``, or the check saying why it could not run."""
    try:
        return run()
    except SchwabTokensError as exc:
        return could_not(name, exc)


def plural(count: int, word: str) -> str:
    """``count`` and ``word``, with an "s" unless the count is 1."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@dataclass
class Report:
    """The checks ``doctor`` ran, in order, and what they add up to."""

    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The exit code the checks add up to.

        3 if the login is a problem, else 5 if anything failed, else 4 if a check could not
        run, else 0.
        """
        failed = [check for check in self.checks if check.status is Status.FAIL]
        if any(check.exit_code == ExitCode.LOGIN_REQUIRED for check in failed):
            return int(ExitCode.LOGIN_REQUIRED)
        if failed:
            return int(ExitCode.CONFIGURATION)
        if any(check.status is Status.ERROR for check in self.checks):
            return int(ExitCode.TEMPORARY)
        return int(ExitCode.OK)

    @property
    def summary(self) -> str:
        """The last line: how many checks ended how, and what to do next."""
        count = {status: 0 for status in Status}
        for check in self.checks:
            count[check.status] += 1
        checks = plural(len(self.checks), "check")
        code = self.exit_code
        if code == ExitCode.OK:
            parts = [f"{count[Status.OK]} ok"]
            if count[Status.WARN]:
                parts.append(plural(count[Status.WARN], "warning"))
            if count[Status.SKIP]:
                parts.append(f"{count[Status.SKIP]} skipped")
            return f"doctor: everything is in place ({', '.join(parts)})"
        if count[Status.FAIL]:
            text = f"doctor: {plural(count[Status.FAIL], 'problem')} in {checks}"
            if count[Status.ERROR]:
                text += f", {count[Status.ERROR]} could not run"
        else:
            text = f"doctor: {count[Status.ERROR]} of {checks} could not run"
        then = {
            ExitCode.LOGIN_REQUIRED: "log in first (see the FAIL lines), then run doctor again",
            ExitCode.CONFIGURATION: "fix the FAIL lines above, then run doctor again",
            ExitCode.TEMPORARY: "AWS did not answer; run doctor again later",
        }[ExitCode(code)]
        return f"{text}; exit {code}: {then}"

    def lines(self) -> list[str]:
        """The lines ``doctor`` prints: one per check, then the summary."""
        return [*(check.line() for check in self.checks), self.summary]

    def to_dict(self) -> dict[str, Any]:
        """The report as ``doctor --json`` prints it."""
        return {
            "checks": [check.to_dict() for check in self.checks],
            "exit_code": self.exit_code,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class Fixes:
    """The commands the report prints as fixes, complete so that they work as printed.

    The ``--region`` the user gave is repeated in each.
    """

    region: str | None = None

    @property
    def region_flag(self) -> str:
        """`` --region REGION`` when the user gave one, else an empty string."""
        return f" --region {self.region}" if self.region else ""

    def login(self, store_url: str) -> str:
        """The ``login`` command that logs in to ``store_url`` again."""
        return f"schwab-tokens login --store {store_url}{self.region_flag}"

    def refresh(self, store_url: str) -> str:
        """The ``refresh`` command for ``store_url``."""
        return f"schwab-tokens refresh --store {store_url}{self.region_flag}"
