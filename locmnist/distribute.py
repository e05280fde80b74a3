"""Choosing a ``tf.distribute`` strategy for ``train --strategy``.

* ``default``: one device (TensorFlow's default strategy; what training always did);
* ``mirrored``: synchronous data parallelism over the GPUs of this machine
  (over its logical CPUs when it has no GPU, which is how the tests run it);
* ``multiworker``: several machines through ``TF_CONFIG`` -- refused, with the
  reason: Keras 3's ``model.fit`` cannot run ``MultiWorkerMirroredStrategy``
  (keras-team/keras#20585; reproduced with Keras 3.15 / TF 2.21 by
  ``tests/test_distribute.py``, which will fail once that is fixed);
* ``auto``: mirrored when there are several GPUs, else default (and the same
  refusal when ``TF_CONFIG`` names several workers, rather than silently
  training alone).

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
        import keras

        raise ValueError(f"training on several machines is not available: Keras "
                         f"{keras.__version__}'s model.fit fails under MultiWorkerMirroredStrategy "
                         f"(keras-team/keras#20585); use --strategy mirrored for the GPUs of "
                         f"one machine")
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


def describe(strategy) -> str:
    """One line for logs: the strategy's class and how many replicas it keeps in sync."""
    return f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s)"
