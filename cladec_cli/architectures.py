"""The paper's classifiers (Table I): a VGG-style encoder of stride-2 conv blocks and a logits layer."""

import keras
from keras import layers

from cladec_cli.errors import UsageError

ARCHITECTURES = {
    # name: (filters per block, conv layers per block)
    "paper": ((16, 32, 64, 128, 256), 1),
    # TinyImageNet variant: twice the conv layers per block, four times the width.
    "tiny_imagenet": ((64, 128, 256, 512, 1024), 2),
}
DECODER_WIDTH = {"paper": 1, "tiny_imagenet": 4}
BN_MOMENTUM = 0.9


def build_classifier(input_shape, n_classes, arch="paper", name="classifier"):
    """Conv(3x3, stride 2 in the block's first conv) -> BN -> ReLU blocks, Flatten, Dense logits.

    Block outputs are the ReLU layers `block1` ... `block5`; the logits layer is `logits`.
    """
    if arch not in ARCHITECTURES:
        raise UsageError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    filters, convs_per_block = ARCHITECTURES[arch]
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    h = inputs
    for block, width in enumerate(filters, start=1):
        for conv in range(1, convs_per_block + 1):
            suffix = "" if convs_per_block == 1 else str(conv)
            h = layers.Conv2D(width, 3, strides=2 if conv == 1 else 1, padding="same",
                              name=f"block{block}_conv{suffix}")(h)
            # Momentum 0.9 (Keras' default is 0.99) lets the inference statistics settle within a few
            # dozen steps, so short runs on small data give usable classifiers too.
            h = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn{suffix}")(h)
            relu_name = f"block{block}" if conv == convs_per_block else f"block{block}_relu{suffix}"
            h = layers.ReLU(name=relu_name)(h)
    h = layers.Flatten(name="flatten")(h)
    # Logits in float32 under mixed precision, so that the softmax and the loss see full precision.
    logits = layers.Dense(n_classes, name="logits", dtype="float32")(h)
    return keras.Model(inputs, logits, name=name)
