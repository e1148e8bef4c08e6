"""Draw an image explanation as a PNG: the heatmap over what the model saw.

Positive attributions (the target's score drops when the region is hidden) are red, negative
ones blue, their opacity proportional to the magnitude; the picture is scaled up with
nearest-neighbour sampling until its longer side is at least :data:`MIN_SIDE` pixels, so a
28 x 28 digit is readable.
"""

from __future__ import annotations

import io

import numpy as np

from shipyard.errors import InvalidInputError
from shipyard.explain.explainer import Explanation
from shipyard.processing.image import load_pillow

__all__ = ["MIN_SIDE", "heatmap_png"]

#: The overlay's longer side is scaled up to at least this many pixels.
MIN_SIDE = 224
#: Strongest overlay opacity.
_ALPHA = 0.75


def heatmap_png(explanation: Explanation) -> bytes:
    """The PNG overlay of an image explanation; InvalidInputError for other kinds."""
    if explanation.image is None:
        raise InvalidInputError(
            f"model {explanation.model_name!r}: a PNG heatmap is drawn for image inputs only;"
            " ask for application/json"
        )
    pil = load_pillow()
    picture = explanation.image.astype(np.float32)
    if picture.shape[-1] == 1:
        picture = np.repeat(picture, 3, axis=-1)
    heat = explanation.attributions.astype(np.float32)
    peak = float(np.abs(heat).max())
    strength = np.abs(heat) / peak if peak > 0 else np.zeros_like(heat)
    colour = np.where(heat[..., None] >= 0, [255.0, 0.0, 0.0], [0.0, 64.0, 255.0])
    alpha = (_ALPHA * strength)[..., None]
    blended = (picture * (1 - alpha) + colour * alpha).round().clip(0, 255).astype(np.uint8)
    scale = max(1, -(-MIN_SIDE // max(blended.shape[:2])))
    image = pil.fromarray(blended, mode="RGB")
    if scale > 1:
        size = (blended.shape[1] * scale, blended.shape[0] * scale)
        image = image.resize(size, pil.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
