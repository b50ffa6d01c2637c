"""Glue between parsed options and the API: settings, data from provenance, output, summaries."""

import json
from pathlib import Path

import click

from cladec_cli.errors import UsageError


def train_settings(opts, quiet):
    """TrainSettings from the shared training options."""
    from cladec_cli.training import TrainSettings

    return TrainSettings(epochs=opts["epochs"], batch_size=opts["batch_size"], lr=opts["lr"], seed=opts["seed"],
                         resume=opts["resume"], tensorboard=opts["tensorboard"],
                         overwrite=opts.get("overwrite", False), verbose=0 if quiet else "auto")


def dataset_for(opts, provenance=None, image_shape=None, seed=0):
    """Load the dataset the options name, defaulting to what the classifier's provenance records."""
    from cladec_cli.data.datasets import load_dataset

    provenance = provenance or {}
    name = opts.get("dataset") or provenance.get("dataset")
    if not name:
        raise UsageError("the classifier records no dataset; pass --dataset")
    same = name == provenance.get("dataset")
    limit = opts.get("limit") or (provenance.get("limit") or None if same else None)
    resize = opts.get("resize") or (provenance.get("resize") if same else None) or "bilinear"
    return load_dataset(name, data_dir=opts.get("data_dir"), resize=resize, limit=limit,
                        image_shape=image_shape, seed=seed, test_fraction=opts.get("test_fraction", 0.2))


def dataset_slug(name):
    """A folder name for a dataset spec (`folder:/a/b` -> `b`)."""
    return Path(name.partition(":")[2]).stem if ":" in name else name


def default_out(out, provenance_or_name, filename, root="models"):
    """--out, or `<root>/<dataset>/<filename>`."""
    if out:
        return Path(out)
    name = provenance_or_name if isinstance(provenance_or_name, str) else provenance_or_name.get("dataset", "custom")
    return Path(root) / dataset_slug(name or "custom") / filename


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
