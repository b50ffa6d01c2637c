"""RefAE: the reference autoencoder, a freshly initialised copy of the classifier up to the layer
followed by the same decoder as ClaDec, trained end to end for reconstruction only."""

import keras

from cladec_cli import artifacts
from cladec_cli.classifier import fresh_copy
from cladec_cli.cladec import decoder_for, layer_provenance
from cladec_cli.layers import build_encoder, resolve_layer
from cladec_cli.losses import reconstruction_loss
from cladec_cli.pixels import rescaled
from cladec_cli.reconstruction import split_rec_loss
from cladec_cli.training import fit, make_optimizer, run_settings, trained_provenance, training_run


def build_refae(classifier, layer, classifier_provenance=None, pixel_range="0,1"):
    """A fresh, trainable encoder of the classifier's graph up to `layer`, plus the ClaDec decoder.

    Like ClaDec's frozen encoder, it takes [0, 1] images and rescales them to the classifier's range.
    """
    encoder = fresh_copy(build_encoder(classifier, layer, name="refae_encoder"))
    decoder = decoder_for(classifier, layer, classifier_provenance)
    inputs = keras.Input(shape=classifier.inputs[0].shape[1:], name="image")
    return keras.Model(inputs, decoder(encoder(rescaled(inputs, pixel_range))), name="refae")


def train_refae(classifier, classifier_provenance, dataset, layer_spec, settings, out, rec_loss_name="sse"):
    """Train a RefAE for one layer of a classifier's architecture and save it with provenance."""
    rec = reconstruction_loss(rec_loss_name)
    layer = resolve_layer(classifier, layer_spec)
    run = run_settings("refae", dataset, settings, **layer_provenance(classifier, layer, classifier_provenance),
                       rec_loss=rec_loss_name)
    with training_run(out, settings, run) as backup:
        model = build_refae(classifier, layer, classifier_provenance, dataset.pixel_range)
        data = dataset.train.dataset(settings.batch_size, shuffle=True, seed=settings.seed)
        data = data.map(lambda x, y: (x, x))
        model.compile(optimizer=make_optimizer(settings, len(data)), loss=rec)
        history = fit(model, data, settings, backup)
        provenance = trained_provenance(run, history, {"test_rec_loss": split_rec_loss(model, dataset.test)})
        record = artifacts.save_model(model, out, provenance, settings.overwrite)
    return model, record
