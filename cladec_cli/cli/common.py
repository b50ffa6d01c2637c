"""Glue between parsed options and the API: settings, data from provenance, output, summaries."""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import click

from cladec_cli.errors import UsageError


def train_settings(opts, quiet):
    """TrainSettings from the shared training options."""
    from cladec_cli.training import TrainSettings

    return TrainSettings(epochs=opts["epochs"], batch_size=opts["batch_size"], lr=opts["lr"], seed=opts["seed"],
                         resume=opts["resume"], tensorboard=opts["tensorboard"],
                         overwrite=opts.get("overwrite", False), verbose=0 if quiet else "auto")


def pixel_range_for(opts, provenance=None, source="the classifier"):
    """--pixel-range, else the range `provenance` records, else 0,1; an explicit range that differs
    from the recorded one is refused."""
    recorded = (provenance or {}).get("pixel_range")
    given = opts.get("pixel_range")
    if given and recorded and given != recorded:
        raise UsageError(f"--pixel-range {given} differs from the range {recorded} recorded in {source}; "
                         f"leave the option out or pass --pixel-range {recorded}")
    return given or recorded or "0,1"


def explainer_pixel_range(opts, explainer, decoder_path):
    """Set opts' pixel range to the one the decoder was trained with, refusing an explicit other one."""
    opts["pixel_range"] = pixel_range_for(opts, {"pixel_range": explainer.pixel_range}, decoder_path)


def dataset_for(opts, provenance=None, image_shape=None, seed=0):
    """Load the dataset the options name, defaulting to what the classifier's provenance records."""
    from cladec_cli.data.datasets import load_dataset

    provenance = provenance or {}
    pixel_range = pixel_range_for(opts, provenance)
    name = opts.get("dataset") or provenance.get("dataset")
    if not name:
        raise UsageError("the classifier records no dataset; pass --dataset")
    same = name == provenance.get("dataset")
    limit = opts.get("limit") or (provenance.get("limit") or None if same else None)
    resize = opts.get("resize") or (provenance.get("resize") if same else None) or "bilinear"
    return load_dataset(name, data_dir=opts.get("data_dir"), resize=resize, limit=limit,
                        image_shape=image_shape, seed=seed, test_fraction=opts.get("test_fraction", 0.2),
                        pixel_range=pixel_range)


def dataset_slug(name):
    """A folder name for a dataset spec (`folder:/a/b` -> `b`)."""
    return Path(name.partition(":")[2]).stem if ":" in name else name


def default_out(out, provenance_or_name, filename, root="models"):
    """--out, or `<root>/<dataset>/<filename>`."""
    if out:
        return Path(out)
    name = provenance_or_name if isinstance(provenance_or_name, str) else provenance_or_name.get("dataset", "custom")
    return Path(root) / dataset_slug(name or "custom") / filename


@dataclass
class LayerJob:
    """What train-decoder and train-refae share: settings, classifier, layer, output and data."""

    settings: object
    classifier: object
    provenance: dict
    layer: object
    out: Path
    dataset: object


def layer_job(classifier_path, layer, opts, out, overwrite, quiet, filename):
    """Load the classifier, resolve the layer, name the output (`filename(layer)`) and load fitting data."""
    from cladec_cli.classifier import check_fits, load_classifier
    from cladec_cli.layers import resolve_layer

    settings = train_settings({**opts, "overwrite": overwrite}, quiet)
    classifier, provenance = load_classifier(classifier_path)
    target = resolve_layer(classifier, layer)
    out = default_out(out, opts["dataset"] or provenance, filename(target))
    dataset = dataset_for(opts, provenance, classifier.inputs[0].shape[1:], settings.seed)
    check_fits(classifier, dataset)
    return LayerJob(settings, classifier, provenance, target, out, dataset)


def report_saved(record, out, started, detail, quiet, as_json):
    """Summarise a saved model: path, seconds and a one-line description."""
    record["path"], record["seconds"] = str(out), round(time.time() - started, 1)
    report(record, [f"saved {out}: {detail} ({record['seconds']} s)"], quiet, as_json)


def alpha_tag(alpha):
    """0 -> '0', 0.99 -> '0.99' for file names."""
    return f"{float(alpha):g}"


def report(summary, lines, quiet, as_json):
    """Print the summary as JSON on stdout, or the human lines, unless quiet."""
    if as_json:
        from cladec_cli.artifacts import json_safe

        click.echo(json.dumps(json_safe(summary), indent=2, sort_keys=True, default=str))
    elif not quiet:
        for line in lines:
            click.echo(line)


def note(message, quiet=False):
    """A progress note on stderr."""
    if not quiet:
        click.echo(message, err=True)
