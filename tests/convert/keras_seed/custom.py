"""A subclassed Keras model: its class is code, passed to ``shipyard convert --custom-objects``."""

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="shipyard_tests")
class SeedNet(keras.Model):  # type: ignore[misc]
    """The seed's CNN (Conv32-Conv64-Conv64-Dense64-Dense10) as a subclassed model."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.stack = [
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]

    def call(self, x: object) -> object:
        """Run the layers in order."""
        for layer in self.stack:
            x = layer(x)
        return x
