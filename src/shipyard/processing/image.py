"""Image pre-processing: BYTES (PNG, JPEG...) → decode → resize → scale/normalize → layout → dtype.

Each batch row of the client-facing BYTES input holds one encoded image. Rows are decoded one by
one with Pillow (the ``processing`` extra) into ``H x W x C`` arrays, stacked into an NHWC batch,
and the array steps run on the whole batch at once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from shipyard.config import PreprocessConfig
from shipyard.errors import ConfigError, InvalidInputError, PayloadTooLargeError
from shipyard.processing.steps import IMAGE_STEPS, Options, unknown_step
from shipyard.types import Array, TensorSpec

__all__ = ["DEFAULT_MAX_PIXELS", "FORMATS", "ImageChain", "build_image_chain", "load_pillow"]

#: Largest image (width x height) decoded unless ``decode_image.max_pixels`` says otherwise.
DEFAULT_MAX_PIXELS = 4096 * 4096
#: Image formats Pillow is allowed to open (others are refused before any decoding).
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
#: Channels of each ``decode_image.mode``.
MODES = {"L": 1, "RGB": 3, "RGBA": 4}
#: ``layout.order`` → axes of the NHWC batch, in the target order (N-less orders take one image).
LAYOUTS: dict[str, tuple[int, ...]] = {
    "NHWC": (0, 1, 2, 3),
    "NCHW": (0, 3, 1, 2),
    "NHW": (0, 1, 2),
    "HWC": (1, 2, 3),
    "CHW": (3, 1, 2),
    "HW": (1, 2),
}
RESAMPLE = ("nearest", "bilinear", "bicubic", "lanczos")
#: An element made only of these is taken as base64 (V2 JSON carries BYTES as text); no image
#: format starts with such bytes only (PNG starts with 0x89, JPEG with 0xFF).
_BASE64 = re.compile(rb"[A-Za-z0-9+/=\r\n]+")


def load_pillow() -> ModuleType:
    """Import Pillow's ``Image`` module, or explain how to install it."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ConfigError(
            "image processing needs Pillow, which is missing: pip install 'shipyard[processing]'"
        ) from exc
    return Image


@dataclass(slots=True)
class ImageChain:
    """A checked image entry: decodes the BYTES rows of ``input`` into the tensor ``target``."""

    input: str
    target: TensorSpec
    #: The client-facing input's shape (one image per row).
    client_shape: tuple[int, ...]
    mode: str
    max_pixels: int
    #: ``(height, width)`` to resize to; ``None`` keeps the image's own size.
    size: tuple[int, int] | None
    resample: str
    #: Fixed ``(height, width)`` the target needs when there is no resize (``-1``: any).
    expected: tuple[int, int]
    ops: list[Callable[[Array], Array]] = field(default_factory=list)
    #: The target tensor's axes (``layout.order``; NHWC without a layout step).
    order: str = "NHWC"

    def run(self, values: Array) -> dict[str, Array]:
        """Turn the BYTES rows of ``values`` into ``{target: array}``; bad images raise 4xx."""
        pil = load_pillow()
        rows = [self._decode(pil, value, i) for i, value in enumerate(values.reshape(-1))]
        first = rows[0].shape
        for i, row in enumerate(rows):
            if row.shape != first:
                raise InvalidInputError(
                    f"input {self.input!r}: images in one request differ in size "
                    f"({_size(first)} and {_size(row.shape)} at element {i}); add a resize "
                    "step to the model's [[preprocess]] or send images of one size"
                )
        height, width = self.expected
        if (height != -1 and first[0] != height) or (width != -1 and first[1] != width):
            raise InvalidInputError(
                f"input {self.input!r}: image is {_size(first)} but the model takes "
                f"{width}x{height} (width x height); send images of that size"
            )
        batch: Array = np.stack(rows)
        for op in self.ops:
            batch = op(batch)
        return {self.target.name: batch.astype(self.target.datatype.numpy, copy=False)}

    def _decode(self, pil: ModuleType, value: object, row: int) -> Array:
        where = f"input {self.input!r}, element {row}"
        data = bytes(value) if isinstance(value, bytes | bytearray | memoryview) else b""
        if not data:
            raise InvalidInputError(f"{where}: empty; send the bytes of a PNG or JPEG image")
        if _BASE64.fullmatch(data):
            # not base64 after all: Pillow then says what it is not
            with contextlib.suppress(binascii.Error, ValueError):
                text = data.replace(b"\r", b"").replace(b"\n", b"")
                data = base64.b64decode(text, validate=True)
        try:
            image = pil.open(io.BytesIO(data), formats=FORMATS)
        except pil.UnidentifiedImageError:
            raise InvalidInputError(
                f"{where}: not an image ({len(data)} bytes); send a PNG or JPEG "
                f"(readable formats: {', '.join(FORMATS)})"
            ) from None
        except (pil.DecompressionBombError, pil.DecompressionBombWarning) as exc:
            raise PayloadTooLargeError(f"{where}: image is too large: {exc}") from None
        width, height = image.size
        if width * height > self.max_pixels:
            raise PayloadTooLargeError(
                f"{where}: image is {width}x{height} = {width * height} pixels, over the limit "
                f"of {self.max_pixels} (decode_image.max_pixels in the model's model.toml)"
            )
        try:
            image = image.convert(self.mode)
            if self.size is not None:
                method = getattr(pil.Resampling, self.resample.upper())
                image = image.resize((self.size[1], self.size[0]), method)
            array = np.asarray(image)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidInputError(
                f"{where}: the {image.format or 'image'} data is truncated or corrupt ({exc})"
            ) from None
        return array[:, :, None] if array.ndim == 2 else array


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def build_image_chain(entry: PreprocessConfig, where: str, target: TensorSpec) -> ImageChain:
    """Check an image entry against the model input it feeds; raise ConfigError on mistakes."""
    load_pillow()
    steps = entry.steps
    if steps[0].op != "decode_image":
        raise ConfigError(f'{where}: an image entry starts with {{op = "decode_image"}}')
    first = Options(steps[0], f"{where}.steps[0]", {"mode", "max_pixels"})
    mode = first.choice("mode", tuple(MODES), "RGB")
    channels = MODES[mode]
    chain = ImageChain(
        input=entry.input,
        target=target,
        client_shape=(target.shape[0] if target.shape else -1,),
        mode=mode,
        max_pixels=first.integer("max_pixels", DEFAULT_MAX_PIXELS),
        size=None,
        resample="bilinear",
        expected=(-1, -1),
    )
    height = width = -1
    order = "NHWC"
    seen: set[str] = {"decode_image"}
    for i, step in enumerate(steps[1:], start=1):
        at = f"{where}.steps[{i}]"
        if step.op not in IMAGE_STEPS:
            raise unknown_step(step, at, IMAGE_STEPS)
        if step.op in seen and step.op in ("decode_image", "resize", "layout"):
            raise ConfigError(f"{at}: step {step.op!r} may appear only once")
        if step.op == "resize":
            if seen != {"decode_image"}:
                raise ConfigError(f"{at}: resize must come right after decode_image")
            height, width = _resize(chain, Options(step, at, {"size", "resample"}))
        elif step.op == "scale":
            factor = np.float32(Options(step, at, {"factor"}).number("factor"))
            chain.ops.append(functools.partial(_scale, factor=factor))
        elif step.op == "normalize":
            chain.ops.append(_normalize(Options(step, at, {"mean", "std"}), order, channels))
        elif step.op == "layout":
            opts = Options(step, at, {"order"})
            order = opts.choice("order", tuple(LAYOUTS))
            if channels != 1 and "C" not in order:
                raise opts.error(
                    f"order {order} has no channel axis but mode {mode} has {channels}"
                )
            chain.ops.append(_layout(order))
        else:  # cast
            dtype = Options(step, at, {"datatype"}).datatype("datatype")
            chain.ops.append(functools.partial(_cast, dtype=dtype.numpy))
        seen.add(step.op)
    _check_target(where, target, order, {"N": -1, "H": height, "W": width, "C": channels})
    chain.order = order
    if chain.size is None:
        dims = dict(zip(order, target.shape, strict=False))
        chain.expected = (dims.get("H", -1), dims.get("W", -1))
    if "N" not in order:
        chain.client_shape = (1,)
    return chain


