"""The tuner's search run: serve and measure candidates until the search converges or the
budget ends, then measure the finalists once more.

:func:`explore` measures the current settings first (the baseline), makes the variants
(:class:`~shipyard.tuning.variants.VariantMaker`), drives a
:class:`~shipyard.tuning.search.CoordinateSearch` over them with real measurements
(:func:`~shipyard.tuning.measure.serve_and_measure`) and, if the budget allows, measures the
best candidates and the baseline a second time. Its answer is an :class:`Exploration`: every
:class:`Trial` (each with its own id), the finalists, the variants, what the search dropped
and why. Nothing is decided or written here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import InvalidInputError
from shipyard.hardware import HardwareReport
from shipyard.repository.settings import update_settings
from shipyard.tuning.baseline import Baseline, search_space, settings_changes
from shipyard.tuning.measure import LoadWorker, Workload, serve_and_measure
from shipyard.tuning.search import Candidate, CoordinateSearch, Point, Score, merge_rounds, rank
from shipyard.tuning.settings import TuneProgress, TuneSettings
from shipyard.tuning.variants import Variant, VariantMaker, suitable_providers

__all__ = ["Exploration", "Explorer", "Trial", "explore"]

#: Share of the budget kept for the finalists' second round.
CONFIRM_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class Trial:
    """One candidate as measured: its rounds (one, two for finalists) or why it failed."""

    #: Numbered from 1 in the order candidates were first measured (1: the baseline).
    id: int
    candidate: Candidate
    #: The dimension the search was exploring when it proposed the candidate (``start``...).
    dimension: str
    rounds: tuple[tuple[Point, ...], ...] = ()
    reason: str = ""
    #: Seconds the latest round took (serving, warm-up and load).
    seconds: float = 0.0
    first_error: str = ""

    @property
    def points(self) -> list[Point] | None:
        """The rounds averaged per concurrency (``None``: not measured)."""
        return merge_rounds(self.rounds) if self.rounds else None


@dataclass(frozen=True, slots=True)
class Exploration:
    """What the search run found; the decision is made from it (:mod:`~shipyard.tuning.decide`)."""

    #: Every candidate measured, by id.
    trials: tuple[Trial, ...]
    #: The current settings' trial (also in ``trials``).
    baseline: Trial
    #: The trials measured a second time (empty: no confirmation round).
    finalists: tuple[Trial, ...]
    #: Every variant asked for, made or not (with the reason).
    variants: dict[str, Variant]
    #: Variants the search dropped, with the reason.
    pruned: dict[str, str]
    converged: bool
    notes: tuple[str, ...]
    #: Seconds the run took, variants included.
    elapsed_s: float

    def trial(self, trial_id: int) -> Trial:
        """The trial with id ``trial_id``."""
        return next(t for t in self.trials if t.id == trial_id)


class Explorer:
    """Measures candidates of one model by serving them, and keeps their trials and the clock."""

    def __init__(
        self,
        repo: Path,
        name: str,
        settings: TuneSettings,
        toml_text: str,
        base: Baseline,
        worker: LoadWorker,
        progress: Callable[[TuneProgress], None] | None = None,
        started: float | None = None,
    ) -> None:
        """``started``: the ``time.monotonic()`` the run's budget counts from (default: now)."""
        self.repo, self.name, self.settings = repo, name, settings
        self.toml_text, self.base, self.worker = toml_text, base, worker
        self.objective = settings.objective
        self.levels = settings.levels()
        self.workload = Workload(
            self.levels,
            settings.duration_s,
            settings.warmup_s,
            settings.binary,
            settings.input_file,
        )
        #: The model file each variant is served from.
        self.files: dict[str, Path] = {}
        self.notes: list[str] = []
        self._progress = progress or (lambda _p: None)
        self._started = time.monotonic() if started is None else started
        self._trials: dict[int, Trial] = {}
        self._ids: dict[Candidate, int] = {}

    # -- the clock -----------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self._started

    def trial_cost(self) -> float:
        """Expected seconds for one more candidate (the mean so far, plus 10%)."""
        done = [t.seconds for t in self._trials.values() if t.seconds > 0]
        if done:
            return 1.1 * sum(done) / len(done)
        per_point = self.workload.warmup_s + self.workload.duration_s + 0.1
        return 0.6 + len(self.levels) * per_point

    def report_progress(self, step: str, best: Trial | None = None) -> None:
        """Tell the progress callback what is happening and the best trial so far."""
        shown = "-"
        if best is not None:
            shown = f"#{best.id} {self.score(best).describe()}"
        self._progress(TuneProgress(self.elapsed(), self.settings.budget_s, step, shown))

    # -- trials --------------------------------------------------------------------------

    @property
    def trials(self) -> tuple[Trial, ...]:
        """Every trial so far, by id."""
        return tuple(self._trials.values())

    @property
    def next_id(self) -> int:
        """The id the next new candidate gets."""
        return len(self._trials) + 1

    def trial_of(self, candidate: Candidate) -> Trial | None:
        """The trial of ``candidate``, if it was measured."""
        trial_id = self._ids.get(candidate)
        return None if trial_id is None else self._trials[trial_id]

    def score(self, trial: Trial) -> Score:
        """``trial``'s score against the goal."""
        return self.objective.score(trial.points)

    def measure(self, candidate: Candidate, dimension: str) -> Trial:
        """Serve ``candidate`` and measure it (once more, if it was measured before)."""
        trial = self.trial_of(candidate)
        if trial is None:
            trial = Trial(self.next_id, candidate, dimension)
            self._ids[candidate] = trial.id
        started = time.monotonic()
        text = update_settings(self.toml_text, self.name, settings_changes(candidate, self.base))
        measured = serve_and_measure(
            self.name,
            self.files[candidate.variant],
            self.repo / self.name,
            text,
            self.workload,
            self.worker,
        )
        trial = dataclasses.replace(
            trial,
            seconds=time.monotonic() - started,
            first_error=trial.first_error or measured.first_error,
        )
        if measured.points is None:
            trial = dataclasses.replace(trial, reason=measured.reason)
        else:
            trial = dataclasses.replace(trial, rounds=(*trial.rounds, tuple(measured.points)))
        self._trials[trial.id] = trial
        return trial


