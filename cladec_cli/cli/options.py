"""Options shared by several commands, each defined once."""

import click

from cladec_cli.data.names import PIXEL_RANGES, RESIZE_MODES
from cladec_cli.distribute import DISTRIBUTIONS
from cladec_cli.runtime import PRECISIONS

CLASSIFIERS = "the classifier's"
# The explanation methods (cladec_cli.methods.DECODINGS and ATTRIBUTIONS, named here so that parsing
# options needs no Keras).
DECODING_METHODS = ("cladec", "refae", "ridge")
ATTRIBUTION_METHODS = ("gradcam", "saliency", "occlusion")


class Seed(click.ParamType):
    """A seed as NumPy and Keras take it: a whole number from 0 to 2**32 - 1 (a range Click would print in
    every seed option's help)."""

    name = "integer"

    def convert(self, value, param, ctx):
        try:
            seed = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if not 0 <= seed < 2**32:
            self.fail(f"{seed} is outside 0 to {2**32 - 1}", param, ctx)
        return seed


SEED = Seed()


class NonEmptyPath(click.Path):
    """click.Path that refuses an empty value, which would otherwise stand for the current folder."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("is empty; give a path", param, ctx)
        return super().convert(value, param, ctx)


class ModelPath(NonEmptyPath):
    """A model file: TensorFlow's other formats (a SavedModel folder, a checkpoint) are refused saying what
    they are and what to do (`artifacts.foreign_format`)."""

    def __init__(self):
        super().__init__(dir_okay=False)

    def convert(self, value, param, ctx):
        from cladec_cli.artifacts import foreign_format

        if isinstance(value, str) and value.strip() and (foreign := foreign_format(value)):
            self.fail(foreign, param, ctx)
        return super().convert(value, param, ctx)


def compose(*decorators):
    """Apply several Click decorators as one."""
    def apply(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func
    return apply


def with_default(text, default):
    """Help text with its default in Click's own form, for defaults that Click cannot show itself."""
    return f"{text}  [default: {default}]"


def pixel_range_option(inherited=False):
    """--pixel-range: the range of pixel values the classifier takes (data stay in [0, 1])."""
    return click.option("--pixel-range", type=click.Choice(PIXEL_RANGES), default=None,
                        help=with_default("Pixel values the classifier expects, e.g. -1,1 for MobileNetV2 or 0,255 "
                                          "for EfficientNet; reconstructions stay in [0, 1].",
                                          f"{CLASSIFIERS}, else 0,1" if inherited else "0,1"))


def data_options(default_dataset=None):
    """--dataset, --data-dir, --limit, --resize, --split-seed, --test-fraction, --pixel-range.

    Commands that make a classifier from data (`default_dataset` given) have fixed defaults; the
    others default to what the classifier records.
    """
    def default(fixed, inherited=CLASSIFIERS):
        return inherited if default_dataset is None else fixed

    return compose(
        click.option("--dataset", default=default_dataset,
                     help=with_default("Dataset: fashion_mnist, mnist, tiny_imagenet, folder:PATH or npz:PATH.",
                                       default(default_dataset))),
        click.option("--data-dir", type=NonEmptyPath(file_okay=False), envvar="CLADEC_DATA_DIR",
                     help="Folder with the dataset's files, searched before Keras' cache and system folders."),
        click.option("--limit", type=click.IntRange(min=1), default=None,
                     help=with_default("Keep a class-stratified subset of at most N images of each split.",
                                       default("all images"))),
        click.option("--resize", type=click.Choice(RESIZE_MODES), default=None,
                     help=with_default("How images are fitted to the model's input.",
                                       default("bilinear", f"{CLASSIFIERS}, else bilinear"))),
        click.option("--split-seed", type=SEED, default=None,
                     help=with_default("Seed that picks the --limit subset and the test images of folder: datasets "
                                       "without train/ and test/.", default(0))),
        click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
                     help=with_default("Share of each class held out for testing in folder: datasets without "
                                       "train/ and test/.", default(0.2))),
        pixel_range_option(inherited=not default_dataset),
    )


batch_size_option = click.option("--batch-size", type=int, default=128, show_default=True, envvar="CLADEC_BATCH_SIZE",
                                 help="Images per training step.")
lr_option = click.option("--lr", type=float, default=2e-3, show_default=True,
                         help="Initial Adam learning rate, cosine-decayed to 0 over the run.")


def device_options():
    """--precision, --deterministic/--no-deterministic, --steps-per-execution, --xla."""
    return compose(
        click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                     help="Compute precision; auto is bfloat16 on GPUs of compute capability 8.0 or higher, "
                          "float16 on older GPUs and float32 on CPUs. Variables and saved models stay float32."),
        click.option("--deterministic/--no-deterministic", default=None,
                     help="Use deterministic kernels, so one seed gives the same weights [default: on for CPUs, "
                          "off for GPUs]."),
        click.option("--steps-per-execution", type=click.IntRange(min=1), default=None,
                     help="Training steps run per call from the host [default: 64 on GPUs; on CPUs 16 under "
                          "TensorFlow, else 1]."),
        click.option("--xla", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
                     help="Compile training steps with XLA; auto is on for GPUs and off for CPUs, and under "
                          "TensorFlow off with --deterministic, under which Keras compiles without XLA."),
    )


stack_models_option = click.option(
    "--stack-models/--no-stack-models", default=False, show_default=True,
    help="Train the Acc Eval classifiers that train together as one model with stacked weights "
         "(jax.vmap; Keras' JAX backend only).")


