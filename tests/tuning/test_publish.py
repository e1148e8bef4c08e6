"""The decision, the publication and the report, from typed trials with made-up figures.

No server and no load: the trials are built by hand, so these tests pin what each step does
with them (the winner by id, what is written, what is put back, what the report says).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

import pytest

from shipyard.config import ModelConfig
from shipyard.errors import InvalidInputError
from shipyard.hardware import HardwareReport, probe
from shipyard.testing import identity_model, write_model
from shipyard.tuning import TuneSettings
from shipyard.tuning.baseline import Baseline, settings_changes
from shipyard.tuning.decide import decide
from shipyard.tuning.explore import Exploration, Trial
from shipyard.tuning.publish import NewVersion, publish_winner
from shipyard.tuning.report import build_report, version_report
from shipyard.tuning.search import Candidate, Point
from shipyard.tuning.variants import Variant
from shipyard.types import DataType, TensorSpec

NOW = datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.UTC)
SPECS = (TensorSpec("INPUT0", DataType.FP32, (-1, 4)),)
OUTPUTS = (TensorSpec("OUTPUT0", DataType.FP32, (-1, 4)),)


@pytest.fixture(scope="module")
def hardware() -> HardwareReport:
    """This machine, probed once."""
    return probe()


def measured(trial_id: int, candidate: Candidate, rps: float, p99_ms: float) -> Trial:
    """A trial measured once at concurrency 1."""
    return Trial(trial_id, candidate, "start", ((Point(1, rps, p99_ms / 2, p99_ms),),), "", 1.0)


def exploration_of(trials: list[Trial], variants: dict[str, Variant]) -> Exploration:
    """An exploration whose first trial is the baseline and which measured nothing twice."""
    return Exploration(tuple(trials), trials[0], (), variants, {}, True, (), 3.0)


def base_of(hardware: HardwareReport) -> Baseline:
    """The default settings of a batching model."""
    return Baseline.resolve(ModelConfig(name="m"), True, hardware)


def test_the_winner_and_the_report_go_by_trial_id(hardware: HardwareReport) -> None:
    """Ids that are not list positions still pick and mark the right trials."""
    base = base_of(hardware)
    start = base.candidate
    faster = dataclasses.replace(start, instance_count=2)
    trials = [measured(1, start, 100, 10), measured(7, faster, 300, 5)]
    exploration = exploration_of(trials, {"fp32": Variant("fp32", "ready")})
    settings = TuneSettings(concurrency=(1,))
    decision = decide(exploration, settings)
    assert decision.winner.id == 7
    assert not decision.kept_baseline
    assert decision.why.startswith("#7 ")
    publication = publish_winner(
        Path("unused"),
        "m",
        dataclasses.replace(settings, dry_run=True),
        decision,
        {},
        exploration.variants["fp32"],
        None,
        NOW,
    )
    report = build_report(
        name="m",
        version=1,
        settings=settings,
        hardware=hardware,
        base=base,
        exploration=exploration,
        decision=decision,
        publication=publication,
        now=NOW,
    )
    rows = {row["id"]: row for row in report["candidates"]}
    assert rows[7]["winner"]
    assert not rows[7]["baseline"]
    assert rows[1]["baseline"]
    assert not rows[1]["winner"]
    assert report["winner"]["id"] == 7
    assert report["winner"]["changes"] == {"instance_count": 2}
    assert report["decision"] == "dry run: nothing was written"
    assert report["written"] == {"model_toml": False, "settings": {}, "version": None}
    assert report["created"] == "2026-01-02T03:04:00+00:00"


def test_a_win_inside_the_margin_keeps_the_current_settings(hardware: HardwareReport) -> None:
    """A p99 2% lower is noise under a 5% margin (10% on p99): the current settings stay."""
    base = base_of(hardware)
    other = dataclasses.replace(base.candidate, instance_count=2)
    trials = [measured(1, base.candidate, 100, 10), measured(2, other, 102, 9.8)]
    decision = decide(exploration_of(trials, {}), TuneSettings(margin=0.05))
    assert decision.kept_baseline
    assert decision.winner.id == 1
    assert decision.best.id == 2
    assert "the 5% margin (the noise was not measured: no second round)" in decision.why
    assert decision.noise is None


def twice(trial_id: int, candidate: Candidate, first_rps: float, second_rps: float) -> Trial:
    """A finalist measured in two rounds at concurrency 1 (p99 5 ms both times)."""
    rounds = ((Point(1, first_rps, 2.5, 5.0),), (Point(1, second_rps, 2.5, 5.0),))
    return Trial(trial_id, candidate, "start", rounds, "", 1.0)


@pytest.mark.parametrize(("spread", "kept"), [(1.25, True), (1.02, False)], ids=["noisy", "steady"])
def test_the_margin_grows_with_the_noise_measured_between_rounds(
    hardware: HardwareReport, spread: float, kept: bool
) -> None:
    """A candidate 15% faster wins when the finalists' two rounds agree within 2%, and not
    when they differ by 25%: the noise measured on this machine is the margin."""
    base = base_of(hardware)
    other = dataclasses.replace(base.candidate, instance_count=2)
    baseline = twice(1, base.candidate, 1000, 1000 * spread)
    rival = twice(2, other, 1150, 1150 * spread)
    exploration = Exploration((baseline, rival), baseline, (baseline, rival), {}, {}, True, (), 3.0)
    decision = decide(exploration, TuneSettings(margin=0.05, slo_p99_ms=50, concurrency=(1,)))
    assert decision.kept_baseline is kept
    assert decision.noise == pytest.approx(spread - 1)
    assert decision.margin == pytest.approx(max(0.05, spread - 1))
    if kept:
        assert "noise between the finalists' two rounds: 25.0%" in decision.why


def test_a_missed_slo_writes_nothing_unless_forced(
    tmp_path: Path, hardware: HardwareReport
) -> None:
    """With p99 over the SLO everywhere, model.toml is untouched; --force writes the best."""
    write_model(tmp_path, "m", identity_model(), config="# mine\n")
    base = base_of(hardware)
    other = dataclasses.replace(base.candidate, instance_count=3)
    trials = [measured(1, base.candidate, 100, 10), measured(2, other, 300, 5)]
    settings = TuneSettings(slo_p99_ms=1.0)
    decision = decide(exploration_of(trials, {}), settings)
    assert decision.met_slo is False
    changes = settings_changes(decision.winner.candidate, base)
    fp32 = Variant("fp32", "ready")
    kept = publish_winner(tmp_path, "m", settings, decision, changes, fp32, None, NOW)
    assert not kept.written
    assert "was not met; nothing was written" in kept.summary
    assert (tmp_path / "m" / "model.toml").read_text(encoding="utf-8") == "# mine\n"
    forced = dataclasses.replace(settings, force=True)
    written = publish_winner(tmp_path, "m", forced, decision, changes, fp32, None, NOW)
    assert written.written
    assert written.settings == {"instance_count": 3}
    assert written.summary.endswith("(forced: the SLO was not met)")
    text = (tmp_path / "m" / "model.toml").read_text(encoding="utf-8")
    assert "instance_count = 3" in text
    assert "# mine" in text


def test_a_winning_variant_is_published_with_its_report(
    tmp_path: Path, hardware: HardwareReport
) -> None:
    """A non-fp32 winner becomes version 2, whose report.json names the winning trial."""
    source = write_model(tmp_path, "m", identity_model())
    variant_file = tmp_path / "variant.onnx"
    variant_file.write_bytes(source.read_bytes())
    variant = Variant(
        "optimized", "ready", variant_file, details={"method": "none"}, size_bytes=123
    )
    base = base_of(hardware)
    winner = dataclasses.replace(base.candidate, variant="optimized", instance_count=2)
    trials = [measured(1, base.candidate, 100, 10), measured(4, winner, 400, 4)]
    exploration = exploration_of(trials, {"fp32": Variant("fp32", "ready"), "optimized": variant})
    settings = TuneSettings()
    decision = decide(exploration, settings)
    report = version_report(
        settings=settings,
        hardware=hardware,
        base=base,
        exploration=exploration,
        decision=decision,
        variant=variant,
        source_version=1,
        baseline_version=1,
        source_bytes=source.stat().st_size,
        now=NOW,
    )
    changes = settings_changes(winner, base)
    publication = publish_winner(
        tmp_path, "m", settings, decision, changes, variant, NewVersion(SPECS, OUTPUTS, report), NOW
    )
    assert publication.version == 2
    assert publication.settings == {"instance_count": 2}
    saved = json.loads((tmp_path / "m" / "2" / "report.json").read_text(encoding="utf-8"))
    assert saved["step"] == "tune"
    assert saved["tuning"]["winner"]["id"] == 4
    assert saved["size"] == {"before_bytes": source.stat().st_size, "after_bytes": 123}
    assert (tmp_path / "m" / "2" / "model.onnx").read_bytes() == source.read_bytes()


def test_a_failed_publication_puts_model_toml_back(
    tmp_path: Path, hardware: HardwareReport
) -> None:
    """When the variant cannot be published, the settings just written are undone."""
    write_model(tmp_path, "m", identity_model(), config="# mine\ninstance_count = 1\n")
    base = base_of(hardware)
    winner = dataclasses.replace(base.candidate, variant="fp16", instance_count=4)
    trials = [measured(1, base.candidate, 100, 10), measured(2, winner, 400, 4)]
    broken = Variant("fp16", "ready")  # no file
    decision = decide(exploration_of(trials, {"fp16": broken}), TuneSettings())
    changes = settings_changes(winner, base)
    with pytest.raises(InvalidInputError, match="variant fp16 has no file"):
        publish_winner(tmp_path, "m", TuneSettings(), decision, changes, broken, None, NOW)
    text = (tmp_path / "m" / "model.toml").read_text(encoding="utf-8")
    assert text == "# mine\ninstance_count = 1\n"
    assert not (tmp_path / "m" / "2").exists()
