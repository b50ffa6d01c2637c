"""Options shared by several commands, each defined once."""

import click

from cladec_cli.data.names import PIXEL_RANGES, RESIZE_MODES


def compose(*decorators):
    """Apply several Click decorators as one."""
    def apply(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func
    return apply


def pixel_range_option(inherited=False):
    """--pixel-range: the range of pixel values the classifier takes (data stay in [0, 1])."""
    default = "the classifier's, else 0,1" if inherited else "0,1"
    return click.option("--pixel-range", type=click.Choice(PIXEL_RANGES), default=None,
                        help="Pixel values the classifier expects, e.g. -1,1 for MobileNetV2 or 0,255 for "
                             f"EfficientNet; reconstructions stay in [0, 1] [default: {default}].")


def data_options(default_dataset=None):
    """--dataset, --data-dir, --limit, --resize, --test-fraction, --pixel-range."""
    hint = "" if default_dataset else " [default: the classifier's]"
    return compose(
        click.option("--dataset", default=default_dataset, show_default=bool(default_dataset),
                     help="fashion_mnist, mnist, tiny_imagenet, folder:PATH or npz:PATH." + hint),
        click.option("--data-dir", type=click.Path(file_okay=False), envvar="CLADEC_DATA_DIR",
                     help="Folder with the dataset's files (else Keras' cache, then system folders)."),
        click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="Use a class-stratified subset of at most N images per split." + hint),
        click.option("--resize", type=click.Choice(RESIZE_MODES), default=None,
                     help="How images are fitted to the model's input [default: bilinear]." + hint),
        click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
                     show_default=True, help="Share held out for testing by folder: datasets without a test/ split."),
        pixel_range_option(inherited=not default_dataset),
    )


def train_options(epochs=64):
    """--epochs, --batch-size, --lr, --seed, --resume, --tensorboard."""
    return compose(
        click.option("--epochs", type=int, default=epochs, show_default=True, help="Training epochs (0: untrained)."),
        click.option("--batch-size", type=int, default=128, show_default=True, envvar="CLADEC_BATCH_SIZE"),
        click.option("--lr", type=float, default=2e-3, show_default=True,
                     help="Initial Adam learning rate, cosine-decayed to 0 over the run."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights, shuffling and subsets."),
        click.option("--resume", is_flag=True, help="Continue an interrupted run from its last finished epoch."),
        click.option("--tensorboard", type=click.Path(file_okay=False), default=None,
                     help="Write TensorBoard logs to this folder."),
    )


def output_options(help_text):
    """--out, --overwrite."""
    return compose(
        click.option("--out", type=click.Path(dir_okay=False), default=None, help=help_text),
        click.option("--overwrite", is_flag=True, help="Replace an existing output file."),
    )


report_options = compose(
    click.option("--quiet", "-q", is_flag=True, help="Print no progress and no summary."),
    click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout."),
)

classifier_option = click.option("--classifier", "classifier_path", required=True,
                                 type=click.Path(dir_okay=False), help="Classifier model file (.h5 or .keras).")
layer_option = click.option("--layer", default="-1", show_default=True,
                            help="Layer to explain: a name or a negative index (-1 logits, -2 last conv block, ...).")
rec_loss_option = click.option("--rec-loss", type=click.Choice(["sse", "bce"]), default="sse", show_default=True,
                               help="Training reconstruction loss (bce as the paper used for MNIST).")
