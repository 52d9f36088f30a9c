"""LSTM recurrence with a hand-written backward pass (backpropagation through time).

Autodiff through a ``while_loop`` does two matmuls per step going back (for the input
gradient and for the recurrent kernel's) and stacks every intermediate. Here the backward
loop does one (``dz @ R^T``); the kernels' gradients and the input's are large matmuls over
all steps afterwards (``[X, H_prev]^T @ dZ``, ``dZ @ W^T``), the way cuDNN does it.

Going forward, each step multiplies ``[x_t, h]`` by the stacked kernels ``[W; R]`` rather
than adding a precomputed input projection to ``h @ R``: XLA's CPU code for the gate
arithmetic is not vectorized when it reads a dynamic slice of a stored array, so the
projection's per-step read cost more than the wider matmul (docs/performance.md). The
native forward op makes the projection inside its loop too, a few steps ahead per thread,
for another reason: a stored projection of every step is the layer's largest array,
written out and read back. Masking follows the generic loop: a padded step keeps the state
and outputs zero.

With split kernels (``dispatch.Kernels.split``) the loops leave the caller's XLA program: as
seqkit's C++ kernels (``native``, lstm_kernel.cc: one thread per block of batch rows, no
per-step dispatch; their step products from bf16 values with ``bf16_recurrence``) or as XLA
programs of their own, and the large matmuls after the backward loop run in TensorFlow,
from bfloat16 values with ``bf16_gradients``: on a CPU with bf16 dot products oneDNN
runs them 1.5x to 2x faster than XLA's float32 dot, while XLA's own bf16 dot is slower
than its float32 one. The training step that traces the model inside it must not itself
be XLA-compiled (see ``TrainConfig.native_kernels`` and ``bf16_gradients``). Inference
traced with native kernels runs the C++ forward loop alone, which keeps nothing for a
backward pass (``Trainer`` evaluation, ``inference.inference_function``).
"""

from __future__ import annotations

import tensorflow as tf

from seqkit.core import dispatch
from seqkit.core import native as kernel_library
from seqkit.errors import SeqkitError


def _compiled(fn):
    """``fn`` as its own XLA program with split kernels in a graph, else as it is
    (inlined into whatever compiles its caller; run op by op when eager)."""
    if not dispatch.current().split or tf.executing_eagerly():
        return fn
    return tf.function(fn, jit_compile=True, autograph=False)


def _loop(steps, body, loop_vars):
    return tf.while_loop(lambda t, *_: t < steps, body, loop_vars, maximum_iterations=steps)


def run_lstm(x_tm, kernel, bias, recurrent_kernel, h0, c0, mask_tm, training: bool = True):
    """Run the LSTM over time-major inputs ``x_tm`` [time, batch, features].

    ``kernel`` [features, 4*units], ``bias`` and ``recurrent_kernel`` are the cell's weights
    (gate order i, f, g, o). ``mask_tm`` is a float [time, batch, 1] of 1 (real step) and 0
    (padding). Returns the outputs [time, batch, units] and the final ``h`` and ``c``;
    differentiable in every argument but the mask, except with native kernels and not
    ``training``: then the loop keeps nothing for a backward pass.
    """
    chosen = dispatch.current()
    args = [tf.convert_to_tensor(v) for v in (x_tm, kernel, bias, recurrent_kernel, h0, c0)]
    low = tf.bfloat16 if chosen.bf16_gradients else None
    if chosen.native and not training:
        ops, mask = _native_inputs(args[0], mask_tm)
        return ops.seqkit_lstm_inference(*args, mask)
    if chosen.native:
        return _native_lstm(*args, mask_tm=mask_tm, low=low, bf16_loops=chosen.bf16_recurrence)
    return _xla_lstm(*args, mask_tm=mask_tm, low=low)


def _filled(grads, refs):
    """The incoming gradients, with zeros for the outputs that received none."""
    return [tf.zeros_like(ref) if d is None else d for d, ref in zip(grads, refs)]


