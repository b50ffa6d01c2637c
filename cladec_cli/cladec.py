"""ClaDec: a decoder trained on the frozen activations of one classifier layer (optionally with the
classifier's loss on the reconstruction, weighted by alpha); the decoders of several layers train in one pass
(one after another under float16)."""

import contextlib
import dataclasses

import keras
import numpy as np

from cladec_cli import artifacts
from cladec_cli.architectures import DECODER_WIDTH
from cladec_cli.classifier import check_cross_entropy, check_fits, classification_loss, input_warning
from cladec_cli.curves import TestRecLoss, curve_record
from cladec_cli.decoder import build_decoder
from cladec_cli.data.feed import ArrayFeed
from cladec_cli.errors import UsageError, option
from cladec_cli.frozen import frozen
from cladec_cli.fused import (in_turn, model_history, named_output, one_at_a_time, one_output_each, output_labels,
                              renamed, seeded)
from cladec_cli.layers import build_encoder, resolve_layers
from cladec_cli.losses import reconstruction_loss
from cladec_cli.pixels import in_range
from cladec_cli.reconstruction import split_rec_losses
from cladec_cli.training import compile_model, fit, predict, run_settings, trained_provenance, training_run, warn

CACHE_LIMIT_BYTES = 1 << 30


def check_alpha(alpha):
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise UsageError(f"{option('alpha')} must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"{option('alpha')} must lie in [0, 1], got {alpha}")
    return float(alpha)


def frozen_encoder(classifier, layer, pixel_range="0,1"):
    """The classifier up to `layer` (a list of layers: one output each), frozen (BatchNorm in inference
    mode), taking [0, 1] images and rescaling them to the classifier's `pixel_range`."""
    encoder = in_range(build_encoder(classifier, layer), pixel_range, name="encoder")
    encoder.trainable = False
    return encoder


@contextlib.contextmanager
def trainable_flags_kept(model):
    """Put back the `trainable` flag of `model`, of each of its layers and of each variable on the way
    out: a frozen encoder shares the caller's classifier's layers, so freezing it freezes them."""
    layers = [(layer, layer.trainable) for layer in model._flatten_layers()]
    variables = [(variable, variable.trainable) for variable in model.variables]
    try:
        yield
    finally:
        # Each flag is set on its own: Keras' setter passes a model's flag on to its layers, which would
        # overwrite a layer shared with another model that had its own.
        for layer, flag in layers:
            layer._trainable = flag
        for variable, flag in variables:
            variable.trainable = flag


def decoder_for(classifier, layer, provenance=None, name="decoder", output="sigmoid"):
    """The decoder that fits `layer` of `classifier` (wider for the TinyImageNet architecture), ending in
    `output` ("sigmoid" or "relu")."""
    width = DECODER_WIDTH.get((provenance or {}).get("arch"), 1)
    return build_decoder(layer.shape, tuple(classifier.inputs[0].shape[1:]), width=width, name=name, output=output)


def stacked(encoder, decoder, name):
    """image -> encoder -> decoder as one model, with the encoder in inference mode."""
    inputs = keras.Input(shape=encoder.inputs[0].shape[1:], name="image")
    return keras.Model(inputs, decoder(encoder(inputs, training=False)), name=name)


def should_cache(split, layers, mode):
    """Whether to compute the frozen encoder's codes of `layers` once instead of in every training step."""
    if mode not in ("auto", "yes", "no"):
        raise UsageError(f"{option('cache_codes')} must be auto, yes or no, got {mode!r}")
    if mode in ("yes", "no"):
        return mode == "yes"
    code_bytes = len(split) * sum(int(np.prod(layer.shape)) for layer in layers) * 4
    return split.in_memory and code_bytes <= CACHE_LIMIT_BYTES


def _training_setup(classifier, encoder, decoders, split, settings, alpha, rec, cache, pixel_range="0,1",
                    labels=None):
    """(model, dataset, losses, loss weights). The model takes images, or with `cache` the frozen
    encoder's codes of them, computed once; it has an output `rec_<label>` per decoder (`labels`, default
    1, 2, ...) and, with alpha > 0, `ce_<label>`: the frozen classifier's output on that reconstruction."""
    labels = labels or [str(i) for i in range(1, len(decoders) + 1)]
    recs = [f"rec_{label}" for label in labels]
    ces = [f"ce_{label}" for label in labels] if alpha > 0.0 else []
    losses, weights = {r: rec for r in recs}, {r: 1.0 - alpha for r in recs}

    def targets(images, labels):
        return {**{r: images for r in recs}, **{ce: labels for ce in ces}}

    if cache:
        if not split.in_memory:
            raise UsageError(f"{option('cache_codes')} yes needs a dataset held in memory; in this one "
                             f"{split.how_read()} (use {option('cache_codes')} auto or no)")
        codes = predict(encoder, split.images)
        codes = list(codes) if len(decoders) > 1 else [codes]
        inputs = [keras.Input(shape=d.inputs[0].shape[1:], name=f"code_{i}") for i, d in enumerate(decoders, start=1)]
        model_inputs, code_tensors = (inputs if len(inputs) > 1 else inputs[0]), inputs
        # The images ride along with the codes, as the reconstruction targets.
        data = ArrayFeed((*codes, split.images), split.labels, settings.batch_size,
                         lambda c, y: (c[:-1] if len(c) > 2 else c[0], targets(c[-1], y)),
                         shuffle=True, seed=settings.seed)
    else:
        model_inputs = keras.Input(shape=encoder.inputs[0].shape[1:], name="image")
        code_tensors = frozen(encoder)(model_inputs)
        code_tensors = code_tensors if len(decoders) > 1 else [code_tensors]
        data = split.dataset(settings.batch_size, True, settings.seed, arrange=lambda x, y: (x, targets(x, y)))
    outputs = {r: named_output(d(c), r) for r, d, c in zip(recs, decoders, code_tensors)}
    if ces:
        scaled = frozen(in_range(classifier, pixel_range))
        for r, ce in zip(recs, ces):
            outputs[ce] = named_output(scaled(outputs[r]), ce)
        losses.update({ce: classification_loss(classifier) for ce in ces})
        weights.update({ce: alpha for ce in ces})
    return keras.Model(model_inputs, outputs, name="cladec_extended" if ces else "cladec"), data, losses, weights


def train_decoders(classifier, classifier_provenance, dataset, layer_specs, alpha, settings, outs,
                   rec_loss_name="sse", cache_codes="auto", decoder_output="sigmoid", curves=False):
    """Train one ClaDec decoder per layer of a frozen classifier in one pass; save each at its `outs` entry.

    One frozen encoder computes all the layers' codes; each decoder has its own loss,
    (1 - alpha) * reconstruction loss + alpha * the classifier's cross-entropy on its reconstruction,
    and its own parameters, so each is the decoder that training it alone gives (under float16 they
    train one after another: `fused.one_at_a_time`). Each saved model is the
    decoder alone (its input is the layer's activation), with the provenance of a one-layer run; with
    `curves`, that records each epoch's test Rec. Loss beside its training loss (metrics.curve).
    Returns [(decoder, provenance record)] in the order of `layer_specs`.

    `classifier_provenance` is the record `train_classifier` returned, or None for a classifier of your
    own; `layer_specs` is a list of negative indices or layer names (`layers.resolve_layer`); `outs`
    one .h5 path per layer; `cache_codes` "auto", "yes" or "no"; `rec_loss_name` "sse" or "bce".
    The classifier itself is left as it was (weights and `trainable` flags).
    """
    alpha = check_alpha(alpha)
    check_fits(classifier, dataset, (classifier_provenance or {}).get("pixel_range"))
    if alpha > 0:
        check_cross_entropy(classifier)
    rec = reconstruction_loss(rec_loss_name)
    layers = resolve_layers(classifier, layer_specs)
    outs = one_output_each(layers, outs)
    warn(settings, input_warning(classifier, dataset, classifier_provenance), before_training=True)

    def run_of(layer, cache):
        return run_settings("cladec_decoder", dataset, settings,
                            **layer_provenance(classifier, layer, classifier_provenance), alpha=alpha,
                            rec_loss=rec_loss_name, cached_codes=cache, decoder_output=decoder_output)

    if one_at_a_time(settings, len(layers)):
        runs = [run_of(layer, should_cache(dataset.train, [layer], cache_codes)) for layer in layers]
        return in_turn(outs, runs, settings, lambda i, own: train_decoders(
            classifier, classifier_provenance, dataset, [layer_specs[i]], alpha, own, [outs[i]], rec_loss_name,
            cache_codes, decoder_output, curves)[0])
    cache = should_cache(dataset.train, layers, cache_codes)
    runs = [run_of(layer, cache) for layer in layers]
    with training_run(outs, settings, runs[0] if len(runs) == 1 else {"runs": runs}) as backup, \
            trainable_flags_kept(classifier):
        encoder = frozen_encoder(classifier, layers if len(layers) > 1 else layers[0], dataset.pixel_range)
        decoders = [seeded(settings.seed, lambda layer=layer, i=i: decoder_for(
            classifier, layer, classifier_provenance, name=f"decoder_{i}", output=decoder_output))
            for i, layer in enumerate(layers, start=1)]
        labels = output_labels(layers)
        model, data, losses, weights = _training_setup(
            classifier, encoder, decoders, dataset.train, settings, alpha, rec, cache, dataset.pixel_range, labels)
        compile_model(model, settings, data, losses, weights)
        # image -> reconstruction, one per layer (named apart: they are measured together)
        whole = [stacked(frozen_encoder(classifier, layer, dataset.pixel_range), decoder, f"cladec_{i}")
                 for i, (layer, decoder) in enumerate(zip(layers, decoders), start=1)]
        tracker = None
        if curves:
            tracker = TestRecLoss(whole, dataset.test)
            settings = dataclasses.replace(settings, extra_callbacks=[*settings.extra_callbacks, tracker])
        history = fit(model, data, settings, backup)
        # The curves' last points are the trained decoders' test Rec. Losses: no second pass.
        measured = tracker is not None and all(tracker.curves)
        test_losses = None if measured else list(split_rec_losses(dict(enumerate(whole)), dataset.test).values())
        results = []
        for i, (decoder, out, run, label) in enumerate(zip(decoders, outs, runs, labels), start=1):
            decoder = renamed(decoder, "decoder")
            own = {name: weight for name, weight in weights.items() if name in (f"rec_{label}", f"ce_{label}")}
            own_history = model_history(history, own)
            if measured:
                metrics = {"test_rec_loss": tracker.curves[i - 1][-1],
                           "curve": curve_record(tracker, i - 1, own_history["loss"])}
            else:
                metrics = {"test_rec_loss": test_losses[i - 1]}
            provenance = trained_provenance(run, own_history, metrics)
            results.append((decoder, artifacts.save_model(decoder, out, provenance, settings.overwrite)))
    return results


def train_decoder(classifier, classifier_provenance, dataset, layer_spec, alpha, settings, out,
                  rec_loss_name="sse", cache_codes="auto", decoder_output="sigmoid", curves=False):
    """Train a ClaDec decoder for one layer of a frozen classifier and save it with provenance: the
    one-layer case of `train_decoders`. Returns (decoder, provenance record)."""
    return train_decoders(classifier, classifier_provenance, dataset, [layer_spec], alpha, settings, [out],
                          rec_loss_name, cache_codes, decoder_output, curves)[0]


def layer_provenance(classifier, layer, classifier_provenance):
    """What a decoder or RefAE records about the classifier layer it belongs to."""
    return {
        "layer_name": layer.name,
        "layer_index": layer.index,
        "layer_convention": layer.convention,
        "layer_shape": list(layer.shape),
        "classifier_digest": artifacts.weights_digest(classifier),
        "classifier_arch": (classifier_provenance or {}).get("arch", "custom"),
    }
