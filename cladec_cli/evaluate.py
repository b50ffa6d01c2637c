"""`evaluate`: every measure of one explained layer, for ClaDec and RefAE, as JSON and Markdown."""

from pathlib import Path

from cladec_cli import artifacts
from cladec_cli.data.split import Split
from cladec_cli.metrics import acc_eval_on, split_measures, split_rec_losses
from cladec_cli.training import predict

def evaluate(explainer, dataset, eval_settings, keep_dir=None, with_acc_eval=True):
    """Rec. Loss, agreement and Acc Eval of ClaDec and RefAE on `dataset`'s test split, and Rec. Loss on
    its training split too (the models in inference mode), since training-loop figures such as the
    paper's may be measured there.

    Acc Eval trains a fresh classifier of the explained architecture on each method's reconstructions
    of the training split (settings `eval_settings`); with `keep_dir` those classifiers are saved.
    A split that streams from disk is never held in memory whole (see `acc_eval_of`).
    """
    reconstructors = explainer.reconstructors
    measured = split_measures(explainer.scaled_classifier, reconstructors, dataset.test)
    result = {
        "layer_name": explainer.decoder_provenance["layer_name"],
        "layer_index": explainer.decoder_provenance["layer_index"],
        "alpha": explainer.decoder_provenance.get("alpha", 0.0),
        "classifier_test_accuracy": measured["accuracy"],
        "test_images": len(dataset.test),
        **{k: v for k, v in dataset.provenance().items() if k != "class_names"},
        "rec_loss": measured["rec_loss"],
        "train_rec_loss": split_rec_losses(reconstructors, dataset.train),
        "loop_loss": training_loop_losses(explainer),
        "agreement": measured["agreement"],
    }
    if with_acc_eval:
        result["acc_eval"] = {}
        result["eval_settings"] = eval_settings.provenance()
        for method, reconstructor in reconstructors.items():
            score, model = acc_eval_of(explainer, reconstructor, dataset, eval_settings)
            result["acc_eval"][method] = score
            if keep_dir:
                _save_eval_classifier(model, Path(keep_dir) / f"eval_{method}.h5", method, score,
                                      explainer, dataset, eval_settings)
    for key in ("rec_loss", "train_rec_loss", "loop_loss", "agreement", "acc_eval"):
        if key in result and len(result[key]) == 2:
            result[key]["difference"] = result[key]["cladec"] - result[key]["refae"]
    return result


def training_loop_losses(explainer):
    """Each model's loss in its last training epoch, as Keras reported it while training (its own loss:
    the Rec. Loss for alpha 0, else the weighted sum): {method: loss}, for the models that recorded one."""
    recorded = {"cladec": explainer.decoder_provenance, "refae": explainer.refae_provenance}
    losses = {m: (p or {}).get("metrics", {}).get("train_loss") for m, p in recorded.items()}
    return {m: loss for m, loss in losses.items() if loss is not None and m in explainer.reconstructors}


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
