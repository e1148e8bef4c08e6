"""``shipyard tune``: search model variant and serving settings together, by serving them.

:func:`tune` measures the model as it is configured now (the baseline), makes the variants
(:mod:`~shipyard.tuning.variants`), then runs a :class:`~shipyard.tuning.search.
CoordinateSearch` over variant, execution provider, instances, intra-op threads,
``max_batch_size``, ``max_queue_delay_us`` and preferred batch sizes. Every candidate is served
for real and loaded by the ``shipyard bench`` generator (:mod:`~shipyard.tuning.measure`).
When the search converges or the budget nears its end, the finalists (the best candidates and
the baseline) are measured once more and their rounds averaged, and the winner is chosen:
the highest throughput within the SLO, or the lowest p99 without one, and only when it beats
the current settings by more than the noise margin.

The winner's settings are written into ``model.toml`` (only the keys that changed; every other
key and comment kept) and a variant other than the version as it is becomes a new version with
``report.json``. With an SLO that nothing met, nothing is written unless ``force``; a dry run
writes nothing either. The report (``tune-report.json`` and ``tune-report.html``) is always
written. See docs/tune.md.
"""

from __future__ import annotations

import datetime
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.config import DEFAULT_MAX_BATCH_SIZE, DynamicBatchingConfig, ModelConfig
from shipyard.errors import ConfigError, InvalidInputError
from shipyard.hardware import HardwareReport, probe
from shipyard.optimize.guard import DEFAULT_MAX_DROP, Metric
from shipyard.optimize.versions import baseline_version, onnx_file, resolve_version
from shipyard.repository.layout import CONFIG_FILENAME, find_model
from shipyard.repository.publish import publish
from shipyard.repository.settings import update_settings, write_settings
from shipyard.tuning.measure import LoadWorker, Workload, serve_and_measure
from shipyard.tuning.search import (
    Candidate,
    CoordinateSearch,
    Objective,
    Point,
    Score,
    Space,
    ladder,
    merge_rounds,
    rank,
)
from shipyard.tuning.variants import VARIANTS, Variant, VariantMaker, suitable_providers
from shipyard.types import TensorSpec

__all__ = ["Trial", "TuneProgress", "TuneResult", "TuneSettings", "settings_changes", "tune"]

#: Concurrencies measured when none are given (a budget under a minute drops the last).
DEFAULT_CONCURRENCY = (1, 8, 64)
_INSTANCES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
_THREADS = (1, 2, 4, 8, 16, 32, 64)
_DELAYS_US = (0, 100, 250, 500, 1000, 2000, 5000)
#: Share of the budget kept for the finalists' second round.
_CONFIRM_SHARE = 0.2


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


@dataclass
class Trial:
    """One candidate as measured: its rounds (one, two for finalists) or why it failed."""

    id: int
    candidate: Candidate
    dimension: str
    rounds: list[list[Point]] = field(default_factory=list)
    reason: str = ""
    seconds: float = 0.0
    first_error: str = ""

    @property
    def points(self) -> list[Point] | None:
        """The rounds averaged per concurrency (``None``: not measured)."""
        return merge_rounds(self.rounds) if self.rounds else None


@dataclass(frozen=True, slots=True)
class TuneResult:
    """The report, whether the SLO was met, and what was written."""

    report: dict[str, Any]
    met_slo: bool | None
    written: bool
    version: int | None
    report_json: Path
    report_html: Path

    @property
    def exit_code(self) -> int:
        """1 when an SLO was given and nothing met it, else 0."""
        return 1 if self.met_slo is False else 0


def _check(settings: TuneSettings) -> None:
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


