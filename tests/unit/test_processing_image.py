"""Image pre-processing steps: decode, resize, scale, normalize, layout, cast, and bad images."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shipyard.config import PreprocessConfig, StepConfig, parse_model_config
from shipyard.errors import ConfigError, InvalidInputError, PayloadTooLargeError
from shipyard.processing.image import ImageChain, build_image_chain
from shipyard.testing.processing import digit_image, image_bytes
from shipyard.types import DataType, TensorSpec

NCHW = TensorSpec("input", DataType.FP32, (-1, 1, 28, 28))


def entry(*steps: dict[str, Any], target: str = "input") -> PreprocessConfig:
    """A [[preprocess]] entry parsed the way model.toml is."""
    config = parse_model_config(
        "m", {"preprocess": [{"input": "image", "target": target, "steps": list(steps)}]}
    )
    return config.preprocess[0]


def chain(*steps: dict[str, Any], spec: TensorSpec = NCHW) -> ImageChain:
    """A checked chain for ``steps`` feeding ``spec``."""
    return build_image_chain(entry(*steps), "preprocess[0]", spec)


def rows(*images: bytes) -> np.ndarray[Any, Any]:
    """A BYTES batch of encoded images."""
    out = np.empty(len(images), dtype=object)
    out[:] = list(images)
    return out


MNIST = (
    {"op": "decode_image", "mode": "L"},
    {"op": "resize", "size": [28, 28]},
    {"op": "scale", "factor": 1 / 255},
    {"op": "layout", "order": "NCHW"},
)


def test_mnist_chain_makes_an_nchw_float_batch() -> None:
    """Two grayscale PNGs become a [2, 1, 28, 28] FP32 batch scaled to 0..1."""
    out = chain(*MNIST).run(rows(image_bytes(digit_image(0.2)), image_bytes(digit_image(1.0))))
    array = out["input"]
    assert array.shape == (2, 1, 28, 28)
    assert array.dtype == np.float32
    assert array[0].mean() == pytest.approx(round(0.2 * 255) / 255, abs=1e-6)
    assert array[1].max() == pytest.approx(1.0)


def test_resize_takes_height_then_width() -> None:
    """size = [height, width]: a 40x20 (w x h) RGB image becomes 10 high and 30 wide."""
    spec = TensorSpec("input", DataType.UINT8, (-1, 10, 30, 3))
    steps = ({"op": "decode_image", "mode": "RGB"}, {"op": "resize", "size": [10, 30]})
    pixels = np.zeros((20, 40, 3), np.uint8)
    out = chain(*steps, spec=spec).run(rows(image_bytes(pixels)))
    assert out["input"].shape == (1, 10, 30, 3)
    assert out["input"].dtype == np.uint8


def test_normalize_is_per_channel_in_nchw() -> None:
    """normalize subtracts each channel's mean and divides by its std, after layout too."""
    spec = TensorSpec("input", DataType.FP32, (-1, 3, 2, 2))
    pixels = np.zeros((2, 2, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 255, 0, 51
    out = chain(
        {"op": "decode_image", "mode": "RGB"},
        {"op": "scale", "factor": 1 / 255},
        {"op": "layout", "order": "NCHW"},
        {"op": "normalize", "mean": [0.5, 0.5, 0.0], "std": [0.5, 0.25, 0.2]},
        spec=spec,
    ).run(rows(image_bytes(pixels)))["input"]
    assert out[0, :, 0, 0] == pytest.approx([1.0, -2.0, 1.0], abs=1e-5)


@pytest.mark.parametrize(
    ("order", "shape"), [("NHWC", (1, 4, 5, 1)), ("NHW", (1, 4, 5)), ("HW", (4, 5))]
)
def test_layouts(order: str, shape: tuple[int, ...]) -> None:
    """Each layout arranges the NHWC batch as named (N-less layouts take one image)."""
    spec = TensorSpec(
        "input",
        DataType.FP32,
        tuple(-1 if i == 0 and len(shape) > 2 else d for i, d in enumerate(shape)),
    )
    steps = ({"op": "decode_image", "mode": "L"}, {"op": "layout", "order": order})
    out = chain(*steps, spec=spec).run(rows(image_bytes(np.zeros((4, 5), np.uint8))))
    assert out["input"].shape == shape


def test_cast_and_auto_conversion_to_the_target_datatype() -> None:
    """cast changes the dtype; the result always ends as the target's datatype."""
    spec = TensorSpec("input", DataType.FP16, (-1, 1, 28, 28))
    out = chain(*MNIST, {"op": "cast", "datatype": "FP64"}, spec=spec).run(
        rows(image_bytes(digit_image(0.5)))
    )
    assert out["input"].dtype == np.float16


def test_base64_elements_are_decoded() -> None:
    """A base64 string (how V2 JSON carries BYTES) is decoded before Pillow reads it."""
    import base64

    encoded = base64.b64encode(image_bytes(digit_image(0.5)))
    assert chain(*MNIST).run(rows(encoded))["input"].shape == (1, 1, 28, 28)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (({"op": "resize", "size": [28, 28]},), "starts with"),
        (({"op": "decode_image", "mode": "L"}, {"op": "rotate"}), "unknown step 'rotate'"),
        (({"op": "decode_image", "mode": "L"}, {"op": "softmax"}), "belongs in"),
        (({"op": "decode_image", "mode": "CMYK"},), "mode must be one of"),
        ((*MNIST[:1], {"op": "resize", "size": [28]}), "size must be \\[height, width\\]"),
        ((*MNIST[:1], {"op": "resize", "size": [0, 28]}), "size must be"),
        ((*MNIST[:1], {"op": "resize", "size": [32, 32]}, MNIST[3]), "H differs"),
        ((*MNIST[:2], {"op": "layout", "order": "NHWC"}), "W differs|C differs|H differs"),
        ((*MNIST[:2], {"op": "layout", "order": "NHW"}), "is \\[-1, 1, 28, 28\\]"),
        ((*MNIST[:2], {"op": "normalize", "mean": [0, 0], "std": [1, 1]}), "2 values"),
        ((*MNIST[:2], {"op": "normalize", "mean": [0], "std": [0]}), "std must not"),
        ((*MNIST[:2], {"op": "scale", "factor": "x"}), "finite number"),
        ((*MNIST[:2], {"op": "scale", "factor": 1, "offset": 2}), "unknown option"),
        ((*MNIST[:2], {"op": "cast", "datatype": "BYTES"}), "numeric datatype"),
        ((*MNIST, {"op": "resize", "size": [28, 28]}), "only once|right after"),
    ],
)
def test_config_mistakes_are_config_errors(steps: tuple[dict[str, Any], ...], message: str) -> None:
    """Each mistake in an image entry fails with a ConfigError that names it."""
    with pytest.raises(ConfigError, match=message):
        chain(*steps)


