"""`evaluate`: every measure of one explained layer, for each explanation method: the paper's measures
for the methods that decode pictures (ClaDec, RefAE, a ridge decoder), deletion and insertion for the
attribution maps."""

import numbers
from pathlib import Path

import numpy as np

from cladec_cli import artifacts, batchnorm, memory
from cladec_cli.classifier import check_cross_entropy, check_fits, input_warning
from cladec_cli.errors import UsageError, option
from cladec_cli.explainer import layer_convention
from cladec_cli.hdf5_fidelity import check_savable
from cladec_cli.data.split import Split
from cladec_cli.methods import build, explain_all, reconstructors
from cladec_cli.metrics import acc_evals, agreement, split_measures
from cladec_cli.reconstruction import mean_image_rec_loss, rec_loss, split_rec_losses
from cladec_cli.training import predict, warn

MAP_IMAGES = 256
# Reconstructions of both splits by all methods held at once (with fit's copy of the training split's),
# above which methods are measured one by one.
HELD_BYTES = 1 << 30


def default_methods(explainer):
    """ClaDec, and RefAE when the explainer has one: the paper's comparison."""
    return ["cladec", *(["refae"] if explainer.refae is not None else [])]


def evaluate(explainer, dataset, eval_settings, keep_dir=None, with_acc_eval=True, methods=None,
             map_images=MAP_IMAGES, eval_bn_statistics="moving"):
    """Every measure of the methods named in `methods` (default: `default_methods`) on `dataset`.

    Methods that decode pictures get Rec. Loss, agreement and Acc Eval on the test split, and Rec. Loss
    on the training split too (the models in inference mode), since training-loop figures such as the
    paper's may be measured there. Attribution maps get the areas under the deletion and insertion
    curves (`faithfulness`) on the first `map_images` test images, beside a random order's.

    Acc Eval trains a fresh classifier of the explained architecture on each method's reconstructions
    of the training split (settings `eval_settings`), all methods side by side in one pass where
    memory allows (`held_measures`); with `keep_dir` those classifiers are saved. `eval_bn_statistics`
    "data" sets their BatchNorm statistics to those of the reconstructions each learned from, once
    training ends (`metrics.acc_evals`), for splits held in memory; "moving" keeps what training leaves,
    and so does None, for callers that offer no choice: the warnings then name no remedy of that kind.
    A split that is not held in memory fitted (files, or images fitted batch by batch) is never held whole
    (`streamed_measures`), and neither are reconstructions that would take more than `memory.hold_limit()`;
    otherwise each split is reconstructed once (`held_measures`).

    Returns a dict: `classifier_test_accuracy`, `test_images`, `train_images`, the layer (with its
    `layer_convention`) and dataset records, the `models` measured (`Explainer.models_record`), `methods`;
    for decoding methods {method: value} under `rec_loss` (test), `train_rec_loss`, `loop_loss` (each
    model's last training-epoch loss), `agreement`, the baseline `mean_image_rec_loss`
    (`reconstruction.mean_image_rec_loss`), with the ridge decoder the layer's `code_values` and, with
    Acc Eval, `acc_eval` and `eval_settings` (and, where found, the methods whose Acc Eval classifier
    names one class, `acc_eval_one_class`, and {method: {images, moving, data}} of those whose BatchNorm
    statistics lag, `acc_eval_bn_lag`: `metrics.batchnorm_lag`); for attribution maps `deletion`, `insertion` and
    `map_images`. With both ClaDec and RefAE, each of those dicts also holds their `difference`.
    """
    check_fits(explainer.classifier, dataset, explainer.pixel_range)
    if with_acc_eval:
        check_cross_entropy(explainer.classifier)
    if with_acc_eval and eval_settings is None:
        raise UsageError(f"Acc Eval trains classifiers with {option('eval_settings')}: pass them, or "
                         f"{option('with_acc_eval')} False")
    if not isinstance(map_images, numbers.Integral) or map_images < 1:
        raise UsageError(f"{option('map_images')} must be a whole number of at least 1, got {map_images!r}")
    if methods is not None and len(methods) == 0:
        raise UsageError(f"{option('methods')} names no method; leave it out for {', '.join(default_methods(explainer))}")
    warn(eval_settings, input_warning(explainer.classifier, dataset, explainer.classifier_provenance))
    chosen = build(default_methods(explainer) if methods is None else methods, explainer, dataset.train)
    pictures = reconstructors(chosen)
    offer_statistics, eval_bn_statistics = eval_bn_statistics is not None, eval_bn_statistics or "moving"
    # Decided once: the memory available moves, and the check below must see what the measuring does.
    fits = _reconstructions_fit(dataset)
    if with_acc_eval and pictures:
        check_statistics_choice(eval_bn_statistics, dataset, fits)
    if keep_dir and with_acc_eval and pictures:  # refused before the work, not after it
        for method in pictures:
            artifacts.check_output(Path(keep_dir) / f"eval_{method}.h5", eval_settings.overwrite, suffixes=(".h5",))
        check_savable(explainer.classifier, f"{option('keep_dir')}: the Acc Eval classifiers, copies of the classifier,")
    # Without Acc Eval, holding the reconstructions would save nothing: each split is still read once for
    # the methods (and once more for the mean-image baseline).
    held = with_acc_eval and fits
    measure = held_measures if held else streamed_measures
    measured, acc = measure(explainer, pictures, dataset, eval_settings if with_acc_eval else None,
                            eval_bn_statistics)
    result = {
        "layer_name": explainer.decoder_provenance["layer_name"],
        "layer_index": explainer.decoder_provenance["layer_index"],
        "layer_convention": layer_convention(explainer.decoder_provenance),
        "alpha": explainer.decoder_provenance.get("alpha", 0.0),
        "models": explainer.models_record(),
        "classifier_test_accuracy": measured["accuracy"],
        "test_images": len(dataset.test),
        "train_images": len(dataset.train),
        **{k: v for k, v in dataset.provenance().items() if k != "class_names"},
        "methods": [m.name for m in chosen],
    }
    if pictures:
        result.update({"rec_loss": measured["rec_loss"], "train_rec_loss": measured["train_rec_loss"],
                       "loop_loss": training_loop_losses(explainer, pictures), "agreement": measured["agreement"],
                       "mean_image_rec_loss": mean_image_rec_loss(dataset.train, dataset.test)})
        if "ridge" in pictures:
            result["code_values"] = int(np.prod(explainer.layer.shape))
    if acc:
        result["acc_eval"] = {method: r.accuracy for method, r in acc.items()}
        result["eval_settings"] = {**eval_settings.provenance(), "bn_statistics": eval_bn_statistics,
                                   "reconstructions": "held" if held else "made batch by batch",
                                   "stacked_methods": [method for method, r in acc.items() if r.stacked]}
        one_class = [method for method, r in acc.items() if r.one_class]
        if one_class:
            result["acc_eval_one_class"] = one_class
            warn(eval_settings, one_class_warning(one_class, explainer.classifier, eval_bn_statistics,
                                                  offer_statistics))
        lagging = {method: r.lag for method, r in acc.items() if r.lag is not None}
        if lagging:
            result["acc_eval_bn_lag"] = {method: lag._asdict() for method, lag in lagging.items()}
            for method, lag in lagging.items():
                warn(eval_settings, lag_warning(method, lag, offer_statistics))
        for method, r in acc.items():
            if keep_dir:
                _save_eval_classifier(r, Path(keep_dir) / f"eval_{method}.h5", method, explainer, dataset,
                                      eval_settings, eval_bn_statistics)
    maps = [m for m in chosen if m.kind == "map"]
    if maps:
        result.update(map_scores(explainer, dataset.test, maps, map_images))
    for key in ("rec_loss", "train_rec_loss", "loop_loss", "agreement", "acc_eval"):
        if {"cladec", "refae"} <= set(result.get(key, {})):
            result[key]["difference"] = result[key]["cladec"] - result[key]["refae"]
    return result


