"""`report`: one self-contained HTML page per results folder, checked by parsing it and, where Chromium
is installed, by rendering it."""

import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from cladec_cli.errors import UsageError
from cladec_cli.evaluate_report import write_result
from cladec_cli.reproduce import summarize
from cladec_cli.report import REPORT, markdown_to_html, write_report
from conftest import invoke


class Page(HTMLParser):
    """Headings, images and table cells of a page."""

    def __init__(self, text):
        super().__init__()
        self.headings, self.images, self.cells, self._in = [], [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._in = tag

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "h2":
            self.headings.append(data)
        elif self._in in ("td", "th"):
            self.cells.append(data)


def test_markdown_tables_and_paragraphs_become_html():
    out = markdown_to_html("Layer <x>, alpha 0\n\n| a | b |\n|---|---|\n| 1 | 2 |\nafter")
    assert out.startswith("<p>Layer &lt;x&gt;, alpha 0</p>")
    assert "<tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr>" in out and "<p>after</p>" in out


def layer_result():
    return {"layer_name": "block5", "layer_index": -2, "alpha": 0.0, "classifier_test_accuracy": 0.9,
            "test_images": 10, "dataset": "npz:x", "resize": "bilinear",
            "rec_loss": {"cladec": 11.0, "refae": 5.0}, "train_rec_loss": {"cladec": 10.0, "refae": 4.5},
            "loop_loss": {"cladec": 6.0, "refae": 3.5}, "agreement": {"cladec": 0.9, "refae": 0.85},
            "acc_eval": {"cladec": 0.89, "refae": 0.88}}


def test_a_demo_folder_becomes_one_page(tmp_path, trained):
    write_result(layer_result(), tmp_path / "metrics.json", tmp_path / "metrics.md")
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(tmp_path / "explain_L-2.png")
    shutil.copy(trained["decoder"], tmp_path / "cladec_L-2_a0.h5")
    out, titles = write_report(tmp_path)
    assert out == tmp_path / REPORT
    assert titles == ["Measures at layer block5", "Measures (metrics.json)", "Explanations", "Models"]
    page = Page(out.read_text())
    assert page.headings == titles
    assert len(page.images) == 2 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert "11.00" in page.cells and "cladec_L-2_a0.h5" in page.cells and "cladec_decoder" in page.cells
    assert "http" not in out.read_text()  # nothing is fetched from elsewhere
    with pytest.raises(UsageError, match="exists"):
        write_report(tmp_path)
    said = invoke("report", tmp_path, "--overwrite").stdout
    assert said.strip() == f"saved {out} (4 sections)"
    one = tmp_path / "one"
    one.mkdir()
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(one / "explain_L-1.png")
    assert invoke("report", one).stdout.strip() == f"saved {one / REPORT} (1 section)"


def test_attribution_maps_alone_get_their_table_and_ridge_its_bar(tmp_path):
    maps_only = {**{k: v for k, v in layer_result().items() if k not in ("rec_loss", "train_rec_loss", "loop_loss",
                                                                         "agreement", "acc_eval")},
                 "deletion": {"gradcam": 0.3, "random": 0.5}, "insertion": {"gradcam": 0.7, "random": 0.5},
                 "map_images": 12}
    write_result(maps_only, tmp_path / "maps.json", tmp_path / "maps.md")
    with_ridge = layer_result()
    for group in ("rec_loss", "train_rec_loss", "acc_eval", "agreement"):
        with_ridge[group]["ridge"] = with_ridge[group]["cladec"] + 1
    write_result(with_ridge, tmp_path / "metrics.json", tmp_path / "metrics.md")
    out, titles = write_report(tmp_path)
    assert titles == ["Measures (maps.json)", "Measures at layer block5", "Measures (metrics.json)"]
    page = Page(out.read_text())
    assert "Deletion area (lower is better)" in page.cells and "Grad-CAM" in page.cells and "Ridge" in page.cells
    assert len(page.images) == 1
    # A result that records its classifier's file names it: results of several classifiers may lie together.
    write_result({**layer_result(), "models": {"classifier": {"path": "models/own/c.keras", "digest": "ab"}}},
                 tmp_path / "metrics.json", tmp_path / "metrics.md", overwrite=True)
    assert "Measures at layer block5 of c.keras" in write_report(tmp_path, overwrite=True)[1]


def test_a_reproduction_gets_its_plots_and_table(tmp_path):
    runs = [{"classifier_test_accuracy": 0.9, **layer_result()} for _ in range(2)]
    runs[1]["rec_loss"] = {"cladec": 13.0, "refae": 5.5}
    rows = summarize("table3", {0.0: runs, 0.9: runs})
    (tmp_path / "results.json").write_text(json.dumps({"settings": {"table": "table3"}, "rows": rows}))
    (tmp_path / "results.md").write_text("| alpha | Rec |\n|---|---|\n| 0 | 12.00 ± 1.41 |\n")
    out, titles = write_report(tmp_path)
    assert titles[:3] == ["table3: Rec. Loss and Acc Eval per alpha (mean ± std over runs; x: the paper)",
                          "Table III: the trade-off between Rec. Loss and Acc Eval", "table3: results"]
    assert len(Page(out.read_text()).images) == 2


def test_an_empty_folder_has_nothing_to_report(tmp_path):
    with pytest.raises(UsageError, match="no results"):
        write_report(tmp_path)
    result = invoke("report", tmp_path / "missing", expect=2)
    assert "is not a folder" in result.output


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed")
def test_the_page_renders_in_a_browser(tmp_path):
    write_result(layer_result(), tmp_path / "metrics.json", tmp_path / "metrics.md")
    out, _ = write_report(tmp_path)
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,900",
                    f"--screenshot={shot}", out.as_uri()], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (900, 1000)
    assert (pixels < 128).mean() > 0.01  # text, bars and table lines were drawn, not a blank page


def test_unmeasured_cells_and_odd_file_names(tmp_path):
    runs = [{"classifier_test_accuracy": 0.9, **layer_result()}]
    runs[0]["acc_eval"] = {"cladec": None, "refae": None}  # Acc Eval skipped
    rows = json.loads(json.dumps(summarize("table2", {-2: runs}), default=lambda v: None).replace("NaN", "null"))
    (tmp_path / "results.json").write_text(json.dumps({"settings": {"table": "table2"}, "rows": rows}))
    odd = tmp_path / "caf\udce9.png".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(str(odd), format="PNG")
    out, titles = write_report(tmp_path)
    page = out.read_text(encoding="utf-8")
    assert "caf\ufffd.png" in page and len(Page(page).images) == 2
