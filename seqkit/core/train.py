"""The training loop shared by every seqkit model.

One code path serves one process and a ``tf.distribute`` cluster: the model and optimizer
are built inside ``strategy.scope()``, each step runs through ``strategy.run`` over a
distributed dataset, and the loss is scaled with ``tf.nn.compute_average_loss`` so that
``batch_size`` is always the global batch. (Keras 3's ``model.fit`` fails under
``MultiWorkerMirroredStrategy``, so we do not use it.)

Gradients are clipped by their *global* norm after the cross-replica sum; Keras's own
``global_clipnorm`` would clip each replica's gradients before summing them.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import keras
import tensorflow as tf

from seqkit.errors import SeqkitError


@dataclass
class TrainConfig:
    """Optimizer and loop settings.

    Args:
        epochs: passes over the training data.
        lr: peak learning rate of Adam.
        schedule: ``cosine`` (decay to ``lr * min_lr_ratio`` over the run) or ``constant``.
        warmup_steps: linear warm-up steps before the schedule.
        min_lr_ratio: final learning rate as a fraction of ``lr`` for ``cosine``.
        clip: global gradient-norm clip (None or 0 turns it off).
        weight_decay: decoupled weight decay (AdamW) when > 0.
        jit_compile: compile the forward and backward pass with XLA (faster on CPU here).
    """

    epochs: int = 1
    lr: float = 2e-3
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    clip: float | None = 5.0
    weight_decay: float = 0.0
    jit_compile: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def make_optimizer(config: TrainConfig, total_steps: int) -> keras.optimizers.Optimizer:
    """Adam (AdamW with weight decay) with the configured learning-rate schedule."""
    if config.lr <= 0:
        raise SeqkitError(f"The learning rate must be positive, got {config.lr}.")
    if config.schedule == "cosine":
        decay_steps = max(1, total_steps - config.warmup_steps)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.lr if not config.warmup_steps else 0.0,
            decay_steps=decay_steps,
            alpha=config.min_lr_ratio,
            warmup_target=config.lr if config.warmup_steps else None,
            warmup_steps=config.warmup_steps,
        )
    elif config.schedule == "constant":
        lr = config.lr
    else:
        raise SeqkitError(f"Unknown schedule {config.schedule!r}: use cosine or constant.")
    if config.weight_decay > 0:
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(learning_rate=lr)


def sparse_loss_and_hits(labels: tf.Tensor, logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-element cross-entropy (nats) and correct-prediction flags, both flattened."""
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    logits = tf.reshape(logits, [-1, tf.shape(logits)[-1]])
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    hits = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    return loss, hits


@dataclass
class EpochRecord:
    """What one epoch measured; ``samples`` counts predictions (images, or characters).

    ``val_*`` are filled when an evaluation set is given.
    """

    epoch: int
    loss: float
    accuracy: float
    samples: int
    seconds: float
    lr: float
    val_loss: float | None = None
    val_accuracy: float | None = None

    @property
    def samples_per_sec(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "samples_per_sec": self.samples_per_sec}