def one_class_warning(methods, classifier, bn_statistics="moving", offer_statistics=True):
    """Why the Acc Eval of `methods`, whose classifiers name one class for every test image, says nothing;
    with `offer_statistics`, the remedy may name `eval_bn_statistics`."""
    line = (f"the Acc Eval classifier of {', '.join(methods)} names one class for every test image, so its "
            "Acc Eval is that class's share, whatever the reconstructions show")
    if batchnorm.batchnorm_layers(classifier) and bn_statistics == "moving":
        line += (": its BatchNorm layers' moving statistics lag behind the weights after a short training (the "
                 "longer, the higher their momentum); train it for more epochs")
        if offer_statistics:
            line += f", or set them from the reconstructions it learned from with {option('eval_bn_statistics', 'data')}"
    return line


def lag_warning(method, lag, offer_statistics=True):
    """Why the Acc Eval of `method`, whose classifier's moving BatchNorm statistics cost it accuracy on the
    reconstructions it learned from (`lag`, a `metrics.BatchNormLag`), understates what they hold."""
    line = (f"the Acc Eval classifier of {method} gets {lag.moving:.4f} of {lag.images:,} of the reconstructions it "
            f"learned from right in inference mode with its moving BatchNorm statistics, and {lag.data:.4f} with "
            "statistics from those reconstructions: the moving statistics lag behind its weights, so its Acc Eval "
            "understates what the reconstructions hold; train it for more epochs")
    if offer_statistics:
        line += f", or use statistics from the reconstructions with {option('eval_bn_statistics', 'data')}"
    return line


