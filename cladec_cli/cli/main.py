"""`cladec` and its subcommands. Each command parses options and calls the library."""

import os
import sys
import time
import traceback
from pathlib import Path

import click

from cladec_cli import __version__, interrupts, runtime
from cladec_cli.cli import common
from cladec_cli.cli.options import (ATTRIBUTION_METHODS, CUSTOM_OBJECTS, SEED, NonEmptyPath, batch_size_option,
                                    bn_statistics_option, classifier_option, data_options, decoder_option,
                                    decoder_output_option, device_options, eval_bn_statistics_option,
                                    layer_convention_option, layer_option, lr_option, map_images_option,
                                    methods_option, model_loading_options, out_dir_option, output_options,
                                    rec_loss_option, report_options, stack_models_option, train_options, with_default)
from cladec_cli.custom_objects import load_custom_objects
from cladec_cli.errors import CladecError, TrainingError, UsageError, counted, for_cli

CONTEXT = {"auto_envvar_prefix": "CLADEC", "help_option_names": ["-h", "--help"], "max_content_width": 100}


class CladecGroup(click.Group):
    """A group that turns every failure into one line on stderr and an exit code (2 for usage errors)."""

    def main(self, args=None, prog_name=None, **extra):
        argv = sys.argv[1:] if args is None else list(args)
        self.argv = argv  # what this process was asked, for commands that start copies of themselves
        # --debug is the group's option: it counts before the command's name only.
        command_at = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), len(argv))
        debug = "--debug" in argv[:command_at]
        try:
            return super().main(args=argv, prog_name=prog_name or "cladec", standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.UsageError as e:
            hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
            # Click lists a missing choice's values one per line; one line says it as well.
            message, variable = " ".join(e.format_message().split()), _environment_variable(e)
            if variable:
                message = f"{message.rstrip('.')} (from the environment variable {variable})"
            self._fail(f"{message}{hint}", 2, debug)
        except (click.Abort, KeyboardInterrupt) as e:
            # Click turns Ctrl-C into Abort; training says what it kept.
            interrupt = e if isinstance(e, KeyboardInterrupt) else e.__cause__
            if not isinstance(interrupt, KeyboardInterrupt):
                self._fail("aborted", 130, debug)
            hint = getattr(interrupt, "cladec_hint", None)
            self._fail(for_cli(TrainingError(f"interrupted; {hint}")) if hint else "interrupted", 130, debug)
        except CladecError as e:
            self._fail(for_cli(e), e.exit_code, debug)
        except click.ClickException as e:
            self._fail(e.format_message(), e.exit_code, debug)
        except OSError as e:  # the file system refused: a folder not writable, a disk full
            self._fail(f"{str(e.filename) + ': ' if e.filename else ''}{e.strerror or e}", 1, debug)
        except MemoryError:
            self._fail("out of memory; try a smaller --batch-size or --limit", 1, debug)
        except Exception as e:  # anything else is a bug: one line unless --debug
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self._fail(f"unexpected {type(e).__name__}: {first} (rerun with --debug for details)", 1, debug)
        return None

    @staticmethod
    def _fail(message, code, debug):
        if debug:
            traceback.print_exc()
        click.echo(f"cladec: error: {message}", err=True)
        sys.exit(code)


def _environment_variable(error):
    """The environment variable that gave the bad value of a Click error, or None."""
    param, ctx = getattr(error, "param", None), error.ctx
    if param is None or ctx is None or ctx.get_parameter_source(param.name) != click.core.ParameterSource.ENVIRONMENT:
        return None
    # Click's order: the option's own variables, then the command's automatic one; an empty value counts as unset.
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
    if ctx.auto_envvar_prefix:
        names.append(f"{ctx.auto_envvar_prefix}_{param.name.upper()}")
    return next((name for name in names if os.environ.get(name)), None)


class CladecCommand(click.Command):
    """A command that loads TensorFlow quietly once its options have been parsed (under JAX, keeps compiled
    programs between processes: `runtime.keep_compiled_programs`), then the modules of --custom-objects."""

    def invoke(self, ctx):
        common.new_command()
        runtime.require_backend()
        runtime.keep_compiled_programs()
        if not ctx.find_root().params.get("debug"):
            runtime.import_tensorflow_quietly()
        for spec in ctx.meta.get(CUSTOM_OBJECTS, ()):
            load_custom_objects(spec)
        with interrupts.sigterm_as_interrupt():
            return super().invoke(ctx)


CladecGroup.command_class = CladecCommand


@click.group(cls=CladecGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="cladec")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug):
    """Explain what a layer of a Keras image classifier has learned by decoding its activations (ClaDec)."""


