"""Choosing a ``tf.distribute`` strategy for ``train --strategy``.

* ``default``: one device (TensorFlow's default strategy; what training always did);
* ``mirrored``: synchronous data parallelism over the GPUs of this machine
  (over its logical CPUs when it has no GPU, which is how the tests run it);
* ``multiworker``: several machines (or processes) through ``TF_CONFIG``, with
  ``tf.distribute.MultiWorkerMirroredStrategy``: synchronous data parallelism,
  gradients all-reduced over gRPC every step;
* ``auto``: multiworker when ``TF_CONFIG`` names several workers, mirrored when
  there are several GPUs, else default.

Keras 3's ``model.fit`` cannot run under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585: its data adapter and log reduction fail on the
per-replica values), while the model's own ``train_step`` runs fine inside
``strategy.run``. So ``fit`` below is a small training loop that drives
``model.train_step`` / ``model.test_step`` through the strategy and calls the
same Keras callbacks as ``model.fit``; ``train()`` uses it for multiworker only.
(Keras 3's other multi-host path, ``keras.distribution``, needs the JAX backend,
while this project, its ``BoxCrop`` layer and its losses run on TensorFlow.)

``cfg.batch_size`` is the batch *per replica*: the global batch is
``batch_size * num_replicas_in_sync``, so each device keeps the batch it was
tuned for and the learning rate schedule sees fewer, larger steps.
"""
from __future__ import annotations

import json
import os

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def tf_config_workers() -> int:
    """How many workers ``$TF_CONFIG`` declares (0 when unset)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (ValueError, AttributeError):
        raise ValueError("TF_CONFIG is not valid JSON of the form "
                         '{"cluster": {"worker": [...]}, "task": {...}}') from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def make_strategy(name: str = "auto"):
    """The ``tf.distribute.Strategy`` called ``name`` (one of STRATEGIES)."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {STRATEGIES}")
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        name = ("multiworker" if tf_config_workers() > 1
                else "mirrored" if len(gpus) > 1 else "default")
    if name == "multiworker":
        if tf_config_workers() < 1:
            raise ValueError("--strategy multiworker needs TF_CONFIG naming the workers, e.g. "
                             '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                             '"task": {"type": "worker", "index": 0}}')
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    raise AssertionError(name)  # every name is handled above


def shard(dataset):
    """Shard by data, not by file: the training dataset is generated in memory,
    so with several input workers each keeps its share of the same seeded stream."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def needs_own_loop(strategy) -> bool:
    """True for strategies Keras 3's ``model.fit`` cannot run (see the module docstring)."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def fit(model, dataset, epochs: int, steps_per_epoch: int, strategy, validation_data=None,
        validation_batch_size: int = 500, callbacks=()):
    """``model.fit`` for a compiled model under ``strategy``: the same steps
    (``model.train_step``), the same logs and the same callback calls.

    ``dataset`` yields global batches (each worker builds the same seeded stream
    and keeps its shard); ``validation_data`` is ``(x, y)`` arrays, split over the
    replicas in global batches of ``validation_batch_size``.
    """
    import keras
    import tensorflow as tf

    callbacks = keras.callbacks.CallbackList(list(callbacks), model=model, epochs=epochs,
                                             steps=steps_per_epoch, verbose=0)

    def mean_logs(per_replica: dict) -> dict:
        # Metric states are aggregated across replicas, so every replica's result
        # is the global one; the mean only turns per-replica values into one tensor.
        return {k: strategy.reduce("MEAN", v, axis=None) for k, v in per_replica.items()}

    @tf.function
    def train_step(iterator):
        return mean_logs(strategy.run(model.train_step, args=(next(iterator),)))

    @tf.function
    def test_step(batch):
        return mean_logs(strategy.run(model.test_step, args=(batch,)))

    @tf.function
    def anyone(flag):
        # Every worker must take the same number of steps, or the others wait forever
        # in the next all-reduce: stop all of them when one is cancelled or out of time.
        votes = strategy.run(lambda: tf.identity(flag))
        return strategy.reduce("SUM", votes, axis=None) > 0

    val = None
    if validation_data is not None:
        val = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices(validation_data).batch(validation_batch_size))
    to_float = lambda logs: {k: float(v) for k, v in logs.items()}
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    model.stop_training = False
    callbacks.on_train_begin()
    for epoch in range(epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        logs = {}
        for step in range(steps_per_epoch):
            callbacks.on_train_batch_begin(step)
            logs = to_float(train_step(iterator))
            callbacks.on_train_batch_end(step, logs)
            if bool(anyone(tf.constant(float(model.stop_training)))):
                model.stop_training = True
                break
        if val is not None and not model.stop_training:
            model.reset_metrics()
            model.stop_evaluating = False
            callbacks.on_test_begin()
            val_logs = {}
            for step, batch in enumerate(val):
                callbacks.on_test_batch_begin(step)
                val_logs = to_float(test_step(batch))
                callbacks.on_test_batch_end(step, val_logs)
                if model.stop_evaluating:
                    break
            callbacks.on_test_end(val_logs)
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end(logs)


def describe(strategy) -> str:
    """One line for logs: the strategy's class and how many replicas it keeps in sync."""
    return f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s)"
