"""reproduce runs the experiment matrix once and resumes without training finished cells again."""

import json

import pytest

from cladec_cli import evaluate as evaluate_module
from cladec_cli.cli import common
from cladec_cli.data.datasets import load_dataset
from cladec_cli.errors import UsageError
from cladec_cli.reproduce import _what, cells, paper_comparison, reproduce, summarize
from cladec_cli.reproduce_report import markdown
from cladec_cli.training import TrainSettings
from conftest import benchmark_script, invoke, read_group


def test_cells_follow_the_paper():
    assert [c.layer for c in cells("table2", 8)] == [-1, -2, -3, -4]
    assert [c.alpha for c in cells("table3", 8)] == [0.0, 0.9, 0.99, 0.999, 1.0]
    assert [c.classifier_epochs for c in cells("table4", 64)] == [0, 1, 4, 16, 64]
    assert [c.classifier_epochs for c in cells("table4", 8)] == [0, 1, 4, 8]


def test_reproduce_resumes(tmp_path, npz_dataset):
    dataset = load_dataset(npz_dataset)
    settings = TrainSettings(epochs=1, batch_size=32, verbose=0)
    out = tmp_path / "table4"
    first = reproduce("table4", dataset, settings, settings, 1, out, log=lambda m: None)
    assert first["trained"] == 2 + 2 + 2 + 4  # classifiers, decoders, RefAEs, eval classifiers
    rows = {row["row"]: row for row in first["rows"]}
    assert set(rows) == {0, 1}
    for row, folder in ((0, "c0_L-2"), (1, "c1_L-2")):  # one run: the row's means are its cell's metrics
        cell = json.loads((out / "run0" / folder / "metrics_a0.json").read_text())
        for metric in ("rec_loss", "train_rec_loss", "loop_loss", "acc_eval", "agreement"):
            assert rows[row][metric]["cladec"]["mean"] == cell[metric]["cladec"]
            assert rows[row][metric]["refae"]["values"] == [cell[metric]["refae"]]
    report = (out / "results.md").read_text()
    assert report.count("\n| ") == 3 + 1 + 8 and "train Rec. Loss ClaDec" in report and "paired" in report
    assert ",train_rec_loss,cladec," in (out / "results.csv").read_text()
    # The loop loss is the decoder's own last-epoch training loss, as its file records it.
    decoder_record = read_group(out / "run0" / "c1_L-2" / "cladec_a0.h5")
    assert rows[1]["loop_loss"]["cladec"]["mean"] == decoder_record["metrics"]["train_loss"]
    assert [c["row"] for c in first["paper_comparison"]] == [0] * 4 + [1] * 4
    assert "| 1 | Loss in the last training epoch | ClaDec |" in report

    again = reproduce("table4", dataset, settings, settings, 1, out, log=lambda m: None)
    assert again["trained"] == 0
    assert json.dumps(again["rows"], sort_keys=True) == json.dumps(first["rows"], sort_keys=True)

    # A cell interrupted before its decoder was written: only that cell is trained again.
    cell = out / "run0" / "c1_L-2"
    (cell / "metrics_a0.json").unlink()
    (cell / "cladec_a0.h5").unlink()
    partial = reproduce("table4", dataset, settings, settings, 1, out, log=lambda m: None)
    assert partial["trained"] == 1 + 2
    assert json.loads((out / "results.json").read_text())["trained"] == 3


def _row(key, means):
    return {"row": key, **{m: {"cladec": {"mean": c}, "refae": {"mean": r}} for m, (c, r) in means.items()}}


def test_paper_comparison_marks_figures_within_15_percent():
    means = {"rec_loss": (10.0, 3.0), "train_rec_loss": (6.9, 3.9), "loop_loss": (float("nan"), 2.5),
             "acc_eval": (0.9, 0.5)}
    rows = [{**_row(-2, means), "paper": (6.08, 3.34, 0.895, 0.889)}, {**_row(-9, means), "paper": None}]
    compared = {(c["measure"], c["method"]): c for c in paper_comparison("table2", rows)}
    assert ("loop_loss", "cladec") not in compared  # nothing measured, nothing compared
    assert len(compared) == 7 and {c["row"] for c in compared.values()} == {-2}
    assert compared["rec_loss", "cladec"]["ratio"] == pytest.approx(10 / 6.08)
    within = {key: c["within"] for key, c in compared.items()}
    assert within == {("rec_loss", "cladec"): False, ("train_rec_loss", "cladec"): True,
                      ("rec_loss", "refae"): True, ("train_rec_loss", "refae"): False,
                      ("loop_loss", "refae"): False, ("acc_eval", "cladec"): True, ("acc_eval", "refae"): False}


