"""Process set-up: a missing TensorFlow is one clear line, and only when Keras' backend needs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# `None` in sys.modules makes `import tensorflow` fail as if TensorFlow were not installed.
WITHOUT_TENSORFLOW = ("import sys; sys.modules['tensorflow'] = None; sys.argv = ['cladec'] + sys.argv[1:]; "
                      "from cladec_cli.cli.main import main; main()")


def cladec_without_tensorflow(*args, backend=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("KERAS_BACKEND", None)
    if backend:
        env["KERAS_BACKEND"] = backend
    return subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("debug", [(), ("--debug",)])
def test_missing_tensorflow_is_one_clear_line(tmp_path, debug):
    result = cladec_without_tensorflow(*debug, "layers", "--classifier", tmp_path / "c.h5")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == ("cladec: error: TensorFlow is not installed: pip install 'cladec[cpu]' (or 'cladec[gpu]'), "
                    "or pick another Keras backend with KERAS_BACKEND")
    if not debug:
        assert result.stderr.count("\n") == 1


def test_missing_tensorflow_is_not_blamed_under_another_backend(tmp_path):
    result = cladec_without_tensorflow("layers", "--classifier", tmp_path / "c.h5", backend="jax")
    assert result.returncode != 0  # the classifier does not exist, or (here) JAX is not installed either
    assert "TensorFlow is not installed" not in result.stderr


def test_help_needs_no_tensorflow():
    result = cladec_without_tensorflow("--help")
    assert result.returncode == 0 and "train-decoder" in result.stdout


def test_a_backend_that_cannot_load_is_one_clear_line(tmp_path):
    without_torch = WITHOUT_TENSORFLOW.replace("sys.modules['tensorflow'] = None", "sys.modules['torch'] = None")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "torch"}
    for script, backend, line in (
            (without_torch, "torch", "cladec: error: Keras' backend torch needs the package torch, which is not "
                                     "installed: install it, or choose another backend with KERAS_BACKEND"),
            (WITHOUT_TENSORFLOW, "pytorch", "cladec: error: KERAS_BACKEND=pytorch names no Keras backend; choose "
                                            "tensorflow, jax or torch")):
        result = subprocess.run([sys.executable, "-c", script, "layers", "--classifier", tmp_path / "c.h5"],
                                capture_output=True, text=True, env={**env, "KERAS_BACKEND": backend}, timeout=120)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(line), result.stderr
