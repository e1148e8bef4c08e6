"""``shipyard tune``: search model variant and serving settings together, by serving them.

:func:`tune` runs four steps, one module each, passing typed results from one to the next:

1. :func:`~shipyard.tuning.explore.explore` measures the model as it is configured now (the
   baseline), makes the variants (:mod:`~shipyard.tuning.variants`), then runs a
   :class:`~shipyard.tuning.search.CoordinateSearch` over variant, execution provider,
   instances, intra- and inter-op threads, ``max_batch_size``, ``max_queue_delay_us`` and
   preferred batch sizes. Every candidate is served for real and loaded by the ``shipyard
   bench`` generator (:mod:`~shipyard.tuning.measure`). When the search converges or the
   budget nears its end, the finalists (the best candidates and the baseline) are measured
   once more and their rounds averaged. The answer is an ``Exploration``.
2. :func:`~shipyard.tuning.decide.decide` picks the winner (a ``Decision``): the highest
   throughput within the SLO, or the lowest p99 without one, and only when it beats the
   current settings by more than the noise margin.
3. :func:`~shipyard.tuning.publish.publish_winner` writes the winner's settings into
   ``model.toml`` (only the keys that changed; every other key and comment kept) and publishes
   a variant other than the version as it is as a new version with ``report.json`` (a
   ``Publication``). With an SLO that nothing met, nothing is written unless ``force``; a dry
   run writes nothing either.
4. :func:`~shipyard.tuning.report.build_report` builds ``tune-report.json`` once, from those
   results; it and ``tune-report.html`` are always written.

See docs/tune.md.
"""

from __future__ import annotations

import datetime
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.hardware import probe
from shipyard.optimize.versions import baseline_version, onnx_file, resolve_version
from shipyard.repository.layout import CONFIG_FILENAME, find_model
from shipyard.tuning.baseline import (
    Baseline,
    check_writable,
    dynamic_first_dimension,
    settings_changes,
)
from shipyard.tuning.decide import Decision, decide
from shipyard.tuning.explore import Explorer, explore
from shipyard.tuning.html import render_html
from shipyard.tuning.measure import LoadWorker
from shipyard.tuning.publish import NewVersion, Publication, publish_winner
from shipyard.tuning.report import build_report, version_report
from shipyard.tuning.settings import TuneProgress, TuneSettings, check_settings
from shipyard.tuning.variants import VariantMaker

__all__ = ["TuneResult", "tune"]


@dataclass(frozen=True, slots=True)
class TuneResult:
    """What a tuning run decided and wrote, and where its report is."""

    #: ``tune-report.json`` as written.
    report: dict[str, Any]
    decision: Decision
    publication: Publication
    report_json: Path
    report_html: Path

    @property
    def met_slo(self) -> bool | None:
        """Whether the winner meets the SLO (``None``: no SLO was given)."""
        return self.decision.met_slo

    @property
    def written(self) -> bool:
        """Whether model.toml or a new version was written."""
        return self.publication.written

    @property
    def version(self) -> int | None:
        """The version the winning variant was published as (``None``: none)."""
        return self.publication.version

    @property
    def exit_code(self) -> int:
        """1 when an SLO was given and nothing met it, else 0."""
        return 1 if self.met_slo is False else 0


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
    check_settings(settings)
    source = find_model(repo, name)
    version = resolve_version(source, settings.version)
    ancestor = baseline_version(source, version)
    source_file = onnx_file(source, version)
    baseline_file = onnx_file(source, ancestor)
    config = source.config()
    config_path = source.path / CONFIG_FILENAME
    toml_text = config_path.read_text(encoding="utf-8") if config_path.exists() else ""
    hardware = probe()
    started = time.monotonic()
    if progress is not None:
        progress(TuneProgress(0.0, settings.budget_s, f"loading {name} v{version}", "-"))
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
            dynamic = dynamic_first_dimension(inputs, outputs)
            base = Baseline.resolve(
                config, dynamic, hardware, auto_threads=maker.original.threads.threads
            )
            check_writable(toml_text, name, base)
            with LoadWorker() as worker:
                explorer = Explorer(
                    repo, name, settings, toml_text, base, worker, progress, started=started
                )
                exploration = explore(explorer, maker, hardware, dynamic)
            decision = decide(exploration, settings)
            now = datetime.datetime.now(datetime.UTC)
            variant = exploration.variants[decision.winner.candidate.variant]
            new_version = None
            if variant.name != "fp32":
                new_version = NewVersion(
                    inputs,
                    outputs,
                    version_report(
                        settings=settings,
                        hardware=hardware,
                        base=base,
                        exploration=exploration,
                        decision=decision,
                        variant=variant,
                        source_version=version,
                        baseline_version=ancestor,
                        source_bytes=maker.source.stat().st_size,
                        now=now,
                    ),
                )
            changes = settings_changes(decision.winner.candidate, base)
            publication = publish_winner(
                repo, name, settings, decision, changes, variant, new_version, now
            )
        finally:
            maker.close()
    report = build_report(
        name=name,
        version=version,
        settings=settings,
        hardware=hardware,
        base=base,
        exploration=exploration,
        decision=decision,
        publication=publication,
        now=now,
    )
    folder = settings.report_dir or repo / name
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "tune-report.json"
    html_path = folder / "tune-report.html"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return TuneResult(report, decision, publication, json_path, html_path)
