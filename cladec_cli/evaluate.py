"""`evaluate`: every measure of one explained layer, for ClaDec and RefAE, as JSON and Markdown."""

from pathlib import Path

from cladec_cli import artifacts
from cladec_cli.metrics import acc_eval, agreement, rec_loss

METHODS = ("cladec", "refae")


def evaluate(explainer, dataset, eval_settings, keep_dir=None, with_acc_eval=True):
    """Rec. Loss, agreement and Acc Eval of ClaDec and RefAE on `dataset`'s test split.

    Acc Eval trains a fresh classifier of the explained architecture on each method's reconstructions
    of the training split (settings `eval_settings`); with `keep_dir` those classifiers are saved.
    """
    test_x, test_y = dataset.test.arrays()
    test_recs = explainer.reconstructions(test_x)
    test_pred = explainer.classify(test_x)
    result = {
        "layer_name": explainer.decoder_provenance["layer_name"],
        "layer_index": explainer.decoder_provenance["layer_index"],
        "alpha": explainer.decoder_provenance.get("alpha", 0.0),
        "classifier_test_accuracy": float((test_pred == test_y).mean()),
        "test_images": len(test_y),
        **{k: v for k, v in dataset.provenance().items() if k != "class_names"},
        "rec_loss": {m: rec_loss(test_x, test_recs[m]) for m in METHODS if m in test_recs},
        "agreement": {m: agreement(explainer.classify, test_x, test_recs[m], test_pred)
                      for m in METHODS if m in test_recs},
    }
    if with_acc_eval:
        train_x, train_y = dataset.train.arrays()
        train_recs = explainer.reconstructions(train_x)
        result["acc_eval"] = {}
        result["eval_settings"] = eval_settings.provenance()
        for method in test_recs:
            score, model = acc_eval(explainer.classifier, train_recs[method], train_y,
                                    test_recs[method], test_y, eval_settings)
            result["acc_eval"][method] = score
            if keep_dir:
                _save_eval_classifier(model, Path(keep_dir) / f"eval_{method}.h5", method, score,
                                      explainer, dataset, eval_settings)
    for key in ("rec_loss", "agreement", "acc_eval"):
        if key in result and len(result[key]) == 2:
            result[key]["difference"] = result[key]["cladec"] - result[key]["refae"]
    return result


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


def markdown_table(result):
    """The result as a small Markdown table in the paper's layout."""
    def cell(group, method, fmt):
        value = result.get(group, {}).get(method)
        return "-" if value is None else format(value, fmt)

    lines = [
        f"Layer {result['layer_name']} ({result['layer_index']}), alpha {result['alpha']:g}, "
        f"{result['dataset']} ({result['test_images']} test images, resize {result['resize']}); "
        f"classifier test accuracy {result['classifier_test_accuracy']:.4f}",
        "",
        "| measure | ClaDec | RefAE | difference |",
        "|---|---|---|---|",
    ]
    for group, label, fmt in (("rec_loss", "Rec. Loss (SSE per image)", ".2f"),
                              ("acc_eval", "Acc Eval", ".4f"), ("agreement", "Agreement", ".4f")):
        if group in result:
            lines.append(f"| {label} | {cell(group, 'cladec', fmt)} | {cell(group, 'refae', fmt)} | "
                         f"{cell(group, 'difference', '+' + fmt)} |")
    return "\n".join(lines) + "\n"
