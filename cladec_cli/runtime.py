"""Process-wide set-up for whichever Keras backend runs: a quiet import, seeds, determinism, precision,
XLA and steps per execution, and the one line that says where a job runs."""

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from cladec_cli.errors import UsageError, counted, option

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
MIXED_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# Steps per execution on a GPU: each step of these small models is a few launches, so running several
# steps per call from the host keeps the GPU busy (benchmarks/steps_sweep.py measures it).
GPU_STEPS_PER_EXECUTION = 64
# Steps per execution on a CPU under TensorFlow: a step of the paper's classifier takes about 16 ms on
# 2 cores, of which Keras' per-call work (the call, the iterator, the callbacks' dispatch) is a
# noticeable share; in chunks of 16 its epochs took about a tenth less, the decoders' no more
# (docs/results/steps-per-execution-cpu-2-cores-2026-11-29.txt; benchmarks/steps_cpu_ab.py).
# Under JAX the steps of a chunk are unrolled on CPUs, so compile time would grow with it: 1 there.
CPU_STEPS_PER_EXECUTION = {"tensorflow": 16}


def backend():
    """The Keras backend in use ('tensorflow', 'jax' or 'torch'), read as Keras reads it (KERAS_BACKEND,
    else keras.json) without importing Keras, whose import would load TensorFlow before it can be quieted."""
    return os.environ.get("KERAS_BACKEND", "").strip() or _configured_backend()


def _configured_backend():
    import json

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend") or "tensorflow"
    except (OSError, ValueError):
        return "tensorflow"


def require_backend():
    """Refuse to go on, in one line, when Keras' backend cannot load: its package (TensorFlow, the
    default, JAX or PyTorch) is missing, or KERAS_BACKEND names no backend."""
    import importlib.util

    from cladec_cli.errors import CladecError

    chosen = backend()
    if chosen == "tensorflow" and (sys.modules.get("tensorflow") is not None
                                   or importlib.util.find_spec("tensorflow") is not None):
        return  # Keras is imported later, once TensorFlow has been loaded quietly
    try:
        import keras  # noqa: F401  (loads the configured backend)
    except ModuleNotFoundError as e:
        package = (e.name or "").partition(".")[0]
        if package == "tensorflow":
            raise CladecError("TensorFlow is not installed: pip install 'cladec[cpu]' (or 'cladec[gpu]'), "
                              "or pick another Keras backend with KERAS_BACKEND") from None
        raise CladecError(f"Keras' backend {chosen} needs the package {package}, which is not installed: install "
                          "it, or choose another backend with KERAS_BACKEND (tensorflow, jax or torch)") from None
    except ValueError as e:
        if "backend" not in str(e):
            raise
        raise CladecError(f"KERAS_BACKEND={chosen} names no Keras backend; choose tensorflow, jax or torch") from None


def import_tensorflow_quietly(any_backend=False):
    """Import TensorFlow with the C++ start-up banner (which no variable silences) sent to /dev/null.

    Under the JAX and PyTorch backends, which need no TensorFlow, only with `any_backend`, and then a
    missing TensorFlow is no error.
    """
    if "tensorflow" in sys.modules or not (any_backend or backend() == "tensorflow"):
        return
    if any_backend and backend() != "tensorflow":
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None:
            return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    # Retracing notices from predicting with many models in one process say nothing actionable.
    sys.modules["tensorflow"].get_logger().setLevel("ERROR")


def has_tensorflow():
    """Whether TensorFlow is the backend (tf.data and tf.image are then available)."""
    return backend() == "tensorflow"


@dataclass(frozen=True)
class Device:
    """What the backend computes on: 'GPU' or 'CPU', a human description, and the GPU's compute capability."""

    kind: str
    description: str
    compute_capability: float = None

    @property
    def is_gpu(self):
        return self.kind == "GPU"


def cpu_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _tensorflow_device():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    names, capability = [], None
    for i, gpu in enumerate(gpus):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(f"GPU:{i} {details.get('device_name', gpu.name)}")
        if details.get("compute_capability"):
            capability = float("{}.{}".format(*details["compute_capability"]))
    return Device("GPU", ", ".join(names), capability)


def _jax_device():
    import jax

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if not gpus:
        return None
    capability = getattr(gpus[0], "compute_capability", None)
    return Device("GPU", ", ".join(f"GPU:{i} {d.device_kind}" for i, d in enumerate(gpus)),
                  float(capability) if capability else None)


def _torch_device():
    import torch

    if not torch.cuda.is_available():
        return None
    count = torch.cuda.device_count()
    major, minor = torch.cuda.get_device_capability(0)
    return Device("GPU", ", ".join(f"GPU:{i} {torch.cuda.get_device_name(i)}" for i in range(count)),
                  float(f"{major}.{minor}"))