def map_scores(explainer, split, methods, count=MAP_IMAGES):
    """{'deletion': {method: area}, 'insertion': {method: area}, 'map_images': n} of the attribution
    `methods` on the first `count` images of `split`, each explained for its predicted class."""
    from cladec_cli import faithfulness

    images, _ = split.subset(list(range(min(count, len(split))))).arrays()
    classes = explainer.classify(images)
    measured = faithfulness.scores(explainer.scaled_classifier, images, classes, explain_all(methods, images, classes))
    return {**measured, "map_images": len(images)}


def training_loop_losses(explainer, pictures):
    """Each model's loss in its last training epoch, as Keras reported it while training (its own loss:
    the Rec. Loss for alpha 0, else the weighted sum): {method: loss}, for the models of `pictures` that
    recorded one."""
    recorded = {"cladec": explainer.decoder_provenance, "refae": explainer.refae_provenance}
    losses = {m: (p or {}).get("metrics", {}).get("train_loss") for m, p in recorded.items()}
    return {m: loss for m, loss in losses.items() if loss is not None and m in pictures}


def streamed_measures(explainer, pictures, dataset, eval_settings=None, bn_statistics="moving"):
    """The classifier's test accuracy and, per method of `pictures` ({method: image -> image model}),
    Rec. Loss on the test and training images and agreement: ({measure: value or {method: value}},
    {method: metrics.AccEval}), the latter empty without `eval_settings`. Every split
    is read batch by batch and the reconstructions are made as they are needed, so no split is held
    in memory whole."""
    measured = split_measures(explainer.scaled_classifier, pictures, dataset.test)
    measured["train_rec_loss"] = split_rec_losses(pictures, dataset.train)
    if eval_settings is None or not pictures:
        return measured, {}
    train, test = ({m: split for m in pictures} for split in (dataset.train, dataset.test))
    return measured, acc_evals(explainer.classifier, train, test, eval_settings, explainer.pixel_range, pictures,
                               bn_statistics)


def held_measures(explainer, pictures, dataset, eval_settings, bn_statistics="moving"):
    """What `streamed_measures` gives, for splits held in memory: each split is reconstructed once per
    method and every measure taken from those reconstructions, so each epoch of the Acc Eval
    classifiers trains the classifiers alone (twice as fast as reconstructing in every step).
    The methods whose reconstructions fit in `HELD_BYTES` together (those of the training split
    counted twice, for the tensors `fit` copies them into) are measured, and their Acc Eval
    classifiers trained, together; above it, one method at a time."""
    test = dataset.test
    predicted = explainer.classify(test.images)
    measured = {"accuracy": float(np.mean(predicted == test.labels)) if len(test) else float("nan"),
                "rec_loss": {}, "train_rec_loss": {}, "agreement": {}}
    acc = {}
    for group in _groups(list(pictures), _held_bytes(dataset), HELD_BYTES):
        group_measures, group_acc = _held_group(explainer, {m: pictures[m] for m in group}, dataset, eval_settings,
                                                predicted, bn_statistics)
        for key, values in group_measures.items():
            measured[key].update(values)
        acc.update(group_acc)
    return measured, acc


