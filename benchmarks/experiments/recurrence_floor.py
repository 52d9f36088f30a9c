"""How fast can one LSTM recurrence (forward and backward) go on this CPU, and where is seqkit?

Times the forward and backward pass of one LSTM layer over a batch (row-MNIST 1 x 128 by
default: 28 steps, batch 128, 28 inputs) in one run, alternating, median of the windows:

- ``seqkit``: the core's fused scan (:mod:`seqkit.core.fused`) under XLA, as training runs
  it without native kernels, and with them (``lstm_kernel.cc``, graph mode);
- ``floor``: the same matmuls and gate arithmetic under XLA with nothing stored per step
  and nothing read back (so its gradients are wrong): no XLA while-loop version of the
  recurrence can beat it;
- ``BlockLSTM``: TensorFlow's own whole-sequence LSTM kernel (``BlockLSTMV2`` and
  ``BlockLSTMGradV2``, graph mode; XLA cannot compile them). Its gradients are checked
  against seqkit's first. TensorFlow registers the V1 gradient (ICFO gate order) for the
  V2 op (IFCO), so ``tf.GradientTape`` through ``BlockLSTMV2`` gives wrong weight
  gradients; we call ``BlockLSTMGradV2`` ourselves;
- ``torch``: ``torch.nn.LSTM`` (oneDNN's fused LSTM on CPU), when PyTorch is installed.

A second table times the gate arithmetic alone in an XLA loop, reading each step's inputs
by a dynamic slice (``xp[t]``, as every loop over stored steps must), by a static slice,
or from loop state (the slice taken one step ahead), to show what a dynamic slice fused
into the arithmetic costs on XLA's CPU backend.

    python benchmarks/experiments/recurrence_floor.py
    python benchmarks/experiments/recurrence_floor.py --steps 100 --batch 64 --inputs 256 --units 256 --calls 5
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seqkit.core.dispatch import kernels  # noqa: E402
from seqkit.core.fused import run_lstm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared workloads
from core_speed import alternate  # noqa: E402


def block_lstm(x, w, b, h0, c0):
    """Hidden states [time, batch, units] of TensorFlow's BlockLSTMV2, differentiable."""

    @tf.custom_gradient
    def run(x, w, b, h0, c0):
        zeros = tf.zeros_like(b[: tf.shape(h0)[1]])
        args = dict(
            seq_len_max=tf.cast(tf.shape(x)[0], tf.int64),
            x=x,
            cs_prev=c0,
            h_prev=h0,
            w=w,
            wci=zeros,
            wcf=zeros,
            wco=zeros,
            b=b,
        )
        i, cs, f, o, ci, co, h = tf.raw_ops.BlockLSTMV2(cell_clip=0.0, use_peephole=False, **args)

        def grad(dh):
            dx, dc0, dh0, dw, _, _, _, db = tf.raw_ops.BlockLSTMGradV2(
                i=i,
                cs=cs,
                f=f,
                o=o,
                ci=ci,
                co=co,
                h=h,
                cs_grad=tf.zeros_like(cs),
                h_grad=dh,
                use_peephole=False,
                **args,
            )
            return dx, dw, db, dh0, dc0

        return h, grad

    return run(*(tf.convert_to_tensor(t) for t in (x, w, b, h0, c0)))


def floor_pass(x, w, b, h0, c0):
    """An LSTM's matmuls and gate arithmetic, forward and backward, under XLA with no
    per-step stores or loads (stand-ins take their place), so it computes nothing useful."""
    steps, inputs, units = x.shape[0], x.shape[-1], h0.shape[-1]
    kernel = w[inputs:]
    xp = tf.tensordot(x, w[:inputs], axes=1) + b
    x0 = xp[0]

    def forward(t, h, c):
        i, f, g, o = tf.split(x0 + tf.matmul(h, kernel), 4, axis=-1)
        i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
        c = f * c + i * g
        return t + 1, o * tf.tanh(c), c

    _, h, c = tf.while_loop(lambda t, *_: t < steps, forward, (0, h0, c0))
    gates = tf.concat([h, c, h, c], -1)  # stands in for one step's saved gates

    def backward(t, dh, dc):
        i, f, g, o = tf.split(gates, 4, axis=-1)
        tanh_c = tf.tanh(c)
        dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
        dz = tf.concat(
            [dc * g * i * (1.0 - i), dc * c * f * (1.0 - f), dc * i * (1.0 - g * g), dh * tanh_c * o * (1.0 - o)], -1
        )
        return t + 1, tf.matmul(dz, kernel, transpose_b=True), dc * f

    _, dh, dc = tf.while_loop(lambda t, *_: t < steps, backward, (0, h, c))
    dz_all = tf.reshape(xp, [-1, 4 * units])  # stands in for every step's gate gradients
    d_kernel = tf.matmul(tf.reshape(xp[..., :units], [-1, units]), dz_all, transpose_a=True)
    d_input = tf.matmul(tf.reshape(x, [-1, inputs]), dz_all, transpose_a=True)
    dx = tf.matmul(dz_all, w[:inputs], transpose_b=True)
    return dh + dc, d_kernel, d_input, dx


