"""Several models of one architecture as one Keras layer: their weights stacked along a new first axis
and the architecture run once for all of them with `jax.vmap` (Keras' JAX backend only).

Side by side as separate branches, K small models make K times the kernels of one, each as small as
before; stacked, each kernel does the work of all K. Adam's update is elementwise, so stacked weights
train as the separate ones would, given a loss that is the sum of the models' own losses.
"""

import keras
import numpy as np

from cladec_cli.errors import UsageError


class Stacked(keras.layers.Layer):
    """`models` (one input, one output each, all of one architecture: copies of one model, since only
    their weights' shapes are compared and the first one's layers run for all) as one layer taking
    inputs of shape (batch, K, ...) and giving outputs of shape (batch, K, ...): model k sees
    `inputs[:, k]`.
    The layer starts from each model's current weights; `write_back()` gives them the trained ones.
    Its own dtype is float32: each model's layers cast as their dtype policies say, as they would alone."""

    def __init__(self, models, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        if keras.backend.backend() != "jax":
            raise UsageError("stacked models need Keras' JAX backend (KERAS_BACKEND=jax)")
        models = list(models)
        shapes = [[tuple(v.shape) for v in m.weights] for m in models]
        if len(models) < 1 or any(s != shapes[0] for s in shapes):
            raise ValueError("stacked models must share one architecture")
        # Kept outside Keras' tracking: the layer's weights are the stacked ones alone.
        object.__setattr__(self, "_models", tuple(models))
        self.stacked_trainable = self._stack("trainable_variables", True)
        self.stacked_non_trainable = self._stack("non_trainable_variables", False)

    def _stack(self, kind, trainable):
        stacked = []
        for i, variable in enumerate(getattr(self._models[0], kind)):
            values = np.stack([keras.ops.convert_to_numpy(getattr(m, kind)[i].value) for m in self._models])
            weight = self.add_weight(shape=values.shape, initializer="zeros", dtype=variable.dtype,
                                     trainable=trainable, name=variable.path.replace("/", "__"))
            weight.assign(values)
            stacked.append(weight)
        return stacked

    @property
    def count(self):
        return len(self._models)

    def call(self, inputs, training=False):
        import jax

        template = self._models[0]

        def one(trainable, non_trainable, x):
            return template.stateless_call(trainable, non_trainable, x, training=training)

        outputs, non_trainable = jax.vmap(one)([v.value for v in self.stacked_trainable],
                                              [v.value for v in self.stacked_non_trainable],
                                              keras.ops.moveaxis(inputs, 1, 0))
        if training:
            for variable, value in zip(self.stacked_non_trainable, non_trainable):
                variable.assign(value)
        return keras.ops.moveaxis(outputs, 0, 1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.count) + tuple(self._models[0].outputs[0].shape[1:])

    def write_back(self):
        """Give each model its slice of the stacked weights."""
        for kind, stacked in (("trainable_variables", self.stacked_trainable),
                              ("non_trainable_variables", self.stacked_non_trainable)):
            for i, weight in enumerate(stacked):
                values = keras.ops.convert_to_numpy(weight.value)
                for k, model in enumerate(self._models):
                    getattr(model, kind)[i].assign(values[k])
