"""A reproduction's results as a Markdown table laid out like the paper's, beside the paper's figures,
and as CSV."""

from cladec_cli import artifacts
from cladec_cli.methods import measured_methods, title
from cladec_cli.reproduce import METRICS, PAPER_TOLERANCE, paper_comparison


def _delta(stat, fmt):
    return f"{stat['difference']:{fmt}} ({stat['p_value']:.2g}, {stat['p_paired']:.2g})"


def _pm(stat, fmt):
    return f"{stat['mean']:{fmt}} ± {stat['std']:{fmt}}"


# Per measure: its column header and number format; a Δ column (ClaDec - RefAE) follows those marked.
COLUMNS = {"rec_loss": ("Rec. Loss", ".2f", True), "train_rec_loss": ("train Rec. Loss", ".2f", False),
           "loop_loss": ("loop loss", ".2f", False), "acc_eval": ("Acc Eval", ".4f", True),
           "agreement": ("Agreement", ".3f", False), "deletion": ("Deletion", ".3f", False),
           "insertion": ("Insertion", ".3f", False)}


def _columns(rows):
    """[(header, cell(row) -> text)] for every measure and method the rows have, in the paper's order."""
    columns = []
    for metric, _ in METRICS:
        label, fmt, with_delta = COLUMNS[metric]
        for method in measured_methods([row.get(metric, {}) for row in rows]):
            columns.append((f"{label} {title(method)}",
                            lambda row, metric=metric, method=method, fmt=fmt:
                            _pm(row[metric][method], fmt) if method in row.get(metric, {}) else "-"))
        if with_delta and any("difference" in row.get(metric, {}) for row in rows):
            columns.append(("Δ (p, paired p)", lambda row, metric=metric, fmt=fmt:
                            _delta(row[metric], "+" + fmt) if "difference" in row.get(metric, {}) else "-"))
    return columns


def _paper_text(table, paper):
    if paper is None:
        return "-"
    if table == "table2":
        return f"Rec {paper[0]} / {paper[1]}, Acc Eval {paper[2]} / {paper[3]}"
    return f"Rec ClaDec {paper[0]}, Acc Eval ClaDec {paper[1]}"


def markdown(table, rows, settings):
    """A table laid out like the paper's, with the paper's figures beside ours."""
    label = {"table2": "Layer", "table3": "alpha", "table4": "Classifier epochs"}[table]
    columns = _columns(rows)
    head = [label, "Acc classifier", *(header for header, _ in columns), "paper"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join([str(row["row"]), "{:.4f} ± {:.4f}".format(*row["classifier_test_accuracy"]),
                                        *(cell(row) for _, cell in columns), _paper_text(table, row["paper"])]) + " |")
    described = ", ".join(f"{k} {v}" for k, v in settings.items())
    maps = ("Deletion and insertion are the areas under the deletion (lower is better) and insertion (higher "
            "is better) curves of attribution maps, with a random order as the baseline; not in the paper. "
            if any("deletion" in row for row in rows) else "")
    delta = ("Δ is ClaDec - RefAE with the p-values of Welch's t-test and of the paired t-test (a run's ClaDec "
             "and RefAE share its seed and classifier). " if any(header.startswith("Δ") for header, _ in columns)
             else "")
    paper = "ClaDec / RefAE" if table == "table2" else "ClaDec"
    return (f"Settings: {described}.\n\nMean ± sample std over runs. Rec. Loss is on the test images; train Rec. "
            "Loss on the training images, the models in inference mode; loop loss is each model's own loss "
            "as Keras reported it in its last training epoch (the Rec. Loss where alpha is 0). " + delta +
            "Agreement is this project's addition, not in the paper. " + maps + f"The paper's column gives {paper} "
            "(64 epochs, 10 runs).\n\n" + "\n".join(lines) + "\n\n" + comparison_markdown(table, rows))


def comparison_markdown(table, rows):
    """Which of our figures lie within PAPER_TOLERANCE of the paper's, one line per figure."""
    lines = [f"Against the paper: ours / paper, and whether within {PAPER_TOLERANCE:.0%} of it.", "",
             "| row | measure | method | ours | paper | ratio | within |", "|---|---|---|---|---|---|---|"]
    names = dict(METRICS)
    for c in paper_comparison(table, rows):
        lines.append(f"| {c['row']} | {names[c['measure']]} | {title(c['method'])} | "
                     f"{c['ours']:.4g} | {c['paper']:.4g} | {c['ratio']:.2f} | {'yes' if c['within'] else 'no'} |")
    return "\n".join(lines) + "\n"


def csv_lines(rows):
    """One CSV line per row and measure: row, measure, method, mean, std, values."""
    lines = ["row,measure,method,mean,std,values"]
    for row in rows:
        for metric, _ in METRICS:
            for method in measured_methods([row.get(metric, {})]):
                stat = row[metric][method]
                values = " ".join("" if v is None else f"{v:.6g}" for v in stat["values"])
                lines.append(f"{row['row']},{metric},{method},{stat['mean']:.6g},{stat['std']:.6g},{values}")
    return "\n".join(lines) + "\n"


def write_results(out, summary, settings):
    """results.json, results.csv and results.md in `out`, replacing those of earlier invocations."""
    table, rows = settings["table"], summary["rows"]
    artifacts.write_json(out / "results.json", summary, overwrite=True)
    artifacts.write_text(out / "results.csv", csv_lines(rows), overwrite=True)
    artifacts.write_text(out / "results.md", markdown(table, rows, settings), overwrite=True)
