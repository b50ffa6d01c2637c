"""A reproduction's results as a Markdown table laid out like the paper's, beside the paper's figures,
and as CSV."""

from cladec_cli import artifacts
from cladec_cli.reproduce import METRICS, PAPER_TOLERANCE, paper_comparison


def _delta(stat, fmt):
    return f"{stat['difference']:{fmt}} ({stat['p_value']:.2g}, {stat['p_paired']:.2g})"


def _pm(stat, fmt):
    return f"{stat['mean']:{fmt}} ± {stat['std']:{fmt}}"


def markdown(table, rows, settings):
    """A table laid out like the paper's, with the paper's figures beside ours."""
    label = {"table2": "Layer", "table3": "alpha", "table4": "Classifier epochs"}[table]
    head = [label, "Acc classifier", "Rec. Loss ClaDec", "Rec. Loss RefAE", "Δ (p, paired p)",
            "train Rec. Loss ClaDec", "train Rec. Loss RefAE", "loop loss ClaDec", "loop loss RefAE",
            "Acc Eval ClaDec", "Acc Eval RefAE", "Δ (p, paired p)", "Agreement ClaDec", "Agreement RefAE", "paper"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        rec, train_rec, acc, agr = row["rec_loss"], row["train_rec_loss"], row["acc_eval"], row["agreement"]
        loop = row["loop_loss"]
        paper = row["paper"]
        if paper is None:
            paper_text = "-"
        elif table == "table2":
            paper_text = f"Rec {paper[0]} / {paper[1]}, Acc Eval {paper[2]} / {paper[3]}"
        else:
            paper_text = f"Rec ClaDec {paper[0]}, Acc Eval ClaDec {paper[1]}"
        lines.append("| " + " | ".join([
            str(row["row"]), "{:.4f} ± {:.4f}".format(*row["classifier_test_accuracy"]),
            _pm(rec["cladec"], ".2f"), _pm(rec["refae"], ".2f"), _delta(rec, "+.2f"),
            _pm(train_rec["cladec"], ".2f"), _pm(train_rec["refae"], ".2f"),
            _pm(loop["cladec"], ".2f"), _pm(loop["refae"], ".2f"),
            _pm(acc["cladec"], ".4f"), _pm(acc["refae"], ".4f"), _delta(acc, "+.4f"),
            _pm(agr["cladec"], ".3f"), _pm(agr["refae"], ".3f"), paper_text]) + " |")
    described = ", ".join(f"{k} {v}" for k, v in settings.items())
    return (f"Settings: {described}.\n\nMean ± sample std over runs. Rec. Loss is on the test images; train Rec. "
            "Loss on the training images, the models in inference mode; loop loss is each model's own loss "
            "as Keras reported it in its last training epoch (the Rec. Loss where alpha is 0). Δ is ClaDec - "
            "RefAE with the p-values of Welch's t-test and of the paired t-test (a run's ClaDec and RefAE share its seed and "
            "classifier). Agreement is this project's addition, not in the paper. The paper's column gives "
            "ClaDec / RefAE (64 epochs, 10 runs).\n\n" + "\n".join(lines) + "\n\n"
            + comparison_markdown(table, rows))


def comparison_markdown(table, rows):
    """Which of our figures lie within PAPER_TOLERANCE of the paper's, one line per figure."""
    lines = [f"Against the paper: ours / paper, and whether within {PAPER_TOLERANCE:.0%} of it.", "",
             "| row | measure | method | ours | paper | ratio | within |", "|---|---|---|---|---|---|---|"]
    names = dict(METRICS)
    for c in paper_comparison(table, rows):
        lines.append(f"| {c['row']} | {names[c['measure']]} | {'ClaDec' if c['method'] == 'cladec' else 'RefAE'} | "
                     f"{c['ours']:.4g} | {c['paper']:.4g} | {c['ratio']:.2f} | {'yes' if c['within'] else 'no'} |")
    return "\n".join(lines) + "\n"


def csv_lines(rows):
    """One CSV line per row and measure: row, measure, method, mean, std, values."""
    lines = ["row,measure,method,mean,std,values"]
    for row in rows:
        for metric, _ in METRICS:
            for method in ("cladec", "refae"):
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
