"""The decoder of Table I, derived from a code's shape and the image shape it must reconstruct.

For a vector code: Dense to a small feature map, then stride-2 5x5 Conv2DTranspose layers with ReLU
(widths ..., 256, 128, 64, 32 from the code towards the image) and a last one with the image's channel
count and a sigmoid (or, as Table I draws it, a ReLU like every other deconvolution: `output="relu"`;
its reconstructions are not bounded above). For a feature-map code of height h, exactly as many stride-2 layers remain as the
code needs to reach the image's size. Sizes that are not a power-of-two multiple end with a resize.
ClaDec and RefAE build their decoders with this one function, so both are identical.
"""

import math

import keras
from keras import layers

from cladec_cli.errors import UsageError, option

PAPER_WIDTHS = (256, 128, 64, 32)
VECTOR_UPSAMPLINGS = 5


def upsampling_steps(code_hw, image_hw):
    """Number of stride-2 layers that take a code of spatial size `code_hw` to at least `image_hw`."""
    ratio = max(image_hw[0] / code_hw[0], image_hw[1] / code_hw[1])
    return max(0, math.ceil(math.log2(ratio) - 1e-9))


def layer_widths(steps, width=1):
    """Filters of the `steps` - 1 hidden Conv2DTranspose layers, from the code towards the image."""
    hidden = steps - 1
    if hidden <= 0:
        return []
    widths = PAPER_WIDTHS[-hidden:] if hidden <= len(PAPER_WIDTHS) else \
        (PAPER_WIDTHS[0],) * (hidden - len(PAPER_WIDTHS)) + PAPER_WIDTHS
    return [w * width for w in widths]


OUTPUTS = ("sigmoid", "relu")


def build_decoder(code_shape, image_shape, width=1, name="decoder", output="sigmoid", output_dtype=None):
    """A decoder from a code of `code_shape` (a vector or H x W x C) to images of `image_shape`, ending
    in `output` ("sigmoid" or "relu"). Its last convolution runs in `output_dtype` (None: the global
    dtype policy, like the other layers); the reconstructions are float32 either way."""
    if output not in OUTPUTS:
        raise UsageError(f"unknown {option('decoder_output')} {output!r}; choose one of {', '.join(OUTPUTS)}")
    code_shape, image_shape = tuple(code_shape), tuple(image_shape)
    height, width_px, channels = image_shape
    inputs = keras.Input(shape=code_shape, name="code")
    if len(code_shape) == 1:
        steps = VECTOR_UPSAMPLINGS
        start = (math.ceil(height / 2 ** steps), math.ceil(width_px / 2 ** steps))
        h = layers.Dense(start[0] * start[1] * PAPER_WIDTHS[0] * width, name="dec_dense")(inputs)
        h = layers.Reshape(start + (PAPER_WIDTHS[0] * width,), name="dec_reshape")(h)
    else:
        h = inputs
        steps = upsampling_steps(code_shape[:2], image_shape[:2])
    for i, filters in enumerate(layer_widths(steps, width), start=1):
        h = layers.Conv2DTranspose(filters, 5, strides=2, padding="same", activation="relu",
                                   name=f"dec_deconv{i}")(h)
    # Under mixed precision the last convolution computes like the others (in float32, a 1- or 3-channel
    # convolution ran in slow cuDNN kernels on GPUs) and its output is rounded to the compute dtype; the
    # resize, the output activation and the SSE run in float32, as Keras' mixed-precision guide keeps a
    # softmax in float32 after a low-precision Dense.
    if steps > 0:
        h = layers.Conv2DTranspose(channels, 5, strides=2, padding="same", name="dec_out", dtype=output_dtype)(h)
    else:
        h = layers.Conv2D(channels, 5, padding="same", name="dec_out", dtype=output_dtype)(h)
    if tuple(h.shape[1:3]) != (height, width_px):
        h = layers.Resizing(height, width_px, interpolation="bilinear", name="dec_resize", dtype="float32")(h)
    outputs = layers.Activation(output, name="reconstruction", dtype="float32")(h)
    return keras.Model(inputs, outputs, name=name)