def gate_arithmetic_loop(xp: tf.Tensor, read: str):
    """An XLA loop of LSTM gate arithmetic (no matmul) over ``xp`` [time, batch, 4*units],
    each step's input read as ``read``: ``dynamic`` (xp[t]), ``static`` (xp[0]) or
    ``loop state`` (xp[t + 1] carried to the next step)."""
    steps, units = xp.shape[0], xp.shape[-1] // 4

    def body(t, h, c, ahead):
        x_t = {"dynamic": xp[t], "static": xp[0], "loop state": ahead}[read]
        i, f, g, o = tf.split(tf.tile(h, [1, 4]) + x_t, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return t + 1, tf.sigmoid(o) * tf.tanh(c), c, xp[tf.minimum(t + 1, steps - 1)]

    zeros = tf.zeros([xp.shape[1], units])
    return tf.function(
        lambda: tf.while_loop(lambda t, *_: t < steps, body, (0, zeros, zeros, xp[0]))[1], jit_compile=True
    )


def milliseconds(runs: dict, calls: int, windows: int) -> dict:
    """Median milliseconds per call of each run (a function of no arguments), timed in
    alternating windows by the harness's loop."""

    def repeated(run):
        def calls_of(n: int) -> None:  # None: `alternate` times the calls from outside
            for _ in range(n):
                run()

        return calls_of

    variants = {name: repeated(run) for name, run in runs.items()}
    return {name: 1e3 / figure["median"] for name, figure in alternate(variants, 1, calls, windows).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--inputs", type=int, default=28)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--calls", type=int, default=20, help="passes per timing window")
    parser.add_argument("--windows", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    t_, b_, i_, u_ = args.steps, args.batch, args.inputs, args.units
    x = tf.constant(rng.normal(size=(t_, b_, i_)).astype(np.float32))
    w = tf.constant((rng.normal(size=(i_ + u_, 4 * u_)) / np.sqrt(i_ + u_)).astype(np.float32))
    b = tf.constant((rng.normal(size=(4 * u_,)) * 0.1).astype(np.float32))
    zeros = tf.zeros([b_, u_])

    def seqkit_grads(x, w, b):
        with tf.GradientTape() as tape:
            tape.watch([w, b])
            out, _, _ = run_lstm(x, w[:i_], b, w[i_:], zeros, zeros, tf.ones([t_, b_, 1]))
            loss = tf.reduce_sum(out * out)
        return tape.gradient(loss, [w, b])

    def native_grads(x, w, b):
        with kernels(native=True):
            return seqkit_grads(x, w, b)

    def block_grads(x, w, b):
        with tf.GradientTape() as tape:
            tape.watch([w, b])
            loss = tf.reduce_sum(tf.square(block_lstm(x, w, b, zeros, zeros)))
        return tape.gradient(loss, [w, b])

    variants = {
        "seqkit fused scan, XLA": tf.function(seqkit_grads, jit_compile=True),
        "seqkit native kernels, graph": tf.function(native_grads),
        "floor (no per-step stores), XLA": tf.function(
            lambda x, w, b: floor_pass(x, w, b, zeros, zeros), jit_compile=True
        ),
        "TF BlockLSTMV2, graph": tf.function(block_grads),
    }
    for other in ("seqkit native kernels, graph", "TF BlockLSTMV2, graph"):
        pairs = zip(variants["seqkit fused scan, XLA"](x, w, b), variants[other](x, w, b))
        difference = max(float(tf.reduce_max(tf.abs(p - q)) / tf.reduce_max(tf.abs(p))) for p, q in pairs)
        print(
            f"largest gradient difference, XLA scan against {other}, relative to the largest gradient: {difference:.1e}"
        )
    runs = {name: (lambda f=f: f(x, w, b)[0].numpy()) for name, f in variants.items()}
    try:
        import torch

        torch.set_num_threads(2)
        lstm = torch.nn.LSTM(i_, u_)
        tx = torch.from_numpy(x.numpy())

        def torch_pass():
            lstm.zero_grad()
            out, _ = lstm(tx)
            (out * out).sum().backward()

        runs["torch.nn.LSTM (oneDNN)"] = torch_pass
    except ImportError:
        print("PyTorch is not installed: no torch row.")
    times = milliseconds(runs, args.calls, args.windows)
    print(
        f"LSTM {args.units}, {args.steps} steps, batch {args.batch}, {args.inputs} inputs: forward + backward, "
        f"median of {args.windows} windows of {args.calls}"
    )
    print("| recurrence | ms per pass | vs seqkit |\n| --- | --- | --- |")
    for name, median in times.items():
        print(f"| {name} | {median:.2f} | {times['seqkit fused scan, XLA'] / median:.2f}x |")

    xp = tf.constant(rng.normal(size=(t_, b_, 4 * u_)).astype(np.float32))
    loops = {read: gate_arithmetic_loop(xp, read) for read in ("dynamic", "static", "loop state")}
    times = milliseconds({read: (lambda f=f: f().numpy()) for read, f in loops.items()}, args.calls, args.windows)
    print("\n| gate arithmetic, input read by | microseconds per step |\n| --- | --- |")
    for read, median in times.items():
        print(f"| {read} slice | {median * 1e3 / t_:.1f} |")


if __name__ == "__main__":
    main()