def _matmul(a, b, low, dtype, **kwargs):
    """``a @ b`` from values in ``low`` (a no-op cast where they are), as ``dtype``."""
    return tf.cast(tf.matmul(tf.cast(a, low), tf.cast(b, low), **kwargs), dtype)


def _weight_and_input_grads(inputs_flat, dz_flat, kernel, x_shape, low, dtype):
    """The input's gradient ``dZ @ W^T`` and both kernels' as one product,
    ``[X, H_prev]^T @ dZ``, split into W's and R's; from values in ``low``, as ``dtype``."""
    d_stacked = _matmul(inputs_flat, dz_flat, low, dtype, transpose_a=True)
    d_kernel, d_recurrent = tf.split(d_stacked, [tf.shape(kernel)[0], -1], 0)
    d_x = tf.reshape(_matmul(dz_flat, kernel, low, dtype, transpose_b=True), x_shape)
    return d_x, d_kernel, d_recurrent


def _native_inputs(x_tm, mask_tm):
    """The op library (built on first use) and the mask [time, batch]."""
    if x_tm.dtype != tf.float32:
        raise SeqkitError(f"seqkit's native LSTM kernels are float32; this model computes in {x_tm.dtype.name}.")
    return kernel_library.kernels(), tf.reshape(mask_tm, tf.shape(mask_tm)[:2])


def _native_lstm(x_tm, kernel, bias, recurrent_kernel, h0, c0, mask_tm, low, bf16_loops):
    low = low or tf.float32

    @tf.custom_gradient
    def scan(x_tm, kernel, bias, recurrent_kernel, h0, c0):
        ops, mask = _native_inputs(x_tm, mask_tm)
        outputs, h_last, c_last, gates, cs, inputs = ops.seqkit_lstm_forward(
            x_tm, kernel, bias, recurrent_kernel, h0, c0, mask, bf16=bf16_loops
        )

        def grad(d_out, d_h_last, d_c_last):
            d_out, d_h_last, d_c_last = _filled((d_out, d_h_last, d_c_last), (outputs, h_last, c_last))
            dz, dh0, dc0, d_bias = ops.seqkit_lstm_backward(
                recurrent_kernel, c0, mask, gates, cs, d_out, d_h_last, d_c_last, bf16=bf16_loops
            )
            dz = tf.cast(tf.reshape(dz, [-1, tf.shape(kernel)[1]]), low)
            inputs_flat = tf.reshape(inputs, [-1, tf.shape(inputs)[2]])  # [x, h_prev] of every step
            d_x, d_kernel, d_recurrent = _weight_and_input_grads(
                inputs_flat, dz, kernel, tf.shape(x_tm), low, tf.float32
            )
            return d_x, d_kernel, d_bias, d_recurrent, dh0, dc0

        return (outputs, h_last, c_last), grad

    return scan(x_tm, kernel, bias, recurrent_kernel, h0, c0)


def _xla_lstm(x_tm, kernel, bias, recurrent_kernel, h0, c0, mask_tm, low):
    @tf.custom_gradient
    def scan(x_tm, kernel, bias, recurrent_kernel, h0, c0):
        steps = tf.shape(x_tm)[0] if x_tm.shape[0] is None else x_tm.shape[0]
        dtype = x_tm.dtype
        stacked = tf.concat([kernel, recurrent_kernel], 0)
        low_dtype = low or dtype

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
            d_out, d_h_last, d_c_last = _filled((d_out, d_h_last, d_c_last), (outputs, h_last, c_last))

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
                low_values = (tf.cast(v, low_dtype) for v in (dz_flat, inputs, kernel))
                return dh0, dc0, tf.reduce_sum(dz_flat, 0), *low_values

            dh0, dc0, d_bias, dz_flat, inputs, low_kernel = run_backward(d_h_last, d_c_last)
            d_x, d_kernel, d_recurrent = _weight_and_input_grads(
                inputs, dz_flat, low_kernel, tf.shape(x_tm), low_dtype, dtype
            )
            return d_x, d_kernel, d_bias, d_recurrent, dh0, dc0

        return (outputs, h_last, c_last), grad

    return scan(x_tm, kernel, bias, recurrent_kernel, h0, c0)
