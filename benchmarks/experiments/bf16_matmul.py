"""Matmul throughput in float32 and bfloat16, under XLA and in TensorFlow's own kernels (oneDNN).

    python benchmarks/experiments/bf16_matmul.py

Why `TrainConfig(bf16_gradients=True)` takes the LSTM's weight-gradient matmuls out of XLA:
on a CPU with bf16 dot products (AVX512-BF16, AMX) oneDNN runs them in bf16 much faster than
in float32, while XLA's CPU backend runs its bf16 dot no faster than its float32 one. The
shapes are the large matmuls of the fused LSTM's backward pass, ``[X, H_prev]^T @ dZ``
(rows = batch x time), plus a square reference. GFLOP/s, median of 7 windows; the bf16
columns include the casts from and to float32.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SHAPES = {  # name: (rows, a's columns, b's columns) of a^T @ b
    "square 1024": (1024, 1024, 1024),
    "char 2 x 256, batch 64 x 100, layer 2": (6400, 512, 1024),
    "char 2 x 384, batch 32 x 100, layer 2": (3200, 768, 1536),
    "row-MNIST 1 x 128, batch 128 x 28": (3584, 156, 512),
}


def variants() -> dict:
    def product(dtype):
        def run(a, b):
            return tf.cast(tf.matmul(tf.cast(a, dtype), tf.cast(b, dtype), transpose_a=True), tf.float32)

        return run

    return {
        f"{where} {name}": tf.function(product(dtype), jit_compile=jit)
        for where, jit in (("XLA", True), ("oneDNN", False))
        for name, dtype in (("float32", tf.float32), ("bf16", tf.bfloat16))
    }


def gflops(fn, a, b, windows: int = 7) -> float:
    rows, k = a.shape
    flops = 2 * rows * k * b.shape[1]
    calls = max(3, int(1e9 / flops))
    fn(a, b).numpy()
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(calls):
            result = fn(a, b)
        result.numpy()
        times.append((time.perf_counter() - start) / calls)
    return flops / float(np.median(times)) / 1e9


def main() -> None:
    runs = variants()
    print("| a^T @ b | " + " | ".join(runs) + " | bf16 error |")
    print("| --- |" + " --- |" * (len(runs) + 1))
    for name, (rows, k, n) in SHAPES.items():
        a, b = tf.random.normal([rows, k]), tf.random.normal([rows, n])
        figures = [gflops(fn, a, b) for fn in runs.values()]
        exact = runs["XLA float32"](a, b)
        error = float(tf.reduce_max(tf.abs(runs["oneDNN bf16"](a, b) - exact)) / tf.reduce_max(tf.abs(exact)))
        print(f"| {name} | " + " | ".join(f"{f:.0f}" for f in figures) + f" | {error:.1e} |", flush=True)


if __name__ == "__main__":
    main()