@cli.command("train-classifier", short_help="Train the paper's classifier and save it.")
@data_options(default_dataset="fashion_mnist")
@click.option("--arch", type=click.Choice(["paper", "tiny_imagenet"]), default=None,
              help=with_default("Classifier architecture: paper (Table I) or its wider TinyImageNet variant.",
                                "tiny_imagenet for that dataset, else paper"))
@bn_statistics_option("the classifiers trained", "for --epochs 0 the untrained network then sees normalised "
                      "activations")
@train_options()
@output_options("Checkpoint to write.", "models/<dataset>/classifier.h5")
@report_options
def train_classifier_cmd(out, overwrite, quiet, as_json, arch, bn_statistics, **opts):
    """Train the paper's classifier (Table I) and save it with its provenance."""
    from cladec_cli.classifier import train_classifier

    settings = common.train_settings({**opts, "overwrite": overwrite}, quiet)
    out = common.default_out(out, opts["dataset"], "classifier.h5")
    dataset = common.dataset_for(opts)
    arch = arch or ("tiny_imagenet" if opts["dataset"] == "tiny_imagenet" else "paper")
    started = time.time()
    _, record = train_classifier(dataset, settings, out, arch, bn_statistics)
    common.report_saved(record, out, started, f"test accuracy {record['metrics']['test_accuracy']:.4f}",
                        quiet, as_json)


@cli.command("demo", short_help="Classifier, decoder, RefAE, a grid and the numbers, in one go.")
@data_options(default_dataset="fashion_mnist")
@click.option("--layer", type=int, default=-1, show_default=True, help="Layer to explain (a negative index).")
@click.option("--class", "class_name", default=None,
              help=with_default("Show test images of this class (name or number).", "the first test images"))
