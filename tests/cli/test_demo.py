"""`cladec demo`: every artifact of a first run, from one process, and nothing half-written."""

import json

import keras
from PIL import Image

from conftest import invoke, read_group


def test_demo_writes_models_grid_and_numbers(tmp_path, npz_dataset):
    out = tmp_path / "demo"
    result = invoke("demo", "--dataset", npz_dataset, "--epochs", 1, "--batch-size", 32, "--layer", -2,
                    "--class", "top-right", "--count", 3, "--out-dir", out)
    for name in ("classifier.h5", "cladec_L-2_a0.h5", "refae_L-2.h5"):
        assert keras.models.load_model(out / name, compile=False) is not None
    assert read_group(out / "cladec_L-2_a0.h5")["layer_index"] == -2
    with Image.open(out / "explain_L-2.png") as grid:
        assert grid.size[1] > grid.size[0] / 2  # three rows of tiles
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["acc_eval"]) >= {"cladec", "refae"} and 0 <= metrics["acc_eval"]["cladec"] <= 1
    assert "Rec. Loss" in (out / "metrics.md").read_text()
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "cladec_L-2_a0.h5" in page  # plot and grid inline
    assert "explanation grid in" in result.stdout and "demo: trained the classifier" in result.stderr


def test_demo_refuses_to_overwrite_before_training(tmp_path, npz_dataset):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    result = invoke("demo", "--dataset", npz_dataset, "--epochs", 1, "--out-dir", out, expect=2)
    assert "exists" in result.stderr and not (out / "classifier.h5").exists()
    assert (out / "metrics.json").read_text() == "{}"
