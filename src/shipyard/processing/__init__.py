"""Pre- and post-processing run in the server around a model (``docs/processing.md``).

Declared in ``model.toml`` (``[[preprocess]]``, ``[[postprocess]]``), checked when the model
loads (:func:`build_pipeline`), and run per request around the model's batcher. Pillow and
``tokenizers`` (the ``processing`` extra) are imported only by models that use them.
"""

from shipyard.processing.outputs import classify
from shipyard.processing.pipeline import INLINE_BYTES, Pipeline, build_pipeline
from shipyard.processing.steps import STEPS

__all__ = ["INLINE_BYTES", "STEPS", "Pipeline", "build_pipeline", "classify"]
