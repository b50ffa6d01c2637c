"""Glue between parsed options and the API: settings, data from provenance, output, summaries."""

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import click

from cladec_cli.data.names import same_dataset
from cladec_cli.errors import UsageError


def train_settings(opts, quiet):
    """TrainSettings from the shared training options."""
    from cladec_cli.training import TrainSettings

    settings = TrainSettings(epochs=opts["epochs"], batch_size=opts["batch_size"], lr=opts["lr"], seed=opts["seed"],
                             resume=opts["resume"], tensorboard=opts["tensorboard"],
                             overwrite=opts.get("overwrite", False), trust_model=opts.get("trust_model", False),
                             verbose=0 if quiet else "auto",
                             precision=opts.get("precision") or "auto", deterministic=opts.get("deterministic"),
                             steps_per_execution=opts.get("steps_per_execution"), xla=opts.get("xla") or "auto",
                             announce=lambda line: announce_once(line, quiet),
                             backup_interval=opts.get("backup_interval", 60.0),
                             lr_schedule=opts.get("lr_schedule") or "cosine",
                             distribute=opts.get("distribute") or "auto",
                             stack_models=opts.get("stack_models") or False)
    if settings.distribute not in ("auto", "none"):
        settings.runtime()  # a multi-worker engine has to exist before TensorFlow runs anything
    return settings


_ANNOUNCED = set()


def new_command():
    """Forget what an earlier command in this process announced (several run in one test process)."""
    _ANNOUNCED.clear()


def announce_once(line, quiet=False):
    """Print the device line (and a warning when a GPU goes unused) once per command, on stderr; a
    training warning ("warning: ...") once, also with `quiet`. Parameters marked in the line read as options."""
    from cladec_cli import runtime
    from cladec_cli.errors import cli_text

    line = cli_text(line)
    if line in _ANNOUNCED:
        return
    _ANNOUNCED.add(line)
    if line.startswith("warning: "):
        note(line)
        return
    reason = runtime.missing_gpu_reason()
    if reason:
        note(f"warning: nvidia-smi lists a GPU but this job runs on the CPU: {reason}")
    note(line, quiet)


# The options that choose which images a model trains and is tested on, with their defaults.
SPLIT_OPTIONS = {"limit": ("--limit", None), "split_seed": ("--split-seed", 0), "test_fraction": ("--test-fraction", 0.2)}


def recorded_split(provenance):
    """What a classifier's provenance says about its split: limit, split seed and test fraction.

    Classifiers from before the split had its own seed chose it (and the --limit subset) with their
    training seed, and held out the default test fraction.
    """
    return {"limit": provenance.get("limit") or None,
            "split_seed": provenance.get("split_seed", provenance.get("seed", 0)),
            "test_fraction": provenance.get("test_fraction", 0.2)}


def split_choices(opts, provenance, same_dataset, source="the classifier"):
    """The limit, split seed and test fraction to load: the options, else those `provenance` (the record
    of `source`) names, else the defaults. An option that contradicts the record is refused: the data
    would not be the model's (with another split, its training images could end up among the test images)."""
    recorded = recorded_split(provenance) if same_dataset else {}
    chosen = {}
    for key, (option, default) in SPLIT_OPTIONS.items():
        given = opts.get(key)
        if given is not None and key in recorded and given != recorded[key]:
            theirs = "none" if recorded[key] is None else recorded[key]
            raise UsageError(f"{option} {given} differs from {source}'s {theirs}; leave {option} out "
                             f"to use {source}'s data")
        chosen[key] = given if given is not None else recorded.get(key, default)
    return chosen


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


