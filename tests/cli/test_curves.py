"""`train-decoder --curves` records learning curves; `plot-curves` draws them."""

import pytest
from PIL import Image

from conftest import invoke, read_group


def test_curves_are_recorded_and_plotted(tmp_path, trained):
    out = tmp_path / "curved.h5"
    invoke("train-decoder", "--classifier", trained["classifier"], "--layer", -2, "--curves", "--epochs", 2,
           "--batch-size", 32, "--lr-schedule", "constant", "-q", "--out", out)
    record = read_group(out)
    curve = record["metrics"]["curve"]
    assert curve["epochs"] == [1, 2] and len(curve["train_loss"]) == len(curve["test_rec_loss"]) == 2
    # The last point is the trained decoder's own test Rec. Loss, measured the same way after training.
    assert curve["test_rec_loss"][-1] == pytest.approx(record["metrics"]["test_rec_loss"], rel=1e-5)
    assert curve["train_loss"][-1] == pytest.approx(record["metrics"]["train_loss"])
    assert record["lr_schedule"] == "constant"
    invoke("plot-curves", out, "--out", tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as image:
        assert image.size == (800, 500)


def test_curves_of_layers_trained_in_one_pass(tmp_path, trained):
    invoke("train-decoder", "--classifier", trained["classifier"], "--layer", "-1,-2", "--curves", "--epochs", 1,
           "--batch-size", 32, "-q", "--out-dir", tmp_path)
    files = sorted(tmp_path.glob("*.h5"))
    assert len(files) == 2
    losses = [read_group(f)["metrics"] for f in files]
    for metrics in losses:
        assert metrics["curve"]["test_rec_loss"] == [metrics["test_rec_loss"]]
    assert losses[0]["test_rec_loss"] != losses[1]["test_rec_loss"]


def test_a_file_without_curves_is_refused(tmp_path, trained):
    result = invoke("plot-curves", trained["decoder"], "--out", tmp_path / "c.png", expect=2)
    assert "no learning curve" in result.stderr and not (tmp_path / "c.png").exists()


def test_a_missing_or_unreadable_file_is_refused_as_such(tmp_path):
    (tmp_path / "notes.h5").write_text("not a model")
    for path, said in ((tmp_path / "absent.h5", "does not exist"),
                       (tmp_path / "notes.h5", "is not an HDF5 model file (truncated or corrupt?)")):
        result = invoke("plot-curves", path, "--out", tmp_path / "c.png", expect=2)
        assert result.stderr.strip() == f"cladec: error: {path} {said}"
    assert not (tmp_path / "c.png").exists()
