"""ClaDec: a decoder trained on the frozen activations of one classifier layer (optionally with the
classifier's loss on the reconstruction, weighted by alpha)."""

import keras
import numpy as np
import tensorflow as tf

from cladec_cli import artifacts
from cladec_cli.architectures import DECODER_WIDTH
from cladec_cli.classifier import classification_loss
from cladec_cli.decoder import build_decoder
from cladec_cli.errors import UsageError
from cladec_cli.layers import build_encoder, resolve_layer
from cladec_cli.losses import reconstruction_loss
from cladec_cli.pixels import in_range
from cladec_cli.reconstruction import split_rec_loss
from cladec_cli.training import fit, make_optimizer, predict, run_settings, trained_provenance, training_run

CACHE_LIMIT_BYTES = 1 << 30


def check_alpha(alpha):
    if not 0.0 <= float(alpha) <= 1.0:
        raise UsageError(f"--alpha must lie in [0, 1], got {alpha}")
    return float(alpha)


def frozen_encoder(classifier, layer, pixel_range="0,1"):
    """The classifier up to `layer`, frozen (BatchNorm in inference mode), taking [0, 1] images and
    rescaling them to the classifier's `pixel_range`."""
    encoder = in_range(build_encoder(classifier, layer), pixel_range, name="encoder")
    encoder.trainable = False
    return encoder


def decoder_for(classifier, layer, provenance=None):
    """The decoder that fits `layer` of `classifier` (wider for the TinyImageNet architecture)."""
    width = DECODER_WIDTH.get((provenance or {}).get("arch"), 1)
    return build_decoder(layer.shape, tuple(classifier.inputs[0].shape[1:]), width=width)


def stacked(encoder, decoder, name):
    """image -> encoder -> decoder as one model, with the encoder in inference mode."""
    inputs = keras.Input(shape=encoder.inputs[0].shape[1:], name="image")
    return keras.Model(inputs, decoder(encoder(inputs, training=False)), name=name)


def should_cache(split, layer, mode):
    """Whether to compute the frozen encoder's codes once instead of in every training step."""
    if mode in ("yes", "no"):
        return mode == "yes"
    code_bytes = len(split) * int(np.prod(layer.shape)) * 4
    return split.in_memory and code_bytes <= CACHE_LIMIT_BYTES


def _training_setup(classifier, encoder, decoder, split, settings, alpha, rec, cache, pixel_range="0,1"):
    """(model, dataset, losses, weights) for one of the three training set-ups."""
    if alpha == 0.0 and cache:
        if not split.in_memory:
            raise UsageError("--cache-codes yes needs a dataset held in memory; this one streams image files "
                             "from disk (use --cache-codes auto or no)")
        codes = predict(encoder, split.images)
        data = tf.data.Dataset.from_tensor_slices((codes, split.images))
        data = data.shuffle(len(codes), seed=settings.seed).batch(settings.batch_size).prefetch(tf.data.AUTOTUNE)
        return decoder, data, rec, None
    images = split.dataset(settings.batch_size, shuffle=True, seed=settings.seed)
    model = stacked(encoder, decoder, "cladec")
    if alpha == 0.0:
        return model, images.map(lambda x, y: (x, x)), rec, None
    classifier.trainable = False
    logits = in_range(classifier, pixel_range)(model.outputs[0], training=False)
    model = keras.Model(model.inputs, [model.outputs[0], logits], name="cladec_extended")
    data = images.map(lambda x, y: (x, (x, y)))
    return model, data, [rec, classification_loss(classifier)], [1.0 - alpha, alpha]


def train_decoder(classifier, classifier_provenance, dataset, layer_spec, alpha, settings, out,
                  rec_loss_name="sse", cache_codes="auto"):
    """Train a ClaDec decoder for one layer of a frozen classifier and save it with provenance.

    The loss is (1 - alpha) * reconstruction loss + alpha * the classifier's cross-entropy on the
    reconstruction. The saved model is the decoder alone: its input is the layer's activation.
    """
    alpha = check_alpha(alpha)
    rec = reconstruction_loss(rec_loss_name)
    layer = resolve_layer(classifier, layer_spec)
    cache = alpha == 0.0 and should_cache(dataset.train, layer, cache_codes)
    run = run_settings("cladec_decoder", dataset, settings,
                       **layer_provenance(classifier, layer, classifier_provenance),
                       alpha=alpha, rec_loss=rec_loss_name, cached_codes=cache)
    with training_run(out, settings, run) as backup:
        encoder = frozen_encoder(classifier, layer, dataset.pixel_range)
        decoder = decoder_for(classifier, layer, classifier_provenance)
        model, data, losses, weights = _training_setup(
            classifier, encoder, decoder, dataset.train, settings, alpha, rec, cache, dataset.pixel_range)
        model.compile(optimizer=make_optimizer(settings, len(data)), loss=losses, loss_weights=weights)
        history = fit(model, data, settings, backup)
        metrics = {"test_rec_loss": split_rec_loss(stacked(encoder, decoder, "cladec"), dataset.test)}
        provenance = trained_provenance(run, history, metrics)
        record = artifacts.save_model(decoder, out, provenance, settings.overwrite)
    return decoder, record


def layer_provenance(classifier, layer, classifier_provenance):
    """What a decoder or RefAE records about the classifier layer it belongs to."""
    return {
        "layer_name": layer.name,
        "layer_index": layer.index,
        "layer_shape": list(layer.shape),
        "classifier_digest": artifacts.weights_digest(classifier),
        "classifier_arch": (classifier_provenance or {}).get("arch", "custom"),
    }
