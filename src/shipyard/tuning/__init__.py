"""``shipyard tune``: serve candidate configurations for real and keep the best under an SLO.

Unlike ``convert/`` and ``optimize/`` (offline, never importing ``server/``), the tuner
measures each candidate by actually serving it in-process, so it sits with the wiring layer:
it builds servers (through ``shipyard.testing.running_server``) and drives them with the
``shipyard bench`` load generator. See ``docs/tune.md``.
"""

from shipyard.tuning.tune import TuneSettings, tune

__all__ = ["TuneSettings", "tune"]