def dataset_for(opts, provenance=None, image_shape=None, source="the classifier", quiet=False):
    """Load the dataset the options name, defaulting to what `provenance` (the record of `source`) names,
    fitted to `image_shape` (a model's input); a note on stderr says how, where the images change."""
    from cladec_cli.data.datasets import draws_test_split, fitting_note, holding_note, load_dataset
    from cladec_cli.data.names import DATASET_NAMES

    provenance = provenance or {}
    pixel_range = pixel_range_for(opts, provenance, source)
    name = opts.get("dataset") or provenance.get("dataset")
    if not name:
        raise UsageError(f"{source} records no dataset; pass --dataset: {', '.join(DATASET_NAMES[:-1])} or "
                         f"{DATASET_NAMES[-1]} (the images are fitted to the classifier's input)")
    kind, _, path = name.partition(":")
    if not opts.get("dataset") and kind in ("folder", "npz") and path and not Path(path).expanduser().exists():
        _refuse_missing_data(name, provenance, source)
    if opts.get("test_fraction") is not None and not draws_test_split(name):
        raise UsageError(f"{name} comes with its own test split, so --test-fraction would change nothing; it "
                         "applies to image folders without train/ and test/ sub-folders")
    same = same_dataset(name, provenance.get("dataset"))
    recorded_resize = provenance.get("resize") if same else None
    if opts.get("resize") and recorded_resize and opts["resize"] != recorded_resize:
        raise UsageError(f"--resize {opts['resize']} differs from {source}'s {recorded_resize}; leave --resize out "
                         f"to fit the images as {source}'s were")
    resize = opts.get("resize") or recorded_resize or "bilinear"
    dataset = load_dataset(name, data_dir=opts.get("data_dir"), resize=resize, image_shape=image_shape,
                           pixel_range=pixel_range, **split_choices(opts, provenance, same, source))
    for line in (fitting_note(dataset), holding_note(dataset)):
        if line:
            note(line, quiet)
    if dataset.limit and dataset.limit < dataset.n_classes:
        note(f"warning: --limit {dataset.limit} keeps fewer images than there are classes "
             f"({dataset.n_classes}): some classes then have none")
    return dataset


def _refuse_missing_data(name, provenance, source):
    """Refuse the data that `source`'s record names at a path that is not there, saying how to name them
    anew: with the options that fit them as the record says, which another name does not take from it."""
    where = "" if Path(name.partition(":")[2]).is_absolute() else \
        f" (relative to the folder it was trained in; this command runs in {Path.cwd()})"
    recorded = {**recorded_split(provenance), "resize": provenance.get("resize") or "bilinear"}
    choices = {**SPLIT_OPTIONS, "resize": ("--resize", "bilinear")}
    given = " ".join(f"{option} {recorded[key]}" for key, (option, default) in choices.items()
                     if recorded[key] != default)
    raise UsageError(f"{source} was trained on {name}, which is not there{where}; pass --dataset with where "
                     f"the data are now{f' and {given}, as it records' if given else ''}")


def explainer_dataset(opts, explainer, own_images=False, quiet=False):
    """The dataset for a loaded explainer: the options, else the data its models were trained on. With
    `own_images` (--image, --images), --resize fits those files, and the dataset keeps its own."""
    opts = {**opts, "resize": None} if own_images else opts
    dataset = dataset_for(opts, explainer.data_provenance, explainer.image_shape, explainer.data_source, quiet)
    trained_on = explainer.data_provenance.get("dataset")
    if trained_on and not own_images and not same_dataset(dataset.name, trained_on):
        note(f"note: the models were trained on {trained_on}; these are images of {dataset.name}", quiet)
    return dataset


def predicted_class_names(explainer, dataset):
    """The names of the classifier's classes where they are not those of `dataset`'s images (data other
    than the models were trained on; numbers where the record names none), else None."""
    own = list(explainer.data_provenance.get("class_names") or [])
    if same_dataset(dataset.name, explainer.data_provenance.get("dataset")) or own == list(dataset.class_names):
        return None
    return own


def dataset_slug(name):
    """A folder name for a dataset spec (`folder:/a/b` -> `b`)."""
    return Path(name.partition(":")[2]).stem if ":" in name else name


