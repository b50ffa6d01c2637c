"""`cladec` and its subcommands. Each command parses options and calls the library."""

import sys
import time
import traceback
from pathlib import Path

import click

from cladec_cli import __version__, runtime
from cladec_cli.cli import common
from cladec_cli.cli.options import (classifier_option, data_options, layer_option, output_options,
                                    rec_loss_option, report_options, train_options)
from cladec_cli.errors import CladecError

CONTEXT = {"auto_envvar_prefix": "CLADEC", "help_option_names": ["-h", "--help"], "max_content_width": 100}


class CladecGroup(click.Group):
    """A group that turns every failure into one line on stderr and an exit code (2 for usage errors)."""

    def main(self, args=None, prog_name=None, **extra):
        argv = sys.argv[1:] if args is None else list(args)
        debug = "--debug" in argv[:argv.index("--")] if "--" in argv else "--debug" in argv
        try:
            return super().main(args=argv, prog_name=prog_name or "cladec", standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.UsageError as e:
            hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
            self._fail(f"{e.format_message()}{hint}", 2, debug)
        except click.Abort:
            self._fail("aborted", 130, debug)
        except KeyboardInterrupt:
            self._fail("interrupted; finished epochs are kept: rerun the same command with --resume", 130, debug)
        except CladecError as e:
            self._fail(str(e), e.exit_code, debug)
        except click.ClickException as e:
            self._fail(e.format_message(), e.exit_code, debug)
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


class CladecCommand(click.Command):
    """A command that loads TensorFlow quietly once its options have been parsed."""

    def invoke(self, ctx):
        if not ctx.find_root().params.get("debug"):
            runtime.import_tensorflow_quietly()
        return super().invoke(ctx)


CladecGroup.command_class = CladecCommand


@click.group(cls=CladecGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="cladec")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug):
    """Explain what a layer of a Keras image classifier has learned by decoding its activations (ClaDec)."""


@cli.command("train-classifier")
@data_options(default_dataset="fashion_mnist")
@click.option("--arch", type=click.Choice(["paper", "tiny_imagenet"]), default=None,
              help="Classifier architecture [default: tiny_imagenet for that dataset, else paper (Table I)].")
@train_options()
@output_options("Checkpoint to write [default: models/<dataset>/classifier.h5].")
@report_options
def train_classifier_cmd(out, overwrite, quiet, as_json, arch, **opts):
    """Train the paper's classifier (Table I) and save it with its provenance."""
    from cladec_cli.classifier import train_classifier

    settings = common.train_settings({**opts, "overwrite": overwrite}, quiet)
    out = common.default_out(out, opts["dataset"], "classifier.h5")
    dataset = common.dataset_for(opts, seed=settings.seed)
    arch = arch or ("tiny_imagenet" if opts["dataset"] == "tiny_imagenet" else "paper")
    started = time.time()
    _, record = train_classifier(dataset, settings, out, arch)
    common.report_saved(record, out, started, f"test accuracy {record['metrics']['test_accuracy']:.4f}",
                        quiet, as_json)


@cli.command("layers")
@classifier_option
@report_options
def layers_cmd(classifier_path, quiet, as_json):
    """List the explainable layers of a classifier with their paper-style index and output shape."""
    from cladec_cli.classifier import load_classifier
    from cladec_cli.layers import explainable_layers

    model, _ = load_classifier(classifier_path)
    found = explainable_layers(model)
    rows = [f"{'index':>6}  {'name':<30} shape"]
    rows += [f"{layer.index:>6}  {layer.name:<30} {'x'.join(map(str, layer.shape))}" for layer in found]
    common.report([{"index": l.index, "name": l.name, "shape": list(l.shape)} for l in found],
                  rows, quiet, as_json)


@cli.command("info")
@click.argument("path", type=click.Path(dir_okay=False))
@report_options
def info_cmd(path, quiet, as_json):
    """Print the provenance stored in a model file."""
    from cladec_cli.artifacts import inspect

    provenance = inspect(path)
    if not provenance:
        provenance = {"kind": "model without cladec provenance"}
    rows = [f"{key:<18} {value}" for key, value in sorted(provenance.items())]
    common.report(provenance, rows, quiet, as_json)


@cli.command("train-decoder")
@classifier_option
@layer_option
@click.option("--alpha", type=float, default=0.0, show_default=True,
              help="Weight of the classifier's loss: (1-alpha)*SSE + alpha*CE; 0 is plain ClaDec.")
