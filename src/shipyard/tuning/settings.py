"""What ``shipyard tune`` is asked to do: :class:`TuneSettings` (its flags), checked up front."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import InvalidInputError
from shipyard.optimize.guard import DEFAULT_MAX_DROP, Metric
from shipyard.tuning.search import Objective
from shipyard.tuning.variants import VARIANTS

__all__ = ["DEFAULT_CONCURRENCY", "TuneProgress", "TuneSettings", "check_settings"]

#: Concurrencies measured when none are given (a budget under a minute drops the last).
DEFAULT_CONCURRENCY = (1, 8, 64)


@dataclass(frozen=True, slots=True)
class TuneSettings:
    """What to tune for and how long to look (``shipyard tune``'s flags)."""

    version: int | None = None
    slo_p99_ms: float | None = None
    #: Empty: DEFAULT_CONCURRENCY (1 and 8 only for a budget under a minute).
    concurrency: tuple[int, ...] = ()
    budget_s: float = 300.0
    duration_s: float = 2.0
    variants: tuple[str, ...] = VARIANTS
    calibration: Path | None = None
    validation: Path | None = None
    metric: Metric | None = None
    max_drop: float = DEFAULT_MAX_DROP
    input_file: Path | None = None
    binary: bool = True
    #: A change must win by more than this fraction to be kept (twice this on p99), so that
    #: measurement noise does not change settings.
    margin: float = 0.05
    #: Candidates measured a second time at the end (besides the baseline).
    finalists: int = 2
    report_dir: Path | None = None
    dry_run: bool = False
    force: bool = False

    @property
    def warmup_s(self) -> float:
        """Unrecorded seconds before each measured point."""
        return min(1.0, max(0.1, self.duration_s / 4))

    @property
    def objective(self) -> Objective:
        """The goal candidates are scored against (the SLO, or the lowest p99)."""
        return Objective(self.slo_p99_ms)

    def levels(self) -> tuple[int, ...]:
        """The concurrencies measured."""
        if self.concurrency:
            return tuple(sorted(set(self.concurrency)))
        return DEFAULT_CONCURRENCY if self.budget_s >= 60 else DEFAULT_CONCURRENCY[:2]


@dataclass(frozen=True, slots=True)
class TuneProgress:
    """What the tuner is doing, for a progress bar."""

    elapsed_s: float
    budget_s: float
    step: str
    best: str


def check_settings(settings: TuneSettings) -> None:
    """Raise InvalidInputError, naming the flag, for settings that cannot be tuned with."""
    if settings.slo_p99_ms is not None and not settings.slo_p99_ms > 0:
        raise InvalidInputError(f"--slo-p99-ms must be positive, got {settings.slo_p99_ms:g}")
    if any(c < 1 for c in settings.concurrency):
        raise InvalidInputError("--concurrency takes positive integers, e.g. 1,8,64")
    if not settings.budget_s > 0 or not settings.duration_s > 0:
        raise InvalidInputError("--budget-minutes and --duration must be positive")
    unknown = [v for v in settings.variants if v not in VARIANTS]
    if unknown or not settings.variants:
        raise InvalidInputError(
            f"--variants: unknown {', '.join(unknown) or '(none given)'}; use some of"
            f" {','.join(VARIANTS)}"
        )
    if settings.max_drop < 0:
        raise InvalidInputError("--max-drop must not be negative")
    if settings.input_file is not None and not settings.input_file.is_file():
        raise InvalidInputError(f"--input {settings.input_file} does not exist")
