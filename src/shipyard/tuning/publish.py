"""Write the tuner's winner: its settings into model.toml, its variant as a new version.

Only the keys that change are written (every other key and comment is kept), under a comment
line that says when and by what. A variant other than the version as it is becomes a new
version, published atomically with its ``report.json``; if that fails, model.toml is put back
as it was. Nothing is written on a dry run, or when an SLO was given and nothing met it
(unless forced).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.errors import InvalidInputError
from shipyard.repository.layout import CONFIG_FILENAME
from shipyard.repository.publish import publish
from shipyard.repository.settings import write_settings
from shipyard.tuning.decide import Decision
from shipyard.tuning.settings import TuneSettings
from shipyard.tuning.variants import Variant
from shipyard.types import TensorSpec

__all__ = ["NewVersion", "Publication", "publish_winner"]


@dataclass(frozen=True, slots=True)
class NewVersion:
    """What a winning variant is published with: its signature and its ``report.json``."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    report: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Publication:
    """What was written for the winner, and the sentence that says so."""

    #: For people: what was written, or why nothing was.
    summary: str
    written: bool = False
    #: The model.toml keys written (empty: model.toml is unchanged).
    settings: dict[str, Any] = field(default_factory=dict)
    #: The version the winning variant was published as (``None``: none).
    version: int | None = None


def publish_winner(
    repo: Path,
    name: str,
    settings: TuneSettings,
    decision: Decision,
    changes: dict[str, Any],
    variant: Variant,
    new_version: NewVersion | None,
    now: datetime.datetime,
) -> Publication:
    """Write ``decision``'s winner into ``repo/name`` as ``settings`` allow; say what was done.

    ``changes`` are the model.toml keys that give the winner's settings; ``variant`` is the
    winner's variant, published with ``new_version`` unless it is the version as it is.
    """
    new_variant = decision.winner.candidate.variant != "fp32"
    if settings.dry_run:
        return Publication("dry run: nothing was written")
    if decision.met_slo is False and not settings.force:
        return Publication(
            f"the SLO p99 <= {settings.slo_p99_ms:g} ms was not met; nothing was written"
            " (--force writes the best found)"
        )
    if not changes and not new_variant:
        return Publication("the current settings won; model.toml is unchanged")
    config_path = repo / name / CONFIG_FILENAME
    stamp = now.strftime("%Y-%m-%d %H:%M UTC")
    note = f"# Serving settings tuned by `shipyard tune` on {stamp}; see tune-report.html."
    old = write_settings(config_path, name, changes, note) if changes else None
    version = None
    if new_variant:
        try:
            version = _publish_variant(repo, name, variant, new_version)
        except BaseException:
            if old is not None:
                config_path.write_text(old, encoding="utf-8")
            raise
    done = []
    if changes:
        done.append(f"wrote {', '.join(changes)} to {config_path}")
    if version is not None:
        done.append(f"published the {variant.name} variant as version {version}")
    summary = "; ".join(done) + (
        " (forced: the SLO was not met)" if decision.met_slo is False else ""
    )
    return Publication(summary, True, changes, version)


def _publish_variant(
    repo: Path, name: str, variant: Variant, new_version: NewVersion | None
) -> int:
    if variant.path is None or new_version is None:
        raise InvalidInputError(f"variant {variant.name} has no file")
    data = variant.path.read_bytes()
    version, _path = publish(
        repo,
        name,
        {"model.onnx": data},
        new_version.inputs,
        new_version.outputs,
        new_version.report,
    )
    return version
