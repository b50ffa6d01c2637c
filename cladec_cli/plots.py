"""Plots of recorded results (matplotlib, PNG): learning curves of decoders trained with `--curves`."""

from pathlib import Path

from cladec_cli import artifacts
from cladec_cli.errors import UsageError


def curve_of(path):
    """(label, curve) of a model file trained with curves: its recorded epochs, training-loop loss and
    test Rec. Loss."""
    provenance = artifacts.read_provenance(path)
    curve = (provenance.get("metrics") or {}).get("curve")
    if not curve:
        raise UsageError(f"{path} has no learning curve; train it with --curves")
    label = (f"{Path(path).stem}: layer {provenance.get('layer_name')}, {provenance.get('epochs')} epochs, "
             f"lr {provenance.get('lr'):g} {provenance.get('lr_schedule', 'cosine')}")
    return label, curve


def plot_curves(paths, out, overwrite=False):
    """Draw each file's training-loop loss (dashed) and test Rec. Loss (solid) per epoch into one PNG."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError("plots need matplotlib: pip install matplotlib (or cladec[plots])") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    curves = [curve_of(path) for path in paths]
    out = artifacts.check_output(out, overwrite, suffixes=(".png",))
    figure, axes = pyplot.subplots(figsize=(8, 5), dpi=100)
    for i, (label, curve) in enumerate(curves):
        color = f"C{i}"
        axes.plot(curve["epochs"], curve["test_rec_loss"], color=color, label=f"{label}, test")
        axes.plot(curve["epochs"], curve["train_loss"], color=color, linestyle="--", label=f"{label}, training loop")
    axes.set_xlabel("epoch")
    axes.set_ylabel("Rec. Loss (SSE per image)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    with artifacts.atomic_path(out, overwrite) as tmp:
        figure.savefig(tmp, format="png")
    pyplot.close(figure)
    return out