def test_not_an_image_is_400() -> None:
    """Bytes that are no image are refused with a message naming the element."""
    with pytest.raises(InvalidInputError, match="element 0: not an image"):
        chain(*MNIST).run(rows(b"%PDF-1.4 not an image"))


def test_truncated_png_is_400() -> None:
    """A PNG cut in half is refused as truncated or corrupt."""
    noise = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    png = image_bytes(noise)
    with pytest.raises(InvalidInputError, match="truncated or corrupt"):
        chain(*MNIST).run(rows(png[: len(png) // 2]))


def test_empty_element_is_400() -> None:
    """An empty BYTES element is refused."""
    with pytest.raises(InvalidInputError, match="empty"):
        chain(*MNIST).run(rows(b""))


def test_image_over_the_pixel_limit_is_413_before_decoding() -> None:
    """An image with more pixels than decode_image.max_pixels is refused as too large."""
    spec = TensorSpec("input", DataType.FP32, (-1, 1, 5, 5))
    steps = (
        {"op": "decode_image", "mode": "L", "max_pixels": 100},
        {"op": "resize", "size": [5, 5]},
        {"op": "layout", "order": "NCHW"},
    )
    small = chain(*steps, spec=spec)
    assert small.run(rows(image_bytes(np.zeros((10, 10), np.uint8))))["input"].shape[0] == 1
    with pytest.raises(PayloadTooLargeError, match="over the limit of 100"):
        small.run(rows(image_bytes(np.zeros((11, 10), np.uint8))))


def test_images_of_different_sizes_without_resize_are_400() -> None:
    """Without resize, one request's images must share a size."""
    spec = TensorSpec("input", DataType.FP32, (-1, 1, -1, -1))
    steps = ({"op": "decode_image", "mode": "L"}, {"op": "layout", "order": "NCHW"})
    small, large = image_bytes(np.zeros((4, 4), np.uint8)), image_bytes(np.zeros((5, 5), np.uint8))
    with pytest.raises(InvalidInputError, match="differ in size"):
        chain(*steps, spec=spec).run(rows(small, large))


def test_wrong_size_without_resize_is_400() -> None:
    """Without resize, an image must already have the model's fixed size."""
    steps = ({"op": "decode_image", "mode": "L"}, {"op": "layout", "order": "NCHW"})
    with pytest.raises(InvalidInputError, match="model takes 28x28"):
        chain(*steps).run(rows(image_bytes(np.zeros((30, 30), np.uint8))))


def test_step_config_keeps_options_frozen() -> None:
    """Arrays in a step's options become tuples, and get() reads them."""
    step = entry(*MNIST).steps[1]
    assert step == StepConfig("resize", (("size", (28, 28)),))
    assert step.get("size") == (28, 28)
    assert step.get("missing", 5) == 5