def train_options(epochs=64, resumable=True):
    """--epochs, --batch-size, --lr, --seed, --resume, --tensorboard and the device options. A command that
    always resumes (`resumable` False) takes --resume unlisted, as a no-op, for scripts that pass it."""
    resume = click.option("--resume", is_flag=True, hidden=not resumable,
                          help="Continue an interrupted run from its last saved epoch.")
    return compose(
        click.option("--epochs", type=int, default=epochs, show_default=True,
                     help="Training epochs; 0 saves the untrained model."),
        batch_size_option,
        lr_option,
        click.option("--lr-schedule", type=click.Choice(["cosine", "constant"]), default="cosine",
                     show_default=True, help="How the learning rate moves: cosine decays --lr to 0 over all epochs, "
                                             "constant keeps Adam at --lr throughout (Keras' default is 1e-3)."),
        click.option("--seed", type=SEED, default=0, show_default=True,
                     help="Seed for the initial weights and the shuffling (the data split has --split-seed)."),
        resume,
        click.option("--backup-interval", type=click.FloatRange(min=0), default=60.0, show_default=True,
                     help="Seconds between saves of the resumable backup, made at the end of an epoch; 0 saves "
                          "every epoch."),
        click.option("--tensorboard", type=NonEmptyPath(file_okay=False), default=None,
                     help="Write TensorBoard logs to this folder (models trained one after another: a "
                          "subfolder each, named after its file)."),
        click.option("--distribute", type=click.Choice(DISTRIBUTIONS), default="auto", show_default=True,
                     envvar="CLADEC_DISTRIBUTE",
                     help="Spread one training over this machine's GPUs (mirrored) or over several machines "
                          "(multiworker: TF_CONFIG or a Slurm job step); --batch-size is the global batch. "
                          "auto is none."),
        device_options(),
    )


def output_options(help_text, default):
    """--out, --overwrite."""
    return compose(
        click.option("--out", type=NonEmptyPath(dir_okay=False), default=None, help=with_default(help_text, default)),
        click.option("--overwrite", is_flag=True, help="Replace an existing output file."),
    )


report_options = compose(
    click.option("--quiet", "-q", is_flag=True, help="Print no progress and no summary."),
    click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout."),
)

classifier_option = click.option("--classifier", "classifier_path", required=True,
                                 type=ModelPath(), help="Classifier model file (.h5 or .keras).")
layer_option = click.option("--layer", default="-1", show_default=True,
                            help="Layer to explain: a name or a negative index (-1 logits, -2 last conv block, ...); "
                                 "several separated by commas (-1,-2,-3,-4) train one model each in one pass "
                                 "(one after another under float16).")
layer_convention_option = click.option(
    "--layer-convention", type=click.Choice(["blocks", "layers"]), default="blocks", show_default=True,
    help="How --layer indices count: blocks (a conv, its BatchNorm and activation count once) or layers "
         "(every layer with an output of its own, pre-activation and BatchNorm outputs too; plumbing such as "
         "Flatten, Dropout or Reshape still left out).")
out_dir_option = click.option("--out-dir", type=NonEmptyPath(file_okay=False), default=None,
                              help="Folder for the models of several layers, under their usual names "
                                   "[default: models/<dataset>].")
decoder_output_option = click.option(
    "--decoder-output", type=click.Choice(["sigmoid", "relu"]), default="sigmoid", show_default=True,
    help="The decoder's last activation: sigmoid (reconstructions in [0, 1]) or relu, as Table I draws "
         "every deconvolution.")
rec_loss_option = click.option("--rec-loss", type=click.Choice(["sse", "bce"]), default="sse", show_default=True,
                               help="Training reconstruction loss (bce as the paper used for MNIST).")
CUSTOM_OBJECTS = "custom_objects"  # where --custom-objects leaves its modules for the command to import


def _keep_custom_objects(ctx, param, specs):
    ctx.meta[CUSTOM_OBJECTS] = specs


model_loading_options = compose(
    click.option("--trust-model", is_flag=True,
                 help="Load model files with Lambda layers, which run code stored in the file."),
    click.option("--custom-objects", metavar="MODULE", multiple=True, expose_value=False,
                 callback=_keep_custom_objects,
                 help="A Python module (a name importable from here, or a .py file) that defines the model's "
                      "custom layers or functions: imported before models are loaded (it runs its code). "
                      "Repeatable."),
)


def decoder_option(help_text="ClaDec decoder file (from train-decoder)."):
    """--decoder: one ClaDec decoder file."""
    return click.option("--decoder", "decoder_path", required=True, type=NonEmptyPath(dir_okay=False), help=help_text)


def methods_option(help_text, choices=DECODING_METHODS + ATTRIBUTION_METHODS):
    """--method: explanation methods, repeatable."""
    return click.option("--method", "method_names", multiple=True, type=click.Choice(choices), help=help_text)


def bn_statistics_option(whose, note, flag="--bn-statistics", over="the training images"):
    """--bn-statistics (or `flag`): where the inference statistics of `whose` BatchNorm layers come from."""
    return click.option(
        flag, type=click.Choice(["moving", "data"]), default="moving", show_default=True,
        help=f"BatchNorm's inference statistics of {whose}: moving (as training leaves them) or data (mean and "
             f"variance over {over}, computed once training ends; {note}).")
eval_bn_statistics_option = bn_statistics_option(
    "the Acc Eval classifiers", "for a classifier whose BatchNorm momentum is high, as Keras' default 0.99, whose "
    "moving statistics lag after a short training; it needs the data held in memory", flag="--eval-bn-statistics",
    over="the reconstructions each learned from")
map_images_option = click.option(
    "--map-images", type=click.IntRange(min=1), default=256, show_default=True,
    help="Test images on which attribution methods' deletion and insertion curves are measured.")