def _dynamic_first(inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> bool:
    return (
        bool(inputs)
        and all(s.shape and s.shape[0] == -1 for s in inputs)
        and all(not s.shape or s.shape[0] == -1 for s in outputs)
    )


@dataclass(frozen=True, slots=True)
class _Baseline:
    """The model's current settings, resolved as the server resolves them."""

    config: ModelConfig
    max_batch_size: int
    batching_on: bool
    provider: str
    candidate: Candidate


def _baseline(config: ModelConfig, dynamic: bool, hardware: HardwareReport) -> _Baseline:
    max_batch = config.max_batch_size
    if max_batch is None:
        max_batch = DEFAULT_MAX_BATCH_SIZE if dynamic else 0
    batching_on = max_batch > 0 and config.dynamic_batching is not None
    batching = config.dynamic_batching or DynamicBatchingConfig()
    serving = [p.name for p in hardware.providers if p.device != "remote"]
    provider = (config.onnxruntime.providers or tuple(serving) or ("CPUExecutionProvider",))[0]
    candidate = Candidate(
        "fp32",
        provider,
        config.instance_count,
        config.onnxruntime.intra_op_threads,
        max_batch if batching_on else 0,
        batching.max_queue_delay_us,
        batching.preferred_batch_sizes,
        _inter_op(config),
    )
    return _Baseline(config, max_batch, batching_on, provider, candidate)


def _inter_op(config: ModelConfig) -> int:
    """The candidate form of the config's execution: 1 = sequential, N = parallel on N."""
    ort_config = config.onnxruntime
    return max(2, ort_config.inter_op_threads) if ort_config.execution_mode == "parallel" else 1


def settings_changes(candidate: Candidate, base: _Baseline) -> dict[str, Any]:
    """The model.toml keys (dotted) that make the baseline's settings ``candidate``'s."""
    start = base.candidate
    changes: dict[str, Any] = {}
    if candidate.instance_count != start.instance_count:
        changes["instance_count"] = candidate.instance_count
    if candidate.intra_op_threads != start.intra_op_threads:
        changes["onnxruntime.intra_op_threads"] = candidate.intra_op_threads
    if candidate.inter_op_threads != start.inter_op_threads:
        parallel = candidate.inter_op_threads > 1
        changes["onnxruntime.execution_mode"] = "parallel" if parallel else "sequential"
        if parallel:
            changes["onnxruntime.inter_op_threads"] = candidate.inter_op_threads
    if candidate.provider != base.provider:
        providers = [candidate.provider]
        if candidate.provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
        changes["onnxruntime.providers"] = providers
    if candidate.max_batch_size == 0:
        if base.batching_on:
            changes["dynamic_batching.enabled"] = False
        return changes
    if candidate.max_batch_size != base.max_batch_size:
        changes["max_batch_size"] = candidate.max_batch_size
    if not base.batching_on and base.config.dynamic_batching is None:
        changes["dynamic_batching.enabled"] = True
    if candidate.max_queue_delay_us != start.max_queue_delay_us:
        changes["dynamic_batching.max_queue_delay_us"] = candidate.max_queue_delay_us
    if candidate.preferred_batch_sizes != start.preferred_batch_sizes:
        changes["dynamic_batching.preferred_batch_sizes"] = list(candidate.preferred_batch_sizes)
    return changes


def _space(
    base: _Baseline,
    hardware: HardwareReport,
    dynamic: bool,
    levels: tuple[int, ...],
    slo_ms: float | None,
    variants: tuple[str, ...],
) -> Space:
    start = base.candidate
    cores = max(1, hardware.cpu.logical_cores)
    top = 2
    while top < min(max(levels), 128):
        top *= 2
    batch: tuple[int, ...] = (0,)
    if dynamic:
        batch = ladder([0, *(2**i for i in range(1, 8) if 2**i <= top)], start.max_batch_size)
        if base.max_batch_size > 0:
            batch = tuple(b for b in batch if b <= max(top, base.max_batch_size))
    delays = [d for d in _DELAYS_US if slo_ms is None or d <= slo_ms * 500]
    providers = {v: suitable_providers(hardware, v) for v in variants}
    if start.provider not in providers.get("fp32", ()):
        providers["fp32"] = (start.provider, *providers.get("fp32", ()))
    return Space(
        variants=variants,
        providers=providers,
        instance_count=ladder(
            [v for v in _INSTANCES if v <= max(4, 2 * cores)], start.instance_count
        ),
        intra_op_threads=ladder(
            [v for v in _THREADS if v <= cores] + [cores], start.intra_op_threads
        ),
        max_batch_size=batch,
        max_queue_delay_us=ladder(delays, start.max_queue_delay_us),
        # Parallel execution only pays for graphs with independent branches; 1 = sequential.
        inter_op_threads=ladder([1, 2] + ([cores] if cores > 2 else []), start.inter_op_threads),
    )


class _Tuner:
    """One tuning run's state: the clock, the trials, the files, the worker."""

    def __init__(
        self,
        repo: Path,
        name: str,
        settings: TuneSettings,
        progress: Callable[[TuneProgress], None] | None,
    ) -> None:
        self.repo, self.name, self.settings = repo, name, settings
        self.progress = progress or (lambda _p: None)
        self.started = time.monotonic()
        self.objective = Objective(settings.slo_p99_ms)
        self.levels = settings.levels()
        self.workload = Workload(
            self.levels,
            settings.duration_s,
            settings.warmup_s,
            settings.binary,
            settings.input_file,
        )
        self.trials: list[Trial] = []
        self.by_candidate: dict[Candidate, Trial] = {}
        self.files: dict[str, Path] = {}
        self.notes: list[str] = []
        #: Ids of the trials measured a second time (empty: no confirmation round).
        self.finalists: list[int] = []
        self.pruned: dict[str, str] = {}
        self.converged = False
        self.worker: LoadWorker | None = None

    # -- time --------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def trial_cost(self) -> float:
        """Expected seconds for one more candidate (the mean so far, plus 10%)."""
        done = [t.seconds for t in self.trials if t.seconds > 0]
        if done:
            return 1.1 * sum(done) / len(done)
        per_point = self.workload.warmup_s + self.workload.duration_s + 0.1
        return 0.6 + len(self.levels) * per_point

    def report_progress(self, step: str, best: Trial | None = None) -> None:
        shown = "-"
        if best is not None:
            shown = f"#{best.id} {self.score(best).describe()}"
        self.progress(TuneProgress(self.elapsed(), self.settings.budget_s, step, shown))

    # -- measuring ---------------------------------------------------------------------

    def score(self, trial: Trial) -> Score:
        return self.objective.score(trial.points)

    def measure(
        self, candidate: Candidate, dimension: str, toml_text: str, base: _Baseline
    ) -> Trial:
        trial = self.by_candidate.get(candidate)
        if trial is None:
            trial = Trial(len(self.trials) + 1, candidate, dimension)
            self.trials.append(trial)
            self.by_candidate[candidate] = trial
        if self.worker is None:
            raise RuntimeError("the load generator is not running")
        started = time.monotonic()
        text = update_settings(toml_text, self.name, settings_changes(candidate, base))
        measured = serve_and_measure(
            self.name,
            self.files[candidate.variant],
            self.repo / self.name,
            text,
            self.workload,
            self.worker,
        )
        trial.seconds = time.monotonic() - started
        if measured.points is None:
            trial.reason = measured.reason
        else:
            trial.rounds.append(measured.points)
        trial.first_error = trial.first_error or measured.first_error
        return trial


def _best_trial(tuner: _Tuner, trials: list[Trial]) -> Trial | None:
    measured = {t.id: tuner.score(t) for t in trials}
    order = rank(measured)
    return next((t for t in trials if t.id == order[0]), None) if order else None


def tune(
    repo: Path,
    name: str,
    settings: TuneSettings | None = None,
    progress: Callable[[TuneProgress], None] | None = None,
) -> TuneResult:
    """Tune ``repo/name`` (see the module doc) and write the winner; return the result.

    Raises NotFoundError (model or version), InvalidInputError (flags, data files),
    UnsupportedError (not an ONNX version) and ConfigError (a model.toml that cannot be
    rewritten safely). An SLO that nothing meets is not an error: the result says so.
    """
    settings = settings or TuneSettings()
    _check(settings)
    source = find_model(repo, name)
    version = resolve_version(source, settings.version)
    source_file = onnx_file(source, version)
    baseline_file = onnx_file(source, baseline_version(source, version))
    config = source.config()
    config_path = source.path / CONFIG_FILENAME
    toml_text = config_path.read_text(encoding="utf-8") if config_path.exists() else ""
    hardware = probe()
    tuner = _Tuner(repo, name, settings, progress)
    tuner.report_progress(f"loading {name} v{version}")
    with tempfile.TemporaryDirectory(prefix="shipyard-tune-variants-") as tmp:
        maker = VariantMaker(
            source_file,
            baseline_file,
            config,
            Path(tmp),
            calibration=settings.calibration,
            validation=settings.validation,
            metric=settings.metric,
            max_drop=settings.max_drop,
            model_dir=source.path,
        )
        try:
            inputs = config.inputs or maker.inputs
            outputs = config.outputs or maker.outputs
            dynamic = _dynamic_first(inputs, outputs)
            base = _baseline(config, dynamic, hardware)
            _check_writable(toml_text, name, base)
            with LoadWorker() as worker:
                tuner.worker = worker
                variants = _run(tuner, maker, base, hardware, dynamic, toml_text, version)
            report, winner, met = _decide(tuner, base, variants, hardware, version, maker)
            return _finish(tuner, report, winner, met, base, variants, maker, version)
        finally:
            maker.close()


def _check_writable(toml_text: str, name: str, base: _Baseline) -> None:
    """Fail before measuring anything when model.toml could not take the winner's keys."""
    start = base.candidate
    every = {
        "instance_count": start.instance_count,
        "onnxruntime.intra_op_threads": start.intra_op_threads,
        "onnxruntime.execution_mode": "sequential",
        "dynamic_batching.max_queue_delay_us": start.max_queue_delay_us,
    }
    try:
        update_settings(toml_text, name, every)
    except ConfigError as exc:
        raise ConfigError(f"{CONFIG_FILENAME}: {exc.message}") from exc


def _run(
    tuner: _Tuner,
    maker: VariantMaker,
    base: _Baseline,
    hardware: HardwareReport,
    dynamic: bool,
    toml_text: str,
    version: int,
) -> dict[str, Variant]:
    settings = tuner.settings
    search_budget = settings.budget_s * (1 - _CONFIRM_SHARE)
    tuner.files["fp32"] = maker.source
    start = base.candidate
    tuner.report_progress(f"#1 {start.label()} (current settings)")
    first = tuner.measure(start, "start", toml_text, base)
    if first.points is None:
        raise InvalidInputError(
            f"the model as configured now could not be measured: {first.reason}"
            + ("" if settings.input_file else "; pass --input FILE.npz with valid inputs")
        )
    variants: dict[str, Variant] = {}
    for name in dict.fromkeys(("fp32", *settings.variants)):
        providers = suitable_providers(hardware, name)
        if name != "fp32" and tuner.elapsed() + 2 * tuner.trial_cost() > search_budget:
            variants[name] = Variant(name, "skipped", reason="the time budget ran out first")
            continue
        if name != "fp32":
            tuner.report_progress(f"making the {name} variant", first)
        variant = maker.make(name, providers)
        variants[name] = variant
        if variant.status == "ready" and variant.path is not None:
            tuner.files[name] = variant.path
    ready = tuple(n for n, v in variants.items() if v.status == "ready")
    space = _space(base, hardware, dynamic, tuner.levels, settings.slo_p99_ms, ready)
    search = CoordinateSearch(space, tuner.objective, start, margin=settings.margin)
    search.record(start, tuner.score(first))
    for _ in range(10_000):  # bounded; the search converges or the budget ends it long before
        proposal = search.propose()
        if proposal is None:
            break
        if tuner.elapsed() + tuner.trial_cost() > search_budget:
            tuner.notes.append(
                f"the time budget ended the search after {len(tuner.trials)} candidates,"
                " before it converged; a larger --budget-minutes may find more"
            )
            break
        best = tuner.by_candidate.get(search.best)
        tuner.report_progress(
            f"#{len(tuner.trials) + 1} {proposal.candidate.label()} ({proposal.dimension})", best
        )
        trial = tuner.measure(proposal.candidate, proposal.dimension, toml_text, base)
        search.record(proposal.candidate, tuner.score(trial))
    if search.converged:
        tuner.notes.append(f"the search converged after {len(tuner.trials)} candidates")
    tuner.pruned = dict(search.pruned)
    tuner.converged = search.converged
    _confirm(tuner, base, toml_text)
    return variants


def _confirm(tuner: _Tuner, base: _Baseline, toml_text: str) -> None:
    """Measure the finalists once more, if the budget allows, so luck does not pick the winner."""
    measured = [t for t in tuner.trials if t.points is not None]
    order = rank({t.id: tuner.score(t) for t in measured})
    ids = list(dict.fromkeys([*order[: tuner.settings.finalists], 1]))
    finalists = [tuner.trials[i - 1] for i in ids]
    if len(finalists) < 2:
        return
    if tuner.elapsed() + len(finalists) * tuner.trial_cost() > tuner.settings.budget_s:
        tuner.notes.append("no time was left to measure the finalists a second time")
        return
    for trial in finalists:
        tuner.report_progress(f"confirming #{trial.id} {trial.candidate.label()}", trial)
        tuner.measure(trial.candidate, trial.dimension, toml_text, base)
    tuner.finalists = [t.id for t in finalists]


def _decide(
    tuner: _Tuner,
    base: _Baseline,
    variants: dict[str, Variant],
    hardware: HardwareReport,
    version: int,
    maker: VariantMaker,
) -> tuple[dict[str, Any], Trial, bool | None]:
    from shipyard.tuning.report import build_report

    pool = [tuner.trials[i - 1] for i in tuner.finalists] or [
        t for t in tuner.trials if t.points is not None
    ]
    best = _best_trial(tuner, pool) or tuner.trials[0]
    baseline = tuner.trials[0]
    objective = tuner.objective
    keep = best is not baseline and not objective.better(
        tuner.score(best), tuner.score(baseline), tuner.settings.margin
    )
    winner = baseline if keep else best
    met = None if tuner.settings.slo_p99_ms is None else tuner.score(winner).tier == 1
    report = build_report(
        tuner=tuner,
        base=base,
        winner=winner,
        best=best,
        kept_baseline=keep,
        met_slo=met,
        variants=variants,
        hardware=hardware,
        version=version,
        notes=[*maker.notes, *tuner.notes],
    )
    return report, winner, met


def _finish(
    tuner: _Tuner,
    report: dict[str, Any],
    winner: Trial,
    met: bool | None,
    base: _Baseline,
    variants: dict[str, Variant],
    maker: VariantMaker,
    version: int,
) -> TuneResult:
    from shipyard.tuning.html import render_html

    settings = tuner.settings
    model_dir = tuner.repo / tuner.name
    changes = settings_changes(winner.candidate, base)
    new_variant = winner.candidate.variant != "fp32"
    written, new_version = False, None
    if settings.dry_run:
        decision = "dry run: nothing was written"
    elif met is False and not settings.force:
        decision = (
            f"the SLO p99 <= {settings.slo_p99_ms:g} ms was not met; nothing was written"
            " (--force writes the best found)"
        )
    elif not changes and not new_variant:
        decision = "the current settings won; model.toml is unchanged"
    else:
        config_path = model_dir / CONFIG_FILENAME
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        note = f"# Serving settings tuned by `shipyard tune` on {stamp}; see tune-report.html."
        old = write_settings(config_path, tuner.name, changes, note) if changes else None
        if new_variant:
            try:
                new_version = _publish_variant(
                    tuner, variants[winner.candidate.variant], maker, report, version
                )
            except BaseException:
                if old is not None:
                    config_path.write_text(old, encoding="utf-8")
                raise
        written = True
        done = []
        if changes:
            done.append(f"wrote {', '.join(changes)} to {config_path}")
        if new_version is not None:
            done.append(
                f"published the {winner.candidate.variant} variant as version {new_version}"
            )
        decision = "; ".join(done) + (" (forced: the SLO was not met)" if met is False else "")
    report["decision"] = decision
    report["written"] = {
        "model_toml": bool(changes) and written,
        "settings": changes if written else {},
        "version": new_version,
    }
    folder = settings.report_dir or model_dir
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "tune-report.json"
    html_path = folder / "tune-report.html"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return TuneResult(report, met, written, new_version, json_path, html_path)


def _publish_variant(
    tuner: _Tuner, variant: Variant, maker: VariantMaker, report: dict[str, Any], version: int
) -> int:
    if variant.path is None:
        raise InvalidInputError(f"variant {variant.name} has no file")
    data = variant.path.read_bytes()
    winner = report["winner"]
    version_report = {
        "created": report["created"],
        "shipyard_version": report["shipyard_version"],
        "step": "tune",
        "optimization": {
            "source_version": version,
            "baseline_version": baseline_version(find_model(tuner.repo, tuner.name), version),
            **variant.details,
        },
        "accuracy": variant.accuracy,
        "size": {"before_bytes": maker.source.stat().st_size, "after_bytes": len(data)},
        "tuning": {
            "goal": report["goal"],
            "winner": winner,
            "report": "tune-report.json in the model folder",
        },
        "hardware": report["hardware"],
    }
    inputs = maker.config.inputs or maker.inputs
    outputs = maker.config.outputs or maker.outputs
    new_version, _path = publish(
        tuner.repo, tuner.name, {"model.onnx": data}, inputs, outputs, version_report
    )
    return new_version
