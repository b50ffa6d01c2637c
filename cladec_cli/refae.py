"""RefAE: the reference autoencoder, a freshly initialised copy of the classifier up to the layer
followed by the same decoder as ClaDec, trained end to end for reconstruction only. The RefAEs of
several layers train in one pass, each with its own encoder copy (one after another under float16)."""

import keras

from cladec_cli import artifacts, batchnorm
from cladec_cli.classifier import check_fits, fresh_copy, input_warning
from cladec_cli.cladec import decoder_for, layer_provenance
from cladec_cli.fused import (in_turn, model_history, named_output, one_at_a_time, one_output_each, output_labels,
                              renamed, seeded)
from cladec_cli.layers import build_encoder, resolve_layers
from cladec_cli.losses import reconstruction_loss
from cladec_cli.reconstruction import split_rec_losses
from cladec_cli.pixels import rescaled
from cladec_cli.hdf5_fidelity import check_savable
from cladec_cli.training import compile_model, fit, run_settings, trained_provenance, training_run, warn

ENCODER = "refae_encoder"  # the name of the trainable encoder inside a RefAE


def build_refae(classifier, layer, classifier_provenance=None, pixel_range="0,1", name="refae",
                decoder_output="sigmoid"):
    """A fresh, trainable encoder of the classifier's graph up to `layer`, plus the ClaDec decoder.

    Like ClaDec's frozen encoder, it takes [0, 1] images and rescales them to the classifier's range.
    The classifier's augmentation layers are left out (`fresh_copy`): they would change the images the
    RefAE learns to give back unchanged.
    """
    encoder = fresh_copy(build_encoder(classifier, layer, name=ENCODER), augmentation=False)
    decoder = decoder_for(classifier, layer, classifier_provenance, output=decoder_output)
    inputs = keras.Input(shape=classifier.inputs[0].shape[1:], name="image")
    return keras.Model(inputs, decoder(encoder(rescaled(inputs, pixel_range))), name=name)


def refae_encoder(refae):
    """The trainable encoder inside a RefAE (it takes images in the classifier's pixel range)."""
    return refae.get_layer(ENCODER)


def train_refaes(classifier, classifier_provenance, dataset, layer_specs, settings, outs, rec_loss_name="sse",
                 decoder_output="sigmoid", bn_statistics="moving"):
    """Train one RefAE per layer of a classifier's architecture in one pass; save each at its `outs` entry.

    One model with one image input and one output per RefAE, each with its own loss and parameters,
    so each is the RefAE that training it alone gives (under float16 they train one after another:
    `fused.one_at_a_time`); each is saved with the provenance of a one-layer run. Returns
    [(refae, provenance record)] in the order of `layer_specs`. `bn_statistics` "data" replaces the
    encoders' BatchNorm moving statistics by those of the training images once training ends (on a short
    run moving statistics lag behind the weights, and the test Rec. Loss, measured in inference mode,
    suffers); "moving" keeps what training left.
    """
    batchnorm.check_choice(bn_statistics, dataset.train)
    check_fits(classifier, dataset, (classifier_provenance or {}).get("pixel_range"))
    rec = reconstruction_loss(rec_loss_name)
    layers = resolve_layers(classifier, layer_specs)
    warn(settings, input_warning(classifier, dataset, classifier_provenance), before_training=True)
    outs = one_output_each(layers, outs)
    for layer in layers:  # refused before any training, not once an earlier layer's RefAE is saved
        check_savable(build_encoder(classifier, layer), f"the RefAE of layer {layer.name}")
    runs = [run_settings("refae", dataset, settings, **layer_provenance(classifier, layer, classifier_provenance),
                         rec_loss=rec_loss_name, decoder_output=decoder_output, bn_statistics=bn_statistics)
            for layer in layers]
    if one_at_a_time(settings, len(layers)):
        return in_turn(outs, runs, settings, lambda i, own: train_refaes(
            classifier, classifier_provenance, dataset, [layer_specs[i]], own, [outs[i]], rec_loss_name,
            decoder_output, bn_statistics)[0])
    with training_run(outs, settings, runs[0] if len(runs) == 1 else {"runs": runs}) as backup:
        refaes = [seeded(settings.seed, lambda layer=layer, i=i: build_refae(
            classifier, layer, classifier_provenance, dataset.pixel_range, name=f"refae_{i}",
            decoder_output=decoder_output))
            for i, layer in enumerate(layers, start=1)]
        recs = [f"rec_{label}" for label in output_labels(layers)]
        image = keras.Input(shape=classifier.inputs[0].shape[1:], name="image")
        model = keras.Model(image, {r: named_output(refae(image), r) for r, refae in zip(recs, refaes)}, name="refae")
        data = dataset.train.dataset(settings.batch_size, shuffle=True, seed=settings.seed,
                                     arrange=lambda x, y: (x, {r: x for r in recs}))
        compile_model(model, settings, data, {r: rec for r in recs})
        history = fit(model, data, settings, backup)
        if bn_statistics == "data":
            for refae in refaes:
                batchnorm.statistics_from_split(refae_encoder(refae), dataset.train, dataset.pixel_range)
        test_losses = split_rec_losses(dict(zip(recs, refaes)), dataset.test)  # all in one pass
        results = []
        for r, refae, out, run in zip(recs, refaes, outs, runs):
            refae = renamed(refae, "refae")
            provenance = trained_provenance(run, model_history(history, {r: 1.0}), {"test_rec_loss": test_losses[r]})
            results.append((refae, artifacts.save_model(refae, out, provenance, settings.overwrite)))
    return results


LAGGING_RATIO = 1.5  # test Rec. Loss over the last training loss from which moving statistics are suspect


def statistics_may_lag(refae, record):
    """The test Rec. Loss over the last training loss (SSE both) of a RefAE trained with moving BatchNorm
    statistics, where that ratio reaches `LAGGING_RATIO` and its encoder has BatchNorm layers: inference
    then uses moving statistics that may lag behind the trained weights (`--bn-statistics data` sets them
    from the training images). None otherwise, and for a RefAE trained with another loss than SSE."""
    metrics = record.get("metrics", {})
    test, train = metrics.get("test_rec_loss"), metrics.get("train_loss")
    if record.get("bn_statistics", "moving") != "moving" or record.get("rec_loss", "sse") != "sse":
        return None
    if not test or not train or train <= 0 or test / train < LAGGING_RATIO:
        return None
    return test / train if batchnorm.batchnorm_layers(refae_encoder(refae)) else None


def train_refae(classifier, classifier_provenance, dataset, layer_spec, settings, out, rec_loss_name="sse",
                decoder_output="sigmoid", bn_statistics="moving"):
    """Train a RefAE for one layer of a classifier's architecture and save it with provenance: the
    one-layer case of `train_refaes`. Returns (refae, provenance record)."""
    return train_refaes(classifier, classifier_provenance, dataset, [layer_spec], settings, [out], rec_loss_name,
                        decoder_output, bn_statistics)[0]