@rec_loss_option
@click.option("--cache-codes", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Compute the frozen layer's activations once (alpha 0 only).")
@data_options()
@train_options()
@output_options("Checkpoint to write [default: models/<dataset>/cladec_L<index>_a<alpha>.h5].")
@report_options
def train_decoder_cmd(classifier_path, layer, alpha, rec_loss, cache_codes, out, overwrite, quiet, as_json, **opts):
    """Train a ClaDec decoder on a frozen classifier layer and save it."""
    from cladec_cli.cladec import check_alpha, train_decoder

    check_alpha(alpha)
    job = common.layer_job(classifier_path, layer, opts, out, overwrite, quiet,
                           lambda target: f"cladec_L{target.index}_a{common.alpha_tag(alpha)}.h5")
    started = time.time()
    _, record = train_decoder(job.classifier, job.provenance, job.dataset, job.layer.name, alpha, job.settings,
                              job.out, rec_loss, cache_codes)
    common.report_saved(record, job.out, started, f"layer {job.layer.name} ({job.layer.index}), alpha {alpha:g}, "
                        f"test Rec. Loss {record['metrics']['test_rec_loss']:.2f}", quiet, as_json)


@cli.command("train-refae")
@classifier_option
@layer_option
@rec_loss_option
@data_options()
@train_options()
@output_options("Checkpoint to write [default: models/<dataset>/refae_L<index>.h5].")
@report_options
def train_refae_cmd(classifier_path, layer, rec_loss, out, overwrite, quiet, as_json, **opts):
    """Train the reference autoencoder (same architecture, trained for reconstruction only) and save it."""
    from cladec_cli.refae import train_refae

    job = common.layer_job(classifier_path, layer, opts, out, overwrite, quiet,
                           lambda target: f"refae_L{target.index}.h5")
    started = time.time()
    _, record = train_refae(job.classifier, job.provenance, job.dataset, job.layer.name, job.settings, job.out,
                            rec_loss)
    common.report_saved(record, job.out, started, f"layer {job.layer.name} ({job.layer.index}), "
                        f"test Rec. Loss {record['metrics']['test_rec_loss']:.2f}", quiet, as_json)


@cli.command("explain")
@classifier_option
@click.option("--decoder", "decoder_path", required=True, type=click.Path(dir_okay=False),
              help="ClaDec decoder file (from train-decoder).")
@click.option("--refae", "refae_path", type=click.Path(dir_okay=False), default=None,
              help="RefAE file (from train-refae) for the reference column and the difference heat map.")
@click.option("--indices", default=None, help="Test images to show, e.g. 0,5,9.")
@click.option("--class", "class_name", default=None, help="Show images of this class (name or number).")
@click.option("--count", type=int, default=8, show_default=True, help="How many images with --class or by default.")
@click.option("--images", "images_dir", type=click.Path(file_okay=False), default=None,
              help="Explain your own image files from this folder instead of test images.")
@click.option("--save-arrays", type=click.Path(dir_okay=False), default=None,
              help="Also write the images, reconstructions and predictions as .npz.")
@data_options()
@output_options("PNG grid to write [default: reports/<dataset>/explain_L<index>_a<alpha>.png].")
@report_options
def explain_cmd(classifier_path, decoder_path, refae_path, indices, class_name, count, images_dir, save_arrays,
                out, overwrite, quiet, as_json, **opts):
    """Draw original | RefAE | ClaDec | |ClaDec - RefAE| for chosen images as a PNG grid."""
    from cladec_cli.classifier import check_fits
    from cladec_cli.explain import (explanation_arrays, load_image_folder, parse_indices, select,
                                    write_grid)
    from cladec_cli.explainer import load_explainer

    explainer = load_explainer(classifier_path, decoder_path, refae_path)
    common.explainer_pixel_range(opts, explainer, decoder_path)
    prov = explainer.decoder_provenance
    out = common.default_out(out, opts["dataset"] or explainer.classifier_provenance,
                             f"explain_L{prov['layer_index']}_a{common.alpha_tag(prov.get('alpha', 0))}.png",
                             root="reports")
    class_names = explainer.classifier_provenance.get("class_names") or []
    if images_dir:
        images, names = load_image_folder(images_dir, explainer.image_shape, opts["resize"] or explainer.resize)
        labels = None
    else:
        dataset = common.dataset_for(opts, explainer.classifier_provenance, explainer.image_shape)
        check_fits(explainer.classifier, dataset)
        class_names = dataset.class_names
        chosen = select(dataset.test, class_names, parse_indices(indices) if indices else None, class_name, count)
        images, labels = dataset.test.subset(chosen).arrays()
        names = [f"test #{i}" for i in chosen]
    arrays = explanation_arrays(explainer, images)
    size = write_grid(out, arrays, class_names, labels, names, overwrite, save_arrays)
    summary = {"path": str(out), "size": list(size), "images": names, "arrays": save_arrays}
    common.report(summary, [f"saved {out} ({len(images)} rows, {size[0]}x{size[1]} px)"], quiet, as_json)


@cli.command("evaluate")
@classifier_option
@click.option("--decoder", "decoder_path", required=True, type=click.Path(dir_okay=False), help="ClaDec decoder file.")
@click.option("--refae", "refae_path", required=True, type=click.Path(dir_okay=False), help="RefAE file.")
@click.option("--eval-epochs", type=int, default=64, show_default=True,
              help="Epochs of the evaluation classifiers (0 skips Acc Eval).")
@click.option("--keep-eval-models", type=click.Path(file_okay=False), default=None,
              help="Save the evaluation classifiers in this folder.")
@data_options()
@click.option("--batch-size", type=int, default=128, show_default=True, envvar="CLADEC_BATCH_SIZE")
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@output_options("Metrics JSON to write (a .md table is written beside it) "
                "[default: reports/<dataset>/metrics_L<index>_a<alpha>.json].")
@report_options
def evaluate_cmd(classifier_path, decoder_path, refae_path, eval_epochs, keep_eval_models, batch_size, lr, seed,
                 out, overwrite, quiet, as_json, **opts):
    """Rec. Loss, Acc Eval and agreement of ClaDec and RefAE for one layer."""
    from cladec_cli import artifacts
    from cladec_cli.classifier import check_fits
    from cladec_cli.evaluate import evaluate, markdown_table
    from cladec_cli.explainer import load_explainer

    settings = common.train_settings({"epochs": eval_epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                                      "resume": False, "tensorboard": None, "overwrite": overwrite}, quiet)
    explainer = load_explainer(classifier_path, decoder_path, refae_path)
    common.explainer_pixel_range(opts, explainer, decoder_path)
    prov = explainer.decoder_provenance
    out = common.default_out(out, opts["dataset"] or explainer.classifier_provenance,
                             f"metrics_L{prov['layer_index']}_a{common.alpha_tag(prov.get('alpha', 0))}.json",
                             root="reports")
    table_out = Path(out).with_suffix(".md")
    for path in (out, table_out):
        artifacts.check_output(path, overwrite)
    dataset = common.dataset_for(opts, explainer.classifier_provenance, explainer.image_shape, seed)
    check_fits(explainer.classifier, dataset)
    result = evaluate(explainer, dataset, settings, keep_eval_models, with_acc_eval=eval_epochs > 0)
    table = markdown_table(result)
    artifacts.write_json(out, result, overwrite)
    artifacts.write_text(table_out, table, overwrite)
    common.report(result, [table.rstrip(), f"saved {out} and {table_out}"], quiet, as_json)


@cli.command("reproduce")
@click.argument("table", type=click.Choice(["table2", "table3", "table4"]))
@click.option("--runs", type=click.IntRange(min=1), default=10, show_default=True, help="Runs per cell (seeds 0..N-1).")
@click.option("--eval-epochs", type=int, default=None, help="Epochs of the Acc Eval classifiers [default: --epochs].")
@data_options(default_dataset="fashion_mnist")
@train_options()
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for every artifact and the results [default: reports/<table>].")
@report_options
def reproduce_cmd(table, runs, eval_epochs, out, quiet, as_json, **opts):
    """Run the paper's Table II (layers), III (alpha) or IV (classifier epochs); resumes when rerun."""
    from cladec_cli.reproduce import reproduce

    settings = common.train_settings(opts, quiet)
    eval_settings = settings.with_epochs(settings.epochs if eval_epochs is None else eval_epochs)
    dataset = common.dataset_for(opts, seed=0)
    out = Path(out or Path("reports") / table)
    summary = reproduce(table, dataset, settings, eval_settings, runs, out,
                        log=lambda message: common.note(message, quiet))
    lines = [(out / "results.md").read_text().rstrip(),
             f"wrote {out}/results.json, results.csv, results.md ({summary['seconds']} s, "
             f"{summary['trained']} models trained)"]
    common.report(summary, lines, quiet, as_json)


def main():
    cli.main()
