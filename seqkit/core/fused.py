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
"""

from __future__ import annotations

import tensorflow as tf


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
        arrays = [tf.TensorArray(dtype, size=steps) for _ in range(4)]  # gates, c, h, out

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

        _, h_last, c_last, gates_ta, c_ta, h_ta, out_ta = _loop(steps, forward, (0, h0, c0, *arrays))
        gates, cs, hs, outputs = gates_ta.stack(), c_ta.stack(), h_ta.stack(), out_ta.stack()

        def grad(d_out, d_h_last, d_c_last):
            d_out, d_h_last, d_c_last = (
                tf.zeros_like(ref) if d is None else d
                for d, ref in ((d_out, outputs), (d_h_last, h_last), (d_c_last, c_last))
            )
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
            inputs = tf.concat([x_tm, h_prev_all], -1)
            d_stacked = tf.matmul(tf.reshape(inputs, [-1, tf.shape(stacked)[0]]), dz_flat, transpose_a=True)
            d_kernel, d_recurrent = tf.split(d_stacked, [tf.shape(kernel)[0], -1], 0)
            d_x = tf.reshape(tf.matmul(dz_flat, kernel, transpose_b=True), tf.shape(x_tm))
            return d_x, d_kernel, tf.reduce_sum(dz_flat, 0), d_recurrent, dh0, dc0

        return (outputs, h_last, c_last), grad

    return scan(*(tf.convert_to_tensor(v) for v in (x_tm, kernel, bias, recurrent_kernel, h0, c0)))
