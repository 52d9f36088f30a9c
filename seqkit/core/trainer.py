"""The training loop shared by every seqkit model.

One code path serves one process and a ``tf.distribute`` cluster: the model and optimizer
are built inside ``strategy.scope()``, each step runs through ``strategy.run`` over a
distributed dataset, and the loss is scaled with ``tf.nn.compute_average_loss`` so that
``batch_size`` is always the global batch. (Keras 3's ``model.fit`` fails under
``MultiWorkerMirroredStrategy``, so we do not use it.)

Gradients are clipped by their *global* norm after the cross-replica sum; Keras's own
``global_clipnorm`` would clip each replica's gradients before summing them.

The learning rate is set by the loop from the run's progress, the larger of the share of
steps done and the share of the time budget used, so a cosine decay also fits a run
bounded by wall-clock time. Checkpoints hold the model, the optimizer (its step counter is
the data position) and the training seconds spent, so a resumed run continues exactly.

With ``ema`` set, an exponential moving average of the weights is kept beside them (and
checkpointed with them); evaluation, the best checkpoint and so the exported model use the
averages, while training goes on from the raw weights. (The average is updated here rather
than by ``tf.train.ExponentialMovingAverage``, whose update fails inside a ``tf.function``
under ``tf.distribute`` strategies: a TypeError in ``MirroredVariable._get_replica``.)
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import tensorflow as tf

from seqkit.core import dispatch
from seqkit.core.checkpoints import restore_newest
from seqkit.core.inference import compile_inference
from seqkit.distribute import is_chief, is_multi_worker
from seqkit.errors import SeqkitError
from seqkit.progress import ProgressLine, clock


@dataclass
class TrainConfig:
    """Optimizer and loop settings.

    Args:
        epochs: passes over the training data (the run's length in steps); None for no
            step limit, when a time budget (``fit``'s ``max_seconds``) ends the run.
        lr: peak learning rate of Adam.
        schedule: ``cosine`` (decay to ``lr * min_lr_ratio`` by the end of the run) or
            ``constant``.
        warmup_steps: linear warm-up steps before the schedule.
        min_lr_ratio: final learning rate as a fraction of ``lr`` for ``cosine``.
        clip: global gradient-norm clip (None or 0 turns it off).
        weight_decay: decoupled weight decay (AdamW) when > 0.
        ema: the largest decay of an exponential moving average of the weights (0 turns
            it off). As in TF's ExponentialMovingAverage, the decay warms up as
            (1 + n) / (10 + n) at step n, so the average spans about the last 10% of the
            steps until the cap takes over (0.999: after about 9,000 steps). Averages
            smooth the noise of a high learning rate, so the model evaluated and kept can
            be better than the last step's.
        jit_compile: compile the forward and backward pass with XLA (not with cuDNN
            kernels, which XLA cannot compile).
        cudnn: each LSTM, GRU and tanh RNN layer of the training step as one NVIDIA cuDNN
            call on a GPU. None: on where a GPU is visible and every recurrent layer can.
        native_kernels: the LSTM layers' loops as seqkit's C++ kernels, built for this
            machine on first use (``seqkit.core.native``). None: on where every recurrent
            layer is a fused LSTM, no GPU is visible and the kernels build.
        bf16_gradients: the LSTM layers' weight and input gradients from bfloat16 values,
            summed in float32, outside XLA. None: on where every recurrent layer is a fused
            LSTM, the CPU has bf16 dot products and no GPU is visible.
        bf16_recurrence: the native loops' step products from bfloat16 values; changes the
            forward pass's numbers slightly. Needs the native kernels and such a CPU; off.

    Which kernels ran is ``Trainer.kernels``; what each one buys is in docs/performance.md.
    """

    epochs: int | None = 1
    lr: float = 2e-3
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    clip: float | None = 5.0
    weight_decay: float = 0.0
    ema: float = 0.0
    jit_compile: bool = True
    cudnn: bool | None = None
    native_kernels: bool | None = None
    bf16_gradients: bool | None = None
    bf16_recurrence: bool = False

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise SeqkitError(f"The learning rate must be positive, got {self.lr}.")
        if self.schedule not in ("cosine", "constant"):
            raise SeqkitError(f"Unknown schedule {self.schedule!r}: use cosine or constant.")
        if not 0 <= self.ema < 1:
            raise SeqkitError(f"The weight-average decay must be in [0, 1), got {self.ema}.")

    def to_dict(self) -> dict:
        return asdict(self)

    def lr_at(self, step: int, progress: float) -> float:
        """Learning rate at ``step`` when ``progress`` (0..1) of the run is done."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam, or AdamW with weight decay; the loop sets its learning rate every step."""
    if config.weight_decay > 0:
        return keras.optimizers.AdamW(learning_rate=config.lr, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(learning_rate=config.lr)


def sparse_loss_and_hits(labels: tf.Tensor, logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-element cross-entropy (nats) and correct-prediction flags, both flattened."""
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    logits = tf.reshape(logits, [-1, tf.shape(logits)[-1]])
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    hits = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    return loss, hits


class StopRequests:
    """Ctrl-C and SIGTERM, answered between two steps or evaluation batches.

    Within the block a signal only sets a flag, which :meth:`check` turns into a
    ``KeyboardInterrupt`` at a point the loop chose: raised anywhere else (inside
    TensorFlow's Python, say, half-way through tearing down a tf.data iterator) it could
    leave TensorFlow's native state inconsistent and crash the process before the
    checkpoint is written. A second signal is raised at once. Outside the main thread the
    block changes nothing.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.requested: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signum

    def __enter__(self) -> StopRequests:
        import signal
        import threading

        self.requested = None
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a stop was asked for."""
        if self.requested is not None:
            raise KeyboardInterrupt


@dataclass
class Record:
    """What one evaluation interval measured. ``samples`` counts predictions (images or
    characters); ``seconds`` is the interval's training time, evaluation excluded."""

    step: int
    epoch: float
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
        steps_per_epoch: training steps in one pass over the data.
        strategy: a ``tf.distribute`` strategy; the default one when None.
        checkpoint_dir: where to keep checkpoints (``checkpoints/`` and ``best/``); none
            are written when None.
        unit: what one prediction is called in progress lines ("samples", "chars").
        eval_name: what the evaluation set is called in progress lines ("val", "test").
    """

    def __init__(
        self,
        build_model: Callable[[], keras.Model],
        config: TrainConfig,
        steps_per_epoch: int,
        strategy: tf.distribute.Strategy | None = None,
        checkpoint_dir: str | Path | None = None,
        unit: str = "samples",
        eval_name: str = "val",
    ):
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.steps_per_epoch = int(steps_per_epoch)
        self.total_steps = None if config.epochs is None else self.steps_per_epoch * config.epochs
        self.unit, self.eval_name = unit, eval_name
        with self.strategy.scope():
            self.model = build_model()
            self.kernels = dispatch.for_training(
                self.model, config.cudnn, config.native_kernels, config.bf16_gradients, config.bf16_recurrence
            )
            self.cudnn, self.native_kernels = self.kernels.cudnn, self.kernels.native
            self.bf16_gradients, self.bf16_recurrence = self.kernels.bf16_gradients, self.kernels.bf16_recurrence
            self.code_path = dispatch.code_path(self.model, self.kernels)
            self.optimizer = make_optimizer(config)
            self.optimizer.build(self.model.trainable_variables)
            self.seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seconds")
            self.best_val_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
            self.averages = [tf.Variable(w, trainable=False) for w in self._weights()] if config.ema else []
        # In a cluster every worker saves (as tf.distribute asks) but only the chief keeps
        # what it wrote; every worker restores from the chief's folder.
        self.chief, self.multi_worker = is_chief(self.strategy), is_multi_worker(self.strategy)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        # The dropout RNG's state too (Keras keeps it out of the model's checkpoint), so a
        # resumed run draws the same masks as an uninterrupted one.
        rng = [v.value for v in self.model.variables if "seed_generator" in v.path]
        averages = {"averages": self.averages} if self.averages else {}
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            seconds=self.seconds,
            best_val_loss=self.best_val_loss,
            rng=rng,
            **averages,
        )
        self._last_step_seconds = 0.0
        self.last_val_loss: float | None = None  # of the latest evaluation, for the live line
        self.line = ProgressLine(live=False)
        self._stops = StopRequests()
        # The first step this process takes (seconds, predictions): it traces and compiles,
        # so a rate of the training itself leaves it out.
        self.first_step: tuple[float, float] | None = None
        self.managers: dict[str, tf.train.CheckpointManager] = {}
        if self.checkpoint_dir is not None and self.chief:
            for kind, keep in (("checkpoints", 3), ("best", 1)):
                self.managers[kind] = tf.train.CheckpointManager(
                    self.checkpoint, self.checkpoint_dir / kind, max_to_keep=keep
                )
        # No AutoGraph: the code has no tensor-dependent Python control flow to convert.
        compiled = dict(reduce_retracing=True, autograph=False)
        # With cuDNN, native kernels or bf16 weight gradients the step is not one XLA
        # program: its recurrent loops run on their own and the weight-gradient matmuls
        # outside XLA (fused.py). Evaluation uses cuDNN only where it would not be XLA.
        jit = config.jit_compile and self.kernels.compiles_whole
        self._grads = tf.function(self._loss_and_grads, jit_compile=jit, **compiled)
        evaluation = dispatch.Kernels(cudnn=self.cudnn and not config.jit_compile, native=self.native_kernels)
        self._forward = compile_inference(self._eval_sums, evaluation, config.jit_compile)
        self._train_step = tf.function(self._distributed_train_step, **compiled)
        self._eval_step = tf.function(self._distributed_eval_step, **compiled)

    @property
    def step(self) -> int:
        """Optimizer steps taken so far (restored with a checkpoint)."""
        return int(self.optimizer.iterations.numpy())

    @property
    def step_notes(self) -> str:
        """What the training step runs beyond the default, for a run's start line."""
        return self.kernels.describe()

    def _weights(self) -> list[tf.Variable]:
        """The trainable weights as TF variables (what the moving average tracks)."""
        return [v.value for v in self.model.trainable_variables]

    def _update_averages(self) -> None:
        """One step of the moving average, in cross-replica context (all copies alike)."""
        n = tf.cast(self.optimizer.iterations, tf.float32)
        decay = tf.minimum(self.config.ema, (1 + n) / (10 + n))  # early averages: not the initial weights
        for average, weight in zip(self.averages, self._weights()):
            average.assign(decay * average + (1 - decay) * weight)

    def use_averages(self) -> None:
        """Overwrite the weights with their moving averages (no-op without ``ema``)."""
        for weight, average in zip(self._weights(), self.averages):
            weight.assign(average)

    @contextlib.contextmanager
    def averaged_weights(self):
        """Within the block the model holds the averaged weights; the raw ones come back after."""
        if not self.averages:
            yield
            return
        raw = [tf.identity(w) for w in self._weights()]
        self.use_averages()
        try:
            yield
        finally:
            for weight, value in zip(self._weights(), raw):
                weight.assign(value)

    # -- checkpoints ---------------------------------------------------------------------------
    def restore(self, kind: str = "checkpoints") -> bool:
        """Load the newest readable checkpoint of ``kind`` (``checkpoints`` or ``best``).

        A damaged newest checkpoint (say, a disk error) falls back to the one before it,
        with a note on stderr; False when there is none at all.
        """
        if self.checkpoint_dir is None:
            return False
        return restore_newest(self.checkpoint, self.checkpoint_dir / kind) is not None

    def check_workers_agree(self) -> None:
        """In a cluster, every worker must have restored the same step (a shared --out);
        every worker calls this after :meth:`restore`."""
        if not self.multi_worker:
            return
        # tf.distribute reduces by sum or mean only: the steps are all equal iff their
        # variance, from the sums of s and s^2, is zero (every worker sees the same sums).
        moments = tf.constant([1.0, self.step, self.step**2], tf.float64)
        n, total, squares = self.strategy.reduce(
            tf.distribute.ReduceOp.SUM, self.strategy.run(tf.function(lambda: moments)), axis=None
        ).numpy()
        if n * squares != total**2:
            raise SeqkitError(
                f"The workers resumed from different steps (this one from {self.step}, the mean is "
                f"{total / n:g}): give every worker its `checkpoint_dir` on a shared filesystem."
            )

    def save(self, kind: str = "checkpoints") -> str | None:
        """Write a checkpoint of ``kind``. TensorFlow writes it under a temporary name and
        points the folder's ``checkpoint`` file at it only once it is complete, so a run
        killed (or out of disk) half-way keeps the previous checkpoint as the latest."""
        if self.checkpoint_dir is None:
            return None
        if not self.chief:  # a worker's copy is the chief's: write it, then drop it
            scratch = tempfile.mkdtemp(prefix="seqkit-worker-")
            try:
                self.checkpoint.write(os.path.join(scratch, "ckpt"))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return None
        manager = self.managers[kind]
        try:
            return manager.save(checkpoint_number=self.step)
        except (tf.errors.OpError, OSError) as err:
            for partial in Path(manager.directory).glob("*_temp"):  # give the space back
                shutil.rmtree(partial, ignore_errors=True)
            # TensorFlow's message ends "...<path>; File too large [Op:SaveV2]": keep the cause.
            reason = getattr(err, "strerror", None) or getattr(err, "message", str(err))
            reason = re.sub(r"\s*\[Op:\w+\]\s*$", "", reason).rsplit("; ", 1)[-1]
            raise SeqkitError(
                f"Cannot write a checkpoint in {manager.directory} ({reason}): free disk space or "
                "choose another `checkpoint_dir`; the last complete checkpoint is kept."
            ) from None

    # -- one replica ---------------------------------------------------------------------------
    def _loss_and_grads(self, x, y):
        with dispatch.using(self.kernels):
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
        # Dense: Keras's Adam applies an embedding's IndexedSlices gradient row by row without
        # summing repeated rows first, which moves those rows by more than the learning rate
        # and makes one process disagree with a cluster. (Embeddings here are small.)
        grads = [tf.convert_to_tensor(g) for g in grads]
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

    def _distributed_train_step(self, batch, elapsed):
        """One step; also agrees on the previous step's duration (the workers' mean), so
        that every worker of a cluster sees the same clock, learning rate and end."""
        sums = self._reduce(self.strategy.run(self._replica_train, args=batch))
        if self.averages:
            self._update_averages()
        mean = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, self.strategy.run(tf.identity, (elapsed,)), axis=None)
        return [*sums, mean]

    def _distributed_eval_step(self, batch):
        return self._reduce(self.strategy.run(self._forward, args=batch))

    def distribute(self, dataset: tf.data.Dataset):
        """Split each global batch across the replicas; across workers by data (each worker
        takes its share of every batch), since every dataset here is built in memory."""
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    # -- loops ---------------------------------------------------------------------------------
    def evaluate(self, dataset: tf.data.Dataset) -> tuple[float, float]:
        """Mean loss (nats per prediction) and accuracy over a whole dataset."""
        totals = [0.0, 0.0, 0.0]
        for batch in self.distribute(dataset):
            totals = [a + float(b) for a, b in zip(totals, self._eval_step(batch))]
            self._stops.check()
        if totals[2] == 0:
            raise SeqkitError("The evaluation set is empty.")
        return totals[0] / totals[2], totals[1] / totals[2]

    def progress(self, max_seconds: float | None = None) -> float:
        """Share of the run done: steps, or the time budget when that is used up sooner."""
        done = 0.0 if self.total_steps is None else self.step / max(1, self.total_steps)
        if max_seconds:
            done = max(done, float(self.seconds.numpy()) / max_seconds)
        return min(1.0, done)

    def fit(
        self,
        train: tf.data.Dataset,
        evaluation: tf.data.Dataset | None = None,
        eval_every: int | None = None,
        max_seconds: float | None = None,
        on_eval: Callable[[Record], None] | None = None,
        verbose: bool = True,
    ) -> list[Record]:
        """Train from the current step until ``total_steps`` or the time budget is reached.

        ``train`` yields (inputs, labels) batches from the current step on and should
        repeat. Every ``eval_every`` steps (default: one epoch) and at the end, the model
        (its averaged weights with ``ema``) is evaluated, a :class:`Record` is made and
        handed to ``on_eval``, then checkpoints are saved (the best by validation loss too,
        holding the weights evaluated). Ctrl-C saves a checkpoint before it propagates; a loss that
        stops being finite raises :class:`SeqkitError` and saves nothing.
        """
        if self.total_steps is None and not max_seconds:
            raise SeqkitError("With no limit on `epochs`, a time budget (`max_seconds`) must end the run.")
        eval_every = eval_every or self.steps_per_epoch
        self.line = ProgressLine(live=None if verbose else False)
        history: list[Record] = []
        batches = iter(self.distribute(train))
        with self._stops:  # Ctrl-C and SIGTERM stop the loop between two steps or batches
            self._loop(batches, evaluation, eval_every, max_seconds, on_eval, verbose, history)
        return history

    def _loop(self, batches, evaluation, eval_every, max_seconds, on_eval, verbose, history) -> None:
        try:
            while not self._done(max_seconds):
                record = self._interval(batches, eval_every, max_seconds, verbose)
                with self.averaged_weights():
                    self._evaluate(record, evaluation, verbose)
                if on_eval is not None:  # before the checkpoint: a resume drops later records
                    on_eval(record)
                self._checkpoint(record)
                history.append(record)
            self._stops.check()  # a signal during the last checkpoint: stop, not finish
        except KeyboardInterrupt:
            self.line.clear()
            self.save()
            raise

    def _done(self, max_seconds: float | None) -> bool:
        out_of_time = max_seconds is not None and float(self.seconds.numpy()) >= max_seconds
        out_of_steps = self.total_steps is not None and self.step >= self.total_steps
        return out_of_steps or out_of_time

    def _interval(self, batches, eval_every: int, max_seconds: float | None, verbose: bool) -> Record:
        """Train up to the next evaluation point; return what it measured."""
        target = (self.step // eval_every + 1) * eval_every
        if self.total_steps is not None:
            target = min(self.total_steps, target)
        sums, done, spent = [0.0, 0.0, 0.0], 0, 0.0
        while self.step < target and not (max_seconds and float(self.seconds.numpy()) >= max_seconds):
            step = self.step
            self.optimizer.learning_rate.assign(self.config.lr_at(step, self.progress(max_seconds)))
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                raise SeqkitError("The training data ran out; it should repeat.") from None
            *values, agreed = [
                float(v) for v in self._train_step(batch, tf.constant(self._last_step_seconds, tf.float64))
            ]
            elapsed = self._last_step_seconds = time.perf_counter() - start
            # One process: its own clock. A cluster: the previous step's agreed duration,
            # one step late, so that every worker stops and schedules alike.
            self.seconds.assign_add(agreed if self.multi_worker else elapsed)
            if not math.isfinite(values[0]):
                raise SeqkitError(
                    f"The loss became {values[0]} in training step {step + 1}: training stopped and the "
                    "last good checkpoint was kept; try a lower `lr` or a smaller `clip`."
                )
            sums = [a + b for a, b in zip(sums, values)]
            done, spent = done + 1, spent + elapsed
            self._stops.check()
            if self.first_step is None:
                self.first_step = (elapsed, values[2])
            if self.line.due():  # the status reads the clock variable: made only to be drawn
                self.line.show(self._status(sums, spent, done, max_seconds))
        if done == 0:
            raise SeqkitError("No training step fits in the time budget: raise `max_seconds`.")
        return Record(
            step=self.step,
            epoch=self.step / self.steps_per_epoch,
            loss=sums[0] / sums[2],
            accuracy=sums[1] / sums[2],
            samples=int(sums[2]),
            seconds=spent,
            lr=float(self.optimizer.learning_rate.numpy()),
        )

    def _status(self, sums: list[float], spent: float, done: int, max_seconds: float | None) -> str:
        """The live line: step, losses, rate, training time and the time left to the end."""
        of_total = "" if self.total_steps is None else f"/{self.total_steps:,}"
        val = "" if self.last_val_loss is None else f" | {self.eval_name} loss {self.last_val_loss:.4f}"
        trained = float(self.seconds.numpy())
        left = [] if self.total_steps is None else [(self.total_steps - self.step) * spent / done]
        left += [max_seconds - trained] if max_seconds else []
        return (
            f"step {self.step:,}{of_total} | loss {sums[0] / sums[2]:.4f}{val} | {sums[2] / spent:,.0f} {self.unit}/s"
            f" | {clock(trained)} | ETA {clock(min(left))}"
        )

    def _evaluate(self, record: Record, evaluation, verbose: bool) -> None:
        if evaluation is not None:
            self.line.show(f"step {self.step:,} | evaluating", force=True)
            record.val_loss, record.val_accuracy = self.evaluate(evaluation)
            self.last_val_loss = record.val_loss
        self.line.clear()
        if verbose:
            val = (
                f", {self.eval_name} loss {record.val_loss:.4f}, {self.eval_name} acc {record.val_accuracy:.4f}"
                if record.val_loss is not None
                else ""
            )
            of_total = "" if self.total_steps is None else f"/{self.total_steps}"
            print(
                f"epoch {record.epoch:.2f} (step {record.step}{of_total}): loss "
                f"{record.loss:.4f}, acc {record.accuracy:.4f}, "
                f"{record.samples_per_sec:,.0f} {self.unit}/s{val}",
                flush=True,
            )

    def _checkpoint(self, record: Record) -> None:
        best = record.val_loss is not None and record.val_loss < float(self.best_val_loss.numpy())
        if best:
            self.best_val_loss.assign(record.val_loss)
        self.save()
        if best:
            with self.averaged_weights():  # the weights that were evaluated
                self.save("best")
