"""Recurrent layers as NVIDIA cuDNN kernels, the fast path on a GPU.

On a GPU, a loop of per-step ops (XLA's or TensorFlow's) launches small kernels one after
another; cuDNN runs a whole layer over the sequence in one call, forward and backward. Its
LSTM, GRU (reset gate after the recurrent matmul) and tanh RNN are seqkit's cells with the
same equations, so the same weights give the same numbers (to float rounding); peephole
LSTMs have no cuDNN equivalent.

cuDNN ops cannot be compiled by XLA and have no CPU kernel, so they are used only eagerly
on a GPU and while tracing with ``dispatch.kernels(cudnn=True)``, which the training step
(``TrainConfig.cudnn``) and the decoder's prime enter on a GPU; anywhere else (an exported
SavedModel, a caller's own XLA function) the portable loop runs. Inference on batches
stays one XLA program: it fuses the whole unrolled forward pass, and ran faster than
cuDNN on an H100 (docs/performance.md).
"""

from __future__ import annotations

import tensorflow as tf

from seqkit.core.cells import Cell, GRUCell, LSTMCell, TanhCell

# cuDNN's name for each cell with the same equations (an exact type: a subclass may differ).
MODES: dict[type[Cell], str] = {LSTMCell: "lstm", GRUCell: "gru", TanhCell: "rnn_tanh"}
DTYPES = ("float16", "float32", "float64")


def available() -> bool:
    """Whether this TensorFlow is built with CUDA and sees a GPU."""
    return bool(tf.test.is_built_with_cuda() and tf.config.list_logical_devices("GPU"))


def supports(cell_type: type[Cell], dtype: str) -> bool:
    """Whether cuDNN has ``cell_type``'s equations in ``dtype``."""
    return cell_type in MODES and dtype in DTYPES


def params(cell: Cell, recurrent_kernel: tf.Tensor | None = None) -> tf.Tensor:
    """``cell``'s weights as cuDNN's flat parameter buffer (``recurrent_kernel`` in place
    of the cell's own when given).

    cuDNN keeps, per gate in its own order, the input matrix [units, features] row-major,
    then the recurrent matrices, then an input bias and a recurrent bias per gate. A
    kernel's transpose [gates*units, features], flattened, is already the input matrices
    one gate after another, so the gates are only reordered where cuDNN's order differs
    (GRU: r, z, n; seqkit's z, r, n). The biases cuDNN adds twice are split as the cell
    adds them: LSTM and tanh RNN put all of theirs on the input side.
    """
    recurrent = cell.recurrent_kernel if recurrent_kernel is None else recurrent_kernel
    kernels = [tf.convert_to_tensor(cell.kernel), tf.convert_to_tensor(recurrent)]
    bias = tf.convert_to_tensor(cell.bias)
    biases = [bias, tf.convert_to_tensor(cell.recurrent_bias) if type(cell) is GRUCell else tf.zeros_like(bias)]
    if type(cell) is GRUCell:
        u = cell.units

        def r_z_n(t):  # from z, r, n; by slices, whose gradients stay dense (not gather's)
            return tf.concat([t[..., u : 2 * u], t[..., :u], t[..., 2 * u :]], -1)

        kernels, biases = [r_z_n(k) for k in kernels], [r_z_n(b) for b in biases]
    return tf.concat([tf.reshape(tf.transpose(k), [-1]) for k in kernels] + biases, 0)


def run_layer(
    cell: Cell,
    x: tf.Tensor,
    states: tuple[tf.Tensor, ...],
    mask: tf.Tensor | None,
    return_sequences: bool,
    recurrent_kernel: tf.Tensor | None = None,
    training: bool = True,
) -> tuple[tf.Tensor | None, tuple[tf.Tensor, ...]]:
    """Run ``cell`` over ``x`` [batch, time, features] (right-padded where ``mask`` [batch,
    time] says) as one cuDNN call; returns what the encoder's loop returns: the outputs
    [batch, time, units] (zero at padding; None unless ``return_sequences``) and the final
    states, each sequence's at its own last real step."""
    batch, steps = tf.shape(x)[0], tf.shape(x)[1]
    lengths = tf.fill([batch], steps) if mask is None else tf.reduce_sum(tf.cast(mask, tf.int32), 1)
    h0 = states[0][:, None]
    c0 = states[1][:, None] if len(states) > 1 else h0  # cuDNN ignores it for GRU and tanh RNN
    # cuDNN refuses empty sequences: an empty row runs one step, and then gets its initial
    # state back and a zero output (the mask below).
    outputs, h, c, _, _ = tf.raw_ops.CudnnRNNV3(
        input=x,
        input_h=h0,
        input_c=c0,
        params=tf.cast(params(cell, recurrent_kernel), x.dtype),
        sequence_lengths=tf.maximum(lengths, 1),
        rnn_mode=MODES[type(cell)],
        is_training=training,
        time_major=False,
    )
    final = (h[:, 0], c[:, 0]) if len(states) > 1 else (h[:, 0],)
    if mask is not None:
        empty = (lengths == 0)[:, None]
        final = tuple(tf.where(empty, s, f) for s, f in zip(states, final))
        outputs = outputs * tf.cast(mask, outputs.dtype)[:, :, None]
    return (outputs if return_sequences else None), final