def explore(
    explorer: Explorer,
    maker: VariantMaker,
    hardware: HardwareReport,
    dynamic: bool,
) -> Exploration:
    """Measure the baseline, make the variants, search, confirm; return what was found.

    Raises InvalidInputError when the model as configured now cannot be measured.
    """
    settings = explorer.settings
    search_budget = settings.budget_s * (1 - CONFIRM_SHARE)
    explorer.files["fp32"] = maker.source
    start = explorer.base.candidate
    explorer.report_progress(f"#{explorer.next_id} {start.label()} (current settings)")
    first = explorer.measure(start, "start")
    if first.points is None:
        raise InvalidInputError(
            f"the model as configured now could not be measured: {first.reason}"
            + ("" if settings.input_file else "; pass --input FILE.npz with valid inputs")
        )
    variants = _make_variants(explorer, maker, hardware, first, search_budget)
    ready = tuple(n for n, v in variants.items() if v.status == "ready")
    space = search_space(
        explorer.base, hardware, dynamic, explorer.levels, settings.slo_p99_ms, ready
    )
    search = CoordinateSearch(space, explorer.objective, start, margin=settings.margin)
    search.record(start, explorer.score(first))
    for _ in range(10_000):  # bounded; the search converges or the budget ends it long before
        proposal = search.propose()
        if proposal is None:
            break
        if explorer.elapsed() + explorer.trial_cost() > search_budget:
            explorer.notes.append(
                f"the time budget ended the search after {len(explorer.trials)} candidates,"
                " before it converged; a larger --budget-minutes may find more"
            )
            break
        explorer.report_progress(
            f"#{explorer.next_id} {proposal.candidate.label()} ({proposal.dimension})",
            explorer.trial_of(search.best),
        )
        trial = explorer.measure(proposal.candidate, proposal.dimension)
        search.record(proposal.candidate, explorer.score(trial))
    if search.converged:
        explorer.notes.append(f"the search converged after {len(explorer.trials)} candidates")
    finalists = _confirm(explorer, first.id)
    trials = explorer.trials
    return Exploration(
        trials=trials,
        baseline=next(t for t in trials if t.id == first.id),
        finalists=tuple(t for t in trials if t.id in finalists),
        variants=variants,
        pruned=dict(search.pruned),
        converged=search.converged,
        notes=(*maker.notes, *explorer.notes),
        elapsed_s=explorer.elapsed(),
    )


def _make_variants(
    explorer: Explorer,
    maker: VariantMaker,
    hardware: HardwareReport,
    first: Trial,
    search_budget: float,
) -> dict[str, Variant]:
    """Make every variant asked for while the budget allows; register the files of those ready."""
    variants: dict[str, Variant] = {}
    for name in dict.fromkeys(("fp32", *explorer.settings.variants)):
        providers = suitable_providers(hardware, name)
        if name != "fp32" and explorer.elapsed() + 2 * explorer.trial_cost() > search_budget:
            variants[name] = Variant(name, "skipped", reason="the time budget ran out first")
            continue
        if name != "fp32":
            explorer.report_progress(f"making the {name} variant", first)
        variant = maker.make(name, providers)
        variants[name] = variant
        if variant.status == "ready" and variant.path is not None:
            explorer.files[name] = variant.path
    return variants


def _confirm(explorer: Explorer, baseline_id: int) -> list[int]:
    """Measure the finalists once more, if the budget allows, so luck does not pick the winner.

    Returns the ids of the trials measured twice (none when there was no time or no rival).
    """
    measured = [t for t in explorer.trials if t.points is not None]
    order = rank({t.id: explorer.score(t) for t in measured})
    ids = list(dict.fromkeys([*order[: explorer.settings.finalists], baseline_id]))
    if len(ids) < 2:
        return []
    if explorer.elapsed() + len(ids) * explorer.trial_cost() > explorer.settings.budget_s:
        explorer.notes.append("no time was left to measure the finalists a second time")
        return []
    by_id = {t.id: t for t in explorer.trials}
    for trial_id in ids:
        trial = by_id[trial_id]
        explorer.report_progress(f"confirming #{trial.id} {trial.candidate.label()}", trial)
        explorer.measure(trial.candidate, trial.dimension)
    return ids