def current_device():
    """The GPU(s) the backend sees, else the CPU with its core count."""
    probe = {"tensorflow": _tensorflow_device, "jax": _jax_device, "torch": _torch_device}.get(backend())
    found = probe() if probe else None
    return found or Device("CPU", f"CPU, {cpu_cores()} cores")


def nvidia_gpus():
    """GPU names that nvidia-smi lists (empty when there is no driver or no nvidia-smi)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in listed.stdout.splitlines() if line.startswith("GPU")] if listed.returncode == 0 else []


def missing_gpu_reason():
    """Why the backend runs on the CPU although nvidia-smi lists a GPU; None when that is not the case."""
    if current_device().is_gpu or not nvidia_gpus():
        return None
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        if not tf.test.is_built_with_cuda():
            return ("this TensorFlow build has no CUDA support (tensorflow-cpu?); install cladec's [gpu] extra "
                    "(tensorflow[and-cuda])")
        return ("TensorFlow could not load the CUDA libraries; run with TF_CPP_MIN_LOG_LEVEL=0 to see which "
                "library failed")
    if name == "jax":
        return "this jaxlib has no CUDA plugin (install jax[cuda12] or jax[cuda13])"
    return "this PyTorch build sees no CUDA device (a CPU-only wheel?)"


@dataclass(frozen=True)
class Runtime:
    """How a job computes: backend, devices, precision, XLA, determinism and steps per execution."""

    backend: str
    device: str
    precision: str
    xla: bool
    deterministic: bool
    steps_per_execution: int
    distribute: str = "none"
    replicas: int = 1
    workers: int = 1

    @property
    def on_gpu(self):
        """Whether the job computes on GPUs (its device as `current_device` described it)."""
        return self.device.startswith("GPU")

    def line(self, batch_size=None):
        """The one line each job prints before it starts; with `batch_size`, a distributed job's line
        gives the images each replica takes per step."""
        line = (f"device: {self.device} ({self.backend}); precision {self.precision}; "
                f"XLA {'on' if self.xla else 'off'}; deterministic {'on' if self.deterministic else 'off'}; "
                f"steps per execution {self.steps_per_execution}")
        if self.distribute == "none":
            return line
        workers = f" on {self.workers} workers" if self.workers > 1 else ""
        per_replica = f" of {batch_size // self.replicas} images" if batch_size else ""
        replicas = counted(self.replicas, "replica")
        alone = " (one device: nothing to spread)" if self.replicas == 1 else ""
        return f"{line}; distributed {self.distribute}{workers}, {replicas}{per_replica}{alone}"

    def provenance(self):
        return {"runtime": asdict(self)}


def resolve_precision(choice, device):
    """'auto' -> bfloat16 on GPUs of compute capability 8.0 or higher, float16 on older GPUs, float32 on CPUs."""
    if choice not in PRECISIONS:
        raise UsageError(f"unknown {option('precision')} {choice!r}; choose one of {', '.join(PRECISIONS)}")
    if choice != "auto":
        return choice
    if not device.is_gpu:
        return "float32"
    return "bfloat16" if (device.compute_capability or 0) >= 8.0 else "float16"


def resolve_xla(choice, device, deterministic=False):
    """XLA (`jit_compile`): 'auto' is on for GPUs and off for CPUs under TensorFlow, where it was measured
    slower for these models, and off with TensorFlow's op determinism, under which Keras compiles
    without XLA whatever it is asked; JAX always compiles; PyTorch runs eagerly. `choice`: auto (or
    None), on or off (or True / False)."""
    choice = {"on": True, "off": False}.get(choice, choice)
    name = backend()
    if choice is True and deterministic and name == "tensorflow":
        raise UsageError(f"{option('xla')} on and {option('deterministic')} do not go together under TensorFlow "
                         "(determinism is the default on CPUs): Keras compiles without XLA while TensorFlow's op "
                         f"determinism is on; add {option('deterministic=False')} or drop {option('xla')} on")
    if choice in (True, False):
        return choice
    if choice not in (None, "auto"):
        raise UsageError(f"unknown XLA setting {choice!r}; choose auto, on or off")
    if name == "jax":
        return True
    if name == "torch":
        return False
    return device.is_gpu and not deterministic


def resolve_runtime(precision="auto", deterministic=None, steps_per_execution=None, xla="auto", distribute="auto"):
    """Fill in the 'auto' settings for the device at hand."""
    from cladec_cli import distribute as distributing

    spread = distributing.resolve(distribute, backend())
    device = current_device()
    if steps_per_execution is not None and steps_per_execution < 1:
        raise UsageError(f"steps per execution must be at least 1, got {steps_per_execution}")
    if _steps_fail_distributed(spread):
        if (steps_per_execution or 1) > 1:
            raise UsageError(f"{option('steps_per_execution')} {steps_per_execution} does not go with "
                             f"{option('distribute')} {spread.kind} under TensorFlow: Keras' loop over several "
                             "steps fails inside a distribution strategy (keras-team/keras#19246); "
                             "use 1 or leave it out")
        steps_per_execution = 1
    deterministic = (not device.is_gpu) if deterministic is None else bool(deterministic)
    return Runtime(
        backend=backend(),
        device=device.description,
        precision=resolve_precision(precision, device),
        xla=resolve_xla(xla, device, deterministic),
        deterministic=deterministic,
        steps_per_execution=steps_per_execution or default_steps_per_execution(device),
        **spread.provenance(),
    )


def default_steps_per_execution(device):
    """Optimizer steps per compiled call where none is asked for: `GPU_STEPS_PER_EXECUTION` on GPUs, on
    CPUs `CPU_STEPS_PER_EXECUTION` of the backend (1 where it names none)."""
    if device.is_gpu:
        return GPU_STEPS_PER_EXECUTION
    return CPU_STEPS_PER_EXECUTION.get(backend(), 1)


def _steps_fail_distributed(spread):
    """Whether several steps per execution would fail: under a TensorFlow distribution strategy, where
    `fit` runs Keras' own multi-step loop, whose conditional cannot run in a replica context."""
    return spread.kind != "none" and backend() == "tensorflow"


