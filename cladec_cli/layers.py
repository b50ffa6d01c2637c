"""Explainable layers of any functional or Sequential Keras classifier, and encoders cut at them.

A layer is explainable when its output is a vector or a feature map that the network actually
passes on: pre-activation outputs (a conv feeding only a BatchNorm or an activation), BatchNorm
outputs feeding only an activation, plumbing layers (Flatten, Reshape, Dropout, ...) and input
preprocessing (Rescaling, Normalization, as keras.applications' EfficientNet starts) are left out.
Nested functional sub-models are expanded, their layers named `outer/inner`. The paper's indices
count explainable layers from the end: -1 is the last (the logits), -2 the one before.

That is the "blocks" convention: a conv, its BatchNorm and its activation count once, as the block's
output. The "layers" convention counts every layer that has an output of its own, pre-activation and
BatchNorm outputs included (plumbing still left out, so it differs from indexing `model.layers` where
a model has Dropout or Flatten layers); on the paper's classifier -2 is then block 5's ReLU, -3 its
BatchNorm, -4 its convolution. A layer given by name is found under either convention.
"""

from dataclasses import dataclass

import keras

from cladec_cli.errors import UsageError, counted, option

PLUMBING = (
    "InputLayer", "Flatten", "Reshape", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ZeroPadding2D", "Cropping2D", "Permute",
    "ActivityRegularization", "RepeatVector",
    "Rescaling", "Normalization", "Resizing", "CenterCrop",
)
PREPROCESSING = ("Rescaling", "Normalization", "Resizing", "CenterCrop")
# Keras' augmentation layers that are not named Random...: on in training only, like those that are.
AUGMENTATIONS = ("MixUp", "CutMix", "AugMix", "RandAugment", "Solarization")
NORMALIZATIONS = ("BatchNormalization", "LayerNormalization", "GroupNormalization")
ACTIVATIONS = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax")
CONVENTIONS = ("blocks", "layers")


@dataclass(frozen=True)
class ExplainableLayer:
    """A layer that can be explained: its path (`outer/inner` for nested models), index and output shape."""

    name: str
    index: int
    shape: tuple
    convention: str = "blocks"

    @property
    def is_vector(self):
        return len(self.shape) == 1


