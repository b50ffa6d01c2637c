"""A frozen model inside a model that trains: run in inference mode whatever mode the training runs in.

Keras passes an outer `fit`'s `training=True` on to every nested model, over a `training=False` given
when the graph was built; `trainable = False` keeps BatchNorm in inference mode but not Dropout, so a
frozen classifier with Dropout would drop units of its codes while a decoder learns from them.
"""

import keras


class InferenceMode(keras.layers.Layer):
    """`model`, frozen, always called with `training=False`. It computes in float32 at its border (its
    own layers keep their dtype policies), as the model did before it was wrapped."""

    def __init__(self, model, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        model.trainable = False
        self.model = model

    def call(self, inputs, training=None):  # `training` accepted and ignored: it is the outer model's
        return self.model(inputs, training=False)

    def compute_output_spec(self, inputs, training=None):
        return self.model.compute_output_spec(inputs)


def frozen(model):
    """`model` as a layer that is frozen and always runs in inference mode (shares its weights)."""
    return InferenceMode(model)


def unwrapped(layer):
    """The model an `InferenceMode` layer runs, else `layer` itself."""
    return layer.model if isinstance(layer, InferenceMode) else layer
