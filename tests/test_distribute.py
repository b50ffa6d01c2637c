"""--distribute: one training spread over several devices (MirroredStrategy) or processes
(MultiWorkerMirroredStrategy) gives the model single-device training gives, written once."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cladec_cli import distribute
from cladec_cli.errors import UsageError
from conftest import read_group, write_npz

ON_CPUS = Path(__file__).with_name("cladec_on_cpus.py")
TRAIN = ("--batch-size", "32", "--json")


def cladec(*args, cpus=1, env=None, timeout=240):
    """Run the CLI in a fresh process on `cpus` logical CPU devices; the finished process."""
    command = [sys.executable, str(ON_CPUS), str(cpus), *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return f"npz:{write_npz(tmp_path_factory.mktemp('distribute') / 'tiny.npz', n_train=256, n_test=64)}"


def test_under_jax_mirrored_is_keras_data_parallel(tmp_path, data):
    """Two JAX CPU devices (XLA's host device count) stand for two GPUs."""
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    args = ["train-classifier", "--dataset", data, "--epochs", 1, *TRAIN, "--distribute", "mirrored",
            "--out", tmp_path / "c.h5"]
    done = subprocess.run([sys.executable, "-m", "cladec_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(jax); " in done.stderr and "distributed mirrored, 2 replicas of 16 images" in done.stderr
    assert read_group(tmp_path / "c.h5")["runtime"]["replicas"] == 2


@pytest.mark.tensorflow_only
def test_no_distribution_and_bad_choices():
    assert distribute.resolve("auto", "tensorflow") is distribute.NONE
    assert distribute.resolve("none", "jax").provenance() == {"distribute": "none", "replicas": 1, "workers": 1}
    with pytest.raises(UsageError, match="unknown distribution"):
        distribute.resolve("ring", "tensorflow")
    with pytest.raises(UsageError, match="TensorFlow or JAX"):
        distribute.resolve("mirrored", "torch")


@pytest.mark.tensorflow_only
def test_multiworker_needs_a_cluster(monkeypatch):
    for name in ("TF_CONFIG", "SLURM_PROCID", "SLURM_STEP_NODELIST"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UsageError, match="TF_CONFIG .* Slurm"):
        distribute.resolve("multiworker", "tensorflow")


@pytest.mark.tensorflow_only
def test_mirrored_over_two_devices_trains_what_one_device_trains(tmp_path, data):
    single, mirrored = tmp_path / "single", tmp_path / "mirrored"
    for folder, how in ((single, "none"), (mirrored, "mirrored")):
        folder.mkdir()
        # BatchNorm's statistics recomputed on the training images after training: each replica normalises
        # its own half batch while training, so the moving averages are the part that differs most.
        done = cladec("train-classifier", "--dataset", data, "--epochs", 1, *TRAIN, "--distribute", how,
                      "--bn-statistics", "data",
                      "--out", folder / "classifier.h5", cpus=2)
        if how == "mirrored":
            assert "distributed mirrored, 2 replicas of 16 images" in done.stderr
    # Both decoders explain the same classifier, so their test losses compare the trainings alone.
    for folder, how in ((single, "none"), (mirrored, "mirrored")):
        cladec("train-decoder", "--classifier", single / "classifier.h5", "--layer", -2, "--epochs", 3, *TRAIN,
               "--distribute", how, "--out", folder / "decoder.h5", cpus=2)
        assert files(folder) == ["classifier.h5", "decoder.h5"]  # one artifact each, no backup left

    record = {folder: read_group(folder / "decoder.h5") for folder in (single, mirrored)}
    assert record[mirrored]["runtime"]["replicas"] == 2 and record[single]["runtime"]["distribute"] == "none"
    assert record[mirrored]["metrics"]["test_rec_loss"] == pytest.approx(record[single]["metrics"]["test_rec_loss"],
                                                                         rel=0.03)
    assert record[mirrored]["metrics"]["test_rec_loss"] != record[single]["metrics"]["test_rec_loss"]
    losses = {folder: _classifier_test_loss(folder / "classifier.h5", data) for folder in (single, mirrored)}
    assert losses[mirrored] == pytest.approx(losses[single], rel=0.15)


def _classifier_test_loss(path, data):
    import keras

    from cladec_cli.data.datasets import load_dataset

    model = keras.models.load_model(path, compile=False)
    test = load_dataset(data).test
    images, labels = test.images, test.labels
    logits = np.asarray(model.predict(images, verbose=0))
    return float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits))


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.tensorflow_only
def test_two_workers_train_one_decoder_together(tmp_path, data):
    classifier = tmp_path / "classifier.h5"
    cladec("train-classifier", "--dataset", data, "--epochs", 2, *TRAIN, "--out", classifier)
    alone = tmp_path / "alone"
    alone.mkdir()
    args = ["train-decoder", "--classifier", classifier, "--layer", -2, "--epochs", 2, *TRAIN]
    cladec(*args, "--out", alone / "decoder.h5")

    together = tmp_path / "together"
    together.mkdir()
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    try:
        for index in range(2):
            config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            env = {**os.environ, "TF_CONFIG": json.dumps(config)}
            processes.append(subprocess.Popen(
                [sys.executable, str(ON_CPUS), "1", *map(str, args), "--distribute", "multiworker",
                 "--out", together / "decoder.h5"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outputs = [p.communicate(timeout=180) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "distributed multiworker on 2 workers, 2 replicas of 16 images" in err
    assert files(together) == ["decoder.h5"]  # the chief's, and nothing else
    record = read_group(together / "decoder.h5")
    assert record["runtime"]["workers"] == 2 and record["runtime"]["distribute"] == "multiworker"
    single = read_group(alone / "decoder.h5")
    assert record["metrics"]["test_rec_loss"] == pytest.approx(single["metrics"]["test_rec_loss"], rel=1e-3)
