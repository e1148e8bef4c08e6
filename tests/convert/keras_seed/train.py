"""Build the seed's MNIST CNN as Keras models, train each briefly, save them, record predict.

Run as ``python train.py OUT BACKEND DATA`` with ``KERAS_BACKEND=BACKEND`` set (the test
process itself runs Keras on the torch backend). Writes into OUT:

- ``seq_input.keras``: ``keras.Sequential([keras.Input((28, 28, 1)), Conv2D(32)...])``;
- ``seq_noinput.keras``: the same layers without an ``Input`` (built by ``fit``);
- ``sub.keras``: the subclassed ``SeedNet`` of ``custom.py``;
- ``saved_model/``: ``seq_input`` exported as a SavedModel (tensorflow backend only);
- ``expected.npz``: ``images`` (64 test digits) and each model's ``model.predict`` on them.
"""

import os
import runpy
import sys
from pathlib import Path

import keras
import numpy as np
from keras import layers

out, backend, data = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
assert keras.backend.backend() == backend == os.environ["KERAS_BACKEND"]
custom = runpy.run_path(str(Path(__file__).with_name("custom.py")))
keras.utils.set_random_seed(0)
with np.load(data) as digits:
    x = (digits["images"][:1024].astype("float32") / 255.0)[..., None]
    y = digits["labels"][:1024]
    test = (digits["images"][-64:].astype("float32") / 255.0)[..., None]


def seed_layers() -> list[object]:
    return [
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ]


models = {
    "seq_input": keras.Sequential([keras.Input((28, 28, 1)), *seed_layers()]),
    "seq_noinput": keras.Sequential(seed_layers()),
    "sub": custom["SeedNet"](),
}
expected = {"images": test}
out.mkdir(parents=True, exist_ok=True)
for name, model in models.items():
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    model.save(out / f"{name}.keras")
    expected[name] = model.predict(test, verbose=0)
if backend == "tensorflow":
    models["seq_input"].export(str(out / "saved_model"), verbose=False)
np.savez(out / "expected.npz", **expected)
