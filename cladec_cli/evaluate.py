"""`evaluate`: every measure of one explained layer, for each explanation method: the paper's measures
for the methods that decode pictures (ClaDec, RefAE, a ridge decoder), deletion and insertion for the
attribution maps."""

from pathlib import Path

from cladec_cli import artifacts
from cladec_cli.data.split import Split
from cladec_cli.methods import build, explain_all, reconstructors
from cladec_cli.metrics import acc_eval_on, split_measures
from cladec_cli.reconstruction import split_rec_losses
from cladec_cli.training import predict

MAP_IMAGES = 256


def default_methods(explainer):
    """ClaDec, and RefAE when the explainer has one: the paper's comparison."""
    return ["cladec", *(["refae"] if explainer.refae is not None else [])]


def evaluate(explainer, dataset, eval_settings, keep_dir=None, with_acc_eval=True, methods=None,
             map_images=MAP_IMAGES):
    """Every measure of the methods named in `methods` (default: `default_methods`) on `dataset`.

    Methods that decode pictures get Rec. Loss, agreement and Acc Eval on the test split, and Rec. Loss
    on the training split too (the models in inference mode), since training-loop figures such as the
    paper's may be measured there. Attribution maps get the areas under the deletion and insertion
    curves (`faithfulness`) on the first `map_images` test images, beside a random order's.

    Acc Eval trains a fresh classifier of the explained architecture on each method's reconstructions
    of the training split (settings `eval_settings`); with `keep_dir` those classifiers are saved.
    A split that streams from disk is never held in memory whole (see `acc_eval_of`).
    """
    chosen = build(methods or default_methods(explainer), explainer, dataset.train)
    pictures = reconstructors(chosen)
    measured = split_measures(explainer.scaled_classifier, pictures, dataset.test)
    result = {
        "layer_name": explainer.decoder_provenance["layer_name"],
        "layer_index": explainer.decoder_provenance["layer_index"],
        "alpha": explainer.decoder_provenance.get("alpha", 0.0),
        "classifier_test_accuracy": measured["accuracy"],
        "test_images": len(dataset.test),
        **{k: v for k, v in dataset.provenance().items() if k != "class_names"},
        "methods": [m.name for m in chosen],
    }
    if pictures:
        result.update({"rec_loss": measured["rec_loss"], "train_rec_loss": split_rec_losses(pictures, dataset.train),
                       "loop_loss": training_loop_losses(explainer, pictures), "agreement": measured["agreement"]})
    if with_acc_eval and pictures:
        result["acc_eval"] = {}
        result["eval_settings"] = eval_settings.provenance()
        for method, reconstructor in pictures.items():
            score, model = acc_eval_of(explainer, reconstructor, dataset, eval_settings)
            result["acc_eval"][method] = score
            if keep_dir:
                _save_eval_classifier(model, Path(keep_dir) / f"eval_{method}.h5", method, score,
                                      explainer, dataset, eval_settings)
    maps = [m for m in chosen if m.kind == "map"]
    if maps:
        result.update(map_scores(explainer, dataset.test, maps, map_images))
    for key in ("rec_loss", "train_rec_loss", "loop_loss", "agreement", "acc_eval"):
        if {"cladec", "refae"} <= set(result.get(key, {})):
            result[key]["difference"] = result[key]["cladec"] - result[key]["refae"]
    return result


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


def acc_eval_of(explainer, reconstructor, dataset, settings):
    """Acc Eval of one reconstructor on `dataset`: (accuracy, trained evaluation classifier).

    Splits held in memory are reconstructed once, which costs no more memory than their images and
    makes each epoch train the classifier alone (twice as fast as reconstructing in every step);
    splits that stream from disk are reconstructed batch by batch as training goes.
    """
    train, test = dataset.train, dataset.test
    if train.in_memory and test.in_memory:
        train, test = reconstructed(train, reconstructor), reconstructed(test, reconstructor)
        reconstructor = None
    return acc_eval_on(explainer.classifier, reconstructor, train, test, settings, explainer.pixel_range)


def reconstructed(split, reconstructor, batch_size=256):
    """An in-memory split whose images are replaced by their reconstructions."""
    return Split(split.labels, split.image_shape, images=predict(reconstructor, split.images, batch_size),
                 resize=split.resize)


def _save_eval_classifier(model, path, method, score, explainer, dataset, settings):
    provenance = {
        **artifacts.base_provenance("eval_classifier"),
        **dataset.provenance(),
        **settings.provenance(),
        "trained_on": f"{method} reconstructions",
        "layer_name": explainer.decoder_provenance["layer_name"],
        "classifier_digest": explainer.decoder_provenance["classifier_digest"],
        "metrics": {"test_accuracy": score},
    }
    artifacts.save_model(model, path, provenance, overwrite=settings.overwrite)