def _resize(chain: ImageChain, opts: Options) -> tuple[int, int]:
    size = opts.step.get("size")
    if (
        not isinstance(size, tuple)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
    ):
        raise opts.error(f"size must be [height, width] with two integers >= 1, got {size!r}")
    if size[0] * size[1] > chain.max_pixels:
        raise opts.error(f"size {list(size)} is over decode_image.max_pixels {chain.max_pixels}")
    chain.size = (size[0], size[1])
    chain.resample = opts.choice("resample", RESAMPLE, "bilinear")
    return chain.size


def _scale(batch: Array, factor: np.float32) -> Array:
    out: Array = batch.astype(np.float32, copy=False) * factor
    return out


def _cast(batch: Array, dtype: np.dtype[Any]) -> Array:
    return batch.astype(dtype, copy=False)


def _normalize(opts: Options, order: str, channels: int) -> Callable[[Array], Array]:
    mean = opts.numbers("mean")
    std = opts.numbers("std")
    for key, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise opts.error(
                f"{key} has {len(values)} values; the image has {channels} channel(s) "
                "(give 1 value or one per channel)"
            )
    if any(s == 0 for s in std):
        raise opts.error("std must not contain 0")
    shape = [1] * len(order)
    if "C" in order and channels > 1:
        shape[order.index("C")] = channels
    m = np.array(mean, np.float32).reshape(shape if len(mean) > 1 else [1] * len(order))
    s = np.array(std, np.float32).reshape(shape if len(std) > 1 else [1] * len(order))
    return lambda a: (a.astype(np.float32, copy=False) - m) / s


def _layout(order: str) -> Callable[[Array], Array]:
    has_n, has_c = "N" in order, "C" in order
    full = "NHWC" if has_c else "NHW"
    axes = [full.index(axis) for axis in (order if has_n else "N" + order)]

    def apply(batch: Array) -> Array:
        if not has_n and batch.shape[0] != 1:
            raise InvalidInputError(
                f"the model takes one image per request (layout {order}); got {batch.shape[0]}"
            )
        if not has_c:
            batch = batch[..., 0]
        batch = batch.transpose(axes)
        return batch if has_n else batch[0]

    return apply


def _check_target(where: str, target: TensorSpec, order: str, dims: dict[str, int]) -> None:
    """The steps' result must fit the model input: rank, channels and any fixed size."""
    made = [dims[axis] for axis in order]
    shown = [d if d != -1 else "any" for d in made]
    if target.shape and len(target.shape) != len(order):
        raise ConfigError(
            f"{where}: the steps make a {order} tensor {shown} but model input "
            f'{target.name!r} is {list(target.shape)}; set {{op = "layout", order = ...}} '
            "to match it"
        )
    for axis, have, want in zip(order, made, target.shape, strict=False):
        if axis != "N" and have != -1 and want != -1 and have != want:
            what = "channels (decode_image.mode)" if axis == "C" else "resize.size"
            raise ConfigError(
                f"{where}: the steps make a {order} tensor {shown} but model input "
                f"{target.name!r} is {list(target.shape)}: {axis} differs; check {what}"
            )
