"""The first run, in one process: a classifier, a ClaDec decoder and a RefAE for one layer, an
explanation grid and the paper's measures of that layer."""

import time
from pathlib import Path

from cladec_cli import artifacts
from cladec_cli.classifier import load_classifier, train_classifier
from cladec_cli.cladec import train_decoder
from cladec_cli.evaluate import evaluate
from cladec_cli.evaluate_report import write_result
from cladec_cli.explain import explanation_arrays, select, write_grid
from cladec_cli.explainer import load_explainer
from cladec_cli.refae import train_refae
from cladec_cli.report import REPORT, write_report


def demo_paths(out_dir, layer):
    """The files a demo writes in `out_dir`."""
    out_dir = Path(out_dir)
    return {"classifier": out_dir / "classifier.h5", "decoder": out_dir / f"cladec_L{layer}_a0.h5",
            "refae": out_dir / f"refae_L{layer}.h5", "grid": out_dir / f"explain_L{layer}.png",
            "metrics": out_dir / "metrics.json", "table": out_dir / "metrics.md", "report": out_dir / REPORT}


def run_demo(dataset, settings, out_dir, layer=-1, class_name=None, count=6, log=print):
    """Train the paper's classifier on `dataset`, a ClaDec decoder (alpha 0) and a RefAE for `layer`,
    draw `count` test images of `class_name` (or the first ones) and measure Rec. Loss, agreement and
    Acc Eval (evaluation classifiers trained with `settings` too). Every output is checked before the
    first model trains. Returns (the measures, {what: path})."""
    paths = demo_paths(out_dir, layer)
    for path in paths.values():
        artifacts.check_output(path, settings.overwrite)
    chosen = select(dataset.test, dataset.class_names, None, class_name, count)

    def step(what, work):
        started = time.time()
        result = work()
        log(f"demo: {what} ({time.time() - started:.1f} s)")
        return result

    step("trained the classifier", lambda: train_classifier(dataset, settings, paths["classifier"]))
    classifier, provenance = load_classifier(paths["classifier"])
    step(f"trained the ClaDec decoder of layer {layer}", lambda: train_decoder(
        classifier, provenance, dataset, layer, 0.0, settings, paths["decoder"]))
    step(f"trained the RefAE of layer {layer}", lambda: train_refae(
        classifier, provenance, dataset, layer, settings, paths["refae"]))
    explainer = load_explainer(paths["classifier"], paths["decoder"], paths["refae"])
    images, labels = dataset.test.subset(chosen).arrays()
    step("drew the explanation grid", lambda: write_grid(
        paths["grid"], explanation_arrays(explainer, images), dataset.class_names, labels,
        [f"test #{i}" for i in chosen], settings.overwrite))
    result = step("measured Rec. Loss, agreement and Acc Eval",
                  lambda: evaluate(explainer, dataset, settings, eval_bn_statistics=None))
    write_result(result, paths["metrics"], paths["table"], settings.overwrite)
    step("wrote the report page", lambda: write_report(out_dir, settings.overwrite))
    return result, paths