def _held_group(explainer, pictures, dataset, eval_settings, predicted, bn_statistics):
    """`held_measures` for the methods of one group, whose reconstructions are dropped on return."""
    train, test = dataset.train, dataset.test
    recs = {m: (reconstructed(train, model), reconstructed(test, model)) for m, model in pictures.items()}
    measured = {"rec_loss": {m: rec_loss(test.images, r[1].images) for m, r in recs.items()},
                "train_rec_loss": {m: rec_loss(train.images, r[0].images) for m, r in recs.items()},
                "agreement": {m: agreement(explainer.classify, test.images, r[1].images, predicted)
                              for m, r in recs.items()}}
    acc = {}
    if eval_settings is not None:
        acc = acc_evals(explainer.classifier, {m: r[0] for m, r in recs.items()}, {m: r[1] for m, r in recs.items()},
                        eval_settings, explainer.pixel_range, bn_statistics=bn_statistics)
    return measured, acc


def check_statistics_choice(eval_bn_statistics, dataset, fits=None):
    """Refuse an unknown `eval_bn_statistics`, and "data" where the reconstructions the Acc Eval
    classifiers learn from would not be held in memory (`fits`, default `_reconstructions_fit`; see
    `evaluate`), before any work."""
    batchnorm.check_choice(eval_bn_statistics, dataset.train, dataset.test, name="eval_bn_statistics")
    if eval_bn_statistics == "data" and not (_reconstructions_fit(dataset) if fits is None else fits):
        raise UsageError(
            f"{option('eval_bn_statistics', 'data')}: BatchNorm statistics from data need the reconstructions held "
            f"in memory, {memory.gigabytes(_held_bytes(dataset))} for each method, more than the "
            f"{memory.gigabytes(memory.hold_limit())} that may be held here (half the memory available); use a "
            f"smaller {option('limit')}")


def _reconstructions_fit(dataset):
    """Whether a method's reconstructions of both splits may be held: the splits are held fitted, and the
    reconstructions take at most `memory.hold_limit()`."""
    return dataset.train.in_memory and dataset.test.in_memory and _held_bytes(dataset) <= memory.hold_limit()


def _held_bytes(dataset):
    """Bytes one method's reconstructions of both splits take held, the training split's counted twice
    for the tensors `fit` copies them into."""
    return 2 * dataset.train.images.nbytes + dataset.test.images.nbytes


def _groups(methods, bytes_each, limit_bytes):
    """All `methods` in one group when their reconstructions fit in `limit_bytes`, else one by one."""
    if not methods:
        return []
    return [methods] if bytes_each * len(methods) <= limit_bytes else [[m] for m in methods]


def reconstructed(split, reconstructor, batch_size=256):
    """An in-memory split whose images are replaced by their reconstructions."""
    return Split(split.labels, split.image_shape, images=predict(reconstructor, split.images, batch_size),
                 resize=split.resize)


def _save_eval_classifier(acc, path, method, explainer, dataset, settings, bn_statistics):
    provenance = {
        **artifacts.base_provenance("eval_classifier"),
        **dataset.provenance(),
        **settings.provenance(),
        "stacked": acc.stacked,
        "bn_statistics": bn_statistics,
        "trained_on": f"{method} reconstructions",
        "layer_name": explainer.decoder_provenance["layer_name"],
        "classifier_digest": explainer.decoder_provenance["classifier_digest"],
        "metrics": {"test_accuracy": acc.accuracy},
    }
    artifacts.save_model(acc.model, path, provenance, overwrite=settings.overwrite)
