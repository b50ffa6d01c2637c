"""Training steps under Keras' PyTorch backend that start from no gradient for every trainable variable.

Keras' PyTorch backend clears the gradients before each step with `torch.nn.Module.zero_grad`, which
reaches the variables a model tracks in a dict keyed by variable path. Where one model holds several
whose layers bear the same names (decoders trained in one pass, Acc Eval classifiers side by side),
the paths collide and only the last of them is tracked: the others' gradients would add up from step
to step, and those models would train as no model trained alone does.
"""

from cladec_cli import runtime


def clear_every_gradient(model):
    """Under PyTorch, make each of `model`'s training steps first clear the gradient of every trainable
    variable; under the other backends, which compute gradients afresh each step, do nothing."""
    if runtime.backend() != "torch" or getattr(model.train_step, "clears_every_gradient", False):
        return
    step = model.train_step

    def train_step(data):
        for variable in model.trainable_variables:
            variable.value.grad = None
        return step(data)

    train_step.clears_every_gradient = True
    model.train_step = train_step
    # A train function made before holds the step that clears only the tracked variables.
    model.train_function = None