@click.option("--count", type=int, default=6, show_default=True, help="Images in the grid.")
@train_options(epochs=3)
@click.option("--out-dir", type=NonEmptyPath(file_okay=False), default="demo", show_default=True,
              help="Folder for the models, the grid and the numbers.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@report_options
def demo_cmd(layer, class_name, count, out_dir, overwrite, quiet, as_json, **opts):
    """Train a classifier, a ClaDec decoder and a RefAE for one layer in one process, then draw the
    explanation grid and measure Rec. Loss, agreement and Acc Eval (evaluation classifiers train for
    --epochs too). Use --limit for a quick first look."""
    from cladec_cli.demo import run_demo
    from cladec_cli.evaluate_report import markdown_table

    settings = common.train_settings({**opts, "overwrite": overwrite}, quiet)
    dataset = common.dataset_for(opts)
    started = time.time()
    result, paths = run_demo(dataset, settings, out_dir, layer, class_name, count,
                             log=lambda message: common.note(message, quiet))
    summary = {"seconds": round(time.time() - started, 1), "paths": {k: str(v) for k, v in paths.items()},
               "metrics": result}
    common.report(summary, [markdown_table(result).rstrip(),
                            f"demo: explanation grid in {paths['grid']}; numbers in {paths['table']} and "
                            f"{paths['metrics']}; all of it on one page in {paths['report']} "
                            f"({summary['seconds']} s)"], quiet, as_json)


@cli.command("layers", short_help="List a classifier's explainable layers.")
@classifier_option
@model_loading_options
@layer_convention_option
@report_options
def layers_cmd(classifier_path, trust_model, layer_convention, quiet, as_json):
    """List the explainable layers of a classifier with their index (under --layer-convention) and
    output shape."""
    from cladec_cli.classifier import load_classifier
    from cladec_cli.layers import explainable_layers

    model, _ = load_classifier(classifier_path, trust_model)
    found = explainable_layers(model, layer_convention)
    width = max([30] + [len(layer.name) for layer in found])
    rows = [f"{'index':>6}  {'name':<{width}} shape"]
    rows += [f"{layer.index:>6}  {layer.name:<{width}} {'x'.join(map(str, layer.shape))}" for layer in found]
    common.report([{"index": l.index, "name": l.name, "shape": list(l.shape)} for l in found],
                  rows, quiet, as_json)


@cli.command("plot-curves", short_help="Plot learning curves recorded with train-decoder --curves.")
@click.argument("paths", nargs=-1, required=True, type=NonEmptyPath(dir_okay=False))
@click.option("--out", type=NonEmptyPath(dir_okay=False), required=True, help="PNG to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@report_options
def plot_curves_cmd(paths, out, overwrite, quiet, as_json):
    """Draw each decoder's test Rec. Loss and training-loop loss per epoch into one PNG."""
    from cladec_cli.plots import plot_curves

    saved = plot_curves(paths, out, overwrite)
    common.report({"path": str(saved), "models": list(paths)}, [f"saved {saved}"], quiet, as_json)


@cli.command("report", short_help="Turn a results folder into one self-contained HTML page.")
@click.argument("folder", type=NonEmptyPath(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace an existing report.html.")
@report_options
def report_cmd(folder, overwrite, quiet, as_json):
    """Write FOLDER/report.html: the folder's plots, tables, explanation grids and models, every image
    inline, so the page can be mailed or archived as one file."""
    from cladec_cli.report import write_report

    out, titles = write_report(folder, overwrite)
    sections = counted(len(titles), "section")
    common.report({"path": str(out), "sections": titles}, [f"saved {out} ({sections})"], quiet, as_json)


@cli.command("info", short_help="Print the provenance stored in a model file.")
@click.argument("path", type=NonEmptyPath(dir_okay=False))
@report_options
def info_cmd(path, quiet, as_json):
    """Print the provenance stored in a model file."""
    from cladec_cli.artifacts import inspect, unrecorded_kind

    provenance = inspect(path) or {"kind": unrecorded_kind(path)}
    rows = [f"{key:<18} {value}" for key, value in sorted(provenance.items())]
    common.report(provenance, rows, quiet, as_json)


@cli.command("train-decoder", short_help="Train ClaDec decoders for classifier layers (several in one pass).")
@classifier_option
@model_loading_options
@layer_option
@layer_convention_option
@decoder_output_option
@click.option("--curves", is_flag=True,
              help="Record each epoch's test Rec. Loss beside its training loss in the model file "
                   "(costs a pass over the test images an epoch); `cladec plot-curves` draws them.")
@click.option("--alpha", type=float, default=0.0, show_default=True,
              help="Weight of the classifier's loss: (1-alpha)*SSE + alpha*CE; 0 is plain ClaDec.")
@rec_loss_option
@click.option("--cache-codes", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Compute the frozen layer's activations once, not in every step.")
@data_options()
@train_options()
@output_options("Checkpoint to write, for one layer.", "models/<dataset>/cladec_L<index>_a<alpha>.h5")
@out_dir_option
@report_options
def train_decoder_cmd(classifier_path, layer, layer_convention, decoder_output, curves, alpha, rec_loss, cache_codes,
                      out, out_dir, overwrite, quiet, as_json, **opts):
    """Train a ClaDec decoder on a frozen classifier layer (or one per layer, in one pass; one after another
    under float16) and save it."""
    from cladec_cli.cladec import check_alpha, train_decoders

    check_alpha(alpha)
    job = common.layer_job(classifier_path, layer, opts, out, out_dir, overwrite, quiet,
                           lambda target: f"cladec_{common.layer_tag(target)}_a{common.alpha_tag(alpha)}.h5",
                           layer_convention)
    started = time.time()
    results = train_decoders(job.classifier, job.provenance, job.dataset, job.layers, alpha,
                             job.settings, job.outs, rec_loss, cache_codes, decoder_output, curves)
    common.report_layer_models(job, [record for _, record in results], started, f", alpha {alpha:g}", quiet, as_json)


@cli.command("train-refae", short_help="Train the reference autoencoder (RefAE) for a layer.")
@classifier_option
@model_loading_options
@layer_option
@layer_convention_option
@decoder_output_option
@rec_loss_option
@bn_statistics_option("the RefAE's encoder", "for a classifier with BatchNorm trained briefly, moving statistics "
                      "lag behind the weights and inflate the test Rec. Loss")
@data_options()
@train_options()
@output_options("Checkpoint to write, for one layer.", "models/<dataset>/refae_L<index>.h5")
@out_dir_option
@report_options
def train_refae_cmd(classifier_path, layer, layer_convention, decoder_output, rec_loss, bn_statistics, out, out_dir,
                    overwrite, quiet, as_json, **opts):
    """Train the reference autoencoder (same architecture, trained for reconstruction only) and save it;
    one per layer, in one pass (one after another under float16), for several layers."""
    from cladec_cli.refae import statistics_may_lag, train_refaes

    job = common.layer_job(classifier_path, layer, opts, out, out_dir, overwrite, quiet,
                           lambda target: f"refae_{common.layer_tag(target)}.h5", layer_convention)
    started = time.time()
    results = train_refaes(job.classifier, job.provenance, job.dataset, job.layers, job.settings,
                           job.outs, rec_loss, decoder_output, bn_statistics)
    common.report_layer_models(job, [record for _, record in results], started, "", quiet, as_json)
    for out, (refae, record) in zip(job.outs, results):
        if ratio := statistics_may_lag(refae, record):
            common.note(f"warning: {out}: test Rec. Loss {record['metrics']['test_rec_loss']:.2f} is {ratio:.1f}x "
                        f"the last training loss; its encoder's BatchNorm moving statistics may lag behind the "
                        f"weights: try --bn-statistics data")


@cli.command("explain", short_help="Draw original, RefAE and ClaDec images as a PNG grid.")
@classifier_option
@model_loading_options
@click.option("--decoder", "decoder_paths", required=True, multiple=True, type=NonEmptyPath(dir_okay=False),
              help="ClaDec decoder file (from train-decoder); repeat it to show several layers side by side.")
@click.option("--refae", "refae_paths", type=NonEmptyPath(dir_okay=False), multiple=True,
              help="RefAE file (from train-refae) for the reference column and the difference heat map; with "
                   "several --decoder, one per decoder in the same order.")
@click.option("--indices", default=None, help="Test images to show, e.g. 0,5,9.")
@click.option("--class", "class_name", default=None, help="Show images of this class (name or number).")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help=with_default("How many images: of --class, of the test images, or of the --images files.", 8))
@click.option("--images", "images_dir", type=NonEmptyPath(), default=None,
              help="Explain your own image files, a folder of them or one file, instead of test images.")
@click.option("--save-arrays", type=NonEmptyPath(dir_okay=False), default=None,
              help="Also write the images, reconstructions and predictions as .npz.")
@click.option("--prototypes", is_flag=True,
              help="Instead of single images, one row per class: the class's mean image and the decoding of "
                   "the mean code of its training images (up to 1,000 a class).")
@methods_option("Add a column beside ClaDec: ridge (a linear decoder of the layer, fitted on the training images) "
                "or an attribution map for the predicted class: gradcam (at the explained layer, or the last map "
                "before it), saliency (SmoothGrad) or occlusion; repeatable.", choices=("ridge", *ATTRIBUTION_METHODS))
@data_options()
@output_options("PNG grid to write.", "reports/<dataset>/explain_<layer>_a<alpha>.png, <layer> named as in the "
                                     "decoder's file")
@report_options
def explain_cmd(classifier_path, trust_model, decoder_paths, refae_paths, indices, class_name, count, images_dir,
                save_arrays, prototypes, method_names, out, overwrite, quiet, as_json, **opts):
    """Draw original | RefAE | ClaDec | |ClaDec - RefAE| for chosen images as a PNG grid."""
    from cladec_cli import artifacts
    from cladec_cli.classifier import check_fits
    from cladec_cli.explain import (blank_maps_note, explanation_arrays, images_to_explain, own_image_files,
                                    parse_indices, write_grid, write_layer_grid, write_prototype_grid)
    from cladec_cli.explainer import load_explainer
    from cladec_cli.methods import build

    if refae_paths and len(refae_paths) != len(decoder_paths):
        raise UsageError(f"{len(decoder_paths)} --decoder files but {len(refae_paths)} --refae files: give one "
                         "RefAE per decoder, in the same order, or none")
    if len(decoder_paths) > 1 and (prototypes or method_names or save_arrays):
        raise UsageError("several --decoder files draw the layers side by side; --prototypes, --method and "
                         "--save-arrays take one decoder")
    if prototypes and (images_dir or indices or class_name or method_names):
        raise UsageError("--prototypes shows every class; leave out --images, --indices, --class and --method")
    if out is not None:  # refused before any model loads (a default name needs their provenance)
        artifacts.check_output(out, overwrite, suffixes=(".png",))
    if save_arrays is not None:
        artifacts.check_output(save_arrays, overwrite, suffixes=(".npz",))
    refaes = list(refae_paths) or [None] * len(decoder_paths)
    explainers = [load_explainer(classifier_path, d, r, trust_model) for d, r in zip(decoder_paths, refaes)]
    ranges = {e.pixel_range for e in explainers}
    if len(ranges) > 1:
        raise UsageError(f"the --decoder files were trained with different pixel ranges ({', '.join(sorted(ranges))}); "
                         "show decoders of one pixel range side by side")
    explainer = explainers[0]
    common.explainer_pixel_range(opts, explainer, decoder_paths[0])
    out = common.default_out(out, opts["dataset"] or explainer.data_provenance,
                             common.decoder_file_name("explain", explainer.decoder_provenance, ".png"), root="reports")
    dataset, class_names = None, explainer.data_provenance.get("class_names") or []
    predicted_names = None  # the classifier's classes, where they are not the images'
    if prototypes or not images_dir or "ridge" in method_names:  # the ridge decoder is fitted on the training images
        dataset = common.explainer_dataset(opts, explainer, own_images=bool(images_dir), quiet=quiet)
        check_fits(explainer.classifier, dataset)
        predicted_names = common.predicted_class_names(explainer, dataset)
        class_names = dataset.class_names
    if prototypes:
        size, names = write_prototype_grid(out, explainer, dataset.train, class_names, overwrite, save_arrays,
                                           predicted_names)
        common.report({"path": str(out), "size": list(size), "classes": names, "arrays": save_arrays},
                      [f"saved {out} ({len(names)} class prototypes, {size[0]}x{size[1]} px)"], quiet, as_json)
        return
    images, labels, names = images_to_explain(
        explainer, dataset.test if dataset else None, class_names, images_dir,
        parse_indices(indices) if indices is not None else None, class_name, count, opts["resize"])
    if images_dir:
        skipped = [p.name for p in own_image_files(images_dir)[1]]
        if skipped:
            common.note(f"note: skipped {counted(len(skipped), 'file')} of no image kind in "
                        f"{images_dir}: {', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''}", quiet)
    if class_name is not None and count is not None and len(images) < count:
        common.note(f"warning: the test split has {counted(len(images), 'image')} of class {class_name}, fewer than "
                    f"--count {count}")
    summary = {"path": str(out), "images": names}
    if len(explainers) > 1:
        size = write_layer_grid(out, explainers, images, class_names, labels, names, overwrite, predicted_names)
        summary["layers"] = [e.decoder_provenance["layer_name"] for e in explainers]
        detail = f"{counted(len(images), 'row')}, {counted(len(explainers), 'layer')}"
    else:
        extra = build(method_names, explainer, dataset.train if dataset else None)
        arrays = explanation_arrays(explainer, images, extra)
        size = write_grid(out, arrays, class_names, labels, names, overwrite, save_arrays, extra,
                          predicted_names=predicted_names)
        blank = blank_maps_note(arrays, extra)
        if blank:
            common.note(blank, quiet)
        summary["arrays"] = save_arrays
        detail = counted(len(images), "row")
    common.report({**summary, "size": list(size)}, [f"saved {out} ({detail}, {size[0]}x{size[1]} px)"], quiet, as_json)


@cli.command("contrast", short_help="Decode an image's code on its way to another class.")
@classifier_option
@model_loading_options
@decoder_option()
@click.option("--index", type=click.IntRange(min=0), default=None, help="Test image to start from.")
@click.option("--image", "image_path", type=NonEmptyPath(dir_okay=False), default=None,
              help="Or an image file of your own to start from.")
@click.option("--to-class", "to_class", required=True, help="Class to move towards (name or number).")
@click.option("--steps", type=click.IntRange(min=2), default=8, show_default=True,
              help="Decoded steps, from the image's own code to the nearest training code of the class.")
@data_options()
@output_options("PNG strip to write.", "reports/<dataset>/contrast_<start>_to_<class>.png")
@report_options
def contrast_cmd(classifier_path, trust_model, decoder_path, index, image_path, to_class, steps, out, overwrite,
                 quiet, as_json, **opts):
    """Move an image's code at the explained layer step by step towards the nearest training code of
    another class, decode every step and label it with what the classifier makes of that code: what
    would have to change for the classifier to see that class."""
    from cladec_cli.classifier import check_fits
    from cladec_cli import artifacts
    from cladec_cli.contrast import contrast, write_strip
    from cladec_cli.explain import class_label, load_image_file
    from cladec_cli.explainer import load_explainer

    if (index is None) == (image_path is None):
        raise UsageError("give the image to start from with either --index or --image")
    explainer = load_explainer(classifier_path, decoder_path, None, trust_model)
    common.explainer_pixel_range(opts, explainer, decoder_path)
    dataset = common.explainer_dataset(opts, explainer, own_images=image_path is not None, quiet=quiet)
    check_fits(explainer.classifier, dataset)
    target = class_label(dataset.class_names, to_class)
    true_label = None  # known for a test image
    if image_path:
        image = load_image_file(image_path, explainer.image_shape, opts["resize"] or explainer.resize)
        start = common.file_slug(Path(image_path).stem)
    else:
        if index >= len(dataset.test):
            raise UsageError(f"--index {index} out of range: the test split has {counted(len(dataset.test), 'image')}")
        (images, labels), start = dataset.test.subset([index]).arrays(), f"test{index}"
        image, true_label = images[0], int(labels[0])
    out = common.default_out(out, opts["dataset"] or explainer.data_provenance,
                             f"contrast_{start}_to_{common.file_slug(dataset.class_names[target])}.png",
                             root="reports")
    artifacts.check_output(out, overwrite, suffixes=(".png",))
    path, nearest_image, seen_any = contrast(explainer, image, dataset.train, target, steps)
    predicted = int(explainer.classify(image[None])[0])
    if predicted == target:
        common.note(f"warning: the classifier already sees {start} as {dataset.class_names[target]}; the strip "
                    "shows what would change its mind only towards another --to-class")
    if not seen_any:
        common.note(f"warning: the classifier sees none of the training images of class "
                    f"{dataset.class_names[target]} as that class; the path leads to the nearest of them all")
    size = write_strip(out, image, path, nearest_image, dataset.class_names, predicted, target, overwrite, true_label)
    names = [dataset.class_names[c] for c in path.classes]
    summary = {"path": str(out), "size": list(size), "mix": path.mix.tolist(), "classes": names,
               "probabilities": path.probabilities.tolist()}
    first_target = next((m for m, c in zip(path.mix, path.classes) if c == target), None)
    seen = f"the classifier predicts {dataset.class_names[target]} from {first_target:.0%} of the way" \
        if first_target is not None else f"the classifier never predicts {dataset.class_names[target]}"
    common.report(summary, [f"saved {out} ({steps} steps; {seen})"], quiet, as_json)


@cli.command("sanity", short_help="Check that explanations depend on the classifier and resist input noise.")
@classifier_option
@model_loading_options
@decoder_option("ClaDec decoder file (from train-decoder): the layer and decoder to check.")
@methods_option(with_default("Attribution methods to check beside ClaDec; repeatable.", "all"),
                choices=ATTRIBUTION_METHODS)
@click.option("--count", type=click.IntRange(min=1), default=32, show_default=True, help="Test images to explain.")
@click.option("--noise", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True,
              help="Standard deviation of the input noise (pixels in [0, 1]).")
@click.option("--decoder-epochs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Epochs of the decoder retrained for each randomisation stage (stage 0 too).")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help=with_default("How many layers with weights to randomise, from the top.", "all"))
@data_options()
@batch_size_option
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for the randomisation and training.")
@click.option("--out-dir", type=NonEmptyPath(file_okay=False), default=None,
              help=with_default("Folder for sanity.json, sanity.md, sanity.png and the retrained decoders.",
                                "reports/<dataset>/sanity"))
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@report_options
def sanity_cmd(classifier_path, trust_model, decoder_path, method_names, count, noise, decoder_epochs, depth,
               batch_size, seed, out_dir, overwrite, quiet, as_json, **opts):
    """Cascading model randomisation (Adebayo et al. 2018): randomise the classifier's layers from the
    top, one more at each stage, and measure how similar (SSIM) each method's explanations stay to the
    unrandomised ones; ClaDec's decoder is retrained briefly at every stage. And input noise that leaves
    the prediction unchanged: how much each method's explanations move."""
    import dataclasses

    from cladec_cli import artifacts
    from cladec_cli.classifier import check_fits
    from cladec_cli.explainer import load_explainer
    from cladec_cli.sanity import run_sanity
    from cladec_cli.sanity_report import markdown, output_paths, write_outputs

    explainer = load_explainer(classifier_path, decoder_path, None, trust_model)
    common.explainer_pixel_range(opts, explainer, decoder_path)
    dataset = common.explainer_dataset(opts, explainer, quiet=quiet)
    check_fits(explainer.classifier, dataset)
    out_dir = Path(out_dir) if out_dir else Path(common.default_out(
        None, opts["dataset"] or explainer.data_provenance, "sanity", root="reports"))
    from cladec_cli import plots
    from cladec_cli.methods import METHODS
    from cladec_cli.sanity import stage_path, stages, structural_similarity

    structural_similarity(), plots.pyplot()  # both needed at the end: refuse now, not after training
    names = list(method_names or ATTRIBUTION_METHODS)
    for name in names:
        METHODS[name](explainer)  # e.g. a Grad-CAM that cannot be computed for this layer
    stage_files = [stage_path(out_dir, k) for k in range(len(stages(explainer.classifier)[:depth]) + 1)]
    for path in [*output_paths(out_dir).values(), *stage_files]:
        artifacts.check_output(path, overwrite)
    settings = common.train_settings({"epochs": decoder_epochs, "batch_size": batch_size, "lr": 2e-3, "seed": seed,
                                      "resume": False, "tensorboard": None, "overwrite": True}, quiet)
    images, _ = dataset.test.subset(list(range(min(count, len(dataset.test))))).arrays()
    result = run_sanity(explainer, dataset, images, names, settings, out_dir, noise,
                        log=lambda message: common.note(message, quiet), depth=depth)
    paths = write_outputs(result, out_dir, overwrite)
    common.report({**dataclasses.asdict(result), "paths": {k: str(v) for k, v in paths.items()}},
                  [markdown(result).rstrip(), f"saved {paths['table']}, {paths['json']} and {paths['plot']}"],
                  quiet, as_json)


@cli.command("evaluate", short_help="Measure explanation methods for a layer: Rec. Loss, Acc Eval, deletion.")
@classifier_option
@model_loading_options
@decoder_option("ClaDec decoder file: the explained layer.")
@click.option("--refae", "refae_path", default=None, type=NonEmptyPath(dir_okay=False), help="RefAE file.")
@methods_option(with_default("Methods to measure; repeatable. Those that decode pictures get Rec. Loss, agreement "
                             "and Acc Eval; attribution maps get deletion and insertion areas.",
                             "cladec, and refae when --refae is given"))
@map_images_option
@click.option("--eval-epochs", type=click.IntRange(min=0), default=64, show_default=True,
              help="Epochs of the evaluation classifiers (0 skips Acc Eval).")
@eval_bn_statistics_option
@click.option("--keep-eval-models", type=NonEmptyPath(file_okay=False), default=None,
              help="Save the evaluation classifiers in this folder.")
@data_options()
@batch_size_option
@lr_option
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed for the evaluation classifiers' initial weights and shuffling.")
@device_options()
@stack_models_option
@output_options("Metrics JSON to write; a .md table is written beside it.",
                "reports/<dataset>/metrics_<layer>_a<alpha>.json, <layer> named as in the decoder's file")
@report_options
def evaluate_cmd(classifier_path, trust_model, decoder_path, refae_path, method_names, map_images, eval_epochs,
                 eval_bn_statistics, keep_eval_models, batch_size, lr, seed, out, overwrite, quiet, as_json,
                 precision, deterministic, steps_per_execution, xla, **opts):
    """Measure explanation methods for one layer: Rec. Loss, Acc Eval and agreement of ClaDec, RefAE and
    a ridge decoder; deletion and insertion areas of Grad-CAM, SmoothGrad and occlusion."""
    from cladec_cli import artifacts
    from cladec_cli.classifier import check_fits
    from cladec_cli.evaluate import evaluate
    from cladec_cli.evaluate_report import write_result
    from cladec_cli.explainer import load_explainer

    if "refae" in method_names and not refae_path:
        raise UsageError("--method refae needs --refae with the RefAE file")
    settings = common.train_settings({"epochs": eval_epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                                      "resume": False, "tensorboard": None, "overwrite": overwrite,
                                      "trust_model": trust_model, "precision": precision,
                                      "deterministic": deterministic, "steps_per_execution": steps_per_execution,
                                      "xla": xla, "stack_models": opts.get("stack_models")}, quiet)
    explainer = load_explainer(classifier_path, decoder_path, refae_path, trust_model)
    common.explainer_pixel_range(opts, explainer, decoder_path)
    out = common.default_out(out, opts["dataset"] or explainer.data_provenance,
                             common.decoder_file_name("metrics", explainer.decoder_provenance, ".json"), root="reports")
    table_out = Path(out).with_suffix(".md")
    artifacts.check_output(out, overwrite, suffixes=(".json",))  # the table goes beside it as .md
    artifacts.check_output(table_out, overwrite)
    dataset = common.explainer_dataset(opts, explainer, quiet=quiet)
    check_fits(explainer.classifier, dataset)
    result = evaluate(explainer, dataset, settings, keep_eval_models, with_acc_eval=eval_epochs > 0,
                      methods=list(method_names) or None, map_images=map_images,
                      eval_bn_statistics=eval_bn_statistics)
    table = write_result(result, out, table_out, overwrite)
    common.report(result, [table.rstrip(), f"saved {out} and {table_out}"], quiet, as_json)


@cli.command("reproduce", short_help="Rerun the paper's Table II, III or IV.")
@click.argument("table", type=click.Choice(["table2", "table3", "table4"]), metavar="TABLE")
@click.option("--runs", type=click.IntRange(min=1), default=10, show_default=True, help="Runs per cell (seeds 0..N-1).")
@click.option("--eval-epochs", type=click.IntRange(min=0), default=None,
              help=with_default("Epochs of the Acc Eval classifiers (0 skips Acc Eval).", "--epochs"))
@data_options(default_dataset="fashion_mnist")
@train_options(resumable=False)
@click.option("--out", type=NonEmptyPath(file_okay=False), default=None,
              help=with_default("Folder for every artifact and the results.", "reports/<table>"))
@click.option("--shard", default=None,
              help=with_default("Do the K-th of N shares of the work (K/N, K from 0), e.g. one task of a Slurm job "
                                "array; then write the results with --report-only.",
                                "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT in a job array, else all of it"))
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run N shards as local processes (one GPU each when there are GPUs), then write the results.")
@methods_option(with_default("Methods to measure in every cell, repeatable: cladec always, refae trained only "
                             "when named; ridge and attribution maps measured beside them.", "cladec, refae"))
@bn_statistics_option("the classifiers trained", "for --epochs 0 the untrained network then sees normalised "
                      "activations")
@eval_bn_statistics_option
@stack_models_option
@click.option("--report-only", is_flag=True, help="Write the results from the finished cells; train nothing.")
@click.option("--lock-timeout", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="Seconds without a heartbeat after which another process's unit of work counts as abandoned "
                   "and is taken over (resuming from its backup); keep it well above the file system's "
                   "attribute caching (minutes on NFS). A unit of a process gone from this host is taken at once.")
@report_options
def reproduce_cmd(table, runs, eval_epochs, out, shard, workers, method_names, bn_statistics, eval_bn_statistics,
                  report_only, lock_timeout, quiet, as_json, **opts):
    """Run the paper's Table II (layers), III (alpha) or IV (classifier epochs); resumes when rerun.

    Several processes may work on one --out folder at once (shards of a job array, --workers, or the
    same command started twice): each model is trained once, by the process that locks it first.
    """
    from cladec_cli.reproduce import parse_shard, reproduce
    from cladec_cli.workers import run_shards, shard_from_environment

    if opts.get("distribute") == "multiworker":
        raise UsageError("reproduce trains many models, each on one process: spread them with --shard or "
                         "--workers; --distribute multiworker is for one large training")
    out = Path(out or Path("reports") / table)
    started = time.time()
    if workers > 1 and not report_only:
        if shard:
            raise UsageError("--workers starts its own shards; leave out --shard")
        run_shards(click.get_current_context().find_root().command.argv, workers)
    shard = parse_shard(shard) if shard else shard_from_environment()
    settings = common.train_settings(opts, quiet)
    settings.runtime()  # settings that do not go together are refused before anything is written
    if workers == 1 and not report_only:  # the device line before the first model's lines, as elsewhere
        settings.announce(settings.runtime().line(settings.batch_size))
    eval_settings = settings.with_epochs(settings.epochs if eval_epochs is None else eval_epochs)
    dataset = common.dataset_for(opts)
    summary = reproduce(table, dataset, settings, eval_settings, runs, out,
                        log=lambda message: common.note(message, quiet), shard=shard,
                        report_only=report_only or workers > 1, lock_timeout=lock_timeout,
                        methods=list(method_names) or None, bn_statistics=bn_statistics,
                        eval_bn_statistics=eval_bn_statistics)
    trained = f"{summary['trained']} models trained"
    if workers > 1 and not report_only:  # the shards trained; each said what in its own lines above
        summary = {**summary, "seconds": round(time.time() - started, 1), "trained": None, "workers": workers}
        trained = f"by {workers} workers, each listing above the models it trained"
    if "rows" not in summary:
        common.report(summary, [f"shard {shard[0]}/{shard[1]} of {out} done ({summary['seconds']} s, {trained}); "
                                "once every shard is done, reproduce --report-only writes the results "
                                "(--workers does so itself)"], quiet, as_json)
        return
    lines = [(out / "results.md").read_text().rstrip(),
             f"wrote {out}/results.json, results.csv, results.md ({summary['seconds']} s, {trained})"]
    common.report(summary, lines, quiet, as_json)


# --quick: a smoke run, e.g. on a GPU: a small stratified subset and one timed epoch.
QUICK_LIMIT, QUICK_EPOCHS, EPOCHS = 5000, 2, 3


@cli.command("benchmark")
@data_options(default_dataset="fashion_mnist")
@click.option("--epochs", type=click.IntRange(min=2), default=None,
              help=f"Epochs a run; the first is left out [default: {EPOCHS}, {QUICK_EPOCHS} with --quick].")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs of each side (cladec, plain Keras), taking turns.")
@click.option("--quick", is_flag=True,
              help=f"Smoke run: --limit {QUICK_LIMIT} and --epochs {QUICK_EPOCHS} unless given.")
@device_options()
@output_options("Results JSON to write; a .md table is written beside it.", "docs/results/speed-<device>.json")
@report_options
def benchmark_cmd(epochs, repeats, quick, out, overwrite, quiet, as_json, **opts):
    """Time each training command against plain Keras.

    Both sides run on the same device with the same settings, taking turns.
    """
    from cladec_cli.benchmark import run_benchmark
    from cladec_cli.benchmark_report import check_report_outputs, default_out, markdown_table, write_report

    if quick:
        opts["limit"] = opts["limit"] or QUICK_LIMIT
    epochs = epochs or (QUICK_EPOCHS if quick else EPOCHS)
    settings = common.train_settings({**opts, "epochs": epochs, "batch_size": 128, "lr": 2e-3, "seed": 0,
                                      "resume": False, "tensorboard": None}, quiet)
    out = Path(out) if out else default_out(settings.runtime().device)
    check_report_outputs(out, overwrite)
    dataset = common.dataset_for(opts)
    result = run_benchmark(dataset, settings, epochs, repeats, log=lambda message: common.note(message, quiet))
    json_path, table_path = write_report(result, out, overwrite)
    common.report(result, [markdown_table(result).rstrip(), f"saved {json_path} and {table_path}"], quiet, as_json)


def main():
    cli.main()
