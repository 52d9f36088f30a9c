"""LSTM recurrence with a hand-written backward pass (backpropagation through time).

Autodiff through a ``while_loop`` does two matmuls per step going back (for the input
gradient and for the recurrent kernel's) and stacks every intermediate. Here the backward
loop does one (``dz @ R^T``); the recurrent kernel's gradient is one large matmul over all
steps afterwards, ``H_prev^T @ dZ``, the way cuDNN does it. Masking follows the generic
loop: a padded step keeps the state and outputs zero.
"""

from __future__ import annotations

import tensorflow as tf


def _loop(steps, body, loop_vars):
    return tf.while_loop(lambda t, *_: t < steps, body, loop_vars, maximum_iterations=steps)


def lstm_scan(xp_tm, recurrent_kernel, h0, c0, mask_tm):
    """Run the LSTM over time-major projected inputs ``xp_tm`` [time, batch, 4*units].

    ``mask_tm`` is a float [time, batch, 1] of 1 (real step) and 0 (padding). Returns the
    outputs [time, batch, units] and the final ``h`` and ``c``; differentiable in every
    argument but the mask.
    """

    @tf.custom_gradient
    def scan(xp_tm, kernel, h0, c0):
        steps = tf.shape(xp_tm)[0] if xp_tm.shape[0] is None else xp_tm.shape[0]
        dtype = xp_tm.dtype
        arrays = [tf.TensorArray(dtype, size=steps) for _ in range(4)]  # gates, c, h, out

        def forward(t, h, c, gates_ta, c_ta, h_ta, out_ta):
            z = xp_tm[t] + tf.matmul(h, kernel)
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
                dh_prev = (1.0 - m) * dh + tf.matmul(dz, kernel, transpose_b=True)
                dc_prev = (1.0 - m) * dc + dc_new * f
                return k + 1, dh_prev, dc_prev, dz_ta.write(t, dz)

            dz_ta = tf.TensorArray(dtype, size=steps)
            _, dh0, dc0, dz_ta = _loop(steps, backward, (0, d_h_last, d_c_last, dz_ta))
            dz_all = dz_ta.stack()
            units = tf.shape(h0)[-1]
            d_kernel = tf.matmul(
                tf.reshape(h_prev_all, [-1, units]), tf.reshape(dz_all, [-1, 4 * units]), transpose_a=True
            )
            return dz_all, d_kernel, dh0, dc0

        return (outputs, h_last, c_last), grad

    return scan(xp_tm, recurrent_kernel, h0, c0)
