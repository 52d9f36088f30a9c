"""LSTM recurrence with a hand-written backward pass (backpropagation through time).

Autodiff through a ``while_loop`` does two matmuls per step going back (for the input
gradient and for the recurrent kernel's) and stacks every intermediate. Here the backward
loop does one (``dz @ R^T``); the kernels' gradients and the input's are large matmuls over
all steps afterwards (``[X, H_prev]^T @ dZ``, ``dZ @ W^T``), the way cuDNN does it.

Going forward, each step multiplies ``[x_t, h]`` by the stacked kernels ``[W; R]`` rather
than adding a precomputed input projection to ``h @ R``: XLA's CPU code for the gate
arithmetic is not vectorized when it reads a dynamic slice of a stored array, so the
projection's per-step read cost more than the wider matmul (training step 1.05x to 1.1x
faster; see benchmarks/README.md). Masking follows the generic loop: a padded step keeps
the state and outputs zero.

Inside :func:`bf16_weight_gradients` the loops are XLA programs of their own and the large
matmuls after the backward loop run outside XLA with bfloat16 inputs (float32 sums): on a
CPU with bf16 dot products, oneDNN runs them 1.5x to 2x faster than XLA's float32 dot,
while XLA's own bf16 dot is slower than its float32 one. The training step that traces
the model inside it must not itself be XLA-compiled (see ``TrainConfig.bf16_gradients``).
"""

from __future__ import annotations

import contextlib
import contextvars

import tensorflow as tf

_GRADIENT_DTYPE: contextvars.ContextVar[tf.DType | None] = contextvars.ContextVar("gradient_dtype", default=None)


@contextlib.contextmanager
def bf16_weight_gradients(enabled: bool = True):
    """While tracing inside this block, recurrences are compiled on their own and the fused
    LSTM's weight and input gradients are bfloat16 matmuls outside XLA."""
    token = _GRADIENT_DTYPE.set(tf.bfloat16 if enabled else None)
    try:
        yield
    finally:
        _GRADIENT_DTYPE.reset(token)


