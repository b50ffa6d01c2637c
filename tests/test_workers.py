"""Several `reproduce` processes on one folder (Slurm array shards, --workers, or the same command
started twice) train each model once and report what one process reports."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cladec_cli.reproduce import Unit, parse_shard, shard_units
from cladec_cli.errors import UsageError
from cladec_cli.workers import run_shards, shard_arguments, shard_from_environment, visible_gpus
from conftest import write_npz

# Table IV at 0 epochs: per run one (untrained) classifier, decoder and RefAE, and one cell (whose two
# Acc Eval classifiers count as models): the processes' coordination, not training, is under test.
TABLE = ("reproduce", "table4", "--runs", "2", "--epochs", "0", "--batch-size", "32", "--lock-timeout", "20")
TRAINED = re.compile(r"(\d+) models trained")


def test_shard_arguments_drop_the_parents_options():
    argv = ["reproduce", "table2", "--workers", "3", "--runs", "2", "--shard=1/4", "-q"]
    assert shard_arguments(argv, 2, 3) == ["reproduce", "table2", "--runs", "2", "-q", "--shard", "2/3"]


def test_shard_from_a_slurm_job_array(monkeypatch):
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(name, raising=False)
    assert shard_from_environment() == (0, 1)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "3")  # --array=3-6
    assert shard_from_environment() == (2, 4)
    monkeypatch.setenv("SLURM_ARRAY_TASK_STEP", "2")  # --array=3-9:2, tasks 3, 5, 7, 9
    assert shard_from_environment() == (1, 4)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "11")
    with pytest.raises(UsageError, match="--array=0-N"):
        shard_from_environment()
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "abc")
    with pytest.raises(UsageError, match="SLURM_ARRAY_TASK_ID must be a whole number, got 'abc'"):
        shard_from_environment()
    assert parse_shard("0/1") == (0, 1)
    for text, said in (("two", "K/N"), ("1/0", "N, the number of shards, must be at least 1"),
                       ("2/2", "K must lie in 0..N-1 \\(shards are counted from 0\\)")):
        with pytest.raises(UsageError, match=said):
            parse_shard(text)


def test_shards_use_the_gpus_this_process_may_use(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []


def test_workers_sharing_a_gpu_are_told_it_does_not_pay(monkeypatch, capsys):
    started = []

    class Finished:
        def __init__(self, command, env, **kwargs):
            started.append(env["CUDA_VISIBLE_DEVICES"])
            self.stdout, self.returncode = iter(()), 0

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Finished)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    run_shards(["reproduce", "table2"], 2)
    assert started == ["0", "1"] and "share" not in capsys.readouterr().err
    run_shards(["reproduce", "table2"], 3)
    assert started[2:] == ["0", "1", "0"]
    assert "note: 3 workers share 2 GPUs" in capsys.readouterr().err


def _run_units(run):
    classifier = Unit("classifier", run, (), None)
    return [classifier, *(Unit(f"u{i}", run, (), None, (classifier,)) for i in range(5))]


def test_shards_cut_by_run_first_then_within_runs():
    runs = [_run_units(0), _run_units(1), _run_units(2), _run_units(3)]
    assert [{u.run for u in shard_units(runs, (k, 2))} for k in range(2)] == [{0, 2}, {1, 3}]
    assert all(len(shard_units(runs, (k, 2))) == 12 for k in range(2))
    # Two runs, five shards: shards 0, 2, 4 share run 0 and shards 1, 3 run 1, after the classifier.
    two = runs[:2]
    shares = [[u.name for u in shard_units(two, (k, 5))] for k in range(5)]
    assert shares == [["u0", "u3"], ["u0", "u2", "u4"], ["u1", "u4"], ["u1", "u3"], ["u2"]]
    assert {u.run for u in shard_units(two, (3, 5))} == {1}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return f"npz:{write_npz(tmp_path_factory.mktemp('workers') / 'tiny.npz', n_train=128, n_test=48)}"


def start(data, out, *extra, env=None):
    command = [sys.executable, "-m", "cladec_cli", *TABLE, "--dataset", data, "--out", str(out), *map(str, extra)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def finish(processes, timeout=400):
    """Wait for all; their output (stdout and stderr), each checked for success."""
    errors = []
    try:
        for p in processes:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err[-3000:]
            errors.append(out + err)
    finally:
        for p in processes:
            p.kill()
    return errors


def trained(err):
    return int(TRAINED.findall(err)[-1])


def rows(out):
    """Every row of the results."""
    return json.loads((Path(out) / "results.json").read_text())["rows"]


@pytest.fixture(scope="module")
def alone(tmp_path_factory, data):
    """The table made by one process: (folder, models it trained)."""
    out = tmp_path_factory.mktemp("alone") / "table4"
    (err,) = finish([start(data, out)])
    return out, trained(err)


@pytest.mark.slow
def test_three_array_shards_then_the_report(tmp_path, data, alone):
    out = tmp_path / "table4"
    shards = [start(data, out, env={"SLURM_ARRAY_TASK_ID": str(k), "SLURM_ARRAY_TASK_COUNT": "3"})
              for k in range(3)]
    errors = finish(shards)
    assert all(f"shard {k}/3 of {out} done" in err for k, err in enumerate(errors))
    assert not (out / "results.json").exists()
    # Per run: the classifier, the ClaDec decoder and the RefAE (no Acc Eval at --epochs 0, and so 0 evaluation epochs).
    assert sum(trained(err) for err in errors) == alone[1] == 2 * (1 + 1 + 1)
    (report,) = finish([start(data, out, "--report-only")])
    assert trained(report) == 0
    assert rows(out) == rows(alone[0])


@pytest.mark.slow
def test_the_same_command_three_times_at_once(tmp_path, data, alone):
    out = tmp_path / "table4"
    errors = finish([start(data, out) for _ in range(3)])
    assert sum(trained(err) for err in errors) == alone[1]
    assert rows(out) == rows(alone[0])
    assert not list(out.rglob("*.lock")) and not list(out.rglob("*.partial"))


@pytest.mark.slow
def test_a_killed_workers_unit_is_taken_over_and_resumed(tmp_path, data):
    out = tmp_path / "table2"
    args = ("--backup-interval", 0, "--lock-timeout", 3)
    table = ["reproduce", "table2", "--runs", "1", "--epochs", "40", "--batch-size", "32", "--dataset", data,
             "--out", str(out), *map(str, args)]
    first = subprocess.Popen([sys.executable, "-m", "cladec_cli", *table], stderr=subprocess.PIPE, text=True)
    backup = out / "run0" / "classifier_e40.h5.partial" / "training_metadata.json"
    try:
        deadline = time.time() + 120
        while not backup.exists():
            assert time.time() < deadline and first.poll() is None, "no backup appeared"
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
    assert (out / "run0" / ".classifier-e40.lock").exists() and not (out / "run0" / "classifier_e40.h5").exists()

    second = subprocess.Popen([sys.executable, "-m", "cladec_cli", *table], stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        deadline = time.time() + 180
        for line in second.stderr:
            lines.append(line)
            if "trained the classifier" in line or time.time() > deadline:
                break
    finally:
        second.kill()
        second.wait()
    text = "".join(lines)
    assert f"took over classifier-e40 from pid {first.pid}" in text
    assert "trained the classifier for 40 epochs" in text
    epochs = [int(n) for n in re.findall(r"Epoch (\d+)/40", text)]
    assert epochs and epochs[0] > 1 and epochs[-1] == 40  # resumed from the backup, not from epoch 1
    assert (out / "run0" / "classifier_e40.h5").exists()


@pytest.mark.slow
def test_local_workers_then_the_results(tmp_path, data, alone):
    out = tmp_path / "table4"
    (output,) = finish([start(data, out, "--workers", 2)])
    assert "[shard 0/2] " in output and "[shard 1/2] " in output
    assert sum(int(n) for n in re.findall(r"\[shard \d/2\] .*?(\d+) models trained", output)) == alone[1]
    (summary,) = [line for line in output.splitlines() if line.startswith(f"wrote {out}/results.json")]
    assert summary.endswith(" s, by 2 workers, each listing above the models it trained)")
    assert rows(out) == rows(alone[0])


def test_reproduce_refuses_a_multiworker_strategy(tmp_path):
    from click.testing import CliRunner

    from cladec_cli.cli.main import cli

    result = CliRunner().invoke(cli, ["reproduce", "table2", "--distribute", "multiworker", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--shard or --workers" in result.output
    assert "Traceback" not in result.output and not list(tmp_path.iterdir())
