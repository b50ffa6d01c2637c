"""`cladec evaluate` through the CLI: JSON, Markdown table, kept evaluation classifiers."""

import json

import keras

from conftest import invoke, read_group


def test_evaluate_writes_json_table_and_eval_models(tmp_path, trained):
    out = tmp_path / "metrics.json"
    keep = tmp_path / "eval_models"
    result = invoke("evaluate", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                    "--refae", trained["refae"], "--eval-epochs", 1, "--batch-size", 32,
                    "--keep-eval-models", keep, "--out", out, "--json")
    printed = json.loads(result.stdout)
    saved = json.loads(out.read_text())
    assert printed["rec_loss"] == saved["rec_loss"]
    for group in ("rec_loss", "acc_eval", "agreement"):
        assert set(saved[group]) == {"cladec", "refae", "difference"}
        assert saved[group]["difference"] == saved[group]["cladec"] - saved[group]["refae"]
    assert saved["rec_loss"]["cladec"] > 0 and 0 <= saved["acc_eval"]["refae"] <= 1
    assert saved["layer_index"] == -2 and saved["test_images"] == 80
    table = out.with_suffix(".md").read_text()
    assert "| Rec. Loss (SSE per image) |" in table and "| Acc Eval |" in table
    for method in ("cladec", "refae"):
        path = keep / f"eval_{method}.h5"
        model = keras.models.load_model(path)
        assert model.output.shape[-1] == 4
        record = read_group(path)
        assert record["kind"] == "eval_classifier" and record["trained_on"] == f"{method} reconstructions"
        assert record["metrics"]["test_accuracy"] == saved["acc_eval"][method]


def test_evaluate_without_acc_eval_refuses_to_overwrite(tmp_path, trained):
    out = tmp_path / "metrics.json"
    args = ("evaluate", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
            "--refae", trained["refae"], "--eval-epochs", 0, "--out", out, "-q")
    invoke(*args)
    assert "acc_eval" not in json.loads(out.read_text())
    first = out.read_text()
    result = invoke(*args, expect=2)
    assert "--overwrite" in result.stderr and out.read_text() == first
