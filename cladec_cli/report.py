"""`report`: one self-contained HTML page for a folder of results (a demo, an evaluation, a
reproduction): its grids, its tables, plots of its measures and its models, every image inline."""

import base64
import datetime
import html
import json
from dataclasses import dataclass
from pathlib import Path

from cladec_cli import __version__, artifacts
from cladec_cli.errors import UsageError

REPORT = "report.html"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 3px 6px; text-align: right; } th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; border: 1px solid #eee; } p.meta { color: #666; font-size: 0.85em; }
"""


@dataclass
class Section:
    """One part of the page: a heading and its HTML."""

    title: str
    body: str


def markdown_to_html(text):
    """The Markdown this tool writes (paragraphs and pipe tables) as HTML, every text escaped."""
    blocks, table, paragraph = [], [], []

    def flush():
        if table:
            head, *body = [row for row in table if not set(row.replace("|", "").strip()) <= set("-: ")]
            cells = [[html.escape(c.strip()) for c in row.strip().strip("|").split("|")] for row in [head, *body]]
            rows = ["<tr>" + "".join(f"<th>{c}</th>" for c in cells[0]) + "</tr>"]
            rows += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[1:]]
            blocks.append("<table>" + "".join(rows) + "</table>")
            table.clear()
        if paragraph:
            blocks.append("<p>" + html.escape(" ".join(paragraph)) + "</p>")
            paragraph.clear()

    for line in text.splitlines():
        if line.strip().startswith("|"):
            if paragraph:
                flush()
            table.append(line)
        elif line.strip():
            if table:
                flush()
            paragraph.append(line.strip())
        else:
            flush()
    flush()
    return "\n".join(blocks)


def image_html(data, caption, mime="image/png"):
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="data:{mime};base64,{encoded}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _plot_sections(figures):
    """Sections for (title, figure maker) pairs; without matplotlib, one section that says so."""
    from cladec_cli import plots

    try:
        plots.pyplot()
    except UsageError as e:
        return [Section("Plots", f"<p>{html.escape(str(e))}</p>")]
    return [Section(title, image_html(plots.png_bytes(make()), title)) for title, make in figures]


def reproduction_sections(folder):
    """A reproduction's plots and table (from results.json and results.md)."""
    from cladec_cli import plots

    summary = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    table, rows = summary["settings"]["table"], summary["rows"]
    figures = [(f"{table}: Rec. Loss and Acc Eval per {plots.ROW_LABEL.get(table, 'row')} (mean ± std over runs; "
                "x: the paper)", lambda: plots.measures_by_row(table, rows))]
    if table == "table3" and all("acc_eval" in row for row in rows):  # none without Acc Eval (--eval-epochs 0)
        figures.append(("Table III: the trade-off between Rec. Loss and Acc Eval", lambda: plots.trade_off(rows)))
    sections = _plot_sections(figures)
    if (folder / "results.md").exists():
        results = (folder / "results.md").read_text(encoding="utf-8")
        sections.append(Section(f"{table}: results", markdown_to_html(results)))
    return sections


def metrics_sections(path, result):
    """One evaluated layer's plot and table: `result`, read from an `evaluate` or demo metrics file
    `path`, and the .md beside it."""
    from cladec_cli import plots

    sections = []
    if "rec_loss" in result:  # not for attribution maps alone
        classifier = ((result.get("models") or {}).get("classifier") or {}).get("path")
        of = f" of {Path(classifier).name}" if classifier else ""  # results of several classifiers may lie together
        sections = _plot_sections([(f"Measures at layer {result.get('layer_name')}{of}",
                                    lambda: plots.layer_measures(result))])
    table = path.with_suffix(".md")
    if table.exists():
        sections.append(Section(f"Measures ({path.name})", markdown_to_html(table.read_text(encoding="utf-8"))))
    return sections


def model_section(folder):
    """A table of the model files in the folder: kind, layer, epochs and recorded metrics."""
    rows = []
    for path in sorted(folder.glob("*.h5")):
        record = artifacts.read_provenance(path)
        metrics = record.get("metrics") or {}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
        cells = [shown_name(path), record.get("kind", "-"), str(record.get("layer_name", "-")), str(record.get("epochs", "-")),
                 shown or "-"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    if not rows:
        return []
    head = "".join(f"<th>{h}</th>" for h in ("file", "kind", "layer", "epochs", "metrics"))
    return [Section("Models", f"<table><tr>{head}</tr>{''.join(rows)}</table>")]


def sections_of(folder):
    """Every section the folder's files give, in the page's order."""
    sections = []
    if (folder / "results.json").exists():
        sections += reproduction_sections(folder)
    for path in sorted(folder.glob("*.json")):
        measured = _read_json(path)
        if path.name not in ("results.json", "settings.json") and ("rec_loss" in measured or "deletion" in measured):
            sections += metrics_sections(path, measured)
    images = sorted(folder.glob("*.png"))
    if images:
        sections.append(Section("Explanations", "\n".join(image_html(p.read_bytes(), shown_name(p)) for p in images)))
    sections += model_section(folder)
    return sections


def shown_name(path):
    """A file's name as text a page can hold, also when the name is not valid UTF-8."""
    return Path(path).name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _read_json(path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def render(folder, sections):
    """The page as one HTML string."""
    made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(f"<h2>{html.escape(s.title)}</h2>\n{s.body}" for s in sections)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>cladec report: "
            f"{html.escape(folder.name)}</title><style>{STYLE}</style></head><body>\n"
            f"<h1>cladec report: {html.escape(folder.name)}</h1>\n"
            f"<p class=\"meta\">{html.escape(str(folder))} · cladec {__version__} · {made}</p>\n{body}\n</body></html>\n")


def write_report(folder, overwrite=False):
    """Write `folder`/report.html from what the folder holds; returns its path and section titles."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    sections = sections_of(folder)
    if not sections:
        raise UsageError(f"{folder} holds no results to report (no results.json, metrics .json, .png or .h5 files)")
    out = folder / REPORT
    artifacts.write_text(out, render(folder, sections), overwrite)
    return out, [s.title for s in sections]