def test_reproduce_refuses_a_folder_with_other_settings(tmp_path, npz_dataset):
    dataset = load_dataset(npz_dataset, limit=40)
    settings = TrainSettings(epochs=0, batch_size=32, verbose=0)
    reproduce("table4", dataset, settings, settings, 1, tmp_path, log=lambda m: None)
    with pytest.raises(UsageError, match="other settings \\(epochs 0 -> 1\\); use another `out`"):
        reproduce("table4", dataset, settings.with_epochs(1), settings, 1, tmp_path, log=lambda m: None)
    with pytest.raises(UsageError, match="other settings \\(epochs 0 -> 1\\); pass the options the run was started"):
        reproduce("table4", dataset, settings.with_epochs(1), settings, 1, tmp_path, log=lambda m: None,
                  report_only=True)


def test_reproduce_accepts_a_folder_from_before_the_split_seed(tmp_path, npz_dataset):
    dataset = load_dataset(npz_dataset, limit=40)
    settings = TrainSettings(epochs=0, batch_size=32, verbose=0)
    reproduce("table4", dataset, settings, settings, 1, tmp_path, log=lambda m: None)
    recorded = json.loads((tmp_path / "settings.json").read_text())
    assert (recorded["split_seed"], recorded["test_fraction"]) == (0, 0.2)
    del recorded["split_seed"], recorded["test_fraction"], recorded["methods"], recorded["bn_statistics"]
    del recorded["eval_bn_statistics"]
    (tmp_path / "settings.json").write_text(json.dumps(recorded))
    assert reproduce("table4", dataset, settings, settings, 1, tmp_path, log=lambda m: None)["trained"] == 0
    with pytest.raises(UsageError, match="split_seed 0 -> 1"):
        reproduce("table4", load_dataset(npz_dataset, limit=40, split_seed=1), settings, settings, 1, tmp_path,
                  log=lambda m: None)


def test_table2_trains_each_runs_layers_in_one_pass(tmp_path, npz_dataset, monkeypatch):
    dataset = load_dataset(npz_dataset, limit=40)
    settings = TrainSettings(epochs=1, batch_size=32, verbose=0)
    out = tmp_path / "table2"
    logged = []
    first = reproduce("table2", dataset, settings, settings.with_epochs(0), 1, out, log=logged.append)
    assert first["trained"] == 1 + 4 + 4  # no Acc Eval classifiers at 0 evaluation epochs, and no Acc Eval
    assert all("acc_eval" not in row and "rec_loss" in row for row in first["rows"])
    assert invoke("report", out).exit_code == 0  # its plots and tables without Acc Eval
    assert [m for m in logged if "in one pass" in m and m.startswith("  training")] == [
        "  training ClaDec decoders, layers -1, -2, -3, -4, alpha 0, in one pass",
        "  training RefAEs, layers -1, -2, -3, -4, in one pass"]
    # Each artifact lies where a one-layer run of its cell would have put it.
    for layer, name in ((-1, "logits"), (-2, "block5"), (-3, "block4"), (-4, "block3")):
        for kind, file in (("cladec_decoder", "cladec_a0.h5"), ("refae", "refae.h5")):
            group = read_group(out / "run0" / f"c1_L{layer}" / file)
            assert (group["kind"], group["layer_name"], group["layer_index"]) == (kind, name, layer)
    # The protocol projection reads each unit's seconds from this log.
    done = benchmark_script("protocol_projection").units_in("\n".join(logged))
    assert [(u["run"], u["kind"]) for u in done] == [
        (0, "classifier"), (0, "cladec-a0"), (0, "refae"),
        *[(0, f"evaluate-L{layer}-a0") for layer in (-1, -2, -3, -4)]]
    assert all(u["seconds"] >= 0 for u in done)

    # A folder whose run stopped with two decoders missing trains those two, in one pass.
    for layer in (-2, -4):
        (out / "run0" / f"c1_L{layer}" / "metrics_a0.json").unlink()
        (out / "run0" / f"c1_L{layer}" / "cladec_a0.h5").unlink()
    monkeypatch.setattr(common, "_ANNOUNCED", set())
    again = invoke("reproduce", "table2", "--dataset", npz_dataset, "--limit", 40, "--epochs", 1, "--batch-size", 32,
                   "--runs", 1, "--eval-epochs", 0, "--out", out, "--json")
    assert json.loads(again.stdout)["trained"] == 2
    said = again.stderr.splitlines()
    assert said[0].startswith("device: ") and said.count(said[0]) == 1  # before the first model's lines, once
    assert "  training ClaDec decoders, layers -2, -4, alpha 0, in one pass" in said


