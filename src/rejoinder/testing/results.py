"""What running conversation tests produced: one result per test (or per test file that does not load)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Failure:
    """Why a test failed: where (``line`` in the test file, if known), what, and the turn it looked at."""

    line: int | None
    message: str
    transcript: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StepLog:
    """One step as it ran (for ``-v``): its line, a short label, whether it held, and the turn it caused."""

    line: int
    label: str
    ok: bool
    transcript: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one test; ``name`` is None for a test file that could not be loaded."""

    file: str
    name: str | None
    failure: Failure | None = None
    steps: list[StepLog] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failure is None

    @property
    def nodeid(self) -> str:
        return self.file if self.name is None else f"{self.file}::{self.name}"


@dataclass
class RunSummary:
    results: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(result.passed for result in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def line(self) -> str:
        """The last line of a run: ``N passed, N failed``."""
        return f"{self.passed} passed, {self.failed} failed"
