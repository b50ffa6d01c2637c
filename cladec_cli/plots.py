"""Plots of recorded results (matplotlib, PNG): learning curves of decoders trained with `--curves`,
a layer's measures, and a reproduction's measures per row with error bars."""

import io
from pathlib import Path

from cladec_cli import artifacts
from cladec_cli.errors import UsageError, option


def curve_of(path):
    """(label, curve) of a model file trained with curves: its recorded epochs, training-loop loss and
    test Rec. Loss."""
    provenance = artifacts.inspect(path)  # a missing or unreadable file is refused as such
    curve = (provenance.get("metrics") or {}).get("curve")
    if not curve:
        raise UsageError(f"{path} has no learning curve; train it with {option('curves')}")
    label = (f"{Path(path).stem}: layer {provenance.get('layer_name')}, {provenance.get('epochs')} epochs, "
             f"lr {provenance.get('lr'):g} {provenance.get('lr_schedule', 'cosine')}")
    return label, curve


def pyplot():
    """matplotlib's pyplot on the file-only Agg canvas; a clear error when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError("plots need matplotlib: pip install matplotlib (or cladec[plots])") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def png_bytes(figure):
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot().close(figure)
    return buffer.getvalue()


def number(value):
    """A measure as a float; NaN for one not measured (JSON null)."""
    return float("nan") if value is None else float(value)


METHOD_COLOURS = {"cladec": "C0", "refae": "C1", "ridge": "C2"}


def styled_methods(groups):
    """[(slot, method, (label, colour))] of the methods in METHOD_COLOURS that any of the measure
    dictionaries `groups` holds; the slot (ClaDec 0, RefAE 1, ...) keeps colours and offsets fixed."""
    from cladec_cli.methods import title

    return [(slot, method, (title(method), colour)) for slot, (method, colour) in enumerate(METHOD_COLOURS.items())
            if any(method in group for group in groups)]


ROW_LABEL = {"table2": "layer", "table3": "alpha", "table4": "classifier epochs"}


def measures_by_row(table, rows):
    """Rec. Loss and Acc Eval of ClaDec, RefAE and a ridge decoder (those measured) per row of a
    reproduction (mean, sample std as error bars), the paper's figures as crosses: two panels."""
    plt = pyplot()
    figure, (rec_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    positions = list(range(len(rows)))
    paper_index = {"table2": {"rec_loss": (0, 1), "acc_eval": (2, 3)}}.get(table, {"rec_loss": (0,), "acc_eval": (1,)})
    for axes, metric, title in ((rec_axes, "rec_loss", "Rec. Loss (SSE per image, test)"),
                                (acc_axes, "acc_eval", "Acc Eval")):
        styled = styled_methods([row.get(metric, {}) for row in rows])
        if not styled:  # Acc Eval of a reproduction with --eval-epochs 0
            axes.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axes.transAxes)
        for slot, method, (label, color) in styled:
            stats = [row[metric].get(method, {"mean": None, "std": None}) for row in rows]
            x = [p + (slot - 0.5) * 0.15 for p in positions]
            axes.errorbar(x, [number(s["mean"]) for s in stats], yerr=[number(s["std"]) for s in stats], fmt="o-",
                          color=color,
                          capsize=4, label=label)
            indices = paper_index[metric]
            if slot < len(indices):
                paper = [row["paper"][indices[slot]] if row.get("paper") else None for row in rows]
                known = [(xi, v) for xi, v in zip(x, paper) if v is not None]
                if known:
                    axes.plot(*zip(*known), "x", color=color, markersize=9, label=f"{label}, paper")
        axes.set_xticks(positions, [str(row["row"]) for row in rows])
        axes.set_xlabel(ROW_LABEL.get(table, "row"))
        axes.set_title(title, fontsize=10)
        axes.grid(alpha=0.3)
        if styled:
            axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def trade_off(rows):
    """Table III's trade-off: ClaDec's Rec. Loss against its Acc Eval, one point per alpha."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
    rec = [number(row["rec_loss"]["cladec"]["mean"]) for row in rows]
    acc = [number(row["acc_eval"]["cladec"]["mean"]) for row in rows]
    axes.plot(rec, acc, "o-", color="C0")
    for row, x, y in zip(rows, rec, acc):
        axes.annotate(f"alpha {row['row']:g}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("Rec. Loss (log scale)")
    axes.set_ylabel("Acc Eval")
    axes.set_title("ClaDec: fidelity to the input against fidelity to the classifier", fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def layer_measures(result):
    """One layer's measures (an `evaluate` result): Rec. Loss on test and training images and Acc Eval,
    ClaDec beside RefAE and a ridge decoder (those measured)."""
    plt = pyplot()
    figure, (rec_axes, acc_axes) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=100, gridspec_kw={"width_ratios": [2, 1]})
    groups = [(key, label) for key, label in (("rec_loss", "test"), ("train_rec_loss", "training images"),
                                              ("loop_loss", "last training epoch")) if key in result]
    methods = styled_methods([result.get("rec_loss", {})])
    width = 0.7 / max(len(methods), 1)
    for k, (_, method, (label, color)) in enumerate(methods):
        values = [number(result[key].get(method)) for key, _ in groups]
        offset = (k - (len(methods) - 1) / 2) * width
        rec_axes.bar([g + offset for g in range(len(groups))], values, width=width, color=color, label=label)
        if "acc_eval" in result:
            acc_axes.bar([k], [number(result["acc_eval"].get(method))], color=color, label=label)
    rec_axes.set_xticks(range(len(groups)), [label for _, label in groups])
    rec_axes.set_title(f"Rec. Loss at {result.get('layer_name')} (SSE per image)", fontsize=10)
    rec_axes.legend(fontsize=8)
    acc_axes.set_xticks(range(len(methods)), [label for _, _, (label, _) in methods])
    acc_axes.set_ylim(0, 1)
    acc_axes.set_title("Acc Eval", fontsize=10)
    for axes in (rec_axes, acc_axes):
        axes.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    return figure


def sanity(result, titles):
    """Left: SSIM to the unrandomised explanation per cascade stage, a line per method; right: SSIM
    under input noise, a bar per method."""
    plt = pyplot()
    figure, (cascade_axes, noise_axes) = plt.subplots(1, 2, figsize=(10, 4), dpi=100,
                                                      gridspec_kw={"width_ratios": [2, 1]})
    for i, (method, values) in enumerate(result.cascade.items()):
        cascade_axes.plot(range(len(values)), values, "o-", color=f"C{i}", label=titles.get(method, method))
    cascade_axes.set_xticks(range(len(result.stages)), result.stages, rotation=30, fontsize=8)
    cascade_axes.set_xlabel("classifier randomised from the top down to")
    cascade_axes.set_ylabel("SSIM to the unrandomised explanation")
    cascade_axes.set_ylim(-0.1, 1.05)
    cascade_axes.legend(fontsize=8)
    cascade_axes.set_title("cascading randomisation", fontsize=10)
    methods = list(result.noise)
    noise_axes.bar(range(len(methods)), [result.noise[m] for m in methods],
                   color=[f"C{list(result.cascade).index(m)}" for m in methods])
    noise_axes.set_xticks(range(len(methods)), [titles.get(m, m) for m in methods], rotation=30, fontsize=8)
    noise_axes.set_ylim(0, 1.05)
    noise_axes.set_title(f"input noise (sigma {result.noise_sigma:g}), same prediction", fontsize=10)
    for axes in (cascade_axes, noise_axes):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_curves(paths, out, overwrite=False):
    """Draw each file's training-loop loss (dashed) and test Rec. Loss (solid) per epoch into one PNG."""
    plt = pyplot()

    curves = [curve_of(path) for path in paths]
    out = artifacts.check_output(out, overwrite, suffixes=(".png",))
    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
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
    plt.close(figure)
    return out