def test_the_log_says_how_a_groups_models_train():
    missing = {"a.h5": -1, "b.h5": -2}
    assert _what("RefAE", missing, TrainSettings()) == "RefAEs, layers -1, -2, in one pass"
    assert _what("RefAE", missing, TrainSettings(precision="float16")) == \
        "RefAEs, layers -1, -2, one after another (float16)"
    assert _what("ClaDec decoder", {"a.h5": -3}, TrainSettings(precision="float16"), ", alpha 0") == \
        "ClaDec decoder, layer -3, alpha 0"


def test_summary_pairs_runs_and_tolerates_cells_from_before_train_rec_loss():
    def cell(run, cladec, refae, with_train=True):
        metrics = {"classifier_test_accuracy": 0.9, "rec_loss": {"cladec": cladec, "refae": refae},
                   "acc_eval": {"cladec": 0.9, "refae": 0.8}, "agreement": {"cladec": 0.9, "refae": 0.8}}
        if with_train:
            metrics["train_rec_loss"] = {"cladec": cladec - 1, "refae": refae - 1}
        return metrics

    # ClaDec is 0.5 above RefAE in every run, while runs differ by much more: only pairing sees it.
    runs = [cell(0, 10.5, 10.0), cell(1, 20.4, 19.9, with_train=False), cell(2, 30.6, 30.0), cell(3, 40.5, 40.0)]
    (row,) = summarize("table2", {-2: runs})
    assert row["rec_loss"]["p_paired"] < 0.01 < 0.9 < row["rec_loss"]["p_value"]
    assert row["train_rec_loss"]["cladec"]["values"] == [9.5, None, 29.6, 39.5]
    assert row["train_rec_loss"]["cladec"]["mean"] == pytest.approx((9.5 + 29.6 + 39.5) / 3)
    assert "| -2 |" in markdown("table2", [row], {"epochs": 1})


def test_reproduce_measures_the_methods_asked_for(tmp_path, npz_dataset):
    dataset = load_dataset(npz_dataset, limit=60)
    settings = TrainSettings(epochs=0, batch_size=32, verbose=0)
    out = tmp_path / "table4"
    summary = reproduce("table4", dataset, settings, settings.with_epochs(1), 1, out, log=lambda m: None,
                        methods=["gradcam", "ridge"], bn_statistics="data")  # ClaDec is always measured
    assert json.loads((out / "settings.json").read_text())["methods"] == ["cladec", "ridge", "gradcam"]
    assert summary["trained"] == 1 + 1 + 2  # classifier, decoder, Acc Eval of ClaDec and the ridge decoder
    assert not list(out.rglob("refae.h5"))  # RefAE was not asked for, so not trained
    assert read_group(out / "run0" / "classifier_e0.h5")["bn_statistics"] == "data"
    (row,) = summary["rows"]
    assert set(row["rec_loss"]) == set(row["acc_eval"]) == {"cladec", "ridge"}  # no RefAE: no difference
    assert set(row["deletion"]) == {"gradcam", "random"}
    # Decoders trained for 0 epochs have no last-epoch loss to compare.
    assert {(c["measure"], c["method"]) for c in summary["paper_comparison"]} == {
        ("rec_loss", "cladec"), ("train_rec_loss", "cladec"), ("acc_eval", "cladec")}
    report = (out / "results.md").read_text()
    assert "Rec. Loss Ridge" in report and "Deletion Grad-CAM" in report and "RefAE" not in report
    assert ",deletion,gradcam," in (out / "results.csv").read_text()
    with pytest.raises(UsageError, match="methods"):
        reproduce("table4", dataset, settings, settings.with_epochs(1), 1, out, log=lambda m: None)


def test_reproduce_sets_the_acc_eval_classifiers_statistics_as_asked_and_keeps_to_it(tmp_path, npz_dataset):
    dataset = load_dataset(npz_dataset, limit=60)
    settings = TrainSettings(epochs=0, batch_size=32, verbose=0)
    out = tmp_path / "table4"
    reproduce("table4", dataset, settings, settings.with_epochs(1), 1, out, log=lambda m: None, methods=["cladec"],
              eval_bn_statistics="data")
    assert json.loads((out / "settings.json").read_text())["eval_bn_statistics"] == "data"
    cell = json.loads((out / "run0" / "c0_L-2" / "metrics_a0.json").read_text())
    assert cell["eval_settings"]["bn_statistics"] == "data"
    with pytest.raises(UsageError, match="other settings \\(eval_bn_statistics data -> moving\\)"):
        reproduce("table4", dataset, settings, settings.with_epochs(1), 1, out, log=lambda m: None,
                  methods=["cladec"])


