"""One evaluated layer's measures as JSON and as a small Markdown table in the paper's layout."""

from cladec_cli import artifacts


def write_result(result, json_path, table_path, overwrite=False):
    """Save a result as JSON at `json_path` and as `markdown_table` at `table_path`; returns the table."""
    table = markdown_table(result)
    artifacts.write_json(json_path, result, overwrite)
    artifacts.write_text(table_path, table, overwrite)
    return table


MEASURES = (("rec_loss", "Rec. Loss (SSE per image)", ".2f"),
            ("train_rec_loss", "Rec. Loss on training images", ".2f"),
            ("loop_loss", "Loss in the last training epoch", ".2f"),
            ("acc_eval", "Acc Eval", ".4f"),
            ("agreement", "Agreement (not in the paper)", ".4f"))
MAP_MEASURES = (("deletion", "Deletion area (lower is better)", ".4f"),
                ("insertion", "Insertion area (higher is better)", ".4f"))


def layer_position(record):
    """Where a record's layer lies, as the decoder's layer convention counts: "-2", or "-2 counting every
    layer" (the convention that counts every layer, whose indices differ)."""
    every = " counting every layer" if record.get("layer_convention", "blocks") == "layers" else ""
    return f"{record['layer_index']}{every}"


def markdown_table(result):
    """The result as small Markdown tables: the paper's measures in the paper's layout (a column per
    method that decodes pictures, and ClaDec - RefAE), then the attribution maps' deletion and insertion."""
    from cladec_cli.methods import measured_methods, title

    def cell(group, method, fmt):
        value = result.get(group, {}).get(method)
        return "-" if value is None else format(value, fmt)

    lines = [
        f"Layer {result['layer_name']} ({layer_position(result)}), alpha {result['alpha']:g}, "
        f"{result['dataset']} ({result['test_images']} test images, resize {result['resize']}); "
        f"classifier test accuracy {result['classifier_test_accuracy']:.4f}",
    ]
    if result.get("acc_eval_one_class"):
        lines += ["", f"Acc Eval of {', '.join(result['acc_eval_one_class'])}: its classifier names one class for "
                      "every test image, so the figure is that class's share."]
    for method, lag in result.get("acc_eval_bn_lag", {}).items():
        lines += ["", f"Acc Eval of {method}: its classifier gets {lag['moving']:.4f} of {lag['images']:,} of the "
                      f"reconstructions it learned from right with its moving BatchNorm statistics and "
                      f"{lag['data']:.4f} with statistics from those reconstructions, so the figure understates "
                      "what the reconstructions hold."]
    if result.get("eval_settings", {}).get("bn_statistics") == "data":
        lines += ["", "The Acc Eval classifiers' BatchNorm statistics are those of the reconstructions each learned from."]
    pictures = measured_methods([result.get("rec_loss", {})])
    if pictures:
        both = {"cladec", "refae"} <= set(pictures)
        head = [title(m) for m in pictures] + (["difference"] if both else [])
        lines += ["", "| measure | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
        for group, label, fmt in MEASURES:
            if group in result:
                cells = [cell(group, m, fmt) for m in pictures] + ([cell(group, "difference", "+" + fmt)] if both else [])
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if "mean_image_rec_loss" in result:
            lines += ["", f"Baseline: the training images' mean image, as every test image's reconstruction, has "
                          f"Rec. Loss {result['mean_image_rec_loss']:.2f}."]
        if result.get("code_values", 0) >= result.get("train_images", float("inf")):
            lines += ["", f"The ridge decoder maps {result['code_values']:,} code values linearly to each pixel, "
                          f"fitted on {result['train_images']:,} training images: with at least as many values as "
                          f"images it can reproduce them almost exactly, so its Rec. Loss on training images says "
                          f"little; read its test Rec. Loss."]
    if "deletion" in result:
        maps = list(result["deletion"])
        lines += ["", f"Attribution maps on {result['map_images']} test images, each for its predicted class "
                      "(random: pixels in random order, the baseline):", "",
                  "| measure | " + " | ".join(title(m) for m in maps) + " |", "|---|" + "---|" * len(maps)]
        for group, label, fmt in MAP_MEASURES:
            lines.append(f"| {label} | " + " | ".join(cell(group, m, fmt) for m in maps) + " |")
    return "\n".join(lines) + "\n"
