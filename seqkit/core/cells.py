"""Recurrent cells: the per-step equations of LSTM, peephole LSTM, GRU and tanh RNN.

A cell owns its weights and splits its work in two, so the layer that runs it can be fast:
``project`` applies the input kernel to every time step in one matmul (outside the
recurrence), and ``step`` does only the recurrent part for one time step. States are a
tuple of tensors whose first element is always the output ``h``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from seqkit.errors import SeqkitError


class Cell(keras.layers.Layer):
    """Base class: weights ``kernel`` (input), ``recurrent_kernel`` and ``bias``.

    Args:
        units: size of the output and of each state tensor.
    """

    gates: int = 1  # blocks of `units` columns in the kernels
    state_count: int = 1  # number of state tensors; states[0] is h

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape) -> None:
        width = self.gates * self.units
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), width), initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(self.units, width), initializer="orthogonal"
        )
        self.bias = self.add_weight(name="bias", shape=(width,), initializer=self._bias_init)

    def _bias_init(self, shape, dtype=None):
        return tf.zeros(shape, dtype=dtype)

    def project(self, x: tf.Tensor) -> tf.Tensor:
        """Input part of every gate for all time steps at once: ``x @ kernel + bias``."""
        return tf.tensordot(x, self.kernel, axes=1) + self.bias

    def zero_state(self, batch_size, dtype=tf.float32) -> tuple[tf.Tensor, ...]:
        return tuple(tf.zeros([batch_size, self.units], dtype) for _ in range(self.state_count))

    def step(
        self, xp: tf.Tensor, states: tuple[tf.Tensor, ...], recurrent_kernel: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, ...]:
        """One time step from the projected input ``xp`` [batch, gates*units]; returns new states.

        ``recurrent_kernel`` replaces the cell's own for this step (the encoder passes a
        DropConnect-masked copy while training).
        """
        raise NotImplementedError

    def _recur(self, h: tf.Tensor, recurrent_kernel: tf.Tensor | None) -> tf.Tensor:
        return tf.matmul(h, self.recurrent_kernel if recurrent_kernel is None else recurrent_kernel)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="seqkit")
class TanhCell(Cell):
    """Elman RNN: h' = tanh(x W + h U + b)."""

    def step(self, xp, states, recurrent_kernel=None):
        return (tf.tanh(xp + self._recur(states[0], recurrent_kernel)),)


@keras.saving.register_keras_serializable(package="seqkit")
class LSTMCell(Cell):
    """LSTM (Hochreiter & Schmidhuber, with forget gate), gate order i, f, g, o as in Keras.

    The forget-gate bias starts at 1 so that early training does not forget everything.
    """

    gates = 4
    state_count = 2

    def _bias_init(self, shape, dtype=None):
        u = self.units
        return tf.concat([tf.zeros([u]), tf.ones([u]), tf.zeros([2 * u])], 0)

    def step(self, xp, states, recurrent_kernel=None):
        h, c = states
        i, f, g, o = tf.split(xp + self._recur(h, recurrent_kernel), 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c


@keras.saving.register_keras_serializable(package="seqkit")
class PeepholeLSTMCell(LSTMCell):
    """LSTM with peephole connections (Gers & Schmidhuber, 2000).

    The input and forget gates see the previous cell state, the output gate the new one:
    i = s(Wi x + Ui h + pi*c + bi), f = s(Wf x + Uf h + pf*c + bf),
    c' = f*c + i*tanh(Wg x + Ug h + bg), o = s(Wo x + Uo h + po*c' + bo), h' = o*tanh(c').
    """

    def build(self, input_shape) -> None:
        super().build(input_shape)
        self.peephole = self.add_weight(name="peephole", shape=(3, self.units), initializer="glorot_uniform")

    def step(self, xp, states, recurrent_kernel=None):
        h, c = states
        i, f, g, o = tf.split(xp + self._recur(h, recurrent_kernel), 4, axis=-1)
        p_i, p_f, p_o = tf.unstack(self.peephole)
        c_new = tf.sigmoid(f + p_f * c) * c + tf.sigmoid(i + p_i * c) * tf.tanh(g)
        return tf.sigmoid(o + p_o * c_new) * tf.tanh(c_new), c_new


@keras.saving.register_keras_serializable(package="seqkit")
class GRUCell(Cell):
    """GRU with the reset gate applied after the recurrent matmul (cuDNN's and Keras's default).

    z = s(xz + h Uz + rz), r = s(xr + h Ur + rr), n = tanh(xn + r*(h Un + rn)),
    h' = z*h + (1-z)*n, where x* include the input bias and r* the recurrent bias.
    """

    gates = 3

    def build(self, input_shape) -> None:
        super().build(input_shape)
        self.recurrent_bias = self.add_weight(name="recurrent_bias", shape=(3 * self.units,), initializer="zeros")

    def step(self, xp, states, recurrent_kernel=None):
        h = states[0]
        x_z, x_r, x_n = tf.split(xp, 3, axis=-1)
        h_z, h_r, h_n = tf.split(self._recur(h, recurrent_kernel) + self.recurrent_bias, 3, -1)
        z = tf.sigmoid(x_z + h_z)
        n = tf.tanh(x_n + tf.sigmoid(x_r + h_r) * h_n)
        return (z * h + (1.0 - z) * n,)


CELLS: dict[str, type[Cell]] = {
    "lstm": LSTMCell,
    "gru": GRUCell,
    "rnn": TanhCell,
    "peephole": PeepholeLSTMCell,
}


def make_cell(kind: str, units: int, **kwargs) -> Cell:
    """Create a cell by name: one of ``lstm``, ``gru``, ``rnn``, ``peephole``."""
    if kind not in CELLS:
        raise SeqkitError(f"Unknown cell {kind!r}: choose one of {', '.join(CELLS)}.")
    return CELLS[kind](units, **kwargs)
