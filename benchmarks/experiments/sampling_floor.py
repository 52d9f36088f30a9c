"""How close single-stream sampling is to its floor: the weight matrices read per character.

    python benchmarks/experiments/sampling_floor.py

One stream of the harness's 2 x 256 character model multiplies a single row by every weight
matrix (embedding-to-gates, two recurrent, one layer-to-layer, the head: 3.3 MiB in float32)
for each character, so its speed is bounded by how fast one core streams those matrices
from cache. In one process, alternating: the five products alone, in one XLA while loop
(nothing else in it), which XLA runs on one core; ``seqkit.decode.search.sample`` (prime,
gates, sampling, all of it) with XLA's step, whose ratio to the first says how much of one
core's ceiling is left; and ``sample`` with seqkit's native step, which reads the weights
on every core and so can pass that ceiling, with float32 weights and with float16 ones
(the default where it runs), which halve what a character reads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seqkit.decode.lm import CharLM  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared workloads
from workloads import EMBEDDING, VOCAB, sampling_run, sampling_workload  # noqa: E402
from workloads import SAMPLING_UNITS as UNITS


def products_only(length: int):
    """``run()``: ``length`` steps of the five single-row products, each fed by the last."""
    shapes = [(EMBEDDING, 4 * UNITS), (UNITS, 4 * UNITS), (UNITS, 4 * UNITS), (UNITS, 4 * UNITS), (UNITS, VOCAB)]
    weights = [tf.Variable(tf.random.normal(shape, stddev=0.05)) for shape in shapes]

    @tf.function(jit_compile=True, autograph=False)
    def loop(h):
        def body(i, h):
            # Each product depends on h, so none can be hoisted out of the loop.
            total = sum(tf.reduce_sum(tf.tanh(tf.matmul(h[:, : w.shape[0]], w))[:, :1]) for w in weights)
            return i + 1, h + total

        return tf.while_loop(lambda i, _: i < length, body, (0, h))[1]

    h = tf.random.normal([1, UNITS])
    megabytes = sum(int(np.prod(shape)) for shape in shapes) * 4 / 2**20
    return lambda: loop(h).numpy(), megabytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=300, help="characters per call")
    parser.add_argument("--windows", type=int, default=9)
    args = parser.parse_args()
    floor, megabytes = products_only(args.length)
    lm, prime = sampling_workload()
    native = sampling_run(lm, prime, args.length)
    xla = sampling_run(CharLM(lm.model, lm.vocab, native_step=False), prime, args.length)
    full = sampling_run(CharLM(lm.model, lm.vocab, half_weights=False), prime, args.length)
    variants = {
        "products only": floor,
        "sample(), XLA's step": lambda: xla(1),
        "sample(), float32 weights": lambda: full(1),
        "sample()": lambda: native(1),
    }
    seconds = {name: [] for name in variants}
    for run in variants.values():
        run()  # compile
    for _ in range(args.windows):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    rates = {name: args.length / statistics.median(v) for name, v in seconds.items()}
    step_us = 1e6 / rates["products only"]
    print(
        f"products only: {rates['products only']:,.0f} chars/s ({step_us:.1f} us a step, "
        f"{megabytes:.2f} MiB of weights at {megabytes * 2**20 / step_us / 1e3:.1f} GB/s)"
    )
    for name in ("sample(), XLA's step", "sample(), float32 weights", "sample()"):
        print(f"{name}: {rates[name]:,.0f} chars/s, {rates[name] / rates['products only']:.0%} of the products' rate")
    print(f"sample() runs the native step: {lm.native_step}, with float16 weights: {lm.half_weights}")


if __name__ == "__main__":
    main()
