"""Spreading one training over several devices or machines with the backend's own engine:
tf.distribute under TensorFlow (MirroredStrategy on one machine, MultiWorkerMirroredStrategy across
machines, its cluster read from TF_CONFIG or from Slurm), keras.distribution.DataParallel under JAX."""

import contextlib
import os
from dataclasses import dataclass

from cladec_cli.errors import UsageError, option

DISTRIBUTIONS = ("auto", "none", "mirrored", "multiworker")


@dataclass(frozen=True)
class Distribution:
    """How one training is spread: 'none', 'mirrored' (the devices of this machine) or 'multiworker'
    (several machines or processes); its replicas in all, its worker processes, and whether this
    process is the chief, which writes the files."""

    kind: str = "none"
    replicas: int = 1
    workers: int = 1
    chief: bool = True
    engine: object = None

    def scope(self):
        """Where models, optimizers and metrics of a distributed training must be created."""
        return self.engine.scope() if self.engine is not None else contextlib.nullcontext()

    def provenance(self):
        return {"distribute": self.kind, "replicas": self.replicas, "workers": self.workers}


NONE = Distribution()
# One engine per process: TensorFlow allows one multi-worker set-up, made before anything else runs.
_MADE = {}


def resolve(choice, backend_name):
    """The Distribution for --distribute `choice` under `backend_name`, made once per process.

    'auto' is 'none': the models cladec trains by default are small enough that one GPU runs a batch
    in a few launches, and splitting it across GPUs adds a gradient exchange to every step; choose
    'mirrored' for a large model of your own.
    """
    if choice not in DISTRIBUTIONS:
        raise UsageError(f"unknown distribution {choice!r}; choose one of {', '.join(DISTRIBUTIONS)}")
    if choice in ("auto", "none"):
        return NONE
    key = (choice, backend_name)
    if key not in _MADE:
        makers = {"tensorflow": _tensorflow, "jax": _jax}
        if backend_name not in makers:
            raise UsageError(f"{option('distribute')} {choice} needs the TensorFlow or JAX backend, not {backend_name}")
        _MADE[key] = makers[backend_name](choice)
    return _MADE[key]


def _tensorflow(choice):
    import tensorflow as tf

    if choice == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
        return Distribution("mirrored", strategy.num_replicas_in_sync, engine=strategy)
    resolver = _cluster_resolver(tf)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    _average_scalars_over_workers()
    spec = resolver.cluster_spec()
    workers = sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker"))
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    chief = task_type == "chief" or (task_type in (None, "worker") and task_id == 0 and "chief" not in spec.jobs)
    return Distribution("multiworker", strategy.num_replicas_in_sync, max(workers, 1), chief, strategy)


def _cluster_resolver(tf):
    """The cluster from TF_CONFIG, else from the Slurm job this process runs in (under srun)."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if os.environ.get("SLURM_PROCID") is not None and os.environ.get("SLURM_STEP_NODELIST"):
        return tf.distribute.cluster_resolver.SlurmClusterResolver()
    raise UsageError(f"{option('distribute')} multiworker needs TF_CONFIG describing the workers, or a Slurm job step "
                     "(run it with srun)")


def _average_scalars_over_workers():
    """Keras 3 averages each step's logs over a multi-worker strategy along axis 0, which a scalar such as
    the loss does not have (tensorflow/tensorflow#72388, keras-team/keras#20585); average scalars over
    the replicas instead. Everything else goes to Keras' own reduction."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    keras_reduce = trainer.reduce_per_replica
    if getattr(keras_reduce, "averages_scalars", False):
        return

    def rank(value, strategy):
        local = strategy.experimental_local_results(value)[0] if hasattr(value, "values") else value
        return tf.convert_to_tensor(local).shape.rank

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None if rank(v, strategy) == 0 else 0), values)
        return keras_reduce(values, strategy, reduction)

    reduce_per_replica.averages_scalars = True
    trainer.reduce_per_replica = reduce_per_replica


def _jax(choice):
    import keras

    if choice == "multiworker":
        raise UsageError(f"{option('distribute')} multiworker runs under the TensorFlow backend; under JAX use "
                         "mirrored, which spreads a training over this machine's devices")
    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    return Distribution("mirrored", len(devices), engine=distribution)


def active():
    """Whether this process has set up a distributed training."""
    return bool(_MADE)


def writes_files():
    """Whether this process writes artifacts: every process but the non-chief workers of a multi-worker
    training, which compute alongside the chief and leave its files to it."""
    return all(d.chief for d in _MADE.values())