def apply(runtime):
    """Make `runtime` the process's set-up: the dtype policy for models built from now on, and determinism."""
    import keras

    keras.mixed_precision.set_global_policy(MIXED_POLICIES[runtime.precision])
    _set_determinism(runtime.deterministic)
    keep_compiled_programs()


@contextlib.contextmanager
def setup_kept():
    """Put back what `apply` changes in this process, the global dtype policy and op determinism, as
    they were on the way in, so that a training's set-up does not reach the caller's own models."""
    import keras

    policy, deterministic = keras.mixed_precision.global_policy().name, _determinism()
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
        if deterministic is not None and deterministic != _determinism():
            _set_determinism(deterministic)


def _determinism():
    """Whether the backend runs deterministic ops (None where the process cannot undo it: under JAX,
    XLA reads its flags once)."""
    name = backend()
    if name == "tensorflow":
        from tensorflow.python.framework import config as tf_config

        return tf_config.is_op_determinism_enabled()
    if name == "torch":
        import torch

        return torch.are_deterministic_algorithms_enabled()
    return None


def jax_cache_dir():
    """Where compiled XLA programs are kept between processes under JAX: $JAX_COMPILATION_CACHE_DIR,
    else $XDG_CACHE_HOME/cladec/jax (~/.cache/cladec/jax)."""
    configured = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cladec" / "jax"


JAX_CACHE_MAX_BYTES = 2 << 30  # the JAX compilation cache's size beyond which it evicts (with filelock)


def keep_compiled_programs():
    """Under JAX, turn on its persistent compilation cache for every program, however fast it compiles
    (elsewhere, nothing), capped at `JAX_CACHE_MAX_BYTES` where the `filelock` package is installed
    (JAX needs it to evict; $JAX_COMPILATION_CACHE_MAX_SIZE still sets the cap). Every model is compiled afresh in a new process, from the initializers that
    build a model loaded from a file to the prediction and training steps, and for models this small
    compiling takes longer than predicting or training an epoch on a GPU; later runs and later commands
    find the same programs in the cache. JAX's own threshold (1 s) would leave nearly all of them out;
    $JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS still sets it. Every command calls this as it starts, and
    so does `apply`, for the Python API's trainings."""
    if backend() != "jax":
        return
    import jax

    if not os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if not os.environ.get("JAX_COMPILATION_CACHE_MAX_SIZE") and _jax_can_evict():
        # JAX evicts the programs used longest ago beyond this size, locking the folder with filelock.
        jax.config.update("jax_compilation_cache_max_size", JAX_CACHE_MAX_BYTES)
    if jax.config.jax_compilation_cache_dir:
        return
    folder = jax_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only home: compile every time, as without the cache
    jax.config.update("jax_compilation_cache_dir", str(folder))


def _jax_can_evict():
    """Whether JAX can evict from its compilation cache: it locks the folder with `filelock`."""
    return importlib.util.find_spec("filelock") is not None


def _set_determinism(on):
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.framework import config as tf_config

        if on:
            tf.config.experimental.enable_op_determinism()
        elif tf_config.is_op_determinism_enabled():
            tf_config.disable_op_determinism()
    elif name == "torch":
        import torch

        torch.use_deterministic_algorithms(bool(on), warn_only=True)
    elif name == "jax" and on and "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
        # XLA reads its flags when JAX starts; on the CPU its kernels are deterministic already.
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()


def seed_everything(seed):
    """Seed Python, NumPy and the backend (Keras' seed generator), so runs with one seed start alike."""
    import keras

    keras.utils.set_random_seed(int(seed))