def cpu_has_bf16() -> bool:
    """Whether this (Linux) machine's CPU has bf16 dot-product instructions."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line.split() for line in info if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_active() -> bool:
    """Whether the model is being traced inside :func:`bf16_weight_gradients`."""
    return _GRADIENT_DTYPE.get() is not None


def _compiled(fn):
    """``fn`` as its own XLA program inside :func:`bf16_weight_gradients` in a graph, else as
    it is (inlined into whatever compiles its caller; run op by op when eager)."""
    if _GRADIENT_DTYPE.get() is None or tf.executing_eagerly():
        return fn
    return tf.function(fn, jit_compile=True, autograph=False)


def _loop(steps, body, loop_vars):
    return tf.while_loop(lambda t, *_: t < steps, body, loop_vars, maximum_iterations=steps)


def lstm_scan(x_tm, kernel, bias, recurrent_kernel, h0, c0, mask_tm):
    """Run the LSTM over time-major inputs ``x_tm`` [time, batch, features].

    ``kernel`` [features, 4*units], ``bias`` and ``recurrent_kernel`` are the cell's weights
    (gate order i, f, g, o). ``mask_tm`` is a float [time, batch, 1] of 1 (real step) and 0
    (padding). Returns the outputs [time, batch, units] and the final ``h`` and ``c``;
    differentiable in every argument but the mask.
    """

    @tf.custom_gradient
    def scan(x_tm, kernel, bias, recurrent_kernel, h0, c0):
        steps = tf.shape(x_tm)[0] if x_tm.shape[0] is None else x_tm.shape[0]
        dtype = x_tm.dtype
        stacked = tf.concat([kernel, recurrent_kernel], 0)
        low = _GRADIENT_DTYPE.get() or dtype  # the dtype of the matmuls after the backward loop

        def forward(t, h, c, gates_ta, c_ta, h_ta, out_ta):
            z = tf.matmul(tf.concat([x_tm[t], h], -1), stacked) + bias
            zi, zf, zg, zo = tf.split(z, 4, axis=-1)
            i, f, g, o = tf.sigmoid(zi), tf.sigmoid(zf), tf.tanh(zg), tf.sigmoid(zo)
            c_new = f * c + i * g
            h_new = o * tf.tanh(c_new)
            m = mask_tm[t]
            c_next = m * c_new + (1.0 - m) * c
            h_next = m * h_new + (1.0 - m) * h
            return (
                t + 1,
                h_next,
                c_next,
                gates_ta.write(t, tf.concat([i, f, g, o], -1)),
                c_ta.write(t, c_next),
                h_ta.write(t, h_next),
                out_ta.write(t, m * h_new),
            )

        @_compiled
        def run_forward(h0, c0):
            arrays = [tf.TensorArray(dtype, size=steps) for _ in range(4)]  # gates, c, h, out
            _, h_last, c_last, *arrays = _loop(steps, forward, (0, h0, c0, *arrays))
            return h_last, c_last, *(a.stack() for a in arrays)

        h_last, c_last, gates, cs, hs, outputs = run_forward(h0, c0)

        def grad(d_out, d_h_last, d_c_last):
            d_out, d_h_last, d_c_last = (
                tf.zeros_like(ref) if d is None else d
                for d, ref in ((d_out, outputs), (d_h_last, h_last), (d_c_last, c_last))
            )

            @_compiled
            def run_backward(d_h_last, d_c_last):
                # Everything but the two large matmuls, so that they alone leave XLA.
                c_prev_all = tf.concat([c0[None], cs[:-1]], 0)
                h_prev_all = tf.concat([h0[None], hs[:-1]], 0)

                def backward(k, dh, dc, dz_ta):
                    t = steps - 1 - k
                    m = mask_tm[t]
                    i, f, g, o = tf.split(gates[t], 4, axis=-1)
                    tanh_c = tf.tanh(cs[t])
                    dh_new = m * (dh + d_out[t])
                    dc_new = m * dc + dh_new * o * (1.0 - tanh_c * tanh_c)
                    dz = tf.concat(
                        [
                            dc_new * g * i * (1.0 - i),
                            dc_new * c_prev_all[t] * f * (1.0 - f),
                            dc_new * i * (1.0 - g * g),
                            dh_new * tanh_c * o * (1.0 - o),
                        ],
                        -1,
                    )
                    dh_prev = (1.0 - m) * dh + tf.matmul(dz, recurrent_kernel, transpose_b=True)
                    dc_prev = (1.0 - m) * dc + dc_new * f
                    return k + 1, dh_prev, dc_prev, dz_ta.write(t, dz)

                dz_ta = tf.TensorArray(dtype, size=steps)
                _, dh0, dc0, dz_ta = _loop(steps, backward, (0, d_h_last, d_c_last, dz_ta))
                dz_flat = tf.reshape(dz_ta.stack(), [-1, tf.shape(stacked)[1]])
                inputs = tf.reshape(tf.concat([x_tm, h_prev_all], -1), [-1, tf.shape(stacked)[0]])
                low_values = (tf.cast(v, low) for v in (dz_flat, inputs, kernel))
                return dh0, dc0, tf.reduce_sum(dz_flat, 0), *low_values

            dh0, dc0, d_bias, dz_flat, inputs, low_kernel = run_backward(d_h_last, d_c_last)
            d_stacked = tf.cast(tf.matmul(inputs, dz_flat, transpose_a=True), dtype)
            d_kernel, d_recurrent = tf.split(d_stacked, [tf.shape(kernel)[0], -1], 0)
            d_x = tf.cast(tf.matmul(dz_flat, low_kernel, transpose_b=True), dtype)
            d_x = tf.reshape(d_x, tf.shape(x_tm))
            return d_x, d_kernel, d_bias, d_recurrent, dh0, dc0

        return (outputs, h_last, c_last), grad

    return scan(*(tf.convert_to_tensor(v) for v in (x_tm, kernel, bias, recurrent_kernel, h0, c0)))
