"""Tiny real Keras and TensorFlow models for the `tensorflow` test group (imported lazily).

Keras runs on the torch backend here, as in ``shipyard convert``: ``KERAS_BACKEND`` is set
before Keras is first imported. Framework imports and model building happen inside
``quiet_frameworks()``, since TensorFlow and Keras warn on import and pytest turns warnings
into errors.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

IMAGE = (28, 28, 1)


@contextlib.contextmanager
def quiet_frameworks() -> Iterator[None]:
    """Ignore the frameworks' warnings while they import or build."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def import_keras() -> Any:
    """Keras on the torch backend (skip the test when Keras is not installed)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"
    with quiet_frameworks():
        return pytest.importorskip("keras")


def import_tensorflow() -> Any:
    """TensorFlow (skip the test when it is not installed)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_frameworks():
        return pytest.importorskip("tensorflow")


def images(rows: int, seed: int) -> npt.NDArray[np.float32]:
    """``rows`` random MNIST-shaped images in [0, 1), NHWC."""
    return np.random.default_rng(seed).random((rows, *IMAGE)).astype(np.float32)


def keras_cnn(path: Path) -> Any:
    """Build the MNIST-sized CNN in Keras, save it to ``path`` (.keras) and return it."""
    keras = import_keras()
    with quiet_frameworks():
        keras.utils.set_random_seed(0)
        image = keras.Input(IMAGE, name="image")
        x = keras.layers.Conv2D(8, 3, activation="relu")(image)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(8, 3, activation="relu")(x)
        x = keras.layers.Flatten()(x)
        probs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
        model = keras.Model(image, probs)
        model.save(path)
    return model


def keras_predict(model: Any, data: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The Keras model's answer for ``data``."""
    with quiet_frameworks():
        return np.asarray(model.predict(data, verbose=0))


def tf_module(path: Path, batch: int | None = None) -> Any:
    """Save a small conv + dense ``tf.Module`` as a SavedModel at ``path``; return it.

    Input ``image`` FP32 [batch or -1, 28, 28, 1]; outputs ``probs`` [., 10] and ``logits``.
    """
    tf = import_tensorflow()
    with quiet_frameworks():

        class Net(tf.Module):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.kernel = tf.Variable(tf.random.stateless_normal((3, 3, 1, 4), seed=(1, 2)))
                self.dense = tf.Variable(
                    tf.random.stateless_normal((13 * 13 * 4, 10), seed=(3, 4)) * 0.1
                )

            @tf.function(input_signature=[tf.TensorSpec([batch, *IMAGE], tf.float32, name="image")])
            def __call__(self, x: Any) -> Any:
                y = tf.nn.max_pool2d(
                    tf.nn.relu(tf.nn.conv2d(x, self.kernel, 1, "VALID")), 2, 2, "VALID"
                )
                logits = tf.matmul(tf.reshape(y, [-1, 13 * 13 * 4]), self.dense)
                return {"probs": tf.nn.softmax(logits), "logits": logits}

        module = Net()
        tf.saved_model.save(module, str(path), signatures=module.__call__.get_concrete_function())
    return module


def tf_call(module: Any, data: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
    """The TensorFlow module's answers for ``data``, by output name."""
    tf = import_tensorflow()
    return {k: np.asarray(v.numpy()) for k, v in module(tf.constant(data)).items()}


def tflite_bytes(saved_model: Path) -> bytes:
    """Convert a SavedModel to a float32 .tflite flatbuffer."""
    tf = import_tensorflow()
    with quiet_frameworks():
        return bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert())
