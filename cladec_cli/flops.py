"""Floating-point operations per image of a Keras model, counted from its layers' shapes.

Convention (used by `cladec benchmark`):
- Only Conv2D, Conv2DTranspose and Dense count, as 2 FLOPs per multiply-add; biases, BatchNorm,
  activations, resizing and losses are left out (a few per cent for these models), so achieved
  rates are slight underestimates.
- Conv2D: 2 x output pixels x output channels x kernel area x input channels / groups.
  Conv2DTranspose: 2 x input pixels x input channels x kernel area x output channels (each input
  value is spread over a kernel-sized patch). Dense: 2 x inputs x units, per position of its input.
- A training step costs, per layer, one forward pass, plus one more for the gradient with respect
  to the layer's input when any trainable weight lies upstream of it, plus one more for the gradient
  with respect to its weights when it has trainable ones. So a trained layer in the middle of a
  network costs 3x its forward FLOPs; a frozen encoder in front of a trained decoder costs 1x; a
  frozen classifier behind a trained decoder (extended ClaDec) costs 2x.
"""

import math

import keras

from cladec_cli.frozen import unwrapped

COUNTED = ("Conv2D", "Conv2DTranspose", "Dense")


def layer_forward_flops(layer, input_shape, output_shape):
    """Forward FLOPs per image of one call of `layer` (0 for layers that are not counted)."""
    kind = type(layer).__name__
    if kind == "Dense":
        positions = math.prod(input_shape[1:-1])
        return 2 * positions * int(input_shape[-1]) * layer.units
    if kind in ("Conv2D", "Conv2DTranspose"):
        kernel_area = math.prod(layer.kernel_size)
        if kind == "Conv2D":
            in_channels = int(input_shape[-1]) // getattr(layer, "groups", 1)
            return 2 * math.prod(output_shape[1:-1]) * layer.filters * kernel_area * in_channels
        return 2 * math.prod(input_shape[1:-1]) * int(input_shape[-1]) * kernel_area * layer.filters
    return 0


def _graph(model):
    """The functional graph of a model (a Sequential model keeps it in a wrapped Functional)."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return model if hasattr(model, "_nodes_by_depth") else None


def _is_graph_model(layer):
    return isinstance(layer, keras.Model) and _graph(layer) is not None


def count(model, carries_gradient=None):
    """(forward, training step) FLOPs per image of `model`, following its graph and nested models.

    `carries_gradient` says, per model input, whether a gradient flows back into it (it depends on
    trainable weights upstream); by default none does.
    """
    graph = _graph(model)
    if graph is None:
        raise ValueError(f"model {model.name!r} has no functional graph to count FLOPs on")
    flows = {}
    for i, tensor in enumerate(graph.inputs):
        flows[id(tensor)] = bool(carries_gradient[i]) if carries_gradient else False
    forward = training = 0
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            layer = unwrapped(node.operation)
            if layer is None or node.is_input:
                continue
            gradient_in = [flows.get(id(t), False) for t in node.input_tensors]
            if _is_graph_model(layer):
                layer_forward, layer_training = count(layer, gradient_in)
                trained = bool(layer.trainable_weights)
            else:
                layer_forward = layer_forward_flops(layer, tuple(node.input_tensors[0].shape),
                                                    tuple(node.outputs[0].shape)) if node.input_tensors else 0
                trained = bool(layer.trainable_weights)
                layer_training = layer_forward * (1 + any(gradient_in) + trained)
            forward += layer_forward
            training += layer_training
            for tensor in node.outputs:
                flows[id(tensor)] = any(gradient_in) or trained
    return forward, training


def forward_flops(model):
    """Forward FLOPs per image of `model`."""
    return count(model)[0]


def training_flops(model):
    """FLOPs per image of one training step of `model` (forward and backward; see the module's convention)."""
    return count(model)[1]