class Trainer:
    """Builds a model and its optimizer under a distribution strategy and trains it.

    Args:
        build_model: returns an uncompiled Keras model mapping a batch of inputs to logits;
            called inside ``strategy.scope()``.
        config: optimizer and loop settings.
        steps_per_epoch: training steps in one epoch (sets the schedule's length).
        strategy: a ``tf.distribute`` strategy; the default one when None.
    """

    def __init__(
        self,
        build_model: Callable[[], keras.Model],
        config: TrainConfig,
        steps_per_epoch: int,
        strategy: tf.distribute.Strategy | None = None,
    ):
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.steps_per_epoch = int(steps_per_epoch)
        with self.strategy.scope():
            self.model = build_model()
            self.optimizer = make_optimizer(config, self.steps_per_epoch * config.epochs)
        # No AutoGraph: the code has no tensor-dependent Python control flow to convert.
        compiled = dict(reduce_retracing=True, autograph=False)
        self._grads = tf.function(self._loss_and_grads, jit_compile=config.jit_compile, **compiled)
        self._forward = tf.function(self._eval_sums, jit_compile=config.jit_compile, **compiled)
        self._train_step = tf.function(self._distributed_train_step, **compiled)
        self._eval_step = tf.function(self._distributed_eval_step, **compiled)

    # -- one replica ---------------------------------------------------------------------------
    def _loss_and_grads(self, x, y):
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            loss, hits = sparse_loss_and_hits(y, logits)
            scaled = tf.nn.compute_average_loss(loss)
        grads = tape.gradient(scaled, self.model.trainable_variables)
        return grads, tf.reduce_sum(loss), tf.reduce_sum(hits), tf.cast(tf.size(loss), tf.float32)

    def _replica_train(self, x, y):
        grads, loss_sum, hit_sum, count = self._grads(x, y)
        grads = self.prepare_gradients(grads)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss_sum, hit_sum, count

    def prepare_gradients(self, grads: list[tf.Tensor]) -> list[tf.Tensor]:
        """Sum one replica's gradients across replicas, clip them by global norm, and return
        this replica's share of the result (the optimizer sums the shares again)."""
        replicas = self.strategy.num_replicas_in_sync
        if replicas > 1:
            grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if self.config.clip:
            grads, _ = tf.clip_by_global_norm(grads, self.config.clip)
        if replicas > 1:
            grads = [g / replicas for g in grads]
        return grads

    def _eval_sums(self, x, y):
        loss, hits = sparse_loss_and_hits(y, self.model(x, training=False))
        return tf.reduce_sum(loss), tf.reduce_sum(hits), tf.cast(tf.size(loss), tf.float32)

    # -- across replicas -----------------------------------------------------------------------
    def _reduce(self, values):
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in values]

    def _distributed_train_step(self, batch):
        return self._reduce(self.strategy.run(self._replica_train, args=batch))

    def _distributed_eval_step(self, batch):
        return self._reduce(self.strategy.run(self._eval_sums_replica, args=batch))

    def _eval_sums_replica(self, x, y):
        return self._forward(x, y)

    def distribute(self, dataset: tf.data.Dataset) -> Iterable:
        return self.strategy.experimental_distribute_dataset(dataset)

    # -- loops ---------------------------------------------------------------------------------
    def evaluate(self, dataset: tf.data.Dataset) -> tuple[float, float]:
        """Mean loss (nats per prediction) and accuracy over a whole dataset."""
        totals = [0.0, 0.0, 0.0]
        for batch in self.distribute(dataset):
            totals = [a + float(b) for a, b in zip(totals, self._eval_step(batch))]
        if totals[2] == 0:
            raise SeqkitError("The evaluation set is empty.")
        return totals[0] / totals[2], totals[1] / totals[2]

    def current_lr(self) -> float:
        lr = self.optimizer.learning_rate
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)

    def fit(
        self,
        train: tf.data.Dataset,
        evaluation: tf.data.Dataset | None = None,
        on_epoch_end: Callable[[EpochRecord], None] | None = None,
        verbose: bool = True,
    ) -> list[EpochRecord]:
        """Train for ``config.epochs`` epochs of ``steps_per_epoch`` steps each.

        ``train`` yields (inputs, labels) batches and should repeat; evaluation time is
        excluded from the epoch's seconds so that throughput measures training alone.
        """
        history: list[EpochRecord] = []
        batches = iter(self.distribute(train))
        for epoch in range(1, self.config.epochs + 1):
            bar = keras.utils.Progbar(
                self.steps_per_epoch,
                stateful_metrics=["loss", "acc", "samples/s"],
                verbose=1 if verbose and sys.stdout.isatty() else 0,
                unit_name="step",
            )
            sums = [0.0, 0.0, 0.0]
            start = time.perf_counter()
            for step in range(1, self.steps_per_epoch + 1):
                try:
                    batch = next(batches)
                except StopIteration:
                    raise SeqkitError("The training data ran out; it should repeat.") from None
                sums = [a + float(b) for a, b in zip(sums, self._train_step(batch))]
                if step % 20 == 0 or step == self.steps_per_epoch:
                    elapsed = time.perf_counter() - start
                    bar.update(
                        step,
                        [
                            ("loss", sums[0] / sums[2]),
                            ("acc", sums[1] / sums[2]),
                            ("samples/s", sums[2] / elapsed),
                        ],
                    )
            seconds = time.perf_counter() - start
            record = EpochRecord(
                epoch=epoch,
                loss=sums[0] / sums[2],
                accuracy=sums[1] / sums[2],
                samples=int(sums[2]),
                seconds=seconds,
                lr=self.current_lr(),
            )
            if evaluation is not None:
                record.val_loss, record.val_accuracy = self.evaluate(evaluation)
            if verbose:
                val = (
                    f", test loss {record.val_loss:.4f}, test acc {record.val_accuracy:.4f}"
                    if evaluation is not None
                    else ""
                )
                print(
                    f"epoch {epoch}/{self.config.epochs}: loss {record.loss:.4f}, "
                    f"acc {record.accuracy:.4f}, {record.samples_per_sec:,.0f} samples/s{val}",
                    flush=True,
                )
            history.append(record)
            if on_epoch_end is not None:
                on_epoch_end(record)
        return history