def file_slug(text):
    """`text` fit for a file name: runs of other characters than letters and digits become one '-'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-") or "x"


def default_out(out, provenance_or_name, filename, root="models"):
    """--out, or `<root>/<dataset>/<filename>`."""
    if out:
        return Path(out)
    name = provenance_or_name if isinstance(provenance_or_name, str) else provenance_or_name.get("dataset", "custom")
    return Path(root) / dataset_slug(name or "custom") / filename


@dataclass
class LayerJob:
    """What train-decoder and train-refae share: settings, classifier, layers, one output each, and data."""

    settings: object
    classifier: object
    provenance: dict
    layers: list
    outs: list
    dataset: object


def layer_specs(text):
    """`--layer` split at commas: '-1,-2' -> ['-1', '-2']."""
    specs = [part.strip() for part in str(text).split(",")]
    if not all(specs):
        raise UsageError(f"--layer {text!r} has an empty entry; give names or indices separated by commas")
    return specs


def layer_tag(layer):
    """How a layer appears in file names: L-2 under the blocks convention, its name under the layers one
    (whose indices would clash with the blocks names)."""
    return f"L{layer.index}" if layer.convention == "blocks" else layer.name.replace("/", "_")


def decoder_file_name(prefix, provenance, suffix):
    """`<prefix>_<layer>_a<alpha><suffix>` for the layer and alpha a decoder's `provenance` records, the
    layer named by `layer_tag` as the decoder's own file is."""
    from cladec_cli.explainer import layer_convention
    from cladec_cli.layers import ExplainableLayer

    layer = ExplainableLayer(provenance["layer_name"], provenance["layer_index"], (), layer_convention(provenance))
    return f"{prefix}_{layer_tag(layer)}_a{alpha_tag(provenance.get('alpha', 0))}{suffix}"


def layer_outputs(layers, out, out_dir, dataset, filename):
    """One output per layer: --out for a single layer, else `filename(layer)` in --out-dir or the default folder."""
    if out and out_dir:
        raise UsageError("--out and --out-dir cannot be used together")
    if out and len(layers) > 1:
        raise UsageError(f"--out names one file but --layer names {len(layers)} layers; use --out-dir")
    if out:
        return [Path(out)]
    return [Path(out_dir) / filename(layer) if out_dir else default_out(None, dataset, filename(layer))
            for layer in layers]


def refuse_another_classifiers(paths, classifier):
    """Refuse, before any work, outputs named by default that hold a model of another classifier than
    `classifier`: the usual remedy, --overwrite, would destroy it."""
    from cladec_cli.artifacts import read_provenance, weights_digest

    digest = None
    for path in (p for p in paths if p.is_file()):
        recorded = read_provenance(path).get("classifier_digest")
        digest = digest or weights_digest(classifier)
        if recorded and recorded != digest:
            raise UsageError(f"{path} already exists and holds a model of another classifier; name this one's with "
                             "--out or another --out-dir (--overwrite would replace the other classifier's)")


def layer_job(classifier_path, layer, opts, out, out_dir, overwrite, quiet, filename, convention="blocks"):
    """Load the classifier, resolve the layers, name the outputs (`filename(layer)`) and load fitting data."""
    from cladec_cli.classifier import check_fits, load_classifier
    from cladec_cli.layers import resolve_layers

    settings = train_settings({**opts, "overwrite": overwrite}, quiet)
    classifier, provenance = load_classifier(classifier_path, settings.trust_model)
    targets = resolve_layers(classifier, layer_specs(layer), convention)
    outs = layer_outputs(targets, out, out_dir, opts["dataset"] or provenance, filename)
    if not out and not overwrite:
        refuse_another_classifiers(outs, classifier)
    dataset = dataset_for(opts, provenance, classifier.inputs[0].shape[1:], quiet=quiet)
    check_fits(classifier, dataset)
    return LayerJob(settings, classifier, provenance, targets, outs, dataset)


def report_layer_models(job, records, started, detail, quiet, as_json):
    """Summarise the models of a layer job: the record of one, or a list with one record per layer."""
    if len(records) == 1:
        layer, record = job.layers[0], records[0]
        return report_saved(record, job.outs[0], started, f"layer {layer_label(layer)}{detail}, "
                            f"test Rec. Loss {record['metrics']['test_rec_loss']:.2f}", quiet, as_json)
    from cladec_cli.fused import how_trained

    seconds = round(time.time() - started, 1)
    lines = []
    for layer, out, record in zip(job.layers, job.outs, records):
        record["path"], record["seconds"] = str(out), seconds
        lines.append(f"saved {out}: layer {layer_label(layer)}{detail}, "
                     f"test Rec. Loss {record['metrics']['test_rec_loss']:.2f}")
    lines.append(f"trained {len(records)} models {how_trained(job.settings, len(records))} ({seconds} s)")
    report(records, lines, quiet, as_json)


def layer_label(layer):
    """'block5 (-2)', its index under the layer convention it was found by, where not the default blocks."""
    counted = "" if layer.convention == "blocks" else f" under --layer-convention {layer.convention}"
    return f"{layer.name} ({layer.index}{counted})"


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