def test_reproduce_refuses_statistics_from_data_it_cannot_have_before_writing_anything(monkeypatch, tmp_path,
                                                                                        npz_dataset):
    batched = load_dataset(npz_dataset, limit=60, hold_bytes=0)
    settings = TrainSettings(epochs=0, batch_size=32, verbose=0)
    for choice in ({"bn_statistics": "data"}, {"eval_bn_statistics": "data"}):
        with pytest.raises(UsageError, match="statistics from data need a dataset held in memory; in this one its "
                                             "images are fitted to the model batch by batch"):
            reproduce("table4", batched, settings, settings.with_epochs(1), 1, tmp_path / "out", log=lambda m: None,
                      **choice)
    assert not (tmp_path / "out").exists()
    held = load_dataset(npz_dataset, limit=60)
    monkeypatch.setattr(evaluate_module.memory, "hold_limit", lambda: 10 ** 4)  # reconstructions too large to hold
    with pytest.raises(UsageError, match="need the reconstructions held in memory"):
        reproduce("table4", held, settings, settings.with_epochs(1), 1, tmp_path / "out", log=lambda m: None,
                  eval_bn_statistics="data")
    assert not (tmp_path / "out").exists()
    # Without Acc Eval, the Acc Eval classifiers' statistics are never set.
    reproduce("table4", batched, settings, settings.with_epochs(0), 1, tmp_path / "out", log=lambda m: None,
              methods=["cladec"], eval_bn_statistics="data")


def test_protocol_projection_reads_keras_epoch_lines(capsys):
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(np.zeros((64, 3)), np.zeros(64), batch_size=16, epochs=3, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    projection = benchmark_script("protocol_projection")
    assert sum(bool(projection.FIT_START.match(line)) for line in lines) == 1
    epochs = [m for line in lines if (m := projection.EPOCH_LINE.match(line))]
    assert [m.group(1) for m in epochs] == ["4", "4", "4"]


def test_protocol_projection_carries_warm_units_to_full_epochs_and_adds_the_cold_start():
    projection = benchmark_script("protocol_projection")
    def fit(*per_step):
        """Keras' lines for a 3-epoch training of 8 steps a epoch, each epoch's time per step given."""
        return "".join(f"Epoch {e}/3\n8/8 - 0s - {t}/step - loss: 1\n" for e, t in enumerate(per_step, start=1))

    log = ("run 1/2, table2: classifier-e3\n" + fit("900ms", "25ms", "27ms")
           + "  trained the classifier for 3 epochs in 10.0 s\n"
           + "run 2/2, table2: classifier-e3\n" + fit("100ms", "25ms", "25ms")
           + "  trained the classifier for 3 epochs in 2.0 s\n"
           + "run 2/2, table2: evaluate-c3-L-1-a0\n" + fit("125ms", "50ms", "50ms") + fit("125ms", "500us", "500us")
           + "  evaluated in 3.0 s\n")
    units = projection.units_in(log)
    assert [(u["run"], u["kind"]) for u in units] == [(0, "classifier"), (1, "classifier"), (1, "evaluate-L-1-a0")]
    assert units[0]["epoch_s"] == pytest.approx(0.208)  # 8 x the median of 25 and 27 ms
    assert units[2]["epoch_s"] == pytest.approx(0.4 + 0.004)  # two trainings' steady epochs added
    # The cold start is what run 1's units took beyond the same units of run 2.
    result = projection.project(units, full_runs=10, full_epochs=64, epochs=3)
    assert result["warm_units_at_full_epochs"]["classifier"] == pytest.approx(2.0 + 61 * 0.2)
    assert result["warm_run_s"] == pytest.approx(2.0 + 61 * 0.2 + 3.0 + 61 * 0.404)
    assert result["cold_extra_s"] == pytest.approx(10.0 - 2.0)
    assert result["protocol_s"] == pytest.approx(8.0 + 10 * result["warm_run_s"])
    assert result["coarse_units"] == []
    coarse = projection.units_in(log.replace("0s - 50ms/step", "8s - 1s/step"))
    assert [u["coarse"] for u in coarse] == [False, False, True] and coarse[2]["epoch_s"] == pytest.approx(8.004)


def test_an_unknown_table_writes_nothing(tmp_path, npz_dataset):
    settings = TrainSettings(epochs=1, batch_size=32, verbose=0)
    with pytest.raises(UsageError, match="unknown table 'Table2'"):
        reproduce("Table2", load_dataset(npz_dataset), settings, settings, 1, tmp_path / "out")
    assert not (tmp_path / "out").exists()