def check_supported(model):
    """Refuse models that cannot be cut at a layer (subclassed without a graph, several inputs or outputs),
    that take no image of fixed size, or whose output is not one score per class."""
    if not is_submodel(model) or not model.built or not getattr(model, "inputs", None):
        raise UsageError(
            f"model {getattr(model, 'name', model)!r} has no functional graph (a subclassed model?); "
            "save it as a functional or Sequential Keras model"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UsageError(
            f"model {model.name!r} has {counted(len(model.inputs), 'input')} and "
            f"{counted(len(model.outputs), 'output')}; "
            "cladec explains classifiers with one image input and one output"
        )
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or None in shape:
        raise UsageError(
            f"model {model.name!r} takes inputs of shape {shape}; cladec explains image classifiers whose input "
            "is height x width x channels of fixed sizes: save it with keras.Input(shape=(H, W, C))"
            + (f", here {shape + (1,)} for gray images" if len(shape) == 2 and None not in shape else
               ", a Reshape in front of a flat model" if len(shape) != 3 else "")
        )
    scores = tuple(model.outputs[0].shape[1:])
    if len(scores) != 1:
        raise UsageError(
            f"model {model.name!r} outputs shape {scores}; cladec explains classifiers whose output is one score "
            "per class (logits or probabilities), shape (classes,)"
        )
    if scores[0] == 1:
        raise UsageError(
            f"model {model.name!r} has one output unit (a sigmoid binary classifier?); cladec explains classifiers "
            "with one score per class: for two classes, end the model in Dense(2) logits or a 2-way softmax"
        )


# Activations that make a classifier's scores, by the names of their layers, ops and functions.
SCORE_ACTIVATIONS = {"softmax": "softmax", "softmax_v2": "softmax", "sigmoid": "sigmoid"}


def output_activation(model):
    """The activation that makes the model's output, "softmax" or "sigmoid"; None for logits.

    Follows the graph back from the output, into nested sub-models (functional or Sequential) and
    through weightless layers and ops (reshapes, dropout, casts, linear activations), until a softmax or
    sigmoid (a layer, an op, or an activation) or the last layer with weights (the Dense head).
    """
    tensor = model.outputs[0]
    while True:
        history = tensor._keras_history
        operation = history.operation
        found = SCORE_ACTIVATIONS.get(type(operation).__name__.lower()) or \
            SCORE_ACTIVATIONS.get(getattr(getattr(operation, "activation", None), "__name__", ""))
        if is_submodel(operation):
            tensor = operation.outputs[history.tensor_index]
        elif found:
            return found
        elif getattr(operation, "weights", None) or isinstance(operation, keras.layers.InputLayer):
            return None
        else:
            inputs = operation._inbound_nodes[history.node_index].input_tensors
            if len(inputs) != 1:
                return None
            tensor = inputs[0]


def _consumers(model):
    """Map each layer of `model` to the layers of `model` that take its output."""
    members = {id(layer) for layer in model.layers}
    consumers = {id(layer): [] for layer in model.layers}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                producer = tensor._keras_history.operation
                if id(producer) in members and layer not in consumers[id(producer)]:
                    consumers[id(producer)].append(layer)
    return consumers


def is_submodel(layer):
    """A model with a graph of layers: functional, or Sequential (which has no `_operations` in Keras 3)."""
    return isinstance(layer, keras.Model) and (hasattr(layer, "_operations") or isinstance(layer, keras.Sequential))


def _explainable_paths(model, prefix="", every=False):
    """(path, layer) pairs in topological order, nested models expanded in place; with `every`,
    pre-activation and BatchNorm outputs too."""
    consumers = _consumers(model)
    found = []
    for layer in model.layers:
        kind = type(layer).__name__
        if is_submodel(layer):
            found += _explainable_paths(layer, f"{prefix}{layer.name}/", every)
            continue
        if kind in PLUMBING or is_augmentation(layer):
            continue
        nexts = consumers[id(layer)]
        if len(nexts) == 1 and not every:
            next_kind = type(nexts[0]).__name__
            if next_kind in ACTIVATIONS and kind not in ACTIVATIONS:
                continue
            if next_kind in NORMALIZATIONS and kind not in NORMALIZATIONS + ACTIVATIONS:
                continue
        try:
            shape = tuple(layer.output.shape[1:])
        except (AttributeError, ValueError):  # shared layers have no single output
            continue
        if len(shape) in (1, 3) and all(d is not None for d in shape):
            found.append((f"{prefix}{layer.name}", layer))
    return found


def explainable_layers(model, convention="blocks"):
    """All explainable layers of `model` under `convention` ("blocks" or "layers", see above), first to
    last, with their negative indices."""
    if convention not in CONVENTIONS:
        raise UsageError(f"unknown layer convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    check_supported(model)
    paths = _explainable_paths(model, every=convention == "layers")
    n = len(paths)
    return [ExplainableLayer(path, i - n, tuple(int(d) for d in layer.output.shape[1:]), convention)
            for i, (path, layer) in enumerate(paths)]


def resolve_layer(model, spec, convention="blocks"):
    """The explainable layer named by `spec`: a name (`block5`, `sub/conv`, or `conv` alone where no other
    nested layer bears it) or a negative index under `convention`; an `ExplainableLayer` is returned as it is.
    A layer used more than once in the graph, or inside a sub-model that is, is refused."""
    layer = spec if isinstance(spec, ExplainableLayer) else _find_layer(model, spec, convention)
    _check_used_once(model, layer.name)
    return layer


def _check_used_once(model, name):
    """Refuse the layer at the path `name` when it, or a sub-model holding it, is used more than once:
    it then has no one activation."""
    holder = model
    for part in name.split("/"):
        _node_of(holder, part)
        holder = holder.get_layer(part)


def _find_layer(model, spec, convention):
    candidates = explainable_layers(model, convention)
    text = str(spec).strip()
    try:
        index = int(text)
    except ValueError:
        index = None
    if index is not None:
        if index >= 0:
            raise UsageError(f"layer index {index}: indices count from the end, -1 is the last explainable layer")
        if -index > len(candidates):
            every = f"; {option('layer_convention')} layers counts every layer" if convention == "blocks" else ""
            raise UsageError(f"layer index {index} is out of range: the model has {len(candidates)} "
                             f"explainable layers under {option('layer_convention')} {convention} (see `cladec "
                             f"layers`){every}")
        return candidates[index]
    for layer in candidates:
        if layer.name == text:
            return layer
    hidden = []
    if convention == "blocks":
        # A layer named outright is explained even where a block hides it (the logits before a Softmax
        # layer, a convolution before its BatchNorm); it is then counted as the layers convention counts.
        hidden = explainable_layers(model, "layers")
        for layer in hidden:
            if layer.name == text:
                return layer
    # A layer inside a nested model, by its own name where no other nested layer bears it.
    inside = {}
    for layer in candidates + hidden:
        if "/" in layer.name and layer.name.rsplit("/", 1)[1] == text:
            inside.setdefault(layer.name, layer)
    inside = list(inside.values())
    if len(inside) == 1:
        return inside[0]
    if inside:
        raise UsageError(f"layer {text!r} is ambiguous: {', '.join(layer.name for layer in inside)}; give one of "
                         "these names")
    names = ", ".join(layer.name for layer in candidates)
    kept_out = next((layer for path, layer in every_layer(model) if text in (path, layer.name)), None)
    if kept_out is None:
        raise UsageError(f"unknown layer {text!r}; explainable layers are: {names}")
    kind = type(kept_out).__name__
    if isinstance(kept_out, keras.layers.InputLayer):
        why = "is an input, not a layer that computes"
    elif is_submodel(kept_out):
        why = "is a nested model: name one of its layers, as outer/inner"
    elif kind in PREPROCESSING:
        why = f"({kind}) prepares the input images, so it shows nothing the network has learned"
    elif is_augmentation(kept_out):
        why = (f"({kind}) varies the training images and passes others on as they are, so it shows nothing the "
               "network has learned")
    elif kind in PLUMBING:
        why = (f"({kind}) passes its input on, reshaped or in part, so it has no activations of its own to "
               "explain: name the layer before it")
    else:
        why = f"({kind}) has no output that cladec decodes: a vector or a feature map of fixed size"
    raise UsageError(f"layer {text!r} {why}; explainable layers are: {names}")


def every_layer(model, prefix=""):
    """(path, layer) of every layer, nested models' layers included as `outer/inner`."""
    for layer in model.layers:
        yield f"{prefix}{layer.name}", layer
        if is_submodel(layer):
            yield from every_layer(layer, f"{prefix}{layer.name}/")


def resolve_layers(model, specs, convention="blocks"):
    """The explainable layers named by `specs`, in order; a layer named twice is refused."""
    if isinstance(specs, str):
        raise UsageError(f"{option('layer_specs')} takes a list of layers, e.g. [-1, -2] or ['conv1'], not the "
                         f"string {specs!r}")
    found = [resolve_layer(model, spec, convention) for spec in specs]
    if not found:
        raise UsageError("no layer given")
    seen = {}
    for spec, layer in zip(specs, found):
        if layer.name in seen:
            raise UsageError(f"layer {layer.name} is given twice ({seen[layer.name]!s} and {spec!s})")
        seen[layer.name] = spec
    return found


def build_encoder(model, layer, name="encoder"):
    """A model from the classifier's input to `layer`'s output, sharing the classifier's weights.

    With a list of layers it has one output per layer, in that order, all computed in one pass.
    """
    check_supported(model)
    several = isinstance(layer, (list, tuple))
    paths = [tuple((item.name if isinstance(item, ExplainableLayer) else item).split("/"))
             for item in (layer if several else [layer])]
    inputs = keras.Input(shape=model.inputs[0].shape[1:], name="image")
    outputs = _outputs_at(model, paths, inputs)
    return keras.Model(inputs, outputs if several else outputs[0], name=name)


def _outputs_at(model, paths, h):
    """The outputs, for the input tensor `h`, of the layers at `paths` (tuples of names: sub-models, then
    the layer). One cut of `model`'s graph yields the layers directly in it and the inputs of the
    sub-models that hold the others, which are cut the same way."""
    direct = list(dict.fromkeys(p[0] for p in paths if len(p) == 1))
    nested = list(dict.fromkeys(p[0] for p in paths if len(p) > 1))
    for name in direct + nested:
        _node_of(model, name)  # a layer or sub-model used twice has no one activation
    # A sub-model's input inside the outer graph is what the outer graph fed into it.
    taps = [model.get_layer(n).output for n in direct]
    taps += [model.get_layer(n)._inbound_nodes[0].input_tensors[0] for n in nested]
    # A stable name (not Keras' numbered default) keeps saved RefAEs identical from run to run.
    cut = keras.Model(model.inputs, taps if len(taps) > 1 else taps[0], name=f"{model.name}_cut")(h)
    cut = cut if len(taps) > 1 else [cut]
    found = {(n,): tensor for n, tensor in zip(direct, cut)}
    for n, fed in zip(nested, cut[len(direct):]):
        inner = [p[1:] for p in paths if len(p) > 1 and p[0] == n]
        found.update({(n, *p): tensor for p, tensor in zip(inner, _outputs_at(model.get_layer(n), inner, fed))})
    return [found[p] for p in paths]


def build_head(model, layer):
    """The rest of `model` after `layer` (an `ExplainableLayer` or a path such as `features/conv2`): a
    model from the layer's output to the classifier's output, sharing its weights. It runs the layers
    downstream of the cut again on a new input, through nested models too; graphs that reach around
    the layer (a residual connection across it) are refused."""
    check_supported(model)
    layer = resolve_layer(model, layer)
    inputs = keras.Input(shape=layer.shape, name="activations")
    return keras.Model(inputs, _run_after(model, layer.name.split("/"), inputs, layer.name), name="head")


def build_offset(model, layer):
    """`model` with an offset added to `layer`'s output (an `ExplainableLayer` or a path such as
    `features/conv2`): a model of [image, offset] to the classifier's output, sharing its weights. At
    offset zero it computes what `model` does, and its gradient with respect to the offset is that with
    respect to the layer's activations, connections that reach around the layer included."""
    check_supported(model)
    layer = resolve_layer(model, layer)
    return _offset_model(model, layer.name.split("/"), layer.shape, "offset")


def _offset_model(model, path, shape, name):
    """A model of [`model`'s input, offset of `shape`] to `model`'s output, with the offset added to the
    output of the layer at `path`. A sub-model on the path becomes such a model of its own, so that its
    layers' names stay inside it."""
    image = keras.Input(shape=model.inputs[0].shape[1:], name="image")
    offset = keras.Input(shape=shape, name="offset")
    graph = _graph(model)
    tensors = {id(graph.inputs[0]): image}
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            args, kwargs = node.arguments.fill_in(tensors)
            if node.operation.name != path[0]:
                outputs = node.operation(*args, **kwargs)
            elif len(path) > 1:
                outputs = _offset_model(node.operation, path[1:], shape, node.operation.name)([args[0], offset])
            else:
                added = keras.layers.Add(name=f"{node.operation.name}_offset", dtype=node.operation.dtype_policy)
                outputs = added([node.operation(*args, **kwargs), offset])
            tensors.update({id(x): y for x, y in zip(node.outputs, keras.tree.flatten(outputs))})
    return keras.Model([image, offset], tensors[id(graph.outputs[0])], name=name)


def _graph(model):
    # Keras 3 keeps a Sequential model's graph in a functional model of its own, made once it is built.
    graph = model._functional if isinstance(model, keras.Sequential) else model
    if graph is None:
        raise UsageError(f"the Sequential model {model.name!r} has no graph (it was built without an input "
                         "shape); the classifier cannot be continued from inside it")
    return graph


def _node_of(model, name):
    """The one node of `model`'s graph at which its layer `name` is called."""
    layer = model.get_layer(name)
    nodes = [node for depth in _graph(model)._nodes_by_depth.values() for node in depth if node.operation is layer]
    if len(nodes) != 1:
        raise UsageError(f"layer {name} of {model.name!r} is used {len(nodes)} times in its graph (a shared "
                         "layer), so it has no one activation to explain or to continue the classifier from")
    if len(nodes[0].outputs) != 1:
        raise UsageError(f"layer {name} of {model.name!r} has {len(nodes[0].outputs)} outputs; the classifier "
                         "cannot be continued from it")
    return nodes[0]


def _run_after(model, path, inputs, full_name):
    """`model`'s output computed from `inputs` standing for the output of the layer at `path`."""
    start = _node_of(model, path[0])
    seed = inputs if len(path) == 1 else _run_after(model.get_layer(path[0]), path[1:], inputs, full_name)
    graph = _graph(model)
    tensors = {id(start.outputs[0]): seed}
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node is start or node.operation is None or node.is_input:
                continue
            after = [id(x) in tensors for x in node.input_tensors]
            if not any(after):
                continue
            if not all(after):
                merge = full_name[:len(full_name) - len("/".join(path))] + node.operation.name
                raise UsageError(f"the classifier cannot be continued from layer {full_name}: its layer "
                                 f"{node.operation.name} also takes an output from before {full_name} "
                                 "(a connection around it), so the activations alone do not determine the rest; "
                                 f"a layer from {merge} on (the output of a residual block) can be")
            args, kwargs = node.arguments.fill_in(tensors)
            outputs = node.operation(*args, **kwargs)
            tensors.update({id(x): y for x, y in zip(node.outputs, keras.tree.flatten(outputs))})
    if id(graph.outputs[0]) not in tensors:
        raise UsageError(f"the classifier's output does not depend on layer {full_name}")
    return tensors[id(graph.outputs[0])]


def is_augmentation(layer):
    """Whether `layer` is one of Keras' data augmentation layers (RandomFlip, RandomRotation, MixUp, ...),
    which change images in training only."""
    kind = type(layer)
    return kind.__module__.startswith("keras.") and (kind.__name__.startswith("Random")
                                                     or kind.__name__ in AUGMENTATIONS)
