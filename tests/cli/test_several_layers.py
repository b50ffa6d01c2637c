"""`--layer -1,-2,...`: one model per layer from one training pass, under --out-dir or the default folder."""

import json
import os

from conftest import invoke, read_group


def test_train_decoder_several_layers_into_out_dir(tmp_path, trained):
    out_dir = tmp_path / "decoders"
    result = invoke("train-decoder", "--classifier", trained["classifier"], "--layer", "-1,-3", "--epochs", 1,
                    "--batch-size", 32, "--out-dir", out_dir, "--json")
    records = json.loads(result.stdout)
    paths = [out_dir / "cladec_L-1_a0.h5", out_dir / "cladec_L-3_a0.h5"]
    assert [r["path"] for r in records] == [str(p) for p in paths]
    assert sorted(os.listdir(out_dir)) == ["cladec_L-1_a0.h5", "cladec_L-3_a0.h5"]
    assert [read_group(p)["layer_name"] for p in paths] == ["logits", "block4"]
    assert all(r["metrics"]["test_rec_loss"] > 0 for r in records)


def test_train_refae_several_layers_default_folder(tmp_path, trained, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("train-refae", "--classifier", trained["classifier"], "--layer", "block4, -4", "--epochs", 1,
                    "--batch-size", 32)
    folder = tmp_path / "models" / "tiny"
    assert sorted(os.listdir(folder)) == ["refae_L-3.h5", "refae_L-4.h5"]
    assert read_group(folder / "refae_L-4.h5")["layer_name"] == "block3"
    assert "in one pass" in result.stdout


def test_out_with_several_layers_is_refused(tmp_path, trained):
    result = invoke("train-decoder", "--classifier", trained["classifier"], "--layer", "-1,-2",
                    "--out", tmp_path / "d.h5", expect=2)
    assert result.stderr.count("\n") == 1 and "--out-dir" in result.stderr
    assert os.listdir(tmp_path) == []


def test_an_existing_output_refuses_the_whole_run_up_front(tmp_path, trained):
    (tmp_path / "refae_L-2.h5").write_bytes(b"keep")
    result = invoke("train-refae", "--classifier", trained["classifier"], "--layer", "-1,-2", "--epochs", 500,
                    "--out-dir", tmp_path, expect=2)
    assert "refae_L-2.h5 already exists" in result.stderr and result.stderr.count("\n") == 1
    assert os.listdir(tmp_path) == ["refae_L-2.h5"]
    assert (tmp_path / "refae_L-2.h5").read_bytes() == b"keep"


def test_a_default_output_holding_another_classifiers_model_is_refused_with_a_way_that_keeps_it(
        tmp_path, trained, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other.h5"
    invoke("train-classifier", "--dataset", trained["dataset"], "--epochs", 0, "--seed", 1, "-q", "--out", other)
    args = ("train-decoder", "--layer", -2, "--epochs", 0, "--batch-size", 32, "-q")
    invoke(*args, "--classifier", trained["classifier"])
    first = tmp_path / "models" / "tiny" / "cladec_L-2_a0.h5"
    kept = first.read_bytes()
    for place, named in (((), "models/tiny/cladec_L-2_a0.h5"), (("--out-dir", first.parent), first)):
        result = invoke(*args, "--classifier", other, *place, expect=2)
        assert result.stderr == (f"cladec: error: {named} already exists and holds a model of another classifier; name "
                                 "this one's with --out or another --out-dir (--overwrite would replace the other "
                                 "classifier's)\n")
    assert first.read_bytes() == kept
    again = invoke(*args, "--classifier", trained["classifier"], expect=2)  # the same classifier's: the usual line
    assert "already exists; pass --overwrite to replace it" in again.stderr
    invoke(*args, "--classifier", other, "--overwrite")
    assert read_group(first)["classifier_digest"] != read_group(trained["decoder"])["classifier_digest"]


def test_layers_convention_trains_batchnorm_outputs_and_explains_them(tmp_path, trained, monkeypatch):
    out_dir = tmp_path / "models"
    invoke("train-decoder", "--classifier", trained["classifier"], "--layer", "-3,-4", "--layer-convention", "layers",
           "--epochs", 1, "--batch-size", 32, "-q", "--out-dir", out_dir)
    invoke("train-refae", "--classifier", trained["classifier"], "--layer", -3, "--layer-convention", "layers",
           "--epochs", 1, "--batch-size", 32, "-q", "--out-dir", out_dir)
    decoder = read_group(out_dir / "cladec_block5_bn_a0.h5")
    assert (decoder["layer_name"], decoder["layer_index"], decoder["layer_convention"]) == ("block5_bn", -3, "layers")
    assert read_group(out_dir / "cladec_block5_conv_a0.h5")["layer_name"] == "block5_conv"
    listing = invoke("layers", "--classifier", trained["classifier"], "--layer-convention", "layers").stdout
    assert "block5_bn" in listing and "block1_conv" in listing
    result = invoke("evaluate", "--classifier", trained["classifier"], "--decoder", out_dir / "cladec_block5_bn_a0.h5",
                    "--refae", out_dir / "refae_block5_bn.h5", "--eval-epochs", 0, "--out", tmp_path / "m.json")
    assert "Layer block5_bn (-3 counting every layer)" in result.stdout
    assert json.loads((tmp_path / "m.json").read_text())["layer_convention"] == "layers"
    # Default outputs are named after the layer, as the decoder is: -3 counts another layer under blocks.
    monkeypatch.chdir(tmp_path)
    for command, written in (("evaluate", "reports/tiny/metrics_block5_bn_a0.json"),
                             ("explain", "reports/tiny/explain_block5_bn_a0.png")):
        invoke(command, "--classifier", trained["classifier"], "--decoder", out_dir / "cladec_block5_bn_a0.h5",
               *(("--eval-epochs", 0) if command == "evaluate" else ("--count", 2)), "-q")
        assert (tmp_path / written).exists(), sorted(str(p) for p in (tmp_path / "reports").rglob("*"))


def test_relu_decoder_output_is_recorded_and_explained(tmp_path, trained):
    out = tmp_path / "relu.h5"
    invoke("train-decoder", "--classifier", trained["classifier"], "--layer", -2, "--decoder-output", "relu",
           "--epochs", 1, "--batch-size", 32, "-q", "--out", out)
    assert read_group(out)["decoder_output"] == "relu"
    invoke("explain", "--classifier", trained["classifier"], "--decoder", out, "--count", 2, "--out", tmp_path / "g.png")
    assert (tmp_path / "g.png").exists()


def test_under_float16_the_layers_train_one_after_another_and_resume(tmp_path, trained):
    args = ["train-decoder", "--classifier", trained["classifier"], "--layer", "-1,-3", "--epochs", 1,
            "--batch-size", 32, "--precision", "float16", "--out-dir", tmp_path]
    result = invoke(*args)
    assert "trained 2 models one after another (float16)" in result.stdout
    first = (tmp_path / "cladec_L-1_a0.h5").read_bytes()
    again = invoke(*args, expect=2)
    assert again.stderr.count("\n") == 1 and "--resume" in again.stderr and "--overwrite" in again.stderr
    invoke(*args, "--resume")
    assert (tmp_path / "cladec_L-1_a0.h5").read_bytes() == first
