"""The sanity checks' results as JSON, a Markdown table and a plot."""

import dataclasses

from cladec_cli import artifacts

TITLES = {"cladec": "ClaDec", "gradcam": "Grad-CAM", "saliency": "SmoothGrad", "occlusion": "occlusion"}


def markdown(result):
    """Two tables: SSIM to the unrandomised explanation per stage, and SSIM under input noise."""
    methods = list(result.cascade)
    head = "| randomised down to | " + " | ".join(TITLES.get(m, m) for m in methods) + " |"
    lines = ["SSIM of each method's explanations to those of the unrandomised classifier (1: unchanged; a "
             "method that explains the classifier should drop as its layers are randomised):", "",
             head, "|" + "---|" * (len(methods) + 1)]
    for k, stage in enumerate(result.stages):
        lines.append(f"| {stage} | " + " | ".join(f"{result.cascade[m][k]:.3f}" for m in methods) + " |")
    lines += ["", f"SSIM between the explanations of an image and of a copy with Gaussian noise of standard deviation "
              f"{result.noise_sigma:g}, over the {result.kept} of {result.images} images whose predicted class the "
              "noise left unchanged (1: unchanged):", "",
              "| " + " | ".join(TITLES.get(m, m) for m in result.noise) + " |", "|" + "---|" * len(result.noise),
              "| " + " | ".join(f"{v:.3f}" for v in result.noise.values()) + " |"]
    return "\n".join(lines) + "\n"


def output_paths(out_dir):
    """Where `write_outputs` writes."""
    return {"json": out_dir / "sanity.json", "table": out_dir / "sanity.md", "plot": out_dir / "sanity.png"}


def write_outputs(result, out_dir, overwrite=False):
    """sanity.json, sanity.md and (with matplotlib) sanity.png in `out_dir`; returns their paths."""
    from cladec_cli import plots

    paths = output_paths(out_dir)
    picture = plots.png_bytes(plots.sanity(result, TITLES))  # first: a missing matplotlib writes nothing
    artifacts.write_json(paths["json"], dataclasses.asdict(result), overwrite)
    artifacts.write_text(paths["table"], markdown(result), overwrite)
    with artifacts.atomic_path(paths["plot"], overwrite) as tmp:
        tmp.write_bytes(picture)
    return paths
