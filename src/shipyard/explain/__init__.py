"""Explanations of served predictions: model-agnostic attributions (docs/explain.md).

:func:`~shipyard.explain.explainer.explain` perturbs one instance many times (occlusion or
RISE masks for images, word occlusion for texts, feature occlusion for tensors), runs every
perturbation through the served model's own batcher, and turns the scores into attributions
(:class:`~shipyard.explain.explainer.Explanation`). It is transport-neutral: the service calls
it, and the HTTP route only decodes the request and encodes the answer (JSON, or a PNG overlay
from :func:`~shipyard.explain.render.heatmap_png`).
"""

from shipyard.explain.explainer import Explanation, explain
from shipyard.explain.options import KNOWN, ExplainOptions, parse_options
from shipyard.explain.render import heatmap_png

__all__ = ["KNOWN", "ExplainOptions", "Explanation", "explain", "heatmap_png", "parse_options"]
