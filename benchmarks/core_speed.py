"""Training throughput of the sequence core against a plain Keras reference, in one run.

Workloads: ``mnist`` (28 steps of 28 features, 10 classes) and ``char`` (embedding 64 over
65 symbols, 100 steps, next-symbol targets), on random data. Variants are timed in
alternation, several windows each, so machine drift hits all of them alike; a window times
training steps only (for Keras, from the end of one extra first step of its `fit` call to
the end of the last, so `fit`'s per-call start-up is left out); the table
gives each variant's median throughput (images or characters per second) and its ratio to
plain Keras ``model.fit`` of the same architecture.

    python benchmarks/core_speed.py --workload mnist --layers 2 --units 128 --batch-size 128
    python benchmarks/core_speed.py --workload char --layers 2 --units 256 --batch-size 64

``--infer`` times the trainer's evaluation step (inference and loss) instead, with XLA's
unrolled loop against the native kernels' forward loop (on a GPU, against cuDNN), the
first as the reference.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from workloads import CHAR_STEPS, VOCAB, alternate, first_module  # noqa: E402


def dataset(args) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    if args.workload == "mnist":
        x = rng.random((8192, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, 8192).astype(np.int32)
    else:
        ids = rng.integers(0, VOCAB, (2048, CHAR_STEPS + 1)).astype(np.int32)
        x, y = ids[:, :-1], ids[:, 1:]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat()
    return ds.batch(args.batch_size, drop_remainder=True).prefetch(2)


def predictions_per_example(args) -> int:
    return 1 if args.workload == "mnist" else CHAR_STEPS


def frontend(args):
    """The input layers of the workload: rows as they are, or an embedding of ids."""
    if args.workload == "mnist":
        inputs = keras.Input((28, 28))
        return inputs, inputs
    inputs = keras.Input((None,), dtype="int32")
    return inputs, keras.layers.Embedding(VOCAB, 64)(inputs)


def head(args):
    return keras.layers.Dense(10 if args.workload == "mnist" else VOCAB)


def seqkit_variant(
    args,
    fused: bool = True,
    jit: bool = True,
    package: str = "seqkit",
    infer: bool = False,
    weight_drop: float = 0.0,
    **options,
):
    """A seqkit training step (or, with ``infer``, evaluation step) of the workload, from the
    package named ``package`` (another revision's copy in `ab.py`); ``options`` are further
    ``TrainConfig`` settings (pass only those that are on: older revisions lack some)."""
    extra = {"weight_drop": weight_drop} if weight_drop else {}  # older revisions lack it
    core = importlib.import_module(f"{package}.core")
    train = first_module(package, "core.trainer", "core.train")  # the latter before 2026-12-03

    def build():
        inputs, x = frontend(args)
        encoded = core.SequenceEncoder(
            args.units,
            layers=args.layers,
            dropout=args.dropout,
            fused=fused,
            **extra,
            return_sequences=args.workload == "char",
        )(x)
        return keras.Model(inputs, head(args)(encoded))

    trainer = train.Trainer(build, train.TrainConfig(jit_compile=jit, **options), steps_per_epoch=1)
    batches = iter(trainer.distribute(dataset(args)))
    fixed = next(batches)

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            if infer:
                result = trainer._eval_step(fixed)
            else:
                result = trainer._train_step(next(batches), tf.constant(0.0, tf.float64))
        float(result[0])
        return time.perf_counter() - start

    return run


class _StepClock(keras.callbacks.Callback):
    """Stamps the end of every training step, so that a window times steps only: a `fit`
    call's own start-up (data adapter, iterator, callbacks) is paid once per epoch by a
    user, and over a few steps it would weigh as much as the training."""

    def on_train_begin(self, logs=None):
        self.stamps = []

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append(time.perf_counter())


def keras_variant(args):
    inputs, x = frontend(args)
    for i in range(args.layers):
        last = i == args.layers - 1
        x = keras.layers.LSTM(args.units, return_sequences=args.workload == "char" or not last)(x)
        if args.dropout:
            x = keras.layers.Dropout(args.dropout)(x)
    model = keras.Model(inputs, head(args)(x))
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3, global_clipnorm=5.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    data, clock = dataset(args), _StepClock()

    def run(steps: int) -> float:
        """Seconds of ``steps`` steps, timed from the end of one extra first step."""
        model.fit(data, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[clock])
        return clock.stamps[-1] - clock.stamps[0]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=["mnist", "char"], default="mnist")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--weight-drop", type=float, default=0.0, help="also time the fused step with this weight drop")
    parser.add_argument(
        "--bf16-gradients", action="store_true", help="also time the fused step with bf16 weight gradients"
    )
    parser.add_argument(
        "--native-kernels", action="store_true", help="also time the fused step with native LSTM kernels"
    )
    parser.add_argument(
        "--bf16-recurrence", action="store_true", help="also time the default step with bf16 recurrence"
    )
    parser.add_argument("--steps", type=int, default=15, help="steps per timing window")
    parser.add_argument("--windows", type=int, default=5, help="timing windows per variant")
    parser.add_argument(
        "--infer", action="store_true", help="time the evaluation step: XLA against native kernels (cuDNN on a GPU)"
    )
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    # The XLA loops in one program: not the native kernels or bf16 weight gradients, the defaults where they pay.
    xla = {"native_kernels": False, "bf16_gradients": False}
    if args.infer and tf.config.list_logical_devices("GPU"):
        variants = {
            "seqkit evaluation, XLA": seqkit_variant(args, infer=True, cudnn=False, **xla),
            "seqkit evaluation, cuDNN": seqkit_variant(args, infer=True, cudnn=True),
        }
    elif args.infer:
        variants = {
            "seqkit evaluation, XLA": seqkit_variant(args, infer=True, **xla),
            "seqkit evaluation, native kernels": seqkit_variant(
                args, infer=True, native_kernels=True, bf16_gradients=False
            ),
        }
    else:
        variants = _training_variants(args, xla)
    figures = alternate(variants, args.batch_size * predictions_per_example(args), args.steps, args.windows)
    reference_name = next(iter(figures))
    unit = "images/s" if args.workload == "mnist" else "chars/s"
    print(
        f"{args.workload}: {args.layers} x LSTM {args.units}, batch {args.batch_size}, dropout "
        f"{args.dropout}; median of {args.windows} windows of {args.steps} steps"
    )
    print(f"| variant | {unit} | vs {reference_name} |\n| --- | --- | --- |")
    for name, figure in figures.items():
        figure["ratio"] = figure["median"] / figures[reference_name]["median"]
        print(f"| {name} | {figure['median']:,.0f} | {figure['ratio']:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "figures": figures}, f, indent=2)


def _training_variants(args, xla: dict) -> dict:
    variants = {
        "keras LSTM, model.fit": keras_variant(args),
        "seqkit fused, XLA": seqkit_variant(args, fused=True, jit=True, **xla),
        "seqkit fused, no XLA": seqkit_variant(args, fused=True, jit=False, **xla),
        "seqkit autodiff, XLA": seqkit_variant(args, fused=False, jit=True, **xla),
        "seqkit autodiff, no XLA": seqkit_variant(args, fused=False, jit=False, **xla),
    }
    if args.weight_drop:
        variants[f"seqkit fused, XLA, weight drop {args.weight_drop}"] = seqkit_variant(
            args, weight_drop=args.weight_drop, **xla
        )
    if args.bf16_gradients:
        variants["seqkit fused, bf16 weight gradients"] = seqkit_variant(
            args, native_kernels=False, bf16_gradients=True
        )
    if args.native_kernels:
        variants["seqkit fused, native kernels"] = seqkit_variant(args, native_kernels=True, bf16_gradients=False)
    if args.native_kernels and args.bf16_gradients:
        variants["seqkit fused, native kernels, bf16 weight gradients"] = seqkit_variant(
            args, native_kernels=True, bf16_gradients=True
        )
    if args.bf16_recurrence:
        variants["seqkit fused, native kernels, bf16 weight gradients and recurrence"] = seqkit_variant(
            args, native_kernels=True, bf16_gradients=True, bf16_recurrence=True
        )
    return variants


if __name__ == "__main__":
    main()
