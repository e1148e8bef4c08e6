"""``shipyard tune``: serve candidate configurations for real and keep the best under an SLO.

Unlike ``convert/`` and ``optimize/`` (offline, never importing ``server/``), the tuner
measures each candidate by actually serving it in-process, so it sits with the wiring layer:
it starts servers (:func:`shipyard.server.embedded.embedded_server`) and drives them with the
``shipyard bench`` load generator. :mod:`~shipyard.tuning.tune` runs the steps; the search run,
the decision, the publication and the report are one module each. See ``docs/tune.md``.
"""

from shipyard.tuning.settings import TuneProgress, TuneSettings
from shipyard.tuning.tune import TuneResult, tune

__all__ = ["TuneProgress", "TuneResult", "TuneSettings", "tune"]
