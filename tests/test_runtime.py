"""Device set-up: 'auto' rules, the device line, precision policies and float32 saved models."""

import keras
import numpy as np
import pytest

from cladec_cli import runtime
from cladec_cli.classifier import train_classifier
from cladec_cli.cladec import train_decoder
from cladec_cli.data.datasets import load_dataset
from cladec_cli.errors import UsageError
from cladec_cli.training import TrainSettings
from conftest import invoke


CPU = runtime.Device("CPU", "CPU, 2 cores")
AMPERE = runtime.Device("GPU", "GPU:0 NVIDIA A100", 8.0)
VOLTA = runtime.Device("GPU", "GPU:0 Tesla V100", 7.0)


def test_auto_precision_follows_the_device():
    assert runtime.resolve_precision("auto", CPU) == "float32"
    assert runtime.resolve_precision("auto", AMPERE) == "bfloat16"
    assert runtime.resolve_precision("auto", VOLTA) == "float16"
    assert runtime.resolve_precision("float16", CPU) == "float16"
    with pytest.raises(UsageError, match="precision"):
        runtime.resolve_precision("int8", CPU)


def test_auto_xla_is_off_on_cpu_and_on_on_gpu_under_tensorflow(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert runtime.resolve_xla("auto", CPU) is False
    assert runtime.resolve_xla("auto", AMPERE) is True
    assert runtime.resolve_xla(False, AMPERE) is False
    # The CLI's words work in the library too.
    assert runtime.resolve_xla("on", CPU) is True and runtime.resolve_xla("off", AMPERE) is False
    with pytest.raises(UsageError, match="choose auto, on or off"):
        runtime.resolve_xla("yes", CPU)
    # Under TensorFlow's op determinism Keras compiles without XLA, so XLA is off (auto) or refused (on).
    assert runtime.resolve_xla("auto", AMPERE, deterministic=True) is False
    assert runtime.resolve_xla("on", CPU, deterministic=False) is True
    with pytest.raises(UsageError, match="do not go together"):
        runtime.resolve_xla("on", CPU, deterministic=True)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert runtime.resolve_xla("auto", CPU) is True
    assert runtime.resolve_xla("on", AMPERE, deterministic=True) is True


def test_this_machine_resolves_to_deterministic_float32_without_xla():
    setup = runtime.resolve_runtime()
    assert setup.device.startswith("CPU, ") and setup.precision == "float32"
    assert setup.deterministic and setup.steps_per_execution == (16 if runtime.backend() == "tensorflow" else 1)
    line = setup.line()
    assert line.startswith("device: CPU, ") and "precision float32" in line and "deterministic on" in line
    with pytest.raises(UsageError):
        runtime.resolve_runtime(steps_per_execution=0)


def test_cpus_run_chunks_of_steps_only_under_tensorflow(monkeypatch):
    assert runtime.resolve_runtime(steps_per_execution=3).steps_per_execution == 3
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert runtime.default_steps_per_execution(CPU) == 16
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert runtime.default_steps_per_execution(CPU) == 1
    assert runtime.default_steps_per_execution(AMPERE) == runtime.GPU_STEPS_PER_EXECUTION


def test_a_tensorflow_distribution_runs_one_step_per_execution():
    """Keras' multi-step loop fails inside a TensorFlow distribution strategy (keras-team/keras#19246)."""
    if runtime.backend() != "tensorflow":
        pytest.skip("a TensorFlow distribution strategy needs Keras' TensorFlow backend")
    assert runtime.resolve_runtime(distribute="mirrored").steps_per_execution == 1
    assert runtime.resolve_runtime(distribute="mirrored", steps_per_execution=1).steps_per_execution == 1
    with pytest.raises(UsageError, match="keras-team/keras#19246"):
        runtime.resolve_runtime(distribute="mirrored", steps_per_execution=4)


def test_the_device_line_counts_replicas_and_says_when_one_device_has_nothing_to_spread():
    def line(replicas):
        return runtime.Runtime("tensorflow", "CPU, 2 cores", "float32", False, True, 1, "mirrored", replicas).line(128)

    assert line(1).endswith("; distributed mirrored, 1 replica of 128 images (one device: nothing to spread)")
    assert line(2).endswith("; distributed mirrored, 2 replicas of 64 images")


def test_device_line_and_runtime_provenance_through_the_cli(tmp_path, npz_dataset):
    out = tmp_path / "c.h5"
    result = invoke("train-classifier", "--dataset", npz_dataset, "--epochs", 1, "--batch-size", 32,
                    "--precision", "bfloat16", "--steps-per-execution", 2, "--no-deterministic", "--out", out)
    lines = [line for line in result.stderr.splitlines() if line.startswith("device: ")]
    assert len(lines) == 1
    assert "precision bfloat16" in lines[0] and "deterministic off" in lines[0]
    assert "steps per execution 2" in lines[0]
    recorded = invoke("info", out, "--json").stdout
    assert '"precision": "bfloat16"' in recorded and '"steps_per_execution": 2' in recorded


class _FakeJaxConfig:
    """The part of `jax.config` the compilation cache set-up reads and writes."""

    def __init__(self, cache_dir=None):
        self.jax_compilation_cache_dir = cache_dir
        self.updated = {}

    def update(self, name, value):
        self.updated[name] = value
        setattr(self, name, value)


@pytest.mark.parametrize("env, cache_dir, threshold, folder", [
    ({}, None, 0.0, "home"),  # every program is kept, in cladec's folder
    ({"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "2"}, None, None, "home"),  # the user's threshold stands
    ({}, "/theirs", 0.0, "/theirs"),  # a folder set through JAX (e.g. $JAX_COMPILATION_CACHE_DIR) stands
])
def test_jax_keeps_every_compiled_program(monkeypatch, tmp_path, env, cache_dir, threshold, folder):
    config = _fake_jax(monkeypatch, tmp_path, cache_dir)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime.keep_compiled_programs()
    assert config.updated.get("jax_persistent_cache_min_compile_time_secs") == threshold
    expected = str(tmp_path / "cladec" / "jax") if folder == "home" else folder
    assert config.jax_compilation_cache_dir == expected


@pytest.mark.parametrize("env, filelock, cap", [
    ({}, True, runtime.JAX_CACHE_MAX_BYTES),  # capped where JAX can evict
    ({}, False, None),  # JAX refuses a cap without filelock: none
    ({"JAX_COMPILATION_CACHE_MAX_SIZE": "1000"}, True, None),  # the user's cap, read by JAX itself, stands
])
def test_jax_caps_its_compilation_cache_where_it_can_evict(monkeypatch, tmp_path, env, filelock, cap):
    config = _fake_jax(monkeypatch, tmp_path)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setattr(runtime, "_jax_can_evict", lambda: filelock)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime.keep_compiled_programs()
    assert config.updated.get("jax_compilation_cache_max_size") == cap


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_other_backends_leave_jax_alone(monkeypatch, tmp_path, backend):
    config = _fake_jax(monkeypatch, tmp_path)
    monkeypatch.setenv("KERAS_BACKEND", backend)
    runtime.keep_compiled_programs()
    assert config.updated == {} and config.jax_compilation_cache_dir is None


def test_every_command_keeps_compiled_programs_before_it_loads_a_model(monkeypatch, trained):
    from cladec_cli import artifacts

    events = []
    load_model = artifacts.load_model
    monkeypatch.setattr(runtime, "keep_compiled_programs", lambda: events.append("keep"))
    monkeypatch.setattr(artifacts, "load_model", lambda *a, **k: events.append("load") or load_model(*a, **k))
    invoke("layers", "--classifier", trained["classifier"])
    assert events[:2] == ["keep", "load"]


def _fake_jax(monkeypatch, tmp_path, cache_dir=None):
    """A stand-in for the `jax` module whose config records updates; cladec's cache folder under tmp_path."""
    import sys
    import types

    config = _FakeJaxConfig(cache_dir)
    monkeypatch.setitem(sys.modules, "jax", types.SimpleNamespace(config=config))
    monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_MAX_SIZE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return config


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's persistent compilation cache")
def test_under_jax_a_command_run_again_compiles_nothing_new(tmp_path, trained):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    kept = tmp_path / "cache" / "cladec" / "jax"

    def explain(name):
        subprocess.run([sys.executable, "-m", "cladec_cli", "explain", "--classifier", trained["classifier"],
                        "--decoder", trained["decoder"], "--refae", trained["refae"], "--dataset",
                        trained["dataset"], "--count", "4", "--out", tmp_path / name], env=env, check=True,
                       capture_output=True, timeout=300)
        return sorted(p.name for p in kept.iterdir())

    first = explain("a.png")
    assert len(first) >= 5  # the initializers of three loaded models, their predictions
    assert explain("b.png") == first


@pytest.fixture(scope="module")
def tiny(npz_dataset):
    return load_dataset(npz_dataset)


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_every_precision_trains_with_finite_falling_losses_and_saves_float32(tmp_path, tiny, precision):
    settings = TrainSettings(epochs=3, batch_size=32, verbose=0, precision=precision, lr=3e-3)
    classifier, record = train_classifier(tiny, settings, tmp_path / "c.h5")
    _, decoder_record = train_decoder(classifier, record, tiny, -2, 0.5, settings, tmp_path / "d.h5")
    keras.mixed_precision.set_global_policy("float32")  # as in a new process
    for path in ("c.h5", "d.h5"):
        loaded = keras.models.load_model(tmp_path / path, compile=False)
        assert {layer.dtype_policy.name for layer in loaded._flatten_layers()} == {"float32"}
        assert all(w.dtype == "float32" for w in loaded.weights)
    for rec in (record, decoder_record):
        assert rec["runtime"]["precision"] == precision
    assert np.isfinite(decoder_record["metrics"]["test_rec_loss"])


def test_losses_fall_in_every_precision(tiny):
    from cladec_cli.classifier import fit_classifier
    from cladec_cli.architectures import build_classifier
    from cladec_cli.training import start

    for precision in ("float32", "bfloat16", "float16"):
        settings = TrainSettings(epochs=3, batch_size=32, verbose=0, precision=precision, lr=3e-3)
        start(settings)
        model = build_classifier(tiny.image_shape, tiny.n_classes)
        assert model.get_layer("logits").dtype_policy.name == "float32"
        losses = fit_classifier(model, tiny.train, settings)["loss"]
        assert all(np.isfinite(losses)) and losses[-1] < losses[0], (precision, losses)
