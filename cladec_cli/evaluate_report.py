"""One evaluated layer's measures as JSON and as a small Markdown table in the paper's layout."""

from cladec_cli import artifacts


def write_result(result, json_path, table_path, overwrite=False):
    """Save a result as JSON at `json_path` and as `markdown_table` at `table_path`; returns the table."""
    table = markdown_table(result)
    artifacts.write_json(json_path, result, overwrite)
    artifacts.write_text(table_path, table, overwrite)
    return table


def markdown_table(result):
    """The result as a small Markdown table in the paper's layout."""
    def cell(group, method, fmt):
        value = result.get(group, {}).get(method)
        return "-" if value is None else format(value, fmt)

    lines = [
        f"Layer {result['layer_name']} ({result['layer_index']}), alpha {result['alpha']:g}, "
        f"{result['dataset']} ({result['test_images']} test images, resize {result['resize']}); "
        f"classifier test accuracy {result['classifier_test_accuracy']:.4f}",
        "",
        "| measure | ClaDec | RefAE | difference |",
        "|---|---|---|---|",
    ]
    for group, label, fmt in (("rec_loss", "Rec. Loss (SSE per image)", ".2f"),
                              ("train_rec_loss", "Rec. Loss on training images", ".2f"),
                              ("loop_loss", "Loss in the last training epoch", ".2f"),
                              ("acc_eval", "Acc Eval", ".4f"),
                              ("agreement", "Agreement (not in the paper)", ".4f")):
        if group in result:
            lines.append(f"| {label} | {cell(group, 'cladec', fmt)} | {cell(group, 'refae', fmt)} | "
                         f"{cell(group, 'difference', '+' + fmt)} |")
    return "\n".join(lines) + "\n"
